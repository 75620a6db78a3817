"""Helpers for tests that need a real systemd-journald (see journald_ns.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import require

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
MESSAGE_ID = "2163281d23394f449b6023c81a5a83a3"


def require_journald() -> None:
    """Skip (or fail under MEMCONSOLE_FORCE_VM=1) without root, unshare or journald."""
    require(os.geteuid() == 0, "needs root (a private systemd-journald in a mount namespace)")
    require(shutil.which("unshare") is not None, "unshare (util-linux) is not installed")
    require(Path("/lib/systemd/systemd-journald").exists(), "systemd-journald is not installed")
    require(shutil.which("journalctl") is not None, "journalctl is not installed")


def memconsole(*args: str) -> list[str]:
    """argv running this tree's memconsole."""
    return [sys.executable, "-m", "memconsole", *args]


def env(**extra: str) -> dict[str, str]:
    """The test's environment with this tree's source first on PYTHONPATH."""
    out = {k: v for k, v in os.environ.items() if k != "INVOCATION_ID"}
    out["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE.parent)])
    out.update(extra)
    return out


def with_journald(out: Path, cmd: list[str], environ: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
    """Run *cmd* beside a private journald; its journal ends up in out/journal."""
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable,
         str(HERE / "journald_ns.py"), str(out), "--", *cmd],
        env=environ or env(), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def entries(directory: Path, *matches: str) -> list[dict[str, Any]]:
    """``journalctl --directory=DIR -o json --all MATCH...`` as objects
    (without ``--all`` a field over 4096 bytes comes out as null)."""
    proc = subprocess.run(["journalctl", f"--directory={directory}", "-o", "json",
                           "--all", "--no-pager", *matches], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr  # 1: no entries (252 says "-- No entries --")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def value(entry: dict[str, Any], name: str) -> bytes:
    """A field's bytes: journalctl -o json gives a string, or a list of byte
    values for data that is not printable UTF-8."""
    v = entry[name]
    return bytes(v) if isinstance(v, list) else str(v).encode()
