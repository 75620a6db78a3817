"""Each archived crash event as one structured journal entry, sent once.

An entry (docs/fleet.md lists every field):

* ``MESSAGE_ID=2163281d23394f449b6023c81a5a83a3``, the same for every crash
  entry memconsole writes (:data:`MESSAGE_ID`), so ``journalctl
  MESSAGE_ID=...`` finds them all;
* ``MESSAGE``: the sentence ``memconsole show`` opens with; ``PRIORITY`` 2
  (crit) for a panic, 3 (err) otherwise; ``SYSLOG_IDENTIFIER=memconsole``;
* ``MEMCONSOLE_KIND``, ``MEMCONSOLE_TITLE``, ``MEMCONSOLE_CULPRIT``,
  ``MEMCONSOLE_SIGNATURE``, ``MEMCONSOLE_BOOT``, ``MEMCONSOLE_REPORT`` and the
  other ``MEMCONSOLE_`` fields of :func:`event_fields`.

Exactly once per event: the events sent are listed in the archive
(``<archive>/journal.json``, written durably after each entry), keyed by
:func:`event_key`, so running ``collect`` again sends only what is new.  A
crash of memconsole between an entry and its index line sends that entry
once more the next time; ``MEMCONSOLE_EVENT`` lets a fleet store drop such a
repeat.

:func:`event_fields` is pure; :func:`send_events` does the I/O through
:mod:`memconsole.ops._native`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from memconsole._common import write_durably
from memconsole.archive import Archive, read_index, sha256
from memconsole.archive.ring import archived_rings
from memconsole.errors import MemconsoleError
from memconsole.history import (
    CrashEvent,
    attach_rings,
    current_boot_start_ns,
    group_events,
    load_ring_logs,
)
from memconsole.oops import Report
from memconsole.ops._native import JOURNAL_SOCKET, SNDBUF, encode, send
from memconsole.render import dmesg_text

__all__ = [
    "JOURNAL_MODES",
    "JOURNAL_SOCKET",
    "MESSAGE_ID",
    "SENT_INDEX",
    "JournalError",
    "SendResult",
    "SentEvent",
    "add_journal_arg",
    "after_collect",
    "archived_events",
    "culprit",
    "event_fields",
    "event_key",
    "read_sent",
    "send_events",
    "sent_boots",
    "title",
]

#: MESSAGE_ID of every crash entry (generated once for memconsole; never changes).
MESSAGE_ID = "2163281d23394f449b6023c81a5a83a3"
#: The archive's list of events already sent, relative to the archive root.
SENT_INDEX = "journal.json"
#: Lines of log sent for an event without a crash report.
TAIL_LINES = 50

# A function label in a signature basis: "crashy_null [crashy]", "do_one_initcall".


class JournalError(MemconsoleError):
    """The journal refused an entry, or the archive's list of sent events
    cannot be read or written."""


@dataclass(frozen=True)
class SentEvent:
    """One line of the archive's ``journal.json``.

    Attributes:
        event: the event's key (:func:`event_key`).
        boot: its archive boot directory.
        kind: its kind.
        signature: its signature, or None without a report.
        sent_ns: when the entry was sent.
        records: SHA-256 of each of its pstore records.
        ring_boot: the kernel boot id of its ring boot, if it has one.
    """

    event: str
    boot: str
    kind: str
    signature: str | None
    sent_ns: int
    records: list[str] = field(default_factory=list)
    ring_boot: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What :func:`send_events` did.

    Attributes:
        sent: keys of the events sent now.
        already: events skipped because they were sent before.
        unavailable: no journal listened on the socket; nothing was sent.
    """

    sent: tuple[str, ...]
    already: int
    unavailable: bool


def event_key(event: CrashEvent) -> str:
    """A stable identity for *event*: the SHA-256 of its first pstore record,
    or ``ring:<kernel boot id>`` for an event known only from the ring."""
    records = event.records
    if records:
        return sha256(records[0].raw)
    if event.ring is not None:
        return f"ring:{event.ring.ring_boot}"
    return f"boot:{event.boot}"


def title(event: CrashEvent) -> str:
    """The report's title (:attr:`memconsole.oops.Report.title`), else the headline."""
    r = event.report
    return r.title if r is not None and r.title else event.headline


def culprit(report: Report | None) -> str | None:
    """The report's culprit as ``function [module]``, or None when it has none."""
    if report is None or report.culprit is None:
        return None
    return report.culprit.label()


def _report_text(event: CrashEvent) -> bytes:
    """The report's lines, or the last lines of the log without a report."""
    log = event.log
    if event.report is not None and event.report.end > event.report.start:
        return dmesg_text(log[event.report.start:event.report.end]).rstrip(b"\n")
    lines = dmesg_text(log).rstrip(b"\n").split(b"\n")
    return b"\n".join(lines[-TAIL_LINES:])


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9))


def event_fields(event: CrashEvent, current_boot_ns: int | None = None
                 ) -> list[tuple[str, bytes]]:
    """The journal fields of *event*, in order.  Fields without a value
    (no report, no ring) are left out."""
    r = event.report
    values: list[tuple[str, str | bytes | None]] = [
        ("MESSAGE", event.sentence(current_boot_ns)),
        ("MESSAGE_ID", MESSAGE_ID),
        ("PRIORITY", "2" if event.panicked else "3"),
        ("SYSLOG_IDENTIFIER", "memconsole"),
        ("MEMCONSOLE_EVENT", event_key(event)),
        ("MEMCONSOLE_KIND", event.kind),
        ("MEMCONSOLE_TITLE", title(event)),
        ("MEMCONSOLE_CULPRIT", culprit(r)),
        ("MEMCONSOLE_SIGNATURE", r.signature if r else None),
        ("MEMCONSOLE_SIGNATURE_BASIS", r.signature_basis if r else None),
        ("MEMCONSOLE_BOOT", event.boot),
        ("MEMCONSOLE_RING_BOOT", event.ring.ring_boot if event.ring else None),
        ("MEMCONSOLE_TIME", _iso(event.time_ns)),
        ("MEMCONSOLE_HEADLINE", event.headline),
        ("MEMCONSOLE_PANIC_REASON", r.panic_reason if r else None),
        ("MEMCONSOLE_KERNEL", r.kernel_release if r else None),
        ("MEMCONSOLE_COMM", r.comm if r else None),
        ("MEMCONSOLE_TAINTED", r.tainted if r and r.tainted else None),
        ("MEMCONSOLE_RECORDS", " ".join([rec.name for rec in event.records]
                                        + ([event.ring.name] if event.ring else []))),
        ("MEMCONSOLE_REPORT", _report_text(event)),
    ]
    out = []
    for name, value in values:
        if value is None or value == "":
            continue
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        out.append((name, raw))
    return out


def archived_events(archive: Archive, skip: Collection[str] = (),
                    warnings: list[str] | None = None) -> list[CrashEvent]:
    """Every crash event in *archive* (pstore records and ring boots), oldest
    first, leaving out the archive boot directories named in *skip*.  What
    cannot be read is skipped, one line for it appended to *warnings*."""
    said = warnings if warnings is not None else []
    events: list[CrashEvent] = []
    index, problems = archive.scan()
    said += [str(p) for p in problems]
    for boot, entries in index.items():
        if boot not in skip:
            records, bad = archive.load(boot, entries)
            said += [str(p) for p in bad]
            events += group_events(boot, records)
    events.sort(key=lambda e: e.time_ns)
    logs, ring_problems = load_ring_logs(archive, [b for b in index if b not in skip])
    said += [str(p) for p in ring_problems]
    return attach_rings(events, logs)


def sent_boots(archive: Archive, sent: Sequence[SentEvent]) -> set[str]:
    """Archive boot directories whose every record and ring boot belongs to
    an event already sent: their reports need not be parsed again."""
    records = {h for e in sent for h in e.records}
    rings = {e.ring_boot for e in sent if e.ring_boot}
    ring_index: dict[str, list[str]] = {}
    rings_of, _ = archived_rings(archive)
    for boot, ring in rings_of:
        ring_index.setdefault(boot, []).append(ring.ring_boot)
    done = set()
    index, _ = archive.scan()
    for boot, entries in index.items():
        mine = [r.sha256 for r in entries]
        ring_boots = ring_index.get(boot, [])
        if (mine or ring_boots) and records.issuperset(mine) and rings.issuperset(ring_boots):
            done.add(boot)
    return done


def read_sent(archive: Archive) -> list[SentEvent]:
    """The archive's list of events sent (empty before the first)."""
    try:
        return read_index(archive.root / SENT_INDEX, SentEvent)
    except MemconsoleError as exc:
        raise JournalError(str(exc)) from exc


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the archive root: two ``collect`` runs do
    not both send an event."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_index(path: Path, entries: Sequence[SentEvent]) -> None:
    data = json.dumps([asdict(e) for e in entries], indent=1).encode() + b"\n"
    try:
        write_durably(path, data)
    except OSError as exc:
        raise JournalError(f"cannot write {path}: {exc.strerror}") from exc


def send_events(events: Sequence[CrashEvent], archive: Archive, *,
                socket: Path = JOURNAL_SOCKET, sndbuf: int = SNDBUF,
                now_ns: Callable[[], int] = time.time_ns) -> SendResult:
    """Send each of *events* not sent before to the journal at *socket* and
    list it in *archive*'s ``journal.json``.

    Stops at the first entry no journal takes (``unavailable``; nothing more
    is listed, so the next run sends it).  Raises :class:`JournalError` when
    the journal refuses an entry or the list cannot be written.
    """
    path = archive.root / SENT_INDEX
    try:
        with _locked(archive.root):
            entries = read_sent(archive)
            done = {e.event for e in entries}
            boot_ns = current_boot_start_ns()
            sent: list[str] = []
            already = 0
            for event in events:
                key = event_key(event)
                if key in done:
                    already += 1
                    continue
                try:
                    delivered = send(encode(event_fields(event, boot_ns)), socket, sndbuf)
                except OSError as exc:
                    raise JournalError(f"journal at {socket} refused the entry of "
                                       f"{key[:16]}: {exc.strerror or exc}") from exc
                if not delivered:
                    return SendResult(tuple(sent), already, True)
                sig = event.report.signature if event.report else None
                entries.append(SentEvent(key, event.boot, event.kind, sig, now_ns(),
                                         [sha256(r.raw) for r in event.records],
                                         event.ring.ring_boot if event.ring else None))
                done.add(key)
                _write_index(path, entries)
                sent.append(key)
    except OSError as exc:
        raise JournalError(f"cannot lock {archive.root}: {exc.strerror}") from exc
    return SendResult(tuple(sent), already, False)


# -- the hook ``memconsole collect`` calls ------------------------------------

#: ``--journal`` values: ``auto`` sends when collect runs as a systemd service
#: (``$INVOCATION_ID`` is set) and the journal socket exists.
JOURNAL_MODES = ("auto", "yes", "no")


def add_journal_arg(parser: argparse.ArgumentParser) -> None:
    """``--journal {auto,yes,no}`` for ``collect``."""
    parser.add_argument(
        "--journal", choices=JOURNAL_MODES, default="auto",
        help="write each crash event of the archive to the systemd journal once, as one "
        f"structured entry (MESSAGE_ID={MESSAGE_ID}); auto (the default): when run as a "
        "systemd service and the journal listens")


def after_collect(args: argparse.Namespace, warn: Callable[[str], None]) -> None:
    """Send the archive's events not sent yet, as ``args.journal`` says;
    problems are reported through *warn* and never change collect's outcome
    (an event not sent is sent by the next run)."""
    mode = getattr(args, "journal", "auto")
    socket = JOURNAL_SOCKET
    if mode == "no" or (mode == "auto" and not (os.environ.get("INVOCATION_ID")
                                               and socket.exists())):
        return
    archive = Archive(args.archive)
    if not archive.boots_dir.is_dir():
        return
    try:
        # Boots whose events all went before are not parsed again at every boot.
        skip = sent_boots(archive, read_sent(archive))
        problems: list[str] = []
        events = archived_events(archive, skip, problems)
        for line in problems:
            warn(f"journal: {line}")
        result = send_events(events, archive, socket=socket)
    except MemconsoleError as exc:
        warn(f"journal: {exc}")
        return
    if result.unavailable and mode == "yes":
        warn(f"journal: no journal listens on {socket}; events left for the next run")
    if result.sent:
        n = len(result.sent)
        warn(f"journal: {n} crash event{'s' * (n != 1)} written "
             f"(MESSAGE_ID={MESSAGE_ID})")
