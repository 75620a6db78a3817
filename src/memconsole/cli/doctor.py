"""``memconsole doctor``: check a live system, one line per check, each
fault with its fix."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from memconsole.cli._output import warn
from memconsole.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_OK
from memconsole.render import write_jsonl

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``doctor`` command."""
    p = sub.add_parser(
        "doctor", help="check that this machine will keep its last words, and say how to fix it",
        description="Check ramoops (loaded, its region, record size), the pstore backend, "
        "the pstore mount, records waiting, systemd-pstore, kernel.panic, the ring "
        "recorder, the survival canary's last result, the reservation on the kernel "
        "command line and in /proc/iomem, and a UEFI RAM wipe: one line each, ok, warn or "
        "fail, with the fix (docs/doctor.md).  Exit status 0 when no check fails "
        "(warnings allowed), 5 when one does.")
    p.add_argument("--json", action="store_true",
                   help="JSON Lines: one object per check with check, status (ok, warn, "
                   "fail), detail and fix")
    p.add_argument("--config", metavar="FILE", type=Path,
                   help="the configuration file (default $MEMCONSOLE_CONFIG or "
                   "/etc/memconsole.conf)")
    p.add_argument("--root", metavar="DIR", type=Path, default=Path("/"),
                   help="read /etc, /lib, /run and /var under DIR (a captured tree)")
    p.add_argument("--procfs", metavar="DIR", type=Path,
                   help="read /proc from DIR (default ROOT/proc, or /proc)")
    p.add_argument("--sysfs", metavar="DIR", type=Path,
                   help="read /sys from DIR (default ROOT/sys, or /sys)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check; see :func:`register`."""
    from memconsole import config
    from memconsole.setup.doctor import Paths, Status, run_checks

    cfg = config.load(args.config)
    for line in cfg.warnings:
        warn("doctor", line)
    real = args.root == Path("/")
    paths = Paths(args.root,
                  args.procfs or (Path("/proc") if real else args.root / "proc"),
                  args.sysfs or (Path("/sys") if real else args.root / "sys"))
    findings = run_checks(cfg, paths, config_name=str(args.config or config.default_path()))
    if args.json:
        write_jsonl(f.to_json() for f in findings)
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            fix = f" -- fix: {f.fix}" if f.fix else ""
            print(f"{f.status.value.upper():4}  {f.check:<{width}}  {f.detail}{fix}")
        counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
        print(f"doctor: {counts[Status.OK]} ok, {counts[Status.WARN]} warn, "
              f"{counts[Status.FAIL]} fail")
    return EXIT_CHECK_FAILED if any(f.status is Status.FAIL for f in findings) else EXIT_OK
