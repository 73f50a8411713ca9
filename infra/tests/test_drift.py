"""The stack and the binary cannot drift apart: every flag and SILT_*
environment variable a task definition passes to `silt` exists in that
subcommand's --help."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import INFRA


def silt_binary():
    candidates = [os.environ.get("SILT_BIN")]
    target = os.environ.get("CARGO_TARGET_DIR", str(INFRA.parent / "target"))
    candidates += [f"{target}/debug/silt", f"{target}/release/silt"]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    if os.environ.get("SILT_REQUIRE_BIN"):
        pytest.fail("SILT_REQUIRE_BIN is set but no silt binary was found (set SILT_BIN)")
    pytest.skip("SKIPPED: no silt binary built (cargo build, or set SILT_BIN)")


def containers(stack):
    """Container definitions kept as HCL locals (`*_container`)."""
    found = {}
    for block in stack["locals"]:
        for name, value in block.items():
            if name.endswith("_container"):
                found[name] = value
    return found


def help_text(subcommand):
    out = subprocess.run([silt_binary(), subcommand, "--help"], capture_output=True, text=True, check=True)
    return out.stdout


def drift(name, container):
    """What a container passes to `silt` that `silt <subcommand> --help` does not know."""
    command = container["command"]
    subcommand = command[0]
    text = help_text(subcommand)
    flags = set(re.findall(r"(--[a-z0-9-]+)", text))
    envs = set(re.findall(r"\[env: (SILT_[A-Z0-9_]+)", text))
    problems = [f"{name}: `silt {subcommand}` has no flag {a}" for a in command[1:] if a.startswith("--") and a not in flags]
    passed = [e["name"] for e in container.get("environment", [])] + [s["name"] for s in container.get("secrets", [])]
    for var in passed:
        if var.startswith("SILT_") and var not in envs:
            problems.append(f"{name}: `silt {subcommand}` reads no {var}")
        elif not var.startswith(("SILT_", "AWS_")):
            problems.append(f"{name}: unexpected variable {var}")
    return problems


def test_every_container_runs_a_real_subcommand_with_real_flags_and_env(stack):
    defs = containers(stack)
    assert {"agent_container", "compactor_container"} <= set(defs)
    for name, c in defs.items():
        assert drift(name, c) == []


def test_drift_is_detected(stack):
    """A flag or variable the binary does not have is reported."""
    good = containers(stack)["agent_container"]
    bad = dict(good, command=good["command"] + ["--no-such-flag"], environment=[{"name": "SILT_NO_SUCH_VAR", "value": "1"}])
    assert drift("bad", bad) == [
        "bad: `silt agent` has no flag --no-such-flag",
        "bad: `silt agent` reads no SILT_NO_SUCH_VAR",
    ]
