"""``memconsole collect``: archive every pstore record durably, then erase it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from memconsole._sources import add_archive_arg, add_pstore_arg, pstore_sources, read_sources, warn
from memconsole.archive import Archive, sha256
from memconsole.errors import ArchiveError
from memconsole.events import group_boots

__all__ = ["register", "run"]

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_DATA_MISSING = 0, 1, 3, 4


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
    p.set_defaults(func=run)


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
    for boot in group_boots(rec for rec, _ in pending):
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
    if args.json:
        for item in results:
            sys.stdout.write(json.dumps(item) + "\n")
    if not pending and not failures:
        where = ", ".join(str(s.path) for s in sources) or "no pstore directory"
        print(f"memconsole collect: no pstore records to collect ({where})", file=sys.stderr)
        return EXIT_DATA_MISSING
    else:
        print(f"memconsole collect: {archived} archived, {duplicates} already archived, "
              f"{len(results) - archived - duplicates} failed, into {archive.root}",
              file=sys.stderr)
    if status != EXIT_OK and archived + duplicates == 0:
        return EXIT_ERROR
    return status
