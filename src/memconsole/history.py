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

memconsole's own ring (docs/ring.md) adds a :class:`RingLog` per ended boot:
:func:`attach_rings` gives it to the crash event of the same boot (the dump's
time falls within or shortly after the ring boot's records), and a boot that
left a ring but no dump and did not stop its recorder cleanly becomes an
event of its own: a hang or reset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from memconsole import oops
from memconsole.pstore import PstoreRecord

__all__ = [
    "LAST_BOOT_WINDOW_NS",
    "RING_MATCH_WINDOW_NS",
    "Boot",
    "CrashEvent",
    "Dump",
    "RingLog",
    "attach_rings",
    "boot_id_for",
    "current_boot_start_ns",
    "group_boots",
    "group_events",
]

# Parts of one dump are written back to back; dumps of one crash (Oops then
# Panic under panic_on_oops) within a few seconds.
_PART_WINDOW_NS = 2 * 10**9
_PANIC_JOIN_WINDOW_NS = 60 * 10**9
#: A crash this close before the running boot started is what ended the last
#: boot (panic=N reboots take seconds; a watchdog or a person, minutes).
LAST_BOOT_WINDOW_NS = 15 * 60 * 10**9
_OUTCOME_RE = re.compile(r"^kernel (?:panic|oops|crash): ", re.IGNORECASE)
#: A dump belongs to a ring boot when it was written at most this long after
#: the boot's last ring record (and before the next boot's first).
RING_MATCH_WINDOW_NS = 300 * 10**9


@dataclass(frozen=True)
class RingLog:
    """The console of one ended boot as memconsole's ring recorded it.

    Attributes:
        ring_boot: the kernel's boot id of that boot (``6f1c0e5a-...``).
        name: the record name events list (``console-ring`` in the archive).
        first_ns: wall-clock time of the boot's oldest ring record.
        last_ns: wall-clock time of its newest ring record.
        last_uptime_ns: time since boot of the newest record, if known.
        last_line: the newest log message (first line of it).
        records: records the ring holds for the boot.
        missing: records known to be missing (gaps).
        stopped: the recorder stopped cleanly (shutdown), so the boot did
            not end in a hang or reset while recording.
        text: the console as text, one line per record, gaps marked.
        archive_boot: the archive boot directory it is stored in, or None
            when it was read from a ring directly.
        last_report: what the last kernel crash report in the console says
            (``soft lockup on CPU#1 for 6s in f [mod], task insmod (pid 209)``),
            or None.
    """

    ring_boot: str
    name: str
    first_ns: int
    last_ns: int
    last_uptime_ns: int | None
    last_line: bytes
    records: int
    missing: int
    stopped: bool
    text: bytes
    archive_boot: str | None = None
    last_report: str | None = None

    def ended(self) -> str:
        """``console ended at 05:13:11 UTC (uptime 9.4 s) with "..."``."""
        when = datetime.fromtimestamp(self.last_ns / 1e9, timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
        up = f" (uptime {self.last_uptime_ns / 1e9:.1f} s)" if self.last_uptime_ns else ""
        line = self.last_line.decode("utf-8", "backslashreplace").strip()
        if len(line) > 120:
            line = line[:117] + "..."
        return f'console ended at {when}{up} with "{line}"'

    def to_json(self) -> dict[str, object]:
        """The ``ring`` object of ``list --json``."""
        return {"boot": self.ring_boot, "name": self.name, "first": _iso(self.first_ns),
                "last": _iso(self.last_ns), "records": self.records, "missing": self.missing,
                "stopped": self.stopped,
                "last_line": self.last_line.decode("utf-8", "backslashreplace"),
                "last_report": self.last_report}


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
        ring: the boot's console from memconsole's ring, if one was kept.
    """

    boot: str
    dumps: tuple[Dump, ...]
    extra: tuple[PstoreRecord, ...]
    report: oops.Report | None
    ring: RingLog | None = None

    @property
    def time_ns(self) -> int:
        """Wall-clock time of the crash, ns since the epoch (for a boot known
        only from its ring: its last ring record)."""
        if self.dumps:
            return self.dumps[0].time_ns
        if self.extra or self.ring is None:
            return min(r.mtime_ns for r in self.extra)
        return self.ring.last_ns

    @property
    def records(self) -> list[PstoreRecord]:
        """Every pstore record of the event."""
        return [r for d in self.dumps for r in d.parts] + list(self.extra)

    @property
    def ring_only(self) -> bool:
        """Known only from the ring: no pstore record at all."""
        return self.ring is not None and not self.dumps and not self.extra

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
        if self.ring_only and self.ring is not None:
            return self.ring.text
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
        if self.ring_only and self.ring is not None:
            report = f"; last kernel report: {self.ring.last_report}" \
                if self.ring.last_report else ""
            return f"hang or reset: {self.ring.ended()}{report}"
        reasons = "+".join(d.reason or "record" for d in self.dumps) or "console log only"
        return f"{reasons} with no recognisable crash report"

    def sentence(self, current_boot_ns: int | None = None) -> str:
        """The line a person reads first, e.g. "Last boot ended in a kernel
        panic: NULL pointer dereference in f [mod], task insmod (pid 86).".

        *current_boot_ns* is when the running boot started
        (:func:`current_boot_start_ns`); an event that ended within
        :data:`LAST_BOOT_WINDOW_NS` before it ended the last boot, and is
        called so.  Otherwise the boot is named by its id.
        """
        subject = f"Boot {self.boot}"
        if (current_boot_ns is not None
                and 0 <= current_boot_ns - self.time_ns <= LAST_BOOT_WINDOW_NS):
            subject = "Last boot"
        what = "a kernel panic" if self.panicked else "a kernel oops"
        if self.ring_only and self.ring is not None:
            return f"{subject} ended in a {self.headline}."
        if not self.dumps:
            what = "an unexplained stop"
        if self.report is None:
            return f"{subject} ended in {what}: {self.headline}."
        # describe() may name the outcome itself ("kernel panic: ..."): say it once.
        detail = _OUTCOME_RE.sub("", oops.describe(self.report))
        return f"{subject} ended in {what}: {detail}."

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
            "signature": r.signature if r else None,
            "signature_basis": r.signature_basis if r else None,
            "dumps": [f"{d.reason}#{d.count}" if d.count is not None else d.reason
                      for d in self.dumps],
            "records": [rec.name for rec in self.records]
            + ([self.ring.name] if self.ring else []),
            "sources": (["pstore"] if self.dumps or self.extra else [])
            + (["ring"] if self.ring else []),
            "ring": self.ring.to_json() if self.ring else None,
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


def attach_rings(events: Sequence[CrashEvent], rings: Sequence[RingLog],
                 window_ns: int = RING_MATCH_WINDOW_NS) -> list[CrashEvent]:
    """Give each ring boot to the crash event of the same boot; return the
    events, plus one hang-or-reset event per ring boot that has no event and
    did not stop its recorder cleanly, oldest first.

    An archived ring boot belongs to the last event of its archive boot
    directory.  Any other belongs to the last event with a dump written
    between its first record and *window_ns* after its last one (never at or
    after the next ring boot's first record).
    """
    out = list(events)
    ordered = sorted(rings, key=lambda r: r.first_ns)
    for n, log in enumerate(ordered):
        if log.archive_boot is not None:
            match = [i for i, e in enumerate(out)
                     if e.boot == log.archive_boot and e.ring is None and not e.ring_only]
        else:
            upper = log.last_ns + window_ns
            if n + 1 < len(ordered):
                upper = min(upper, ordered[n + 1].first_ns - 1)
            match = [i for i, e in enumerate(out)
                     if e.ring is None and e.dumps and log.first_ns <= e.time_ns <= upper]
        if match:
            i = max(match, key=lambda j: out[j].time_ns)
            out[i] = replace(out[i], ring=log)
        elif not log.stopped:
            boot = log.archive_boot or datetime.fromtimestamp(
                log.last_ns // 10**9, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            out.append(CrashEvent(boot, (), (), None, log))
    out.sort(key=lambda e: e.time_ns)
    return out
