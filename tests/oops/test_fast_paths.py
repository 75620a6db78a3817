"""The line parser's shortcuts give what the general code gives, on every fixture line.

Each shortcut exists for speed on dense logs (docs/oops.md, "Big logs"); these tests
keep it equal to the code it stands in for.
"""

from __future__ import annotations

from pathlib import Path

from memconsole.oops import _culprit as _c
from memconsole.oops import _patterns as _p

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _fixture_lines() -> list[bytes]:
    out: list[bytes] = []
    for path in sorted((FIXTURES / "reports").glob("*.txt")):
        out.extend(path.read_bytes().splitlines())
    for path in sorted((FIXTURES / "lab").glob("*/*/pstore/dmesg-*")):
        out.extend(path.read_bytes().splitlines())
    return out


LINES = _fixture_lines()


def test_there_are_lines() -> None:
    assert len(LINES) > 10000


def _general(raw: bytes) -> _p.Line:
    """strip_prefix() by its general path: the same line behind one space of pasted-log
    indentation (the shortcut takes only lines starting with its prefix forms)."""
    return _p.strip_prefix(b" " + raw)


def test_strip_prefix_shortcut_equals_the_general_path() -> None:
    for raw in LINES:
        if not _p._FAST.match(raw) or len(raw) >= _p.MAX_LINE:
            continue  # the shortcut is not tried
        fast = _p.strip_prefix(raw)
        general = _general(raw)
        assert fast == general, raw


def test_plain_frame_equals_parse_frame() -> None:
    seen = 0
    for raw in LINES:
        body = _p.strip_prefix(raw).body
        m = _p.PLAIN_FRAME.match(body)
        if m is None or b"[<" in body[:12] or body.lstrip(b" \t")[:1] == b":":
            continue
        seen += 1
        ref = _p.parse_frame(body, bare=True)
        assert ref is not None, body
        func, off, size, mod = m.group("func", "off", "size", "mod")
        assert (func, int(off, 16), int(size, 16), mod, m.group("q") is None, False) == tuple(
            ref), body
    assert seen > 1000


def test_stack_flags_equal_the_line_by_line_test() -> None:
    for path in sorted((FIXTURES / "reports").glob("*.txt")):
        bodies = [_p.strip_prefix(raw).body for raw in path.read_bytes().splitlines()]
        bodies = [b for b in bodies if b.strip()]
        stack = _c._re()["stack"]
        expected = [_c.maybe_stack(b) and stack.search(b, 0, 400) is not None for b in bodies]
        assert _c.stack_flags(bodies) == expected, path.name
        # A line holding a newline (a hung task's comm) maps the same.
        if bodies:
            odd = [bodies[0] + b"\nCall Trace:", *bodies[1:]]
            expected = [_c.maybe_stack(b) and stack.search(b, 0, 400) is not None for b in odd]
            assert _c.stack_flags(odd) == expected, path.name
