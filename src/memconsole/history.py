"""Crash events: the one place that joins pstore records, memconsole's
ring and the report parser into the history ``show`` and ``list`` present.

* **Dumps** and **boots** are pstore's (:mod:`memconsole.pstore.boots`,
  re-exported here): the parts of one ``pstore_dump()`` call, and the run
  of dumps one boot left.
* A **crash event** is what a person calls one crash.  With
  ``panic_on_oops`` a crash dumps ``Oops#1`` and then ``Panic#2`` holding the
  same report: a Panic dump that follows an Oops within seconds joins it.

memconsole's own ring (docs/ring.md) adds a :class:`RingLog` per ended boot:
:func:`attach_rings` gives it to the crash event of the same boot (the dump's
time falls within or shortly after the ring boot's records), and a boot that
left a ring but no dump and did not stop its recorder cleanly becomes an
event of its own: a hang or reset.

:func:`crash_history` reads it all (archive, pending pstore records, ring)
and returns the events with one-line warnings for what it had to skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from memconsole import oops
from memconsole.archive import Archive, ArchiveProblem, read_nofollow, reason, recent_boots
from memconsole.archive.ring import (
    RING_MATCH_WINDOW_NS,
    RING_NAME,
    archived_rings,
    read_ring,
    render_entries,
)
from memconsole.errors import ArchiveError, RegionError, RingFormatError
from memconsole.pstore import MAX_RECORD_SIZE, PstoreRecord, PstoreSource, read_sources, sha256
from memconsole.pstore.boots import (
    Boot,
    Dump,
    assign_boots,
    boot_id_for,
    current_boot_start_ns,
    group_boots,
    split_dumps,
)
from memconsole.ring import RingBoot, current_boot_id

__all__ = [
    "LAST_BOOT_WINDOW_NS",
    "RING_MATCH_WINDOW_NS",
    "Boot",
    "CrashEvent",
    "Dump",
    "History",
    "RingLog",
    "attach_rings",
    "boot_id_for",
    "crash_history",
    "current_boot_start_ns",
    "group_boots",
    "group_events",
    "load_ring_logs",
    "ring_log",
]

# Dumps of one crash (Oops then Panic under panic_on_oops) come within seconds.
_PANIC_JOIN_WINDOW_NS = 60 * 10**9
#: A crash this close before the running boot started is what ended the last
#: boot (panic=N reboots take seconds; a watchdog or a person, minutes).
LAST_BOOT_WINDOW_NS = 15 * 60 * 10**9
_OUTCOME_RE = re.compile(r"^kernel (?:panic|oops|crash): ", re.IGNORECASE)


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
        return str((oops.Kind.PANIC if self.panicked else oops.Kind.UNKNOWN).value)

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

    def report_text(self) -> bytes:
        """The report's own lines in :attr:`log` (what :attr:`report` was read from),
        then the ``Kernel panic - not syncing`` line that ended the crash when it is
        not one of them, after a ``[... N lines ...]`` line for those in between;
        empty without a report."""
        r, log = self.report, self.log
        if r is None or not 0 <= r.start < r.end <= len(log):
            return b""
        text = log[r.start:r.end]
        if not text.endswith(b"\n"):
            text += b"\n"
        at = log.find(b"Kernel panic - not syncing", r.end)
        if r.panic_reason is not None and at >= 0:
            begin = log.rfind(b"\n", 0, at) + 1
            end = log.find(b"\n", at)
            end = len(log) if end < 0 else end + 1
            between = log.count(b"\n", r.end, begin)
            if between:
                text += f"[... {between} lines ...]\n".encode()
            text += log[begin:end] if log[begin:end].endswith(b"\n") else log[begin:end] + b"\n"
        return text

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


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def group_events(boot: str, records: Iterable[PstoreRecord]) -> list[CrashEvent]:
    """Split one boot's records into crash events, oldest first."""
    records = list(records)
    groups: list[list[Dump]] = []
    for dump in split_dumps(r for r in records if r.kind.type == "dmesg"):
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


def _ring_report(text: bytes) -> str | None:
    report = oops.primary_report(text)
    return oops.describe(report) if report is not None else None


def ring_log(boot: RingBoot, name: str = RING_NAME,
             archive_boot: str | None = None) -> RingLog | None:
    """The event summary of an ended ring boot; None if it holds no record
    with a time."""
    first, last = boot.first_time_ns, boot.last_time_ns
    if first is None or last is None:
        return None
    log = boot.last_log
    line = log.text.split(b"\n", 1)[0] if log else b""
    up = next((r.mono_ns for r in reversed(boot.records) if r.mono_ns is not None), None)
    text = render_entries(boot.entries)
    return RingLog(boot.id, name, first, last, up, line, len(boot.records), boot.missing,
                   boot.stopped, text, archive_boot, _ring_report(text))


def load_ring_logs(archive: Archive, boots: Iterable[str] | None = None
                   ) -> tuple[list[RingLog], list[ArchiveProblem]]:
    """Archived ring boots (of *boots*, default all) as :class:`RingLog`
    summaries; what cannot be read is skipped and reported."""
    out: list[RingLog] = []
    rings, problems = archived_rings(archive, boots)
    for boot, entry in rings:
        path = archive.boots_dir / boot / entry.name
        try:
            text = read_nofollow(path, MAX_RECORD_SIZE)
        except OSError as exc:
            problems.append(ArchiveProblem(str(path), f"cannot read: {exc.strerror or exc}; "
                                           "ring boot skipped"))
            continue
        except ArchiveError as exc:
            problems.append(ArchiveProblem(str(path), f"{reason(exc, path)}; ring boot skipped"))
            continue
        out.append(RingLog(entry.ring_boot, entry.name, entry.first_ns, entry.last_ns,
                           entry.last_uptime_ns, entry.last_line.encode(), entry.records,
                           entry.missing, entry.stopped, text, boot,
                           entry.last_report or _ring_report(text)))
    return out, problems


@dataclass(frozen=True)
class History:
    """The crash events memconsole knows of.

    Attributes:
        events: oldest first.
        warnings: one line each for what was skipped (a damaged archive
            boot, an unreadable record, a ring that cannot be read).
    """

    events: tuple[CrashEvent, ...]
    warnings: tuple[str, ...]


def crash_history(archive: Archive, sources: Sequence[PstoreSource],
                  ring: str | None = None) -> History:
    """Crash events from the archive, from the records of *sources* not
    archived yet, and from the ended boots of the ring *ring* (a spec) not
    archived yet, the running boot left out.

    A boot that ``collect`` archived in part joins its pending records (the
    same boot directory collect would give them).  Nothing is written.
    """
    warnings: list[str] = []
    index, problems = archive.scan()
    warnings += [f"{p}" for p in problems]
    loaded: dict[str, list[PstoreRecord]] = {}
    for boot, entries in index.items():
        loaded[boot], bad = archive.load(boot, entries)
        warnings += [f"{p}" for p in bad]
    archived = {e.sha256 for recs in index.values() for e in recs}
    pending, failures = read_sources(list(sources))
    warnings += [f"{f.path}: {f.reason}, skipping" for f in failures]
    fresh, seen = [], set(archived)
    for rec, _ in pending:
        digest = sha256(rec.raw)
        if digest not in seen:
            seen.add(digest)
            fresh.append(rec)
    anchors = {b: loaded[b] for b in recent_boots(index, current_boot_start_ns())}
    joined: dict[str, list[PstoreRecord]] = {b: list(recs) for b, recs in loaded.items()}
    for boot_id, rec in assign_boots(fresh, anchors):
        joined.setdefault(boot_id, []).append(rec)
    events: list[CrashEvent] = []
    for boot_id in sorted(joined):
        events += group_events(boot_id, joined[boot_id])
    events.sort(key=lambda e: e.time_ns)
    logs, ring_problems = load_ring_logs(archive, index)
    warnings += [f"{p}" for p in ring_problems]
    if ring:
        try:
            image = read_ring(ring)
        except (RegionError, RingFormatError) as exc:
            warnings.append(f"ring {ring}: {exc}; its boots are left out")
        else:
            known = {log.ring_boot for log in logs}
            for rb in image.ended_boots(current_boot_id()):
                log = ring_log(rb, RING_NAME) if rb.id not in known else None
                if log is not None:
                    logs.append(log)
    return History(tuple(attach_rings(events, logs)), tuple(warnings))
