"""``memconsole show``: the previous boot's last words."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from memconsole.archive.ring import boot_end_line, entry_json, read_ring, render_entries
from memconsole.cli._output import warn
from memconsole.cli._sources import add_archive_arg, add_pstore_arg, add_ring_arg, all_events
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_OK
from memconsole.errors import RingFormatError
from memconsole.history import current_boot_start_ns
from memconsole.render import dmesg_text, escape, write_jsonl, write_text
from memconsole.ring import RingBoot, RingImage, current_boot_id

__all__ = ["boot_arg", "register", "run"]

# A boot id (prefix): the hex digits and dashes of /proc/sys/kernel/random/boot_id.
_BOOT_ID_RE = re.compile(r"[0-9a-fA-F-]{4,36}")


def register(sub: Any) -> None:
    """Add the ``show`` command."""
    p = sub.add_parser(
        "show", help="print the last crash: one sentence, then its kernel log",
        description="Print the kernel log of the last crash memconsole knows of (pstore "
        "records not yet collected, else the newest boot in the archive), in order, "
        "opening with one line that says what happened.  With --ring: the console a "
        "previous boot left in memconsole's ring (docs/ring.md), in order, gaps marked, and "
        "where it ended.  Exit status 4 when there is nothing to show.")
    add_pstore_arg(p)
    add_archive_arg(p)
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
        image = read_ring(args.ring)
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
    write_text(f"{escape(event.sentence(current_boot_start_ns()))}\n"
               f"Records: {escape(names)}\n\n", layout=True)
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
    sys.stdout.flush()
    return EXIT_OK
