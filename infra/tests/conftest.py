"""Loads every .tf file of the stack with python-hcl2 (pinned in requirements.txt)."""

from pathlib import Path

import hcl2
import pytest
from hcl2.utils import SerializationOptions

INFRA = Path(__file__).resolve().parent.parent
OPTIONS = SerializationOptions(strip_string_quotes=True)


def tf_files():
    return sorted(p for p in INFRA.rglob("*.tf") if ".terraform" not in p.parts)


def load(path):
    with open(path) as f:
        return hcl2.load(f, serialization_options=OPTIONS)


@pytest.fixture(scope="session")
def stack():
    """The module's top-level files, merged: {"resource": {type: {name: body}}, "data": ...}."""
    merged = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": []}
    for path in sorted(INFRA.glob("*.tf")):
        doc = load(path)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        merged[kind].setdefault(rtype, {})[name] = body
        merged["locals"].extend(doc.get("locals", []))
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
    return merged


def one(body_list):
    """A nested block parses as a list of dicts; most appear once."""
    assert isinstance(body_list, list) and len(body_list) == 1, body_list
    return body_list[0]
