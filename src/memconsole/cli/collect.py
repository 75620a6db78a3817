"""``memconsole collect``: archive every pstore record durably, then erase it.

Argument parsing and output only; the work is memconsole.archive.collect.
"""

from __future__ import annotations

import argparse
import os

from memconsole._common import size_arg
from memconsole.archive import Archive
from memconsole.archive.collect import (
    DEFAULT_LOCK_WAIT,
    CollectEntry,
    CollectReport,
    Outcome,
    collect,
)
from memconsole.cli._output import warn
from memconsole.cli._sources import add_archive_arg, add_pstore_arg, add_ring_arg, pstore_sources
from memconsole.cli.exitcodes import (
    EXIT_BUSY,
    EXIT_DATA_MISSING,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
)
from memconsole.errors import ArchiveBusyError
from memconsole.pstore import MAX_RECORD_SIZE
from memconsole.render import text, write_jsonl

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["exit_status", "register", "run"]


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"bad --wait {value!r}: seconds from 0 to 86400")
    return seconds


def register(sub: Any) -> None:
    """Add the ``collect`` command."""
    p = sub.add_parser(
        "collect", help="archive pstore records per boot, then erase them",
        description="Copy every pstore record into a per-boot directory of the archive "
        "(temp file, fsync, rename, fsync directory) and only then erase the file it was "
        "read from.  Running it twice, or two at once, never duplicates a record: one "
        "collect holds the archive's lock, another waits for it.  Exit status 0: "
        "everything archived; 4: there was nothing to collect; 3: something could not be "
        "read, archived or erased, or a damaged part of the archive was skipped (each is "
        "one line on stderr); 1: nothing could be done; 75: another collect held the "
        "archive for longer than --wait.")
    add_pstore_arg(p)
    add_archive_arg(p)
    p.add_argument("--keep", action="store_true",
                   help="do not erase records from pstore after archiving them")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per record (JSON Lines) on stdout")
    p.add_argument("--wait", type=_seconds, default=DEFAULT_LOCK_WAIT, metavar="SECONDS",
                   help="how long to wait for another collect to finish with the archive "
                   f"(default {DEFAULT_LOCK_WAIT:g}; 0: do not wait)")
    p.add_argument("--max-record-size", type=size_arg, default=MAX_RECORD_SIZE,
                   metavar="SIZE", help="refuse (leave unread, not erased) record files "
                   f"larger than SIZE (default {MAX_RECORD_SIZE >> 20}M, more than any pstore "
                   "backend writes: docs/pstore.md)")
    add_ring_arg(p, "also archive the ended boots this ring holds that did not shut down "
                 "cleanly, or that left pstore records (each once), into the archive boot "
                 "directory of the same boot")
    p.add_argument(
        "--journal", choices=("auto", "yes", "no"), default="auto",
        help="write each crash event of the archive to the systemd journal once, as one "
        "structured entry (docs/fleet.md); auto (the default): when run as a systemd "
        "service and the journal listens")
    p.set_defaults(func=run)


def _json(e: CollectEntry) -> dict[str, object]:
    obj: dict[str, object] = {"path": e.path, "status": e.outcome.value}
    if e.outcome in (Outcome.FAILED, Outcome.UNREADABLE):
        obj["error"] = e.error
        if e.skip is not None:
            obj["skip"] = e.skip.value
        obj["erased"] = False
    else:
        obj.update(boot=e.boot, archived_as=e.archived_as, erased=e.erased,
                   problem=e.problem)
        if e.not_erased:
            obj["not_erased"] = e.not_erased
    if e.ring_boot is not None:
        obj["ring_boot"] = e.ring_boot
        if e.records is not None:
            obj["records"] = e.records
    return obj


def _diagnostics(report: CollectReport) -> list[str]:
    """One line per thing a person should know, in the order it happened."""
    lines = []
    if report.cleaned:
        n = len(report.cleaned)
        lines.append(f"removed {n} temporary file{'s' * (n != 1)} an interrupted collect left")
    lines += [f"{p}" for p in report.problems]
    lines += list(report.notes)
    for e in report.entries:
        if e.outcome is Outcome.UNREADABLE:
            lines.append(f"ring {e.path}: {e.error}" if e.ring
                         else f"{e.path}: {e.error}, skipping (not erased)")
        elif e.outcome is Outcome.FAILED:
            lines.append(f"{e.error}" if e.ring else f"{e.error} (not erased)")
        else:
            if e.problem:
                lines.append(f"{e.path}: archived as is, but {e.problem}")
            if e.not_erased:
                lines.append(f"{e.path}: archived but not erased: {e.not_erased}")
    return lines


def exit_status(report: CollectReport) -> int:
    """The exit status of a finished collect (docs/cli.md)."""
    done = report.count(Outcome.ARCHIVED, Outcome.DUPLICATE)
    if not report.entries:
        return EXIT_PARTIAL if report.problems else EXIT_DATA_MISSING
    if report.complete:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    """Collect; see :func:`register` for the contract."""
    sources = pstore_sources(args, "collect")
    try:
        report = collect(sources, Archive(args.archive), keep=args.keep, ring=args.ring,
                         lock_wait=args.wait, max_record_size=args.max_record_size)
    except ArchiveBusyError as exc:
        warn("collect", f"{exc}; nothing done")
        return EXIT_BUSY
    for line in _diagnostics(report):
        warn("collect", text(line))
    if args.journal == "yes" or (args.journal == "auto" and os.environ.get("INVOCATION_ID")):
        # The report parser is imported only when events may go to the journal.
        from memconsole.ops.journal import after_collect
        after_collect(args, lambda message: warn("collect", message))
    if args.json:
        write_jsonl(_json(e) for e in report.entries)
    if not report.entries:
        where = ", ".join([str(s.path) for s in sources] + ([args.ring] if args.ring else [])
                          ) or "no pstore directory"
        what = "no pstore records and no ring boots" if args.ring else "no pstore records"
        warn("collect", text(f"{what} to collect ({where})"))
    else:
        archived = report.count(Outcome.ARCHIVED)
        duplicates = report.count(Outcome.DUPLICATE)
        failed = len(report.entries) - archived - duplicates
        warn("collect", text(f"{archived} archived, {duplicates} already archived, "
                             f"{failed} failed, into {report.root}"))
    return exit_status(report)
