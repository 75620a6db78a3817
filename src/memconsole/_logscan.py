"""Fast scanning of big kernel logs for crash reports (private to :mod:`memconsole.oops`).

The report parser (:class:`memconsole._oops_builder.LineParser`) costs a few
microseconds per line; a multi-GB ``kern.log`` has tens of millions of lines,
nearly all of which cannot matter.  Every line that can start a report holds
one of :data:`memconsole._oops_patterns.NEEDLES`, so this module:

1. finds needle occurrences in big blocks: for each needle's rare *anchor*
   byte, ``bytes.find`` (memchr) and a ``startswith`` check per occurrence;
   when an anchor byte turns out to be common in a block, one compiled
   regular expression that starts with that byte (the ``re`` engine scans
   for a literal first byte in C) takes over for the rest of the block;
2. feeds the parser only the hit lines, the
   :data:`~memconsole._oops_builder.PENDING_LINES` lines before each (a
   "cut here" line or list corruption message announces the report after
   it), and every following line while :meth:`LineParser.busy` says a
   report may still take it;
3. counts the newlines of skipped stretches with ``bytes.count`` so line
   numbers and byte offsets are those of the whole input.

The result equals feeding every line (``parse_all_lines``; tested on every
fixture and on generated logs).  :func:`scan_stream` reads a binary stream
block by block, so a log of any size (gzip-compressed too, via the caller's
``gzip.GzipFile``) is scanned in bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from memconsole import _oops_patterns as _p
from memconsole._oops_builder import PENDING_LINES, LineParser, _Builder
from memconsole._oops_model import Report

__all__ = ["BLOCK", "find_hits", "parse_all_lines", "parse_builders", "scan_stream"]

#: Bytes read per block.
BLOCK = 1 << 20
# A "line" longer than this is split here (memory bound); the kernel's own
# lines are at most 1 KiB.
_MAX_CARRY = 64 << 20


def _anchor_table() -> list[tuple[bytes, tuple[tuple[bytes, int], ...], re.Pattern[bytes]]]:
    """Group the needles by anchor byte; build each anchor's fallback regex."""
    by_anchor: dict[bytes, list[tuple[bytes, int]]] = {}
    for needle, anchor, off in _p.NEEDLES:
        assert needle[off:off + 1] == anchor
        by_anchor.setdefault(anchor, []).append((needle, off))
    table = []
    for anchor, checks in by_anchor.items():
        alts = []
        for needle, off in checks:
            before, after = needle[:off + 1], needle[off + 1:]
            alts.append((b"(?<=" + re.escape(before) + b")" if off else b"") + re.escape(after))
        pattern = re.compile(re.escape(anchor) + b"(?:" + b"|".join(alts) + b")")
        table.append((anchor, tuple(checks), pattern))
    return table


_ANCHORS = _anchor_table()
# After this many occurrences of an anchor byte, if they came denser than one
# per _DENSE bytes, the regex scans the rest of the block.
_PROBE = 128
_DENSE = 1024


def find_hits(buf: bytes, lo: int = 0, hi: int | None = None) -> list[int]:
    """Positions in ``buf[lo:hi]`` inside needle occurrences, sorted (at least one
    per occurrence; several may fall on one line)."""
    if hi is None:
        hi = len(buf)
    out: list[int] = []
    find = buf.find
    startswith = buf.startswith
    for anchor, checks, pattern in _ANCHORS:
        i = find(anchor, lo, hi)
        n = 0
        first = i
        while i >= 0:
            for needle, off in checks:
                if i >= off and startswith(needle, i - off):
                    out.append(i)
                    break
            n += 1
            if n == _PROBE and i - first < _PROBE * _DENSE:
                out.extend(m.start() for m in pattern.finditer(buf, i + 1, hi))
                break
            i = find(anchor, i + 1, hi)
    out.sort()
    return out


class _Feeder:
    """Feeds a :class:`LineParser` the lines of consecutive blocks that matter."""

    def __init__(self) -> None:
        self.parser = LineParser()
        self.idx = 0  # line number of the first unprocessed line
        self.base = 0  # stream offset of the current block's byte 0

    def _feed_line(self, buf: bytes, pos: int, end: int) -> int:
        nl = buf.find(b"\n", pos, end)
        stop = end if nl < 0 else nl
        self.parser.feed(self.idx, self.base + pos, self.base + stop,
                         buf[pos:min(stop, pos + _p.MAX_LINE)])
        self.idx += 1
        return stop + 1 if nl >= 0 else end

    def _while_busy(self, buf: bytes, pos: int, end: int) -> int:
        busy = self.parser.busy
        while pos < end and busy(self.idx):
            pos = self._feed_line(buf, pos, end)
        return pos

    def block(self, buf: bytes, end: int, keep: int) -> int:
        """Process the complete lines of ``buf[:end]``; return the offset of the
        first line left for the next block: the last *keep* lines not yet fed
        (they may announce a report starting in the next block)."""
        pos = self._while_busy(buf, 0, end)
        for h in find_hits(buf, 0, end):
            if h < pos:
                continue
            pos = self._while_busy(buf, pos, end)
            if h < pos:
                continue
            start = buf.rfind(b"\n", pos, h) + 1 or pos
            back = start
            for _ in range(PENDING_LINES):
                if back <= pos:
                    break
                back = buf.rfind(b"\n", pos, back - 1) + 1 or pos
            self.idx += buf.count(b"\n", pos, back)
            pos = back
            while pos < end and pos <= h:
                pos = self._feed_line(buf, pos, end)
            pos = self._while_busy(buf, pos, end)
        stop = end
        for _ in range(keep):
            if stop <= pos:
                break
            stop = buf.rfind(b"\n", pos, stop - 1) + 1 or pos
        stop = max(stop, pos)
        self.idx += buf.count(b"\n", pos, stop)
        return stop


def parse_builders(text: bytes) -> list[_Builder]:
    """Every report in the in-memory log *text*, scanning only where needles are."""
    feeder = _Feeder()
    feeder.block(text, len(text), 0)
    return feeder.parser.finish()


def parse_all_lines(text: bytes) -> list[_Builder]:
    """Every report in *text*, feeding the parser every line (the reference)."""
    parser = LineParser()
    pos, n, idx = 0, len(text), 0
    while pos < n:
        nl = text.find(b"\n", pos)
        stop = n if nl < 0 else nl
        parser.feed(idx, pos, stop, text[pos:min(stop, pos + _p.MAX_LINE)])
        idx += 1
        pos = stop + 1
    return parser.finish()


def scan_stream(stream: BinaryIO, progress: Callable[[int], None] | None = None,
                block: int = BLOCK) -> Iterator[Report]:
    """Yield every report in the log read from *stream*, in order, reading
    *block* bytes at a time.  *progress* is called with the number of bytes
    consumed after each block.  Reports are yielded as they close; a
    ``Kernel panic`` line far from its report is not joined to it here
    (use :func:`memconsole.oops.primary_report` on a log that fits in memory).
    """
    feeder = _Feeder()
    carry = b""
    consumed = 0
    while True:
        data = stream.read(block)
        eof = not data
        consumed += len(data)
        buf = carry + data if carry else data
        if eof:
            end = len(buf)
        else:
            end = buf.rfind(b"\n") + 1
            if end == 0:
                if len(buf) < _MAX_CARRY:
                    carry = buf
                    continue
                end = len(buf)
        left = feeder.block(buf, end, 0 if eof else PENDING_LINES)
        carry = buf[left:]
        feeder.base += left
        for b in feeder.parser.take():
            yield b.report()
        if progress is not None:
            progress(consumed)
        if eof:
            break
    for b in feeder.parser.finish():
        yield b.report()
