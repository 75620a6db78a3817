"""``memconsole collect``: archive every pstore record durably, then erase it."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

from memconsole.archive import Archive, sha256
from memconsole.archive.ring import archived_rings, read_ring, store_ring_boot
from memconsole.cli._sources import (
    add_archive_arg,
    add_pstore_arg,
    add_ring_arg,
    pstore_sources,
    read_sources,
    warn,
)
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from memconsole.errors import ArchiveError, RegionError, RingFormatError
from memconsole.history import RING_MATCH_WINDOW_NS, Boot, group_boots
from memconsole.ops.journal import add_journal_arg, after_collect
from memconsole.ring import RingBoot, current_boot_id

__all__ = ["register", "run"]



def register(sub: Any) -> None:
    """Add the ``collect`` command."""
    p = sub.add_parser(
        "collect", help="archive pstore records per boot, then erase them",
        description="Copy every pstore record into a per-boot directory of the archive "
        "(temp file, fsync, rename, fsync directory) and only then erase it from pstore. "
        "Running it twice never duplicates a record.  Exit status 0: everything archived"
        "; 4: there was nothing to collect; 3: some records could not be read, archived or "
        "erased (each is named on stderr); 1: nothing could be done.")
    add_pstore_arg(p)
    add_archive_arg(p)
    p.add_argument("--keep", action="store_true",
                   help="do not erase records from pstore after archiving them")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per record (JSON Lines) on stdout")
    add_ring_arg(p, "also archive the ended boots this ring holds that did not shut down "
                 "cleanly, or that left pstore records (each once), into the archive boot "
                 "directory of the same boot")
    add_journal_arg(p)
    p.set_defaults(func=run)


def _dump_times(archive: Archive, fresh: list[Boot]) -> dict[str, list[int]]:
    """Archive boot id -> times of its dmesg dumps (archived and fresh)."""
    times: dict[str, list[int]] = {}
    for boot_id in archive.boots() if archive.exists() else []:
        times[boot_id] = [r.mtime_ns for r in archive.load(boot_id) if r.kind.type == "dmesg"]
    for boot in fresh:
        times.setdefault(boot.id, []).extend(
            r.mtime_ns for r in boot.records if r.kind.type == "dmesg")
    return times


def _boot_dir_for(ring_boot: RingBoot, next_first: int | None,
                  times: dict[str, list[int]]) -> str:
    """The archive boot directory of the pstore boot whose dump falls within
    or right after *ring_boot*'s records, else one named by its last record."""
    first, last = ring_boot.first_time_ns or 0, ring_boot.last_time_ns or 0
    upper = last + RING_MATCH_WINDOW_NS
    if next_first is not None:
        upper = min(upper, next_first - 1)
    for boot_id, dumps in sorted(times.items()):
        if any(first <= t <= upper for t in dumps):
            return boot_id
    name = datetime.fromtimestamp(last // 10**9, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # A directory of that name with other dumps is another boot: do not mix.
    return name if not times.get(name) else f"{name}-ring"


def _collect_ring(args: argparse.Namespace, archive: Archive, fresh: list[Boot]
                  ) -> tuple[list[dict[str, object]], int, int, int]:
    """Archive the ring's ended boots; (results, archived, duplicates, failed)."""
    try:
        image = read_ring(args.ring)
    except RingFormatError as exc:
        warn("collect", f"ring {args.ring}: {exc}; nothing to collect from it")
        return [], 0, 0, 0
    except RegionError as exc:
        warn("collect", f"ring {args.ring}: {exc}")
        return [{"path": args.ring, "status": "unreadable", "error": str(exc)}], 0, 0, 1
    if image.corrupt or image.duplicates:
        warn("collect", f"ring {args.ring}: {image.corrupt + image.duplicates} corrupt "
             "records skipped")
    current = current_boot_id()
    done = {r.ring_boot: b for b, r in archived_rings(archive)} if archive.exists() else {}
    times = _dump_times(archive, fresh)
    results: list[dict[str, object]] = []
    archived = duplicates = failed = 0
    boots = list(image.boots)
    for n, rb in enumerate(boots):
        if rb.boot == current or rb.first_time_ns is None:
            continue
        if rb.id in done:
            duplicates += 1
            results.append({"path": args.ring, "status": "duplicate", "boot": done[rb.id],
                            "ring_boot": rb.id})
            continue
        nxt = next((b.first_time_ns for b in boots[n + 1:] if b.first_time_ns), None)
        boot_dir = _boot_dir_for(rb, nxt, times)
        if rb.stopped and not times.get(boot_dir):
            # A boot that shut down cleanly and left no dump: its console is
            # in the journal; show --ring reads it while the ring keeps it.
            continue
        try:
            entry = store_ring_boot(archive, boot_dir, rb, args.ring)
        except ArchiveError as exc:
            warn("collect", str(exc))
            results.append({"path": args.ring, "status": "failed", "error": str(exc),
                            "ring_boot": rb.id})
            failed += 1
            continue
        archived += 1
        results.append({"path": args.ring, "status": "archived", "boot": boot_dir,
                        "ring_boot": rb.id, "records": entry.records,
                        "archived_as": str(archive.boots_dir / boot_dir / entry.name),
                        "erased": False, "problem": None})
    return results, archived, duplicates, failed


def run(args: argparse.Namespace) -> int:
    """Collect; see :func:`register` for the contract."""
    archive = Archive(args.archive)
    sources = pstore_sources(args, "collect")
    pending, failures = read_sources(sources)
    status = EXIT_PARTIAL if failures else EXIT_OK
    results: list[dict[str, object]] = []
    for failure in failures:
        warn("collect", f"{failure.path}: {failure.reason}, skipping (not erased)")
        results.append({"path": failure.path, "status": "unreadable", "error": failure.reason})
    known = archive.known_hashes() if archive.exists() else {}
    source_of = {id(rec): src for rec, src in pending}
    archived = duplicates = 0
    fresh = group_boots(rec for rec, _ in pending)
    for boot in fresh:
        for rec in boot.records:
            src = source_of[id(rec)]
            entry = known.get(sha256(rec.raw))
            state = "duplicate"
            if entry is None:
                try:
                    entry = archive.store(boot.id, rec)
                except ArchiveError as exc:
                    warn("collect", f"{exc} (not erased)")
                    results.append({"path": rec.source, "status": "failed", "error": str(exc)})
                    status = EXIT_PARTIAL
                    continue
                known[entry.sha256] = entry
                state = "archived"
                archived += 1
            else:
                duplicates += 1
            if rec.problem:
                warn("collect", f"{rec.source}: archived as is, but {rec.problem}")
            erased = False
            if src.erasable and not args.keep:
                try:
                    # The copy is durable (store() returned): now the kernel may free it.
                    (src.path / rec.name).unlink()
                    erased = True
                except OSError as exc:
                    warn("collect", f"{rec.source}: archived but not erased: {exc.strerror}")
                    status = EXIT_PARTIAL
            results.append({
                "path": rec.source, "status": state, "boot": entry.boot,
                "archived_as": str(archive.boots_dir / entry.boot / entry.name),
                "erased": erased, "problem": rec.problem})
    ring_failed = 0
    if args.ring:
        ring_results, ring_archived, ring_dups, ring_failed = _collect_ring(args, archive, fresh)
        results += ring_results
        archived += ring_archived
        duplicates += ring_dups
        if ring_failed:
            status = EXIT_PARTIAL
    after_collect(args, lambda message: warn("collect", message))
    if args.json:
        for item in results:
            sys.stdout.write(json.dumps(item) + "\n")
    if not results:
        where = ", ".join([str(s.path) for s in sources] + ([args.ring] if args.ring else [])
                          ) or "no pstore directory"
        what = "no pstore records and no ring boots" if args.ring else "no pstore records"
        print(f"memconsole collect: {what} to collect ({where})", file=sys.stderr)
        return EXIT_DATA_MISSING
    else:
        print(f"memconsole collect: {archived} archived, {duplicates} already archived, "
              f"{len(results) - archived - duplicates} failed, into {archive.root}",
              file=sys.stderr)
    if status != EXIT_OK and archived + duplicates == 0:
        return EXIT_ERROR
    return status
