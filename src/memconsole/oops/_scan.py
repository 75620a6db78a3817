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

import collections
import itertools
import mmap
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # imported where used: they cost start-up time
    import concurrent.futures

from memconsole.oops import _patterns as _p
from memconsole.oops._builder import PENDING_LINES, LineParser, _Builder
from memconsole.oops._model import Report

__all__ = ["BLOCK", "CHUNK", "PARALLEL_MIN", "chunk_hits", "find_hits", "parse_all_lines",
           "parse_builders", "scan_file", "scan_stream"]

#: Bytes read per block.
BLOCK = 1 << 20
# A "line" longer than this is split here (memory bound); the kernel's own
# lines are at most 1 KiB.
_MAX_CARRY = 64 << 20


def _hit_pattern() -> tuple[bytes, re.Pattern[bytes]]:
    """The translation table and regular expression :func:`find_hits` uses.

    Each needle's anchor byte (:data:`memconsole._oops_patterns.NEEDLES`) is
    translated to ``\x01``; the expression starts with that one literal byte
    (which the ``re`` engine scans for in C) and checks the rest of each
    translated needle around it, with a look-behind for what precedes the
    anchor.  A ``\x01`` already in the text only adds candidates.
    """
    anchors = {anchor for needle, anchor, _ in _p.NEEDLES if needle != _DIE}
    table = bytes(1 if bytes([i]) in anchors else i for i in range(256))
    alts = []
    for needle, _, _ in _p.NEEDLES:
        if needle == _DIE:
            continue
        t = needle.translate(table)
        k = t.index(b"\x01")
        alts.append((b"(?<=" + re.escape(t[:k + 1]) + b")" if k else b"") + re.escape(t[k + 1:]))
    return table, re.compile(b"\x01(?:" + b"|".join(alts) + b")")


# "[#": "#" is rare in logs: found with memchr (as "\x01" it would match "[" before
# any anchor byte, "[UFW BLOCK]", "[Firmware Bug]").
_DIE = b"[#"
_TABLE, _HITS = _hit_pattern()
# Blocks are translated this many bytes at a time (cache-sized copies).
_SLICE = 1 << 18


def find_hits(buf: bytes, lo: int = 0, hi: int | None = None) -> list[int]:
    """Positions in ``buf[lo:hi]`` inside needle occurrences, sorted (one or more
    per occurrence, always on the occurrence's line)."""
    if hi is None:
        hi = len(buf)
    out: list[int] = []
    pos = lo
    while pos < hi:
        # Slices overlap by the longest needle so that none is cut at an edge.
        base = max(lo, pos - 16)
        stop = min(hi, pos + _SLICE)
        view = buf[base:stop].translate(_TABLE)
        for m in _HITS.finditer(view):
            at = base + m.start()
            if at >= pos or not out or out[-1] < at:
                out.append(at)
        pos = stop
    i = buf.find(b"#", lo + 1, hi)
    dies = []
    while i >= 0:
        if buf[i - 1] == 0x5B:  # "["
            dies.append(i)
        i = buf.find(b"#", i + 1, hi)
    if dies:
        out = sorted(out + dies)
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


# --------------------------------------------------------------------------
# Regular files: the needle search split over processes
# --------------------------------------------------------------------------

#: Files smaller than this are scanned in one process.
PARALLEL_MIN = 64 << 20
#: Bytes per task of the needle search.
CHUNK = 16 << 20


def chunk_hits(path: str, lo: int, hi: int) -> tuple[list[int], list[int], int]:
    """Needle lines in bytes ``[lo, hi)`` of the file *path* (a task; runs in a worker).

    Returns the hit positions (absolute), the number of newlines between
    *lo* and each hit, and the number of newlines in the whole range.
    """
    with open(path, "rb") as f:
        f.seek(lo)
        data = f.read(hi - lo)
    out: list[int] = []
    before: list[int] = []
    pos = lines = 0
    for h in find_hits(data):
        lines += data.count(b"\n", pos, h)
        pos = h
        if not before or before[-1] != lines:  # one hit per line is enough
            out.append(lo + h)
            before.append(lines)
    return out, before, lines + data.count(b"\n", pos)


class _MapFeeder:
    """Feeds a :class:`LineParser` from a mapped file, given needle hits whose
    line numbers are known (the same choice of lines as :class:`_Feeder`)."""

    def __init__(self, mm: mmap.mmap, size: int) -> None:
        self.mm, self.size = mm, size
        self.parser = LineParser()
        self.pos = 0
        self.idx = 0

    def _line(self) -> None:
        mm, pos = self.mm, self.pos
        nl = mm.find(b"\n", pos, self.size)
        stop = self.size if nl < 0 else nl
        self.parser.feed(self.idx, pos, stop, mm[pos:min(stop, pos + _p.MAX_LINE)])
        self.idx += 1
        self.pos = self.size if nl < 0 else nl + 1

    def busy(self) -> None:
        """Feed lines while the parser may take them."""
        while self.pos < self.size and self.parser.busy(self.idx):
            self._line()

    def hit(self, h: int, line: int) -> None:
        """Feed the line holding position *h* (line number *line*) and what goes with it."""
        if h < self.pos:
            return
        self.busy()
        if h < self.pos:
            return
        mm = self.mm
        back = mm.rfind(b"\n", self.pos, h) + 1 or self.pos
        k = 0
        for _ in range(PENDING_LINES):
            if back <= self.pos:
                break
            back = mm.rfind(b"\n", self.pos, back - 1) + 1 or self.pos
            k += 1
        self.idx, self.pos = line - k, back
        while self.pos < self.size and self.pos <= h:
            self._line()
        self.busy()


def _in_order(pool: concurrent.futures.ProcessPoolExecutor | None, path: str,
              spans: list[tuple[int, int]], ahead: int
              ) -> Iterator[tuple[int, tuple[list[int], list[int], int]]]:
    """``(end, chunk_hits(...))`` per span, in order, at most *ahead* in flight
    (a slow parser must not let results pile up in memory)."""
    if pool is None:
        for lo, hi in spans:
            yield hi, chunk_hits(path, lo, hi)
        return
    queue: collections.deque[tuple[int, concurrent.futures.Future[
        tuple[list[int], list[int], int]]]] = collections.deque()
    todo = iter(spans)
    for lo, hi in itertools.islice(todo, ahead):
        queue.append((hi, pool.submit(chunk_hits, path, lo, hi)))
    while queue:
        hi, fut = queue.popleft()
        for lo2, hi2 in itertools.islice(todo, 1):
            queue.append((hi2, pool.submit(chunk_hits, path, lo2, hi2)))
        yield hi, fut.result()


def scan_file(path: str, progress: Callable[[int], None] | None = None,
              workers: int | None = None, chunk: int = CHUNK) -> Iterator[Report]:
    """Yield every report in the regular file *path*, in order: the needle
    search runs in *workers* processes (default: the CPUs this process may
    use, at most 4; files under :data:`PARALLEL_MIN` use one), the parser in
    this one.  Same results as :func:`scan_stream`."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            bounds = [0]
            while bounds[-1] < size:
                nl = mm.find(b"\n", min(bounds[-1] + chunk, size))
                bounds.append(size if nl < 0 else nl + 1)
            if workers is None:
                workers = min(4, len(os.sched_getaffinity(0))) if size >= PARALLEL_MIN else 1
            spans = list(itertools.pairwise(bounds))
            feeder = _MapFeeder(mm, size)
            pool = None
            if workers > 1 and len(spans) > 1:
                import concurrent.futures
                import multiprocessing

                pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers, mp_context=multiprocessing.get_context("fork"))
            try:
                lines = 0
                for hi, (hits, before, count) in _in_order(pool, path, spans, 2 * workers):
                    for h, b in zip(hits, before, strict=True):
                        feeder.hit(h, lines + b)
                    lines += count
                    for r in feeder.parser.take():
                        yield r.report()
                    if progress is not None:
                        progress(hi)
                feeder.busy()
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
            for r in feeder.parser.finish():
                yield r.report()
