"""Group pstore records into dumps, boots and crash events.

* A **dump** is one call of the kernel's ``pstore_dump()``: one or more
  records ("parts") sharing the header's reason and counter.  Part 1 holds the
  newest chunk of the log, so the log reads from the highest part down.
* A **boot** is a run of dumps whose counters increase: ``oopscount`` in
  fs/pstore/platform.c starts at 1 on every boot, so a counter that does not
  grow means an earlier boot.  Backends keep slots, not order (ramoops
  restarts at slot 0 on every boot), so records are ordered by their own
  time, the file mtime the kernel sets to the time of the dump.
* A **crash event** is what a person calls one crash.  With
  ``panic_on_oops`` a crash dumps ``Oops#1`` and then ``Panic#2`` holding the
  same report: a Panic dump that follows an Oops within seconds joins it.

Records that are not dmesg dumps (console, pmsg, ftrace) hold the log of
the boot that ended last; they join the newest boot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from memconsole import oops
from memconsole.pstore import PstoreRecord

__all__ = ["Boot", "CrashEvent", "Dump", "boot_id_for", "group_boots", "group_events"]

# Parts of one dump are written back to back; dumps of one crash (Oops then
# Panic under panic_on_oops) within a few seconds.
_PART_WINDOW_NS = 2 * 10**9
_PANIC_JOIN_WINDOW_NS = 60 * 10**9
_OUTCOME_RE = re.compile(r"^kernel (?:panic|oops|crash): ", re.IGNORECASE)


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
class CrashEvent:
    """One crash: the dumps it left and what its log says.

    Attributes:
        boot: id of the boot that crashed (see :func:`boot_id_for`).
        dumps: the dumps of this crash, oldest first.
        extra: console/pmsg/ftrace records of the boot (last event only).
        report: the report that explains the crash, if one was found.
    """

    boot: str
    dumps: tuple[Dump, ...]
    extra: tuple[PstoreRecord, ...]
    report: oops.Report | None

    @property
    def time_ns(self) -> int:
        """Wall-clock time of the crash, ns since the epoch."""
        if self.dumps:
            return self.dumps[0].time_ns
        return min(r.mtime_ns for r in self.extra)

    @property
    def records(self) -> list[PstoreRecord]:
        """Every record of the event."""
        return [r for d in self.dumps for r in d.parts] + list(self.extra)

    @property
    def panicked(self) -> bool:
        """Whether the crash ended in a panic."""
        return any(d.reason == "Panic" for d in self.dumps) or bool(
            self.report and self.report.panic_reason)

    @property
    def log(self) -> bytes:
        """The fullest log of the crash: the last dump (a Panic dump holds the
        oops report before it), or the console record without dumps."""
        if self.dumps:
            return self.dumps[-1].text
        return b"".join(r.text for r in self.extra)

    @property
    def kind(self) -> str:
        """Crash kind in the project vocabulary (``null-pointer``, ...)."""
        if self.report is not None:
            return str(self.report.kind.value)
        return "panic" if self.panicked else "unknown"

    @property
    def headline(self) -> str:
        """One line saying what happened."""
        if self.report is not None:
            return self.report.headline
        reasons = "+".join(d.reason or "record" for d in self.dumps) or "console log only"
        return f"{reasons} with no recognisable crash report"

    def sentence(self) -> str:
        """The line a person reads first, e.g. "Last boot ended in a kernel
        panic: NULL pointer dereference in f [mod], task insmod (pid 86)."."""
        what = "a kernel panic" if self.panicked else "a kernel oops"
        if not self.dumps:
            what = "an unexplained stop"
        if self.report is None:
            return f"Boot {self.boot} ended in {what}: {self.headline}."
        # describe() may name the outcome itself ("kernel panic: ..."): say it once.
        detail = _OUTCOME_RE.sub("", oops.describe(self.report))
        return f"Boot {self.boot} ended in {what}: {detail}."

    def to_json(self) -> dict[str, object]:
        """The ``memconsole list --json`` object of this event."""
        r = self.report
        return {
            "boot": self.boot,
            "time": _iso(self.time_ns),
            "kind": self.kind,
            "headline": self.headline,
            "panic_reason": r.panic_reason if r else None,
            "comm": r.comm if r else None,
            "pid": r.pid if r else None,
            "uptime": r.time if r else None,
            "tainted": r.tainted if r else None,
            "signature": getattr(r, "signature", None) if r else None,
            "dumps": [f"{d.reason}#{d.count}" if d.count is not None else d.reason
                      for d in self.dumps],
            "records": [rec.name for rec in self.records],
        }


@dataclass(frozen=True)
class Boot:
    """The records one ended boot left.

    Attributes:
        id: see :func:`boot_id_for`.
        records: every record of the boot, oldest first.
    """

    id: str
    records: tuple[PstoreRecord, ...]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def boot_id_for(records: Sequence[PstoreRecord]) -> str:
    """A boot's id: the UTC time of its earliest record, ``20261126T051311Z``."""
    first = min(r.mtime_ns for r in records)
    return datetime.fromtimestamp(first // 10**9, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _dumps(dmesg: Iterable[PstoreRecord]) -> list[Dump]:
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
                    and rec.mtime_ns - last.mtime_ns <= _PART_WINDOW_NS):
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
    for dump in _dumps(dmesg):
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


def group_events(boot: str, records: Iterable[PstoreRecord]) -> list[CrashEvent]:
    """Split one boot's records into crash events, oldest first."""
    records = list(records)
    groups: list[list[Dump]] = []
    for dump in _dumps(r for r in records if r.kind.type == "dmesg"):
        if groups:
            prev = groups[-1]
            if (dump.reason == "Panic" and all(d.reason != "Panic" for d in prev)
                    and dump.time_ns - prev[-1].time_ns <= _PANIC_JOIN_WINDOW_NS):
                prev.append(dump)
                continue
        groups.append([dump])
    extra = tuple(r for r in records if r.kind.type != "dmesg")
    events = []
    for i, dumps in enumerate(groups):
        mine = extra if i == len(groups) - 1 else ()
        log = dumps[-1].text
        events.append(CrashEvent(boot, tuple(dumps), mine, oops.primary_report(log)))
    if not groups and extra:
        log = b"".join(r.text for r in extra)
        events.append(CrashEvent(boot, (), extra, oops.primary_report(log)))
    return events
