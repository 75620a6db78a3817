"""``memconsole show``: the previous boot's last words."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memconsole.archive.ring import boot_end_line, jsonl, read_ring, render_entries
from memconsole.cli._sources import add_archive_arg, add_pstore_arg, add_ring_arg, all_events
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_OK
from memconsole.errors import ConfigError, RingFormatError
from memconsole.history import current_boot_start_ns
from memconsole.render import dmesg_text
from memconsole.ring import RingBoot, RingImage, current_boot_id

__all__ = ["register", "run"]



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
    p.add_argument("--boot", default="-1", metavar="-1|-N|0|all|ID",
                   help="with --ring: which boot: -1 the previous one (default), -2 the one "
                   "before, 0 the running one, all, or a boot id (prefix)")
    p.add_argument("--json", action="store_true",
                   help="with --ring: JSON Lines, one object per record (seq, boot, time, "
                   "uptime, type, level, facility, source_seq, text) or gap (gap, reason)")
    p.set_defaults(func=run)


def _select(image: RingImage, current: bytes, which: str) -> list[RingBoot]:
    ended = image.ended_boots(current)
    if which == "all":
        return list(image.boots)
    if which == "0":
        return [b for b in image.boots if b.boot == current]
    if which.startswith("-") and which[1:].isdigit():
        n = int(which[1:])
        return [ended[-n]] if 0 < n <= len(ended) else []
    if len(which) >= 4:
        return [b for b in image.boots if b.id.startswith(which.lower())][:1]
    raise ConfigError(f"bad --boot {which!r}: use -1, -N, 0, all or a boot id")


def _show_ring(args: argparse.Namespace) -> int:
    try:
        image = read_ring(args.ring)
    except RingFormatError as exc:
        print(f"memconsole show: ring {args.ring}: {exc}", file=sys.stderr)
        return EXIT_DATA_MISSING
    current = current_boot_id()
    boots = _select(image, current, args.boot)
    if image.corrupt or image.duplicates:
        print(f"memconsole show: ring {args.ring}: {image.corrupt + image.duplicates} corrupt "
              "records skipped", file=sys.stderr)
    if not boots:
        print(f"memconsole show: ring {args.ring}: no boot {args.boot} among "
              f"{len(image.boots)} boot(s) in the ring", file=sys.stderr)
        return EXIT_DATA_MISSING
    out = sys.stdout.buffer
    for n, boot in enumerate(boots):
        if args.json:
            out.write("".join(jsonl(boot)).encode())
            continue
        records = boot.records
        missing = f", {boot.missing} missing" if boot.missing else ""
        out.write(f"{'' if n == 0 else chr(10)}Boot {boot.id} (ring {args.ring}): "
                  f"{len(records)} records{missing}\n".encode())
        out.write(render_entries(boot.entries))
        out.write(boot_end_line(boot, boot.boot == current).encode() + b"\n")
    out.flush()
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Show; see :func:`register`."""
    if args.ring:
        return _show_ring(args)
    events = all_events(args, "show")
    if not events:
        print("memconsole show: no crash records in pstore or in the archive "
              f"({args.archive})", file=sys.stderr)
        return EXIT_DATA_MISSING
    event = events[-1]
    out = sys.stdout.buffer
    out.write(event.sentence(current_boot_start_ns()).encode() + b"\n")
    names = ", ".join([r.name for r in event.records]
                      + ([event.ring.name] if event.ring else []))
    out.write(f"Records: {names}\n\n".encode())
    log = dmesg_text(event.log)
    out.write(log if log.endswith(b"\n") or not log else log + b"\n")
    for rec in event.extra:
        if event.dumps:
            out.write(f"\n--- {rec.name} ---\n".encode() + dmesg_text(rec.text))
    if event.ring is not None and not event.ring_only:
        out.write(f"\n--- {event.ring.name} (memconsole ring, boot {event.ring.ring_boot}) "
                  "---\n".encode() + event.ring.text)
    out.flush()
    return EXIT_OK
