"""Which pstore records belong together: dumps and boots.

* A **dump** is one call of the kernel's ``pstore_dump()``
  (fs/pstore/platform.c): one or more records ("parts") sharing the
  header's reason and counter.  Part 1 holds the newest chunk of the log,
  so the log reads from the highest part down.
* A **boot** is a run of dumps whose counters increase: ``oopscount`` in
  platform.c starts at 1 on every boot, so a counter that does not grow
  means an earlier boot.  Backends keep slots, not order (ramoops restarts
  at slot 0 on every boot), so records are ordered by their own time, the
  file mtime the kernel sets to the time of the dump.

Records that are not dmesg dumps (console, pmsg, ftrace) hold the log of
the boot that ended last; they join the newest boot.

A boot that ``collect`` archived in part (it was killed, or a copy failed
and the rest went on) must get the rest in the same archive boot directory:
:func:`assign_boots` groups the new records together with records already
archived and gives each new record the directory of the archived records
its boot shares.

Pure (but for :func:`current_boot_start_ns`): records in, groups out.  The
archive names its boot directories with :func:`boot_id_for`; crash events
(memconsole.history) are built on top.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from memconsole.pstore import PstoreRecord

__all__ = ["PART_WINDOW_NS", "Boot", "Dump", "assign_boots", "boot_id_for",
           "current_boot_start_ns", "group_boots", "split_dumps"]

#: Parts of one dump are written back to back, within this much time.
PART_WINDOW_NS = 2 * 10**9


@dataclass(frozen=True)
class Dump:
    """One ``pstore_dump()`` call: its parts, oldest chunk of log first.

    Attributes:
        parts: the records, highest part number first.
    """

    parts: tuple[PstoreRecord, ...]

    @property
    def reason(self) -> str:
        """``Oops``, ``Panic``, ... or ``""`` for a record without a header."""
        h = self.parts[0].header
        return h.reason if h else ""

    @property
    def count(self) -> int | None:
        """The per-boot dump counter, or None without a header."""
        h = self.parts[0].header
        return h.count if h else None

    @property
    def time_ns(self) -> int:
        """When the kernel wrote the dump (latest part's mtime)."""
        return max(r.mtime_ns for r in self.parts)

    @property
    def text(self) -> bytes:
        """The dumped log in order, dump headers removed."""
        return b"".join(r.body for r in self.parts)


@dataclass(frozen=True)
class Boot:
    """The records one ended boot left.

    Attributes:
        id: see :func:`boot_id_for`.
        records: every record of the boot, oldest first.
    """

    id: str
    records: tuple[PstoreRecord, ...]


def boot_id_for(records: Sequence[PstoreRecord]) -> str:
    """A boot's id: the UTC time of its earliest record, ``20261126T051311Z``."""
    first = min(r.mtime_ns for r in records)
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(first // 10**9))


def split_dumps(dmesg: Iterable[PstoreRecord]) -> list[Dump]:
    """Join the parts of each dump; dumps come out oldest first."""
    ordered = sorted(dmesg, key=lambda r: (r.mtime_ns, -(r.header.part if r.header else 0)))
    dumps: list[list[PstoreRecord]] = []
    for rec in ordered:
        if dumps and rec.header is not None:
            last = dumps[-1][-1]
            if (last.header is not None and last.kind.backend == rec.kind.backend
                    and last.header.reason == rec.header.reason
                    and last.header.count == rec.header.count
                    and rec.header.part < last.header.part
                    and rec.mtime_ns - last.mtime_ns <= PART_WINDOW_NS):
                dumps[-1].append(rec)
                continue
        dumps.append([rec])
    return [Dump(tuple(parts)) for parts in dumps]


def group_boots(records: Iterable[PstoreRecord]) -> list[Boot]:
    """Split records into the boots that wrote them, oldest boot first."""
    records = list(records)
    dmesg = [r for r in records if r.kind.type == "dmesg"]
    other = [r for r in records if r.kind.type != "dmesg"]
    boots: list[list[PstoreRecord]] = []
    last_count: int | None = None
    for dump in split_dumps(dmesg):
        count = dump.count
        if not boots or count is None or last_count is None or count <= last_count:
            boots.append([])
        boots[-1].extend(dump.parts)
        last_count = count
    if other:
        if boots:
            boots[-1].extend(other)
        else:
            boots.append(other)
    return [Boot(boot_id_for(b), tuple(sorted(b, key=lambda r: r.mtime_ns))) for b in boots]


def assign_boots(fresh: Iterable[PstoreRecord],
                 archived: Mapping[str, Sequence[PstoreRecord]] | None = None
                 ) -> list[tuple[str, PstoreRecord]]:
    """The boot (directory) id of every *fresh* record, oldest boot first.

    *archived* maps boot directories to records already stored there.  The
    fresh records are grouped together with them (:func:`group_boots`); a
    fresh record whose boot holds archived records gets their directory
    (the one of the nearest archived record before it, else after it), any
    other the id of its boot.  So a boot archived in part is completed in
    the directory it already has, even when the records still to come would
    name another second.
    """
    owner = {id(r): b for b, recs in (archived or {}).items() for r in recs}
    known = [r for recs in (archived or {}).values() for r in recs]
    out: list[tuple[str, PstoreRecord]] = []
    for boot in group_boots([*known, *fresh]):
        anchors = [(r.mtime_ns, owner[id(r)]) for r in boot.records if id(r) in owner]
        for rec in boot.records:
            if id(rec) in owner:
                continue
            if not anchors:
                out.append((boot.id, rec))
                continue
            before = [b for t, b in anchors if t <= rec.mtime_ns]
            out.append((before[-1] if before else anchors[0][1], rec))
    return out


def current_boot_start_ns(stat: str = "/proc/stat") -> int | None:
    """When the running kernel booted (``btime`` in /proc/stat), ns since the
    epoch; ``None`` where that cannot be read."""
    try:
        with open(stat, "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return int(line.split()[1]) * 10**9
    except (OSError, ValueError, IndexError):
        return None
    return None
