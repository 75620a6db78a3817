"""Importing the report parser compiles no regular expression; a pattern compiled on
first use rebinds its module global, so the per-line path looks up a compiled pattern
as before (docs/oops.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from memconsole import oops
from memconsole.oops import _culprit, _draft, _families, _fields, _machinery, _patterns, _scan

LAB = Path(__file__).resolve().parent.parent / "fixtures" / "lab"

_COUNT = """
import re, sys
compiled = []
original = re._compile
def counting(pattern, flags):
    frame = sys._getframe(1)
    while frame is not None and "/re/" in frame.f_code.co_filename:
        frame = frame.f_back
    if frame is not None and "/memconsole/oops/" in frame.f_code.co_filename:
        compiled.append(pattern)
    return original(pattern, flags)
re._compile = counting
import memconsole.oops
print(len(compiled), compiled[:3])
"""


def test_import_compiles_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", _COUNT], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split()[0] == "0", done.stdout


def test_used_patterns_are_rebound_to_compiled_ones() -> None:
    for path in sorted(LAB.glob("*/*/pstore/dmesg-*")):
        oops.parse_reports(path.read_bytes())
    lazy = _patterns._Lazy
    for module in (_patterns, _fields, _draft, _families, _scan, _culprit, _machinery):
        for name, value in vars(module).items():
            if isinstance(value, lazy):
                # Only patterns the lab records never needed may still wait.
                assert value._re is None, f"{module.__name__}.{name}"
    for name in ("_FAST", "RIP_LINE", "TRACE_HEADER", "START_HINT", "END_MARKER"):
        assert isinstance(getattr(_patterns, name), re.Pattern), name
    assert isinstance(_scan._HITS, re.Pattern)
