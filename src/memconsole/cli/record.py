"""``memconsole record``: follow the kernel log into a persistent ring."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memconsole._common import size_arg
from memconsole.cli._output import warn
from memconsole.cli._sources import add_ring_arg, ring_spec
from memconsole.cli.exitcodes import EXIT_ERROR, EXIT_OK
from memconsole.errors import ConfigError, RegionError, RingFormatError
from memconsole.ring import Ring
from memconsole.ring.recorder import KmsgSource, Recorder, StreamSource, open_source, sd_notify
from memconsole.ring.regions import (
    DEFAULT_RING_SIZE,
    MAX_RING_SIZE,
    check_ring_size,
    open_region,
    parse_spec,
)

__all__ = ["register", "run"]


def ring_size_arg(text: str) -> int:
    """``--ring-size``: a size (:func:`~memconsole._common.size_arg`) that a
    ring can have; anything else is a usage error."""
    size = size_arg(text)
    try:
        check_ring_size(size)
    except RegionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return size


def register(sub: Any) -> None:
    """Add the ``record`` command."""
    p = sub.add_parser(
        "record", help="follow the kernel log into a persistent ring (a daemon)",
        description="Append every kernel log record, from the first of this boot, to a "
        "ring in memory that survives a reset (docs/ring.md), until SIGTERM.  Runs in "
        "the foreground and tells systemd READY=1 (Type=notify); the ring is checked on "
        "attach and formatted when it holds garbage.  A restart within the same boot "
        "continues after the last record the ring holds.  The source, the ring spec and "
        "the range are all checked before the ring is created or written.  Exit status 0 "
        "on SIGTERM or end of input, 1 when the ring or the source cannot be used or the "
        "source fails.")
    add_ring_arg(p, "where to record")
    p.add_argument("--ring-size", metavar="SIZE", type=ring_size_arg,
                   help=f"size of a ring file that does not exist yet (default "
                   f"{DEFAULT_RING_SIZE >> 20}M, at most {MAX_RING_SIZE >> 20}M), or of the "
                   "ring in the first bytes of a pmem device; e.g. 4M, 0x100000")
    p.add_argument("--source", default="kmsg", metavar="kmsg|stdin|FILE",
                   help="what to record: the kernel log (/dev/kmsg, default), standard "
                   "input, or a regular file or FIFO, until its end")
    p.add_argument("--format", choices=("auto", "kmsg", "text"), default="auto",
                   help="for stdin and files: lines of text, or the /dev/kmsg format "
                   "(pri,seq,usec,flags;text); auto decides from the first line")
    p.add_argument("--force", action="store_true",
                   help="write a mem:ADDR:SIZE range that no memmap= on the kernel command "
                   "line reserved (firmware-reserved memory may be ACPI, SMM or device "
                   "memory: writing it can crash the machine or corrupt firmware data; "
                   "docs/ring.md).  Never overrides the other refusals (System RAM, a "
                   "driver's claim, ramoops)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record; see :func:`register`.  Everything that can fail before
    recording is checked first, in this order: the ring spec, the source
    (opened), the region (checked, then created or opened); the ring is
    attached (and formatted, if it must be) only then."""
    spec = ring_spec(args)
    parsed = parse_spec(spec)
    if parsed.size is not None and args.ring_size is not None and args.ring_size != parsed.size:
        raise ConfigError(f"--ring-size {args.ring_size} differs from the {parsed.size} bytes "
                          f"of {spec}: a mem: range has the size its spec gives")
    source = open_source(args.source, args.format)
    try:
        return _record(args, spec, source)
    finally:
        source.close()


def _record(args: argparse.Namespace, spec: str, source: KmsgSource | StreamSource) -> int:
    try:
        region = open_region(spec, write=True, create_size=args.ring_size, force=args.force)
    except OSError as exc:
        # Not expected (open_region turns what it can into RegionError): one line anyway.
        raise RegionError(f"{spec}: {exc.strerror or exc}") from exc
    try:
        for warning in region.warnings:
            warn("record", warning)
        try:
            ring = Ring.attach(region)
        except RingFormatError as exc:
            warn("record", f"{spec}: {exc}; not formatting it: only memory, new files and "
                 "files that hold nothing or an older ring are formatted")
            return EXIT_ERROR
        if ring.reset_reason:
            warn("record", f"{spec}: {ring.reset_reason}; formatted a new ring "
                 f"({region.size} bytes)")
        elif ring.corrupt:
            warn("record", f"{spec}: {ring.corrupt} corrupt records skipped")
        source.resume(ring.last_source_seq())

        def notify(state: str) -> None:
            sd_notify(state)
            if state.startswith("READY=1"):
                print(f"memconsole record: recording {source.name} into {spec} "
                      f"(ring seq {ring.last_seq})", file=sys.stderr, flush=True)

        stats = Recorder(ring, source, notify).run()
        ring.close()
    finally:
        region.close()
    lost = f", {stats.lost} lost by the source" if stats.lost else ""
    warn("record", f"{stats.records} records{lost}; stopped ({stats.stop})")
    return EXIT_ERROR if stats.error else EXIT_OK
