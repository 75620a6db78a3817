"""``memconsole canary``: check the previous boot's survival canary, record
the answer, write this boot's."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from memconsole.cli._output import warn
from memconsole.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_DATA_MISSING, EXIT_ERROR, EXIT_OK
from memconsole.render import write_jsonl

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``canary`` command."""
    p = sub.add_parser(
        "canary", help="prove that the reserved range survives a reset (run once per boot)",
        description="Read the survival canary the previous boot wrote into the last page "
        "of the reserved range, say whether it survived (present, CRC and fill intact, "
        "another boot's id), record the answer in the archive (canary.json), then write "
        "this boot's canary.  Run once per boot, early (memconsole-collect.service does); "
        "a second run in the same boot changes nothing.  The page format is in "
        "docs/doctor.md.  Exit status 0 when every canary survived (or there was none "
        "to check yet), 5 when one was lost or damaged, 4 when no canary is configured, "
        "1 when a page cannot be read or written.")
    p.add_argument("--check", action="store_true",
                   help="only check and print: record nothing, write nothing")
    p.add_argument("--write", action="store_true",
                   help="only write this boot's canary (no check: the previous canary's "
                   "verdict is not taken)")
    p.add_argument("--canary", metavar="SPEC", action="append",
                   help="the canary page: mem:ADDR:4096 or a file (repeat for several; "
                   "default: canary = in the configuration)")
    p.add_argument("--archive", metavar="DIR", type=Path,
                   help="where canary.json is kept (default: archive = in the "
                   "configuration, /var/lib/memconsole)")
    p.add_argument("--config", metavar="FILE", type=Path,
                   help="the configuration file (default $MEMCONSOLE_CONFIG or "
                   "/etc/memconsole.conf)")
    p.add_argument("--json", action="store_true",
                   help="JSON Lines: one object per canary (spec, outcome, detail, "
                   "previous, written, error)")
    p.set_defaults(func=run)


def _line(spec: str, outcome: str | None, detail: str) -> str:
    return f"{spec}: {outcome or 'written'}: {detail}" if detail else f"{spec}: {outcome}"


def run(args: argparse.Namespace) -> int:
    """Check, record, write; see :func:`register`."""
    from memconsole import config
    from memconsole.setup import canary

    cfg = config.load(args.config)
    for line in cfg.warnings:
        warn("canary", line)
    specs = args.canary or ([cfg.canary] if cfg.canary else [])
    if not specs:
        warn("canary", "no canary configured: give --canary SPEC or set canary = in "
             f"{args.config or config.default_path()} (memconsole setup reserves one)")
        return EXIT_DATA_MISSING
    archive = args.archive or cfg.archive
    boot_id = canary.read_boot_id()
    check = not args.write or args.check
    write_new = not args.check or args.write
    runs, warnings = canary.run(specs, archive, boot_id, check=check, write_new=write_new,
                                keep=not (args.check and not args.write))
    for line in warnings:
        warn("canary", line)
    if args.json:
        write_jsonl({"spec": r.spec, "outcome": r.outcome,
                     "detail": (r.recorded or {}).get("detail")
                     or (r.check.detail if r.check else ""),
                     "previous": r.check.previous if r.check else None,
                     "written": r.written, "error": r.error or None} for r in runs)
    for r in runs:
        if r.error:
            warn("canary", r.error)
            continue
        if args.json:
            continue
        if r.check is not None:
            detail = r.check.detail
            if r.recorded is not None and r.check.outcome is canary.Outcome.THIS_BOOT:
                detail = (f"checked earlier this boot: {r.recorded.get('outcome')}: "
                          f"{r.recorded.get('detail')}")
            print(_line(r.spec, r.outcome, detail))
        if r.written is not None:
            stamp = time.strftime("%H:%M:%S", time.gmtime(r.written["time_ns"] / 1e9))
            print(f"{r.spec}: wrote this boot's canary (boot {r.written['boot_id']}, "
                  f"{stamp} UTC, seq {r.written['seq']})")
    if any(r.error for r in runs):
        return EXIT_ERROR
    return EXIT_CHECK_FAILED if any(r.failed for r in runs) else EXIT_OK
