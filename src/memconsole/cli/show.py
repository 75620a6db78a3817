"""``memconsole show``: the previous boot's last words.

What a person needs first: the sentence, the report's title, culprit and
signature, then the report itself (symbolised with ``--symbols``, or with a
debug root holding the crashed kernel's vmlinux), then where the rest is:
``show --full`` prints the whole boot log.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memconsole.archive.ring import boot_end_line, entry_json, read_ring, render_entries
from memconsole.cli._output import warn
from memconsole.cli._sources import add_archive_arg, add_pstore_arg, add_ring_arg, all_events
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_OK, EXIT_PARTIAL
from memconsole.errors import RingFormatError
from memconsole.history import current_boot_start_ns
from memconsole.render import dmesg_text, escape, write_jsonl, write_text
from memconsole.ring import RingBoot, RingImage, current_boot_id

if TYPE_CHECKING:
    from memconsole.history import CrashEvent
    from memconsole.oops import Frame, Report

__all__ = ["boot_arg", "register", "run"]

# A boot id (prefix): the hex digits and dashes of /proc/sys/kernel/random/boot_id.
_BOOT_ID_RE = re.compile(r"[0-9a-fA-F-]{4,36}")
# Where distributions install debug symbols (Debian's *-dbg packages, Fedora's
# debuginfo): used when it holds boot/vmlinux-RELEASE of the crashed kernel.
DEBUG_ROOT = Path("/usr/lib/debug")
# Lines of the log shown when no report was found in it (its end).
_TAIL_LINES = 40


def register(sub: Any) -> None:
    """Add the ``show`` command."""
    p = sub.add_parser(
        "show", help="print the last crash: one sentence, its title, culprit and report",
        description="Print the last crash memconsole knows of (pstore records not yet "
        "collected, else the newest boot in the archive): one line that says what "
        "happened, the report's title, culprit and signature, then the report itself "
        "(with source lines when symbols are available), then where the full log is; "
        "--full prints the whole boot log after it.  With --ring: the console a previous "
        "boot left in memconsole's ring (docs/ring.md), in order, gaps marked, and where "
        "it ended.  Exit status 4 when there is nothing to show.")
    add_pstore_arg(p)
    add_archive_arg(p)
    p.add_argument("--full", action="store_true",
                   help="print the whole log of the crashed boot after the report (and its "
                   "console, pmsg, ftrace and ring records)")
    p.add_argument("--symbols", action="append", type=Path, default=[], metavar="PATH",
                   help="vmlinux with debug info, System.map, a module tree or .ko, or a "
                   "debug root: add source lines to the report, as 'memconsole oops "
                   f"--symbols' does (default: {DEBUG_ROOT} when it holds the crashed "
                   "kernel's vmlinux; repeatable)")
    add_ring_arg(p, "show the console kept in this ring instead", env_default=False)
    p.add_argument("--boot", default="-1", type=boot_arg, metavar="-1|-N|0|all|ID",
                   help="with --ring: which boot: -1 the previous one (default), -2 the one "
                   "before, 0 the running one, all, or a boot id (prefix)")
    p.add_argument("--json", action="store_true",
                   help="with --ring: JSON Lines, one object per record (seq, boot, time, "
                   "uptime, type, level, facility, source_seq, text) or gap (gap, reason)")
    p.set_defaults(func=run)


def boot_arg(value: str) -> str:
    """``--boot`` as an argparse ``type=``: ``all``, ``0``, ``-N`` (N >= 1) or a
    boot id prefix of at least 4 characters; anything else is a usage error."""
    if value in ("all", "0") or (value.startswith("-") and value[1:].isdecimal()
                                 and value[1:].isascii() and int(value[1:]) > 0):
        return value
    if _BOOT_ID_RE.fullmatch(value):
        return value.lower()
    raise argparse.ArgumentTypeError(
        f"{escape(value)!r} is not -1 (the previous boot), -N, 0 (this boot), all, or a "
        "boot id (at least 4 characters of it)")


def _select(image: RingImage, current: bytes, which: str) -> list[RingBoot]:
    """The boots *which* (a :func:`boot_arg` value) names."""
    if which == "all":
        return list(image.boots)
    if which == "0":
        return [b for b in image.boots if b.boot == current]
    if which.startswith("-"):
        ended = image.ended_boots(current)
        n = int(which[1:])
        return [ended[-n]] if n <= len(ended) else []
    return [b for b in image.boots if b.id.startswith(which)][:1]


def _show_ring(args: argparse.Namespace) -> int:
    ring = escape(args.ring)
    try:
        image = read_ring(args.ring, lambda line: warn("show", f"ring {ring}: {escape(line)}"))
    except RingFormatError as exc:
        warn("show", f"ring {ring}: {escape(str(exc))}")
        return EXIT_DATA_MISSING
    current = current_boot_id()
    boots = _select(image, current, args.boot)
    if image.corrupt or image.duplicates:
        warn("show", f"ring {ring}: {image.corrupt + image.duplicates} corrupt records skipped")
    if not boots:
        warn("show", f"ring {ring}: no boot {args.boot} among {len(image.boots)} boot(s) "
             "in the ring")
        return EXIT_DATA_MISSING
    for n, boot in enumerate(boots):
        if args.json:
            write_jsonl(entry_json(e, boot.id) for e in boot.entries)
            continue
        missing = f", {boot.missing} missing" if boot.missing else ""
        write_text(f"{'' if n == 0 else chr(10)}Boot {boot.id} (ring {ring}): "
                   f"{len(boot.records)} records{missing}\n", layout=True)
        write_text(render_entries(boot.entries), layout=True)
        write_text(boot_end_line(boot, boot.boot == current) + "\n", layout=True)
    sys.stdout.flush()
    return EXIT_OK


def _symbolized(report: Report, paths: list[Path]) -> Report:
    """*report* with source lines from *paths*, or from :data:`DEBUG_ROOT` when it
    holds the crashed kernel's vmlinux; notes on frames left alone go to stderr."""
    from memconsole.oops import symbolize

    release = report.kernel_release
    if not paths and release and (DEBUG_ROOT / "boot" / f"vmlinux-{release}").is_file():
        paths = [DEBUG_ROOT]
    if not paths:
        return report
    table = symbolize.find_symbols(paths, release)
    try:
        report, notes = symbolize.symbolize(report, table)
    finally:
        table.close()
    for note in notes:
        warn("show", escape(note))
    return report


def _frames(report: Report) -> list[Frame]:
    return [f for f in (report.rip, report.lr) if f is not None] + list(report.call_trace)


def _with_sources(text: bytes, report: Report) -> bytes:
    """The report's lines, each frame line followed by its source lines (indented
    as ``scripts/decode_stacktrace.sh`` prints inlined callers)."""
    frames = [f for f in _frames(report) if f.source and f.offset is not None]
    if not frames:
        return text
    out, i = [], 0
    for line in text.splitlines(keepends=True):
        out.append(line)
        for j in range(i, min(i + 4, len(frames))):
            f = frames[j]
            if f"{f.function}+0x{f.offset:x}".encode() in line:
                out += [f"          {src.label()}\n".encode() for src in f.source]
                i = j + 1
                break
    return b"".join(out)


def _culprit(report: Report) -> str:
    c = report.culprit
    if c is None:
        why = f" ({report.corrupted_reason})" if report.corrupted_reason else ""
        return f"none found{why}"
    label = c.label()
    for f in _frames(report):
        if f.function == c.function and f.module == c.module and f.source:
            return f"{label} ({f.source[-1].file}:{f.source[-1].line})" \
                if f.source[-1].line is not None else label
    return label


def _full_log(event: CrashEvent) -> None:
    """The whole log of the crashed boot, then its other records."""
    log = dmesg_text(event.log)
    write_text(log if log.endswith(b"\n") or not log else log + b"\n", layout=True)
    for rec in event.extra:
        if event.dumps:
            write_text(f"\n--- {escape(rec.name)} ---\n", layout=True)
            write_text(dmesg_text(rec.text), layout=True)
    if event.ring is not None and not event.ring_only:
        write_text(f"\n--- {escape(event.ring.name)} (memconsole ring, boot "
                   f"{escape(event.ring.ring_boot)}) ---\n", layout=True)
        write_text(event.ring.text, layout=True)


def run(args: argparse.Namespace) -> int:
    """Show; see :func:`register`."""
    if args.ring:
        return _show_ring(args)
    events = all_events(args, "show")
    if not events:
        warn("show", "no crash records in pstore or in the archive "
             f"({escape(str(args.archive))})")
        return EXIT_DATA_MISSING
    event = events[-1]
    # Every name and sentence passes through escape() as one line; the logs
    # keep their own tabs and newlines (layout=True) and nothing else.
    names = ", ".join([r.name for r in event.records]
                      + ([event.ring.name] if event.ring else []))
    head = [escape(event.sentence(current_boot_start_ns()))]
    report = event.report
    if report is not None:
        report = _symbolized(report, args.symbols)
        head += [f"Title: {escape(report.title or report.headline)}",
                 f"Culprit: {escape(_culprit(report))}",
                 f"Signature: {report.signature} ({escape(report.signature_basis)})"]
    head.append(f"Records: {escape(names)}")
    write_text("\n".join(head) + "\n\n", layout=True)
    log = dmesg_text(event.log)
    lines = log.count(b"\n") + (0 if log.endswith(b"\n") or not log else 1)
    if args.full:
        _full_log(event)
    elif report is not None and event.report_text():
        write_text(_with_sources(dmesg_text(event.report_text()), report), layout=True)
    else:
        tail = b"".join(log.splitlines(keepends=True)[-_TAIL_LINES:])
        if lines > _TAIL_LINES:
            write_text(f"[... the last {_TAIL_LINES} of {lines} lines ...]\n", layout=True)
        write_text(tail if tail.endswith(b"\n") or not tail else tail + b"\n", layout=True)
    if not args.full:
        others = len(event.extra) if event.dumps else 0
        rest = (f" and {others} other record{'s' if others != 1 else ''}" if others else "") + (
            f" and the {escape(event.ring.name)} console" if event.ring is not None
            and not event.ring_only else "")
        write_text(f"\nFull log ({lines} lines{rest}): memconsole show --full\n", layout=True)
    sys.stdout.flush()
    # Something was skipped (one warning line each): the answer may be incomplete.
    return EXIT_PARTIAL if events.partial else EXIT_OK
