"""The static checks that scripts/test.sh (and so .ci/run) runs first really
fail on a finding: a planted type error and a planted lint error each make
scripts/lint.sh exit non-zero, and test.sh stops before pytest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tree(tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    for name in ("src", "tests", "bench", "scripts"):
        shutil.copytree(ROOT / name, dst / name,
                        ignore=shutil.ignore_patterns("__pycache__", "fixtures", ".mypy_cache"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(tree / "scripts" / "lint.sh")], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin",
                                          "MEMCONSOLE_PYTHON": sys.executable}, timeout=600)


@pytest.mark.parametrize("plant, expect", [
    ("def _planted() -> int:\n    return 'not an int'\n", "mypy"),
    ("import os\n", "F401"),
])
def test_lint_fails_on_a_finding(tmp_path: Path, plant: str, expect: str) -> None:
    pytest.importorskip("mypy")
    pytest.importorskip("ruff")
    tree = _tree(tmp_path)
    target = tree / "src" / "memconsole" / "_common.py"
    target.write_text(target.read_text() + "\n\n" + plant)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert (expect in out) or ("error" in out), out


def test_test_script_runs_lint_before_pytest() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "set -euo pipefail" in script
    assert script.index("scripts/lint.sh") < script.index("pytest")
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
