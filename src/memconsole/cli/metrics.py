"""``memconsole metrics``: Prometheus metrics for node_exporter's textfile collector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from memconsole.cli._output import warn
from memconsole.cli._sources import add_archive_arg, add_ring_arg
from memconsole.cli.exitcodes import EXIT_OK, EXIT_PARTIAL
from memconsole.errors import ConfigError, MemconsoleError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``metrics`` command."""
    p = sub.add_parser(
        "metrics", help="Prometheus metrics: crashes, canary, recorder",
        description="Print the machine's memconsole metrics in the Prometheus text format, "
        "or with --textfile write them as DIR/memconsole.prom for node_exporter's textfile "
        "collector, atomically (a temporary file in DIR renamed over it, fsynced): crashes "
        "by kind and by signature, the time of the last crash, the survival canary's "
        "verdicts (canary.json in the archive), and with a ring the running boot's records, "
        "gaps and how far the recorder is behind the kernel log.  Exit status 3 when "
        "something had to be skipped (one warning line each); the file is still written.")
    add_archive_arg(p)
    add_ring_arg(p, "also report on this ring's recording of the running boot")
    p.add_argument("--textfile", metavar="DIR", type=Path,
                   help="write DIR/memconsole.prom (node_exporter --collector.textfile."
                   "directory) instead of printing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Metrics; see :func:`register`."""
    from memconsole.ops.metrics import collect_metrics, exposition, write_textfile

    if args.textfile is not None and not args.textfile.is_dir():
        raise ConfigError(f"--textfile {args.textfile}: not a directory")
    fams, warnings = collect_metrics(args.archive, args.ring)
    for line in warnings:
        warn("metrics", line)
    text = exposition(fams)
    if args.textfile is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:
            write_textfile(args.textfile, text)
        except OSError as exc:
            raise MemconsoleError(f"cannot write {args.textfile}: {exc.strerror}") from exc
    return EXIT_PARTIAL if warnings else EXIT_OK
