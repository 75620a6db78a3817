"""Reading a ring back: :func:`parse_ring` turns a region's bytes into a
:class:`RingImage` (boots told apart by boot id, records oldest first, gaps
marked, corrupt records skipped and counted).  Pure: bytes in, values out.

Public names are re-exported by :mod:`memconsole.ring`; docs/ring.md states
the acceptance rules this module implements.
"""

from __future__ import annotations

from dataclasses import dataclass

from memconsole.ring.format import (
    FLAG_DICT,
    PRI_UNKNOWN,
    SEQ_UNKNOWN,
    TIME_UNKNOWN,
    RawRecord,
    RecordType,
    RingHeader,
    parse_header,
    scan_records,
)

__all__ = ["Gap", "RingBoot", "RingImage", "RingRecord", "boot_id_str", "parse_ring"]


def boot_id_str(boot: bytes) -> str:
    """A boot id as the kernel prints it (``6f1c0e5a-...``)."""
    h = boot.hex()
    # str(uuid.UUID(bytes=boot)), without importing uuid (start-up).
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" if len(boot) == 16 else h


@dataclass(frozen=True)
class RingRecord:
    """One record read back from a ring.

    Attributes:
        seq: ring sequence number (grows by one per record, across boots).
        boot: boot id of the boot that wrote it (16 bytes).
        type: :class:`RecordType`, or the raw ``int`` of a type this version
            does not know.
        pri: syslog priority (``facility << 3 | level``), ``None`` if unknown.
        flags: ``FLAG_*`` bits of :mod:`memconsole._ringfmt`.
        source_seq: the source's sequence number (``/dev/kmsg`` seq), or None.
        mono_ns: time since boot (kernel log clock), or None.
        time_ns: wall-clock time, ns since the epoch, or None.
        text: the message bytes.
        dictionary: kmsg ``KEY=VALUE`` lines joined by ``\\n`` (may be empty).
        offset: where the record starts in the data area.
    """

    seq: int
    boot: bytes
    type: RecordType | int
    pri: int | None
    flags: int
    source_seq: int | None
    mono_ns: int | None
    time_ns: int | None
    text: bytes
    dictionary: bytes
    offset: int

    @property
    def level(self) -> int | None:
        """Syslog level 0..7, or None."""
        return None if self.pri is None else self.pri & 7

    @property
    def facility(self) -> int | None:
        """Syslog facility number (0 = kernel), or None."""
        return None if self.pri is None else self.pri >> 3

    @property
    def type_name(self) -> str:
        """``log``, ``gap``, ``start``, ``stop`` or ``<unknown N>``."""
        t = self.type
        return t.name.lower() if isinstance(t, RecordType) else f"<unknown {t}>"


@dataclass(frozen=True)
class Gap:
    """Records missing between two entries.

    Attributes:
        count: how many records are missing.
        reason: ``"overrun"`` (the source dropped them: the recorder saw the
            kernel's sequence numbers jump) or ``"missing"`` (ring records
            that are absent or corrupt: their sequence numbers are skipped).
        after_seq: ring seq of the record before the gap, None at the start.
        first_source_seq: first missing source sequence number, if known.
    """

    count: int
    reason: str
    after_seq: int | None
    first_source_seq: int | None = None


@dataclass(frozen=True)
class RingBoot:
    """What one boot left in the ring.

    Attributes:
        boot: boot id (16 bytes).
        entries: records and gaps, oldest first.
    """

    boot: bytes
    entries: tuple[RingRecord | Gap, ...]

    @property
    def id(self) -> str:
        """Boot id as text."""
        return boot_id_str(self.boot)

    @property
    def records(self) -> list[RingRecord]:
        """The records, without gaps."""
        return [e for e in self.entries if isinstance(e, RingRecord)]

    @property
    def gaps(self) -> list[Gap]:
        """The gaps."""
        return [e for e in self.entries if isinstance(e, Gap)]

    @property
    def missing(self) -> int:
        """Records missing in all gaps."""
        return sum(g.count for g in self.gaps)

    @property
    def last(self) -> RingRecord:
        """The newest record of the boot."""
        return self.records[-1]

    @property
    def last_log(self) -> RingRecord | None:
        """The newest log message (not a recorder note)."""
        for rec in reversed(self.records):
            if rec.type == RecordType.LOG:
                return rec
        return None

    @property
    def stopped(self) -> bool:
        """Whether the boot's last record says its recorder stopped cleanly
        (a shutdown, or the service stopped): the boot did not end in a hang
        or reset while recording."""
        return self.last.type == RecordType.STOP and not isinstance(self.entries[-1], Gap)

    @property
    def first_time_ns(self) -> int | None:
        """Wall-clock time of the oldest record that has one."""
        return next((r.time_ns for r in self.records if r.time_ns is not None), None)

    @property
    def last_time_ns(self) -> int | None:
        """Wall-clock time of the newest record that has one."""
        return next((r.time_ns for r in reversed(self.records) if r.time_ns is not None), None)


@dataclass(frozen=True)
class RingImage:
    """A ring read back.

    Attributes:
        header: the validated header.
        boots: boots in the order they wrote (oldest first).
        corrupt: record candidates rejected (magic present, size or CRC bad).
        duplicates: valid records whose sequence number another record had.
    """

    header: RingHeader
    boots: tuple[RingBoot, ...]
    corrupt: int
    duplicates: int

    @property
    def records(self) -> int:
        """Number of valid records."""
        return sum(len(b.records) for b in self.boots)

    def ended_boots(self, current: bytes | None) -> list[RingBoot]:
        """Boots other than *current* (the running one), oldest first."""
        return [b for b in self.boots if b.boot != current]


def _record(raw: RawRecord) -> RingRecord:
    rtype: RecordType | int
    try:
        rtype = RecordType(raw.type)
    except ValueError:
        rtype = raw.type
    text, dictionary = raw.body, b""
    if raw.flags & FLAG_DICT:
        text, _, dictionary = raw.body.partition(b"\0")
    return RingRecord(
        raw.seq, raw.boot, rtype, None if raw.pri == PRI_UNKNOWN else raw.pri, raw.flags,
        None if raw.source_seq == SEQ_UNKNOWN else raw.source_seq,
        None if raw.mono_ns == TIME_UNKNOWN else raw.mono_ns,
        None if raw.time_ns == TIME_UNKNOWN else raw.time_ns, text, dictionary, raw.offset)


def parse_ring(region: bytes | memoryview) -> RingImage:
    """Read the ring in the region bytes *region*.

    Raises :class:`~memconsole.errors.RingFormatError` when the region holds
    no valid header (garbage, another format or version); never anything
    else for any input.  Records come out ordered by sequence number, grouped
    by boot in the order the boots wrote.  A sequence number that is skipped
    becomes a ``missing`` gap: inside a boot where it happened, or at the end
    of the earlier boot when it falls between two boots (so a boot whose last
    records are lost says so).  A recorder's gap record becomes an
    ``overrun`` gap.
    """
    header = parse_header(region)
    data = bytes(region[header.data_offset:header.data_offset + header.data_size])
    raws, corrupt = scan_records(data, header.nonce)
    raws.sort(key=lambda r: (r.seq, r.offset))
    order: list[bytes] = []
    entries: dict[bytes, list[RingRecord | Gap]] = {}
    duplicates = 0
    prev: RingRecord | None = None
    for raw in raws:
        if prev is not None and raw.seq == prev.seq:
            duplicates += 1
            continue
        rec = _record(raw)
        if prev is not None and rec.seq > prev.seq + 1:
            entries[prev.boot].append(Gap(rec.seq - prev.seq - 1, "missing", prev.seq))
        if rec.boot not in entries:
            order.append(rec.boot)
            entries[rec.boot] = []
        mine = entries[rec.boot]
        if rec.type == RecordType.GAP:
            count = int.from_bytes(rec.text[:8], "little") if len(rec.text) >= 8 else 0
            mine.append(Gap(count, "overrun", prev.seq if prev else None, rec.source_seq))
        else:
            mine.append(rec)
        prev = rec
    boots = tuple(RingBoot(b, tuple(entries[b])) for b in order
                  if any(isinstance(e, RingRecord) for e in entries[b]))
    return RingImage(header, boots, corrupt, duplicates)
