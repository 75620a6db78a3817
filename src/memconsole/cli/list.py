"""``memconsole list``: one line per crash event across boots."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memconsole.cli._output import warn
from memconsole.cli._sources import add_archive_arg, add_pstore_arg, add_ring_arg, all_events
from memconsole.cli.exitcodes import EXIT_OK
from memconsole.history import CrashEvent, current_boot_start_ns
from memconsole.render import escape, write_jsonl, write_text

__all__ = ["register", "run"]



def register(sub: Any) -> None:
    """Add the ``list`` command."""
    p = sub.add_parser(
        "list", help="one line per crash event across boots",
        description="List every crash event in the archive and in pstore, oldest first; "
        "text output opens with a sentence about the newest crash.  With --json: JSON "
        "Lines, one object per event with boot, time (UTC), kind, headline, panic_reason, "
        "comm, pid, uptime, tainted, dumps, records, sources, ring, signature, "
        "signature_basis, occurrence (1 for the first event with its signature, 2 for the "
        "next...) and repeats (events with this signature in all).  A boot that left a "
        "ring but no crash dump, and did not stop its recorder cleanly, is listed as a "
        "hang or reset (kind unknown).")
    add_pstore_arg(p)
    add_archive_arg(p)
    add_ring_arg(p, "also list the ended boots of this ring not archived yet")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.add_argument("--by-signature", action="store_true",
                   help="one line (or object) per distinct bug: its signature, how many "
                   "times it happened, when last, in which boots")
    p.set_defaults(func=run)


def _groups(events: list[CrashEvent]) -> dict[str, list[CrashEvent]]:
    """Events by signature (the same bug), in order of first appearance.
    Events without a report are grouped by kind and headline."""
    groups: dict[str, list[CrashEvent]] = {}
    for e in events:
        groups.setdefault(_key(e), []).append(e)
    return groups


def _key(e: CrashEvent) -> str:
    return e.report.signature if e.report is not None else f"{e.kind}|{e.headline}"


def _group_json(key: str, members: list[CrashEvent]) -> dict[str, object]:
    last = members[-1]
    return {
        "signature": last.report.signature if last.report else None,
        "signature_basis": last.report.signature_basis if last.report else None,
        "count": len(members),
        "kind": last.kind,
        "headline": last.headline,
        "first": members[0].to_json()["time"],
        "last": last.to_json()["time"],
        "boots": sorted({e.boot for e in members}),
    }


def run(args: argparse.Namespace) -> int:
    """List; see :func:`register`."""
    events = all_events(args, "list")
    groups = _groups(events)
    if args.json:
        if args.by_signature:
            write_jsonl(_group_json(k, m) for k, m in groups.items())
        else:
            objects = []
            for e in events:
                members = groups[_key(e)]
                obj = e.to_json()
                obj["occurrence"] = members.index(e) + 1
                obj["repeats"] = len(members)
                objects.append(obj)
            write_jsonl(objects)
        return EXIT_OK
    if not events:
        warn("list", "no crash events")
        return EXIT_OK
    # Boot ids, headlines and the sentence pass through escape() as one line each.
    boots = len({e.boot for e in events})
    lines = [escape(events[-1].sentence(current_boot_start_ns())),
             f"{len(events)} crash event{'s' * (len(events) != 1)} in {boots} "
             f"boot{'s' * (boots != 1)}, {len(groups)} distinct "
             f"bug{'s' * (len(groups) != 1)}:"]
    if args.by_signature:
        for key, members in groups.items():
            g = _group_json(key, members)
            sig = escape(str(g["signature"] or "-"))[:16]
            lines.append(f"{len(members):>5}x  {sig:<16}  "
                         f"{str(g['last'])[:19].replace('T', ' ')}  "
                         f"{escape(str(g['kind'])):<18} {escape(str(g['headline']))}")
    else:
        totals = {k: len(m) for k, m in groups.items()}
        for e in events:
            when = str(e.to_json()["time"])[:19].replace("T", " ")
            repeat = f"  (seen {totals[_key(e)]}x)" if totals[_key(e)] > 1 else ""
            lines.append(f"{when}  {escape(e.boot)}  {escape(e.kind):<18} "
                         f"{escape(e.headline)}{repeat}")
    write_text("".join(line + "\n" for line in lines), layout=True)
    sys.stdout.flush()
    return EXIT_OK
