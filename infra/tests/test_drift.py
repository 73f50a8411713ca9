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


def test_every_container_runs_a_real_subcommand_with_real_flags_and_env(stack):
    defs = containers(stack)
    assert {"agent_container", "compactor_container"} <= set(defs)
    for name, c in defs.items():
        command = c["command"]
        subcommand = command[0]
        text = help_text(subcommand)
        flags = set(re.findall(r"(--[a-z0-9-]+)", text))
        envs = set(re.findall(r"\[env: (SILT_[A-Z0-9_]+)", text))
        for arg in command[1:]:
            if arg.startswith("--"):
                assert arg in flags, f"{name}: `silt {subcommand}` has no flag {arg}"
        passed = [e["name"] for e in c.get("environment", [])] + [s["name"] for s in c.get("secrets", [])]
        for var in passed:
            if var.startswith("SILT_"):
                assert var in envs, f"{name}: `silt {subcommand}` reads no {var}"
            else:
                assert var.startswith("AWS_"), f"{name}: unexpected variable {var}"


def test_drift_check_can_fail(stack, monkeypatch):
    """The check above would notice a flag the binary does not have."""
    text = help_text("agent")
    assert "--flush-interval-ms" in text
    assert "--no-such-flag" not in text
