"""``memconsole record``: follow the kernel log into a persistent ring."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memconsole._common import size_arg
from memconsole.cli._sources import add_ring_arg, ring_spec
from memconsole.cli.exitcodes import EXIT_OK
from memconsole.ring import Ring
from memconsole.ring.recorder import Recorder, open_source, sd_notify
from memconsole.ring.regions import DEFAULT_RING_SIZE, open_region

__all__ = ["register", "run"]



def register(sub: Any) -> None:
    """Add the ``record`` command."""
    p = sub.add_parser(
        "record", help="follow the kernel log into a persistent ring (a daemon)",
        description="Append every kernel log record, from the first of this boot, to a "
        "ring in memory that survives a reset (docs/ring.md), until SIGTERM.  Runs in "
        "the foreground and tells systemd READY=1 (Type=notify); the ring is checked on "
        "attach and formatted when it holds garbage.  A restart within the same boot "
        "continues after the last record the ring holds.  Exit status 0 on SIGTERM or "
        "end of input, 1 when the ring or the source cannot be opened.")
    add_ring_arg(p, "where to record")
    p.add_argument("--ring-size", metavar="SIZE", type=size_arg,
                   help=f"size of a ring file that does not exist yet (default "
                   f"{DEFAULT_RING_SIZE >> 20}M); e.g. 4M, 0x100000")
    p.add_argument("--source", default="kmsg", metavar="kmsg|stdin|FILE",
                   help="what to record: the kernel log (/dev/kmsg, default), standard "
                   "input, or a file or FIFO, until its end")
    p.add_argument("--format", choices=("auto", "kmsg", "text"), default="auto",
                   help="for stdin and files: lines of text, or the /dev/kmsg format "
                   "(pri,seq,usec,flags;text); auto decides from the first line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record; see :func:`register`."""
    spec = ring_spec(args)
    region = open_region(spec, write=True, create_size=args.ring_size)
    try:
        for warning in region.warnings:
            print(f"memconsole record: {warning}", file=sys.stderr)
        ring = Ring.attach(region)
        if ring.reset_reason:
            print(f"memconsole record: {spec}: {ring.reset_reason}; formatted a new ring "
                  f"({region.size} bytes)", file=sys.stderr)
        elif ring.corrupt:
            print(f"memconsole record: {spec}: {ring.corrupt} corrupt records skipped",
                  file=sys.stderr)
        source = open_source(args.source, ring, args.format)
        try:
            def notify(state: str) -> None:
                sd_notify(state)
                if state.startswith("READY=1"):
                    print(f"memconsole record: recording {source.name} into {spec} "
                          f"(ring seq {ring.last_seq})", file=sys.stderr, flush=True)

            stats = Recorder(ring, source, notify).run()
        finally:
            source.close()
        ring.close()
    finally:
        region.close()
    lost = f", {stats.lost} lost by the source" if stats.lost else ""
    print(f"memconsole record: {stats.records} records{lost}; stopped ({stats.stop})",
          file=sys.stderr)
    return EXIT_OK
