"""The /dev/kmsg record format and text streams, parsed into ring record
items (Documentation/ABI/testing/dev-kmsg).  Pure: bytes in, items out;
:mod:`memconsole.recorder` does the reading and re-exports the public names.

A /dev/kmsg record is ``pri,seq,ts_usec,flags[,more];text\\n`` followed by
continuation lines `` KEY=VALUE``; fields after the flags are ignored, as the
ABI asks; non-printable bytes and ``\\`` in the text are escaped ``\\xNN``.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from memconsole.ring.format import FLAG_CONT, FLAG_DICT, PRI_UNKNOWN, SEQ_UNKNOWN

if TYPE_CHECKING:
    from memconsole.ring import Ring

__all__ = ["MAX_LINE", "Batch", "KmsgRecord", "LineParser", "SeqTracker", "parse_kmsg",
           "unescape"]

#: Longest line kept in one record from a stream; a longer one is split
#: into records, each but the last flagged ``FLAG_CONT``.
MAX_LINE = 16 * 1024
_ESCAPE_RE = re.compile(rb"\\x([0-9a-fA-F]{2})")
# The longest numbers a record's prefix may have, so that every value fits
# its field of a ring record: pri 4 digits (the kernel's is at most
# 255 << 3 | 7 = 2047; the ring's u16 keeps 0xffff for unknown), seq 19
# (below 2^64 - 1, the ring's "unknown"), ts_usec 15 (31 years; the ring's
# signed 64-bit ns keep it with the wall-clock offset added).  A longer
# number is not the kernel's: the line is text.
_PRI_DIGITS, _SEQ_DIGITS, _USEC_DIGITS = 4, 19, 15
# One line of a kmsg-format stream: a record (pri, seq, usec, flags, text;
# fields after the flags ignored, as the ABI asks), a continuation line, or
# anything else.
_KMSG_LINE_RE = re.compile(
    rb"^(?:(\d{1,4}),(\d{1,19}),(\d{1,15}),([^;,\n]{0,64})(?:,[^;\n]{0,200})?;([^\n]*)"
    rb"|( [^\n]*)|([^\n]*))\n", re.MULTILINE)
_Item = tuple[bytes, int, int, int, int, int]


def unescape(text: bytes) -> bytes:
    """Undo /dev/kmsg's ``\\xNN`` escaping of non-printable bytes and ``\\``
    (kernel/printk/printk.c, msg_add_ext_text)."""
    if b"\\x" not in text:
        return text
    return _ESCAPE_RE.sub(lambda m: bytes((int(m.group(1), 16),)), text)


class KmsgRecord(NamedTuple):
    """One kernel log record in the /dev/kmsg format.

    Attributes:
        pri: syslog priority (facility << 3 | level).
        seq: the kernel's 64-bit record sequence number.
        ts_usec: time since boot in microseconds (the printk clock).
        flags: ``-`` or ``c`` (fragment), as printed.
        text: the message, unescaped.
        dictionary: continuation ``KEY=VALUE`` lines joined by ``\\n``.
    """

    pri: int
    seq: int
    ts_usec: int
    flags: bytes
    text: bytes
    dictionary: bytes


def _number(field: bytes, digits: int) -> bool:
    return 0 < len(field) <= digits and field.isdigit()


def parse_kmsg(raw: bytes) -> KmsgRecord | None:
    """Parse one /dev/kmsg record (prefix line and continuation lines);
    None if *raw* does not have the prefix ``pri,seq,ts,flags;`` with
    numbers a kernel writes (at most 4, 19 and 15 digits: every value then
    fits a ring record).  Fields after the flags are ignored, as the ABI
    asks."""
    head, sep, rest = raw.partition(b";")
    if not sep or len(head) > 200:
        return None
    fields = head.split(b",", 4)
    if len(fields) < 4 or not (_number(fields[0], _PRI_DIGITS) and _number(fields[1], _SEQ_DIGITS)
                               and _number(fields[2], _USEC_DIGITS)):
        return None
    text, _, more = rest.partition(b"\n")
    dictionary = b""
    if more:
        lines = [ln[1:] for ln in more.split(b"\n") if ln.startswith(b" ")]
        dictionary = b"\n".join(lines)
    return KmsgRecord(int(fields[0]), int(fields[1]), int(fields[2]), fields[3],
                      unescape(text), dictionary)


class SeqTracker:
    """Kernel sequence numbers: drop what the ring already has, turn jumps
    into gaps."""

    def __init__(self, last: int | None) -> None:
        self.next = 0 if last is None else last + 1
        self.lost = 0

    def admit(self, seq: int) -> tuple[bool, int]:
        """(keep the record, records missing before it)."""
        if seq < self.next:
            return False, 0
        missing = seq - self.next
        self.next = seq + 1
        self.lost += missing
        return True, missing


class Batch:
    """Records waiting to be appended; gap records go in order."""

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.gaps: list[tuple[int, int, int, int]] = []  # (index, count, first, mono)

    def add_kmsg(self, rec: KmsgRecord, offset: int, seqs: SeqTracker | None) -> None:
        if seqs is not None:
            keep, missing = seqs.admit(rec.seq)
            if not keep:
                return
            if missing:
                self.gaps.append((len(self.items), missing, rec.seq - missing,
                                  rec.ts_usec * 1000))
        flags = FLAG_CONT if rec.flags[:1] in (b"c", b"+") else 0
        body = rec.text
        if rec.dictionary:
            body, flags = body + b"\0" + rec.dictionary, flags | FLAG_DICT
        mono = rec.ts_usec * 1000
        self.items.append((body, rec.pri, flags, rec.seq, mono, offset + mono))

    def add_text(self, line: bytes, flags: int = 0) -> None:
        mono = time.monotonic_ns()
        self.items.append((line, PRI_UNKNOWN, flags, SEQ_UNKNOWN, mono, time.time_ns()))

    def write(self, ring: Ring) -> int:
        """Append everything to *ring*; return how many log records."""
        done = 0
        for index, count, first, mono in self.gaps:
            ring.append_batch(self.items[done:index])
            ring.append_gap(count, first, mono_ns=mono)
            done = index
        ring.append_batch(self.items[done:])
        n = len(self.items)
        self.items, self.gaps = [], []
        return n


class LineParser:
    """Split a byte stream into records: one per line, or kmsg-format lines
    with their continuation lines.

    Args:
        fmt: ``text``, ``kmsg``, or ``auto`` (kmsg if the first line parses
            as one).
    """

    def __init__(self, fmt: str = "auto") -> None:
        self.fmt = fmt
        self._tail = b""
        self._pending: list[Any] | None = None  # pri, seq, usec, flags, text, dict lines

    def feed(self, chunk: bytes, batch: Batch, seqs: SeqTracker | None, offset: int,
             final: bool = False) -> None:
        """Parse *chunk* (and, with *final*, the unterminated rest) into
        *batch*.  A kmsg record is held back only while its continuation
        lines may still follow within the same chunk."""
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        body, tail = data[:cut], data[cut:]
        pieces = []
        while len(tail) > MAX_LINE:
            # Bounded memory: a line longer than MAX_LINE goes out in pieces,
            # each but the last flagged as a fragment.
            pieces.append(tail[:MAX_LINE])
            tail = tail[MAX_LINE:]
        if final and tail:
            body, tail = body + tail + b"\n", b""
        self._tail = tail
        if self.fmt == "auto" and body:
            first = body[:body.find(b"\n")]
            self.fmt = "kmsg" if parse_kmsg(first) is not None else "text"
        if self.fmt == "kmsg":
            self._kmsg_lines(body, batch, seqs, offset)
        elif body:
            add = batch.add_text
            for line in body[:-1].split(b"\n"):
                add(line)
        if pieces:
            self.flush(batch, seqs, offset)
            for piece in pieces:
                batch.add_text(piece, FLAG_CONT)
        if final or not self._tail:
            self.flush(batch, seqs, offset)

    def _kmsg_lines(self, body: bytes, batch: Batch, seqs: SeqTracker | None,
                    offset: int) -> None:
        """The hot path of ``record --source FILE``: one regex pass over the
        complete lines, no per-line objects but the record's own tuple."""
        pending = self._pending
        emit = self._emit
        for pri, seq, usec, flags, text, cont, other in _KMSG_LINE_RE.findall(body):
            if pri:
                if pending is not None:
                    emit(pending, batch, seqs, offset)
                pending = [pri, seq, usec, flags, text, None]
            elif cont:
                if pending is not None:
                    if pending[5] is None:
                        pending[5] = []
                    pending[5].append(cont[1:])
            elif other:
                if pending is not None:
                    emit(pending, batch, seqs, offset)
                    pending = None
                batch.add_text(other)
        self._pending = pending

    @staticmethod
    def _emit(p: list[Any], batch: Batch, seqs: SeqTracker | None, offset: int) -> None:
        seq = int(p[1])
        if seqs is not None:
            if seq < seqs.next:
                return
            if seq > seqs.next:
                missing = seq - seqs.next
                seqs.lost += missing
                batch.gaps.append((len(batch.items), missing, seqs.next, int(p[2]) * 1000))
            seqs.next = seq + 1
        text = p[4]
        if b"\\x" in text:
            text = unescape(text)
        flags = FLAG_CONT if p[3][:1] in (b"c", b"+") else 0
        if p[5]:
            text, flags = text + b"\0" + b"\n".join(p[5]), flags | FLAG_DICT
        mono = int(p[2]) * 1000
        batch.items.append((text, int(p[0]), flags, seq, mono, offset + mono))

    def flush(self, batch: Batch, seqs: SeqTracker | None, offset: int) -> None:
        """Emit a held-back kmsg record."""
        if self._pending is not None:
            self._emit(self._pending, batch, seqs, offset)
            self._pending = None
