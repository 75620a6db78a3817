"""``memconsole show``: the previous boot's last words."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memconsole._sources import add_archive_arg, add_pstore_arg, all_events
from memconsole.render import dmesg_text

__all__ = ["register", "run"]

EXIT_OK, EXIT_DATA_MISSING = 0, 4


def register(sub: Any) -> None:
    """Add the ``show`` command."""
    p = sub.add_parser(
        "show", help="print the last crash: one sentence, then its kernel log",
        description="Print the kernel log of the last crash memconsole knows of (pstore "
        "records not yet collected, else the newest boot in the archive), in order, "
        "opening with one line that says what happened.  Exit status 4 when there is "
        "nothing to show.")
    add_pstore_arg(p)
    add_archive_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Show; see :func:`register`."""
    events = all_events(args, "show")
    if not events:
        print("memconsole show: no crash records in pstore or in the archive "
              f"({args.archive})", file=sys.stderr)
        return EXIT_DATA_MISSING
    event = events[-1]
    out = sys.stdout.buffer
    out.write(event.sentence().encode() + b"\n")
    names = ", ".join(r.name for r in event.records)
    out.write(f"Records: {names}\n\n".encode())
    log = dmesg_text(event.log)
    out.write(log if log.endswith(b"\n") or not log else log + b"\n")
    for rec in event.extra:
        if event.dumps:
            out.write(f"\n--- {rec.name} ---\n".encode() + dmesg_text(rec.text))
    out.flush()
    return EXIT_OK
