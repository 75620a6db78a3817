"""``memconsole report``: the crash report page."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any

from memconsole.cli._output import warn
from memconsole.cli._sources import add_archive_arg, add_pstore_arg, add_ring_arg, all_events
from memconsole.cli.exitcodes import EXIT_OK, EXIT_PARTIAL
from memconsole.errors import MemconsoleError, RegionError, RingFormatError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``report`` command."""
    p = sub.add_parser(
        "report", help="one self-contained HTML page of every crash",
        description="Write one self-contained HTML page (no script, no network fetch) with "
        "a timeline of the boots memconsole knows of and how each ended (clean, panic, "
        "oops, hang or reset, unknown), the crashes grouped by signature with counts, and "
        "each crash with its title, culprit, call trace (with source lines given "
        "--symbols) and the console lines before it.  The events are those of "
        "`memconsole list`; a ring (--ring, or archived by collect) adds its cleanly "
        "stopped boots.  Exit status 3 when something had to be skipped.")
    add_pstore_arg(p)
    add_archive_arg(p)
    add_ring_arg(p, "also show the ended boots of this ring")
    p.add_argument("--html", metavar="FILE", type=Path, required=True,
                   help="write the page to FILE (- for stdout)")
    p.add_argument("--symbols", action="append", type=Path, default=[], metavar="PATH",
                   help="vmlinux with debug info, System.map, a module tree or .ko, or a "
                   "debug root such as /usr/lib/debug: add source lines (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the page; see :func:`register`."""
    from memconsole._common import write_durably
    from memconsole.archive import Archive
    from memconsole.archive.ring import read_ring
    from memconsole.history import load_ring_logs, ring_log
    from memconsole.ops.report import page, symbolise
    from memconsole.render import text
    from memconsole.ring import current_boot_id

    events = all_events(args, "report")
    partial = events.partial
    rings, problems = load_ring_logs(Archive(args.archive))
    if args.ring:
        try:
            image = read_ring(args.ring)
        except (RegionError, RingFormatError) as exc:
            warn("report", f"ring {args.ring}: {exc}")
            partial = True
        else:
            rings += [log for b in image.ended_boots(current_boot_id())
                      if (log := ring_log(b)) is not None]
    del problems  # already reported by all_events (the same archive scan)
    shown, notes = symbolise(events, args.symbols)
    for note in notes:
        warn("report", text(note))
    html_text = page(shown, rings, time.time_ns(), socket.gethostname())
    if str(args.html) == "-":
        sys.stdout.buffer.write(html_text.encode())
        sys.stdout.flush()
    else:
        try:
            write_durably(args.html, html_text.encode(), mode=0o644)
        except OSError as exc:
            raise MemconsoleError(f"cannot write {args.html}: {exc.strerror}") from exc
        warn("report", f"{len(shown)} crash events written to {args.html}")
    return EXIT_PARTIAL if partial else EXIT_OK
