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
``gzip.GzipFile``) is scanned in bounded memory, whatever it holds:

* one hit is kept per line (the feeder takes a line once however many
  needles it holds), and a block with more than one needle line in
  :data:`_DENSE_BYTES` bytes is fed line by line without a hit list (nearly
  every line of it would be fed anyway), so a flood of ``[#`` costs no
  memory per hit;
* the parser reads a line only up to :data:`memconsole.oops._patterns.MAX_LINE`
  bytes, so of a line longer than :data:`_LONG_LINE` only that head is kept
  (its newline, line number and byte offsets stay those of the input), and
  the needle search of :func:`scan_file` splits such a line between chunks
  deep inside it, where nothing is read.
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
# Of a "line" longer than this only the first MAX_LINE bytes are kept (memory
# bound): the parser looks no further, and the kernel's own lines are at
# most 1 KiB.  At least MAX_LINE.
_LONG_LINE = 1 << 20
# A block or chunk with more needle lines than one per this many bytes is fed
# every line instead of through a hit list (at least _DENSE_MIN hits).
_DENSE_BYTES = 512
_DENSE_MIN = 256
# The scanners hand out reports when this many are finished.
_TAKE_AT = 256
# scan_file() splits a line that runs this far past a chunk's end without a
# newline (more than MAX_LINE plus the longest needle).
_SPLIT_MIN = 1 << 20


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


def _dense_limit(size: int) -> int:
    return max(_DENSE_MIN, size // _DENSE_BYTES)


def find_hits(buf: bytes, lo: int = 0, hi: int | None = None) -> list[int]:
    """Positions in ``buf[lo:hi]`` inside needle occurrences, sorted: the first
    occurrence of each line the expression finds and the first ``[#`` of each
    line (so at most two per line, always on the occurrence's line)."""
    if hi is None:
        hi = len(buf)
    return _hits(buf, lo, hi, hi - lo + 1) or []


def _hits(buf: bytes, lo: int, hi: int, cap: int) -> list[int] | None:
    """:func:`find_hits`, or ``None`` as soon as more than *cap* are found."""
    out: list[int] = []
    nextline = lo  # a hit before this is on a line that already has one
    pos = lo
    while pos < hi:
        # Slices overlap by the longest needle so that none is cut at an edge.
        base = max(lo, pos - 16)
        stop = min(hi, pos + _SLICE)
        view = buf[base:stop].translate(_TABLE)
        m = _HITS.search(view, max(0, nextline - base))
        while m is not None:
            at = base + m.start()
            if len(out) >= cap:
                return None
            out.append(at)
            nl = buf.find(b"\n", at, hi)
            nextline = hi if nl < 0 else nl + 1
            if nextline >= stop:
                break
            m = _HITS.search(view, nextline - base)
        pos = max(stop, nextline)
    # "[#": memchr for the rare "#" is several times faster than finding the
    # pair; after many a "#" without "[" the pair is looked for (no Python
    # step per "#" of a flood of them).
    dies: list[int] = []
    misses = 0
    i = buf.find(b"#", lo + 1, hi)
    while i >= 0:
        if buf[i - 1] != 0x5B:  # "["
            misses += 1
            if misses < 64:
                i = buf.find(b"#", i + 1, hi)
            else:
                i = buf.find(_DIE, i, hi)
                i = i + 1 if i >= 0 else -1
            continue
        misses = 0
        if len(out) + len(dies) >= cap:
            return None
        dies.append(i)
        nl = buf.find(b"\n", i, hi)
        if nl < 0:
            break
        i = buf.find(b"#", nl + 2, hi)
    if dies:
        out = sorted(out + dies)
    return out


class _Feeder:
    """Feeds a :class:`LineParser` the lines of consecutive blocks that matter."""

    def __init__(self) -> None:
        self.parser = LineParser()
        self.idx = 0  # line number of the first unprocessed line
        self.base = 0  # stream offset of the current block's byte 0
        # Bytes left out of the block (the tails of overlong lines): from
        # block position AT on, stream offsets are DROPPED bytes further on.
        self.cuts: list[tuple[int, int]] = []
        #: Stop :meth:`block` early when this many reports wait to be taken
        #: (streaming: memory stays bounded on a flood of reports).
        self.pause: int | None = None

    def offset(self, pos: int) -> int:
        """The stream offset of block position *pos*."""
        off = self.base + pos
        for at, dropped in self.cuts:
            if pos >= at:
                off += dropped
        return off

    def advance(self, left: int) -> None:
        """Make block position *left* the next block's byte 0."""
        self.base = self.offset(left)
        self.cuts = [(at - left, d) for at, d in self.cuts if at > left]

    def _feed_line(self, buf: bytes, pos: int, end: int) -> int:
        nl = buf.find(b"\n", pos, end)
        stop = end if nl < 0 else nl
        self.parser.feed(self.idx, self.offset(pos), self.offset(stop),
                         buf[pos:min(stop, pos + _p.MAX_LINE)])
        self.idx += 1
        return stop + 1 if nl >= 0 else end

    def _full(self) -> bool:
        return self.pause is not None and len(self.parser.done) >= self.pause

    def _while_busy(self, buf: bytes, pos: int, end: int) -> int:
        busy = self.parser.busy
        while pos < end and busy(self.idx) and not self._full():
            pos = self._feed_line(buf, pos, end)
        return pos

    def block(self, buf: bytes, end: int, keep: int, pos: int = 0) -> tuple[int, bool]:
        """Process the complete lines of ``buf[pos:end]``.

        Returns the offset of the first line left for the next block (the
        last *keep* lines not yet fed: they may announce a report starting in
        the next block) and True; or, when :attr:`pause` reports are waiting
        in the parser, the offset to go on from (call again) and False.
        """
        pos = self._while_busy(buf, pos, end)
        hits = _hits(buf, pos, end, _dense_limit(end - pos))
        if hits is None:  # needles everywhere: every line, no hit list
            while pos < end:
                if self._full():
                    return pos, False
                pos = self._feed_line(buf, pos, end)
            return pos, True
        for h in hits:
            if self._full():
                return pos, False
            if h < pos:
                continue
            pos = self._while_busy(buf, pos, end)
            if h < pos:
                continue
            if self._full():
                return pos, False
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
        if self._full():
            return pos, False
        stop = end
        for _ in range(keep):
            if stop <= pos:
                break
            stop = buf.rfind(b"\n", pos, stop - 1) + 1 or pos
        stop = max(stop, pos)
        self.idx += buf.count(b"\n", pos, stop)
        return stop, True


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
    An exception from ``stream.read()`` is raised after the reports in what
    was read before it.
    """
    feeder = _Feeder()
    feeder.pause = _TAKE_AT
    carry = b""
    consumed = 0
    skipping = False  # dropping the tail of an overlong line, up to its newline
    failure: Exception | None = None
    while True:
        try:
            data = stream.read(block)
        except Exception as exc:  # re-raised below
            # A stream that breaks off (a corrupt gzip member): what was read
            # is scanned to its end and its reports handed out first.
            failure, data = exc, b""
        eof = not data
        consumed += len(data)
        if skipping and data:
            at, dropped = feeder.cuts[-1]
            nl = data.find(b"\n")
            feeder.cuts[-1] = (at, dropped + (len(data) if nl < 0 else nl))
            if nl < 0:
                if progress is not None:
                    progress(consumed)
                continue
            data = data[nl:]
            skipping = False
        buf = carry + data if carry else data
        if eof:
            end = len(buf)
        else:
            end = buf.rfind(b"\n") + 1
            if len(buf) - end > max(_LONG_LINE, _p.MAX_LINE):
                # The parser reads the head of a line only: keep that, drop
                # the rest of it (counted, so offsets stay true).
                cut = end + _p.MAX_LINE
                feeder.cuts.append((cut, len(buf) - cut))
                buf = buf[:cut]
                skipping = True
            if end == 0:
                carry = buf
                continue
        left, finished = 0, False
        while not finished:
            left, finished = feeder.block(buf, end, 0 if eof else PENDING_LINES, left)
            for b in feeder.parser.take():
                yield b.report()
        carry = buf[left:]
        feeder.advance(left)
        if progress is not None:
            progress(consumed)
        if eof:
            break
    for b in feeder.parser.finish():
        yield b.report()
    if failure is not None:
        raise failure


# --------------------------------------------------------------------------
# Regular files: the needle search split over processes
# --------------------------------------------------------------------------

#: Files smaller than this are scanned in one process.
PARALLEL_MIN = 64 << 20
#: Bytes per task of the needle search.
CHUNK = 16 << 20


def chunk_hits(path: str, lo: int, hi: int) -> tuple[list[int] | None, list[int], int]:
    """Needle lines in bytes ``[lo, hi)`` of the file *path* (a task; runs in a worker).

    Returns the hit positions (absolute), the number of newlines between
    *lo* and each hit, and the number of newlines in the whole range.  The
    positions are ``None`` when the range holds more needle lines than
    :data:`_DENSE_BYTES` allows: every line of it is to be fed.
    """
    with open(path, "rb") as f:
        f.seek(lo)
        data = f.read(hi - lo)
    found = _hits(data, 0, len(data), _dense_limit(len(data)))
    if found is None:
        return None, [], data.count(b"\n")
    out: list[int] = []
    before: list[int] = []
    pos = lines = 0
    for h in found:
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

    def busy(self) -> Iterator[Report]:
        """Feed lines while the parser may take them; yield reports as they close."""
        while self.pos < self.size and self.parser.busy(self.idx):
            self._line()
            if len(self.parser.done) >= _TAKE_AT:
                yield from self.take()

    def hit(self, h: int, line: int) -> Iterator[Report]:
        """Feed the line holding position *h* (line number *line*) and what
        goes with it; yield reports as they close."""
        if h < self.pos:
            return
        yield from self.busy()
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
        yield from self.busy()

    def span(self, lo: int, hi: int, line: int) -> Iterator[Report]:
        """Feed every line that starts before *hi*, from the one holding
        position *lo* (line number *line*) on; yield reports as they close."""
        yield from self.hit(lo, line)
        while self.pos < min(hi, self.size):
            self._line()
            if len(self.parser.done) >= _TAKE_AT:
                yield from self.take()
        yield from self.busy()

    def take(self) -> Iterator[Report]:
        """The reports finished so far."""
        for b in self.parser.take():
            yield b.report()


def _in_order(pool: concurrent.futures.ProcessPoolExecutor | None, path: str,
              spans: list[tuple[int, int]], ahead: int
              ) -> Iterator[tuple[int, tuple[list[int] | None, list[int], int]]]:
    """``(end, chunk_hits(...))`` per span, in order, at most *ahead* in flight
    (a slow parser must not let results pile up in memory)."""
    if pool is None:
        for lo, hi in spans:
            yield hi, chunk_hits(path, lo, hi)
        return
    queue: collections.deque[tuple[int, concurrent.futures.Future[
        tuple[list[int] | None, list[int], int]]]] = collections.deque()
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
            reach = max(chunk, _SPLIT_MIN)
            while bounds[-1] < size:
                at = min(bounds[-1] + chunk, size)
                nl = mm.find(b"\n", at, min(at + reach, size))
                # No newline in reach: split the line there, far past the
                # MAX_LINE bytes of it the parser reads.
                bounds.append(nl + 1 if nl >= 0 else min(at + reach, size))
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
                for (lo, _), (hi, (hits, before, count)) in zip(
                        spans, _in_order(pool, path, spans, 2 * workers), strict=True):
                    if hits is None:
                        yield from feeder.span(lo, hi, lines)
                    else:
                        for h, b in zip(hits, before, strict=True):
                            yield from feeder.hit(h, lines + b)
                    lines += count
                    yield from feeder.take()
                    if progress is not None:
                        progress(hi)
                yield from feeder.busy()
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
            for r in feeder.parser.finish():
                yield r.report()
