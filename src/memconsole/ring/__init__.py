"""memconsole's own persistent console: a ring of log records in memory
that survives a crash (docs/ring.md has the byte layout and the
crash-consistency argument).

Two halves:

* :func:`parse_ring` reads a region's bytes into a :class:`RingImage`:
  boots told apart by boot id, records oldest first, gaps marked, corrupt
  records skipped and counted.  Pure: bytes in, values out.
* :class:`Ring` attaches to a writable region (:mod:`memconsole.regions`),
  validates or formats it, and appends records.  Every append is complete or
  invisible: a writer stopped at any instant leaves no partial record that a
  reader accepts.

Time in the API is integer nanoseconds: ``time_ns`` since the epoch (wall
clock) and ``mono_ns`` since boot (the kernel log's clock).

A :class:`Ring` is not thread-safe and has one writer per region (the region
holds an exclusive lock); :class:`memconsole.ringlog.RingHandler` serialises
callers through the logging lock.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from memconsole.errors import RegionError, RingFormatError
from memconsole.ring._reader import (
    Gap,
    RingBoot,
    RingImage,
    RingRecord,
    boot_id_str,
    parse_ring,
)
from memconsole.ring.format import (
    DATA_OFFSET,
    FLAG_DICT,
    FLAG_TRUNCATED,
    HEADER_SIZE,
    MIN_REGION,
    PRI_UNKNOWN,
    REC_HEADER_SIZE,
    REC_MAGIC,
    REC_TAIL,
    SEQ_UNKNOWN,
    RecordType,
    RingHeader,
    encode_header,
    max_record,
    parse_header,
    scan_records,
)

__all__ = [
    "Gap",
    "RecordType",
    "Ring",
    "RingBoot",
    "RingImage",
    "RingRecord",
    "WritableRegion",
    "boot_id_str",
    "current_boot_id",
    "parse_ring",
]

_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
# A ring whose highest seq is past this cannot go on: seq is a u64 that
# grows by one per record (2^32 below the top leaves room for any batch).
# No writer gets there (2^64 records); only corrupt or forged records do.
_SEQ_LIMIT = (1 << 64) - (1 << 32)
_ZERO4 = b"\0\0\0\0"
# A record's first 8 bytes with the magic still zero, and alignment padding.
_HEAD = struct.Struct("<4xI")
_PADS = tuple(b"\0" * k for k in range(8))


def current_boot_id() -> bytes:
    """The running kernel's boot id (16 bytes, from
    ``/proc/sys/kernel/random/boot_id``); a random id when that is missing."""
    try:
        with open(_BOOT_ID_FILE, "rb") as f:
            text = f.read(64).strip().decode("ascii")
        # uuid.UUID(text).bytes, without importing uuid (it imports platform:
        # a third of a bare interpreter's start, for every show).
        digits = text.replace("-", "")
        if len(digits) != 32 or digits.strip("0123456789abcdefABCDEF"):
            raise ValueError(f"not a boot id: {text!r}")
        return bytes.fromhex(digits)
    except (OSError, ValueError):
        import uuid

        return uuid.uuid4().bytes


# -- writing ---------------------------------------------------------------


class WritableRegion(Protocol):
    """What :class:`Ring` needs from a memory region (see
    :mod:`memconsole.regions`)."""

    #: How the region was named (``--ring`` spec).
    spec: str

    @property
    def buf(self) -> memoryview:
        """The region's bytes, writable."""

    def flush(self, offset: int, length: int) -> None:
        """Make ``[offset, offset+length)`` survive what the backend promises."""

    def may_reset(self, problem: RingFormatError) -> bool:
        """Whether a region holding *problem* may be formatted."""


class Ring:
    """A ring attached for writing.  Use :meth:`attach`.

    Attributes:
        region: the region written.
        header: the ring's header.
        boot: the boot id every appended record carries.
        reset_reason: why :meth:`attach` formatted the region (a
            :class:`RingFormatError` message), or None if it continued an
            existing ring.
        corrupt: corrupt record candidates found at attach time.
    """

    def __init__(self, region: WritableRegion, header: RingHeader, boot: bytes,
                 reset_reason: str | None) -> None:
        self.region = region
        self.header = header
        self.boot = boot
        self.reset_reason = reset_reason
        base = header.data_offset
        self._size = header.data_size
        self._mv = region.buf[base:base + header.data_size]
        self._base = base
        self._nonce = header.nonce
        self._max = max_record(header.data_size)
        raws, self.corrupt = scan_records(self._mv, header.nonce)
        last = max(raws, key=lambda r: r.seq, default=None)
        if last is not None and last.seq > _SEQ_LIMIT:
            self._mv.release()
            raise RingFormatError(f"ring's sequence numbers are used up (a record at data "
                                  f"offset {last.offset} has seq {last.seq})", "damaged",
                                  header.version)
        self._seq = last.seq if last else 0
        self._pos = (last.offset + ((last.size + 7) & ~7)) if last else 0
        if self._pos >= self._size:
            self._pos = 0
        self._source_seq: dict[bytes, int] = {}
        for r in raws:
            if r.source_seq != SEQ_UNKNOWN and r.type in (RecordType.LOG, RecordType.GAP):
                top = r.source_seq
                if r.type == RecordType.GAP and len(r.body) >= 8:
                    top += int.from_bytes(r.body[:8], "little") - 1
                # A top past any kernel seq is corruption: it would make a
                # restarted recorder skip every record of the boot.
                if top < SEQ_UNKNOWN and top > self._source_seq.get(r.boot, -1):
                    self._source_seq[r.boot] = top
        self._flushed_pos = self._pos
        self._wraps = 0

    @classmethod
    def attach(cls, region: WritableRegion, *, boot: bytes | None = None) -> Ring:
        """Attach to *region*: validate its header and continue the ring, or
        format it when the region holds no usable ring and
        ``region.may_reset`` allows it (memory after a cold boot holds
        garbage; a regular file that is not a ring is refused).

        Raises :class:`RingFormatError` when the region may not be reset and
        :class:`RegionError` when it is too small.
        """
        buf = region.buf
        if len(buf) < MIN_REGION:
            raise RegionError(f"region of {len(buf)} bytes is too small for a ring "
                              f"(at least {MIN_REGION})")
        reason = None
        try:
            header = parse_header(buf)
            if header.region_size != len(buf):
                raise RingFormatError(
                    f"ring was formatted for {header.region_size} bytes, region has "
                    f"{len(buf)}", "geometry", header.version)
        except RingFormatError as exc:
            if not region.may_reset(exc):
                raise
            reason = str(exc)
            header = cls._format(region)
        boot_id = boot if boot is not None else current_boot_id()
        try:
            ring = cls(region, header, boot_id, reason)
        except RingFormatError as exc:  # sequence numbers used up
            if reason is not None or not region.may_reset(exc):
                raise
            return cls(region, cls._format(region), boot_id, str(exc))
        if reason is None:
            cls._repair_copies(region, header)
        return ring

    @staticmethod
    def _format(region: WritableRegion) -> RingHeader:
        """Write a fresh header (new nonce: every old record becomes invalid).
        Primary first, then the backup: a torn format leaves one copy that
        is either the old header or invalid."""
        buf = region.buf
        raw = encode_header(len(buf), int.from_bytes(os.urandom(4), "little"), time.time_ns())
        buf[0:HEADER_SIZE] = raw
        buf[HEADER_SIZE:2 * HEADER_SIZE] = raw
        region.flush(0, DATA_OFFSET)
        return parse_header(buf)

    @staticmethod
    def _repair_copies(region: WritableRegion, header: RingHeader) -> None:
        buf = region.buf
        good = HEADER_SIZE if header.copy == "backup" else 0
        other = HEADER_SIZE - good
        if buf[other:other + HEADER_SIZE] != buf[good:good + HEADER_SIZE]:
            buf[other:other + HEADER_SIZE] = bytes(buf[good:good + HEADER_SIZE])
            region.flush(0, DATA_OFFSET)

    # -- appending ---------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest record (0 for an empty ring)."""
        return self._seq

    def last_source_seq(self, boot: bytes | None = None) -> int | None:
        """The highest source sequence number recorded (or declared lost by a
        gap record) for *boot* (default: this ring's boot), or None.  A
        recorder restarted within one boot continues after it."""
        return self._source_seq.get(self.boot if boot is None else boot)

    def _place(self, n: int) -> int:
        """Reserve *n* (aligned) bytes; wrap to the start when they do not
        fit, zeroing the tail first so no older record survives past the
        wrap point."""
        pos = self._pos
        if pos + n > self._size:
            self._mv[pos:self._size] = bytes(self._size - pos)
            self._wraps += 1
            pos = 0
        self._pos = pos + n
        return pos

    def append(self, text: bytes, *, pri: int | None = None, source_seq: int | None = None,
               mono_ns: int | None = None, time_ns: int | None = None, flags: int = 0,
               dictionary: bytes = b"", rtype: int = RecordType.LOG) -> int:
        """Append one record; return its sequence number.

        *time_ns* defaults to now (wall clock), *mono_ns* to the monotonic
        clock.  Text longer than the ring's largest record is cut (flag
        ``FLAG_TRUNCATED``).  When this returns the record is in the region;
        call :meth:`flush` for backends that need it (pmem, durable files).
        """
        body = text
        if dictionary:
            body = text + b"\0" + dictionary
            flags |= FLAG_DICT
        room = self._max - REC_HEADER_SIZE
        if len(body) > room:
            body = body[:room]
            flags |= FLAG_TRUNCATED
        size = REC_HEADER_SIZE + len(body)
        seq = self._seq + 1
        tail = REC_TAIL.pack(
            size, PRI_UNKNOWN if pri is None else pri, rtype, flags, seq, self.boot,
            SEQ_UNKNOWN if source_seq is None else source_seq,
            time.monotonic_ns() if mono_ns is None else mono_ns,
            time.time_ns() if time_ns is None else time_ns)
        crc = zlib.crc32(body, zlib.crc32(tail, self._nonce))
        pos = self._place((size + 7) & ~7)
        mv = self._mv
        # Commit order (docs/ring.md): clear a stale magic, write everything
        # but the magic, then the magic.
        mv[pos:pos + 4] = _ZERO4
        mv[pos + 4:pos + size] = crc.to_bytes(4, "little") + tail + body
        mv[pos:pos + 4] = REC_MAGIC
        self._seq = seq
        if source_seq is not None:
            top = source_seq
            if rtype == RecordType.GAP and len(text) >= 8:
                top += int.from_bytes(text[:8], "little") - 1
            if top > self._source_seq.get(self.boot, -1):
                self._source_seq[self.boot] = top
        return seq

    def append_batch(self, items: Sequence[tuple[bytes, int, int, int, int, int]]) -> int:
        """Append many records at once; return the last sequence number.

        Each item is ``(text, pri, flags, source_seq, mono_ns, time_ns)`` with
        the ``_ringfmt`` sentinels (``PRI_UNKNOWN``, ``SEQ_UNKNOWN``,
        ``TIME_UNKNOWN``) for unknown values; texts must fit the ring's
        largest record (the recorder cuts them).  Records that fit before the
        end of the data area are written with one copy, then their magics in
        order; the ordering argument of :meth:`append` holds per record.
        """
        pack, crc32, nonce, boot = REC_TAIL.pack, zlib.crc32, self._nonce, self.boot
        log, room_max = RecordType.LOG, self._max - REC_HEADER_SIZE
        head, pads = _HEAD.pack, _PADS
        seq = self._seq
        i, n_items = 0, len(items)
        while i < n_items:
            parts: list[bytes] = []
            add = parts.append
            starts: list[int] = []
            mark = starts.append
            start = self._pos
            used = 0
            room = self._size - start
            for k in range(i, n_items):
                text, pri, flags, src, mono, wall = items[k]
                if len(text) > room_max:
                    text, flags = text[:room_max], flags | FLAG_TRUNCATED
                size = REC_HEADER_SIZE + len(text)
                n = (size + 7) & ~7
                if used + n > room:
                    break
                seq += 1
                tail = pack(size, pri, log, flags, seq, boot, src, mono, wall)
                # magic left zero here; stored below once the batch is in place
                add(head(crc32(text, crc32(tail, nonce))) + tail + text + pads[n - size])
                mark(used)
                used += n
                i = k + 1
            self._commit(start, used, parts, starts, seq)
        top = max((it[3] for it in items if it[3] != SEQ_UNKNOWN), default=-1)
        if top > self._source_seq.get(self.boot, -1):
            self._source_seq[self.boot] = top
        return seq

    def append_gap(self, count: int, first_source_seq: int | None, *,
                   mono_ns: int | None = None) -> int:
        """Record that the source lost *count* messages starting at source
        sequence number *first_source_seq* (a /dev/kmsg overrun)."""
        return self.append(count.to_bytes(8, "little"), source_seq=first_source_seq,
                           mono_ns=mono_ns, rtype=RecordType.GAP)

    def append_note(self, rtype: RecordType, text: bytes) -> int:
        """Append a recorder note (``START`` or ``STOP``)."""
        return self.append(text, rtype=rtype)

    def flush(self) -> None:
        """Flush what was appended since the last flush (msync for backends
        that need it; a no-op for uncached /dev/mem)."""
        lo, hi, base = self._flushed_pos, self._pos, self._base
        if self._wraps or hi < lo:
            self.region.flush(base, self._size)
        elif hi > lo:
            self.region.flush(base + lo, hi - lo)
        self._flushed_pos, self._wraps = self._pos, 0

    def close(self) -> None:
        """Stop writing: release this ring's view of the region (the caller
        closes the region)."""
        self._mv.release()

    # -- reading -----------------------------------------------------------

    def read(self) -> RingImage:
        """A snapshot of the ring as a reader sees it."""
        return parse_ring(bytes(self.region.buf))

    def __iter__(self) -> Iterator[RingRecord]:
        """Every record, oldest first, every boot."""
        for boot in self.read().boots:
            yield from boot.records

    def extend(self, texts: Iterable[bytes], *, pri: int | None = None) -> int:
        """Append every text of *texts* with one timestamp (taken once) and
        one priority; return the last sequence number.  The fast path for
        bulk logging: :meth:`append_batch` without per-record fields."""
        items = texts if isinstance(texts, (list, tuple)) else list(texts)
        now, mono = time.time_ns(), time.monotonic_ns()
        p = PRI_UNKNOWN if pri is None else pri
        pack, crc32, nonce, boot = REC_TAIL.pack, zlib.crc32, self._nonce, self.boot
        log, room_max, head, pads = RecordType.LOG, self._max - REC_HEADER_SIZE, _HEAD.pack, _PADS
        seq = self._seq
        i, n_items = 0, len(items)
        while i < n_items:
            parts: list[bytes] = []
            add = parts.append
            starts: list[int] = []
            mark = starts.append
            start, used = self._pos, 0
            room = self._size - start
            for k in range(i, n_items):
                text, flags = items[k], 0
                if len(text) > room_max:
                    text, flags = text[:room_max], FLAG_TRUNCATED
                size = REC_HEADER_SIZE + len(text)
                n = (size + 7) & ~7
                if used + n > room:
                    break
                seq += 1
                tail = pack(size, p, log, flags, seq, boot, SEQ_UNKNOWN, mono, now)
                add(head(crc32(text, crc32(tail, nonce))) + tail + text + pads[n - size])
                mark(used)
                used += n
                i = k + 1
            self._commit(start, used, parts, starts, seq)
        return seq

    def _commit(self, start: int, used: int, parts: list[bytes], starts: list[int],
                seq: int) -> None:
        """Write one segment of a batch (records with zero magics, then the
        magics in order), or wrap when not even one record fitted."""
        if not starts:
            # The next record does not fit before the end of the data area
            # (it always fits at 0: records are at most a quarter of it).
            self._place(self._size - start + 1)
            self._pos = 0
            return
        mv = self._mv
        self._pos = start + used
        mv[start:start + 4] = _ZERO4
        mv[start + 4:start + used] = memoryview(b"".join(parts))[4:]
        for off in starts:
            mv[start + off:start + off + 4] = REC_MAGIC
        self._seq = seq
