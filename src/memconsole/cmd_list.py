"""``memconsole list``: one line per crash event across boots."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memconsole._sources import add_archive_arg, add_pstore_arg, add_ring_arg, all_events
from memconsole.render import write_jsonl

__all__ = ["register", "run"]

EXIT_OK = 0


def register(sub: Any) -> None:
    """Add the ``list`` command."""
    p = sub.add_parser(
        "list", help="one line per crash event across boots",
        description="List every crash event in the archive and in pstore, oldest first. "
        "With --json: JSON Lines, one object per event with boot, time (UTC), kind, "
        "headline, panic_reason, comm, pid, uptime, tainted, dumps, records, sources and "
        "ring.  A boot that left a ring but no crash dump, and did not stop its recorder "
        "cleanly, is listed as a hang or reset (kind unknown).")
    add_pstore_arg(p)
    add_archive_arg(p)
    add_ring_arg(p, "also list the ended boots of this ring not archived yet")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List; see :func:`register`."""
    events = all_events(args, "list")
    if args.json:
        write_jsonl(e.to_json() for e in events)
        return EXIT_OK
    if not events:
        print("memconsole list: no crash events", file=sys.stderr)
        return EXIT_OK
    for e in events:
        when = str(e.to_json()["time"])[:19].replace("T", " ")
        sys.stdout.write(f"{when}  {e.boot}  {e.kind:<18} {e.headline}\n")
    return EXIT_OK
