"""Where the read commands find records: pstore directories and the archive.

Shared by ``collect``, ``show`` and ``list`` so the three agree on defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from memconsole.archive import DEFAULT_ARCHIVE_DIR, Archive, sha256
from memconsole.errors import ConfigError
from memconsole.events import CrashEvent, group_boots, group_events
from memconsole.pstore import (
    DEFAULT_PSTORE_DIR,
    SYSTEMD_PSTORE_DIR,
    PstoreRecord,
    ReadFailure,
    read_pstore_dir,
)

__all__ = ["PstoreSource", "add_archive_arg", "add_pstore_arg", "all_events", "pstore_sources",
           "read_sources", "warn"]


def warn(command: str, message: str) -> None:
    """One diagnostic line on stderr."""
    print(f"memconsole {command}: {message}", file=sys.stderr)


def add_pstore_arg(parser: argparse.ArgumentParser) -> None:
    """``--pstore DIR``."""
    parser.add_argument(
        "--pstore", metavar="DIR", type=Path,
        help=f"read records from DIR only (default: {DEFAULT_PSTORE_DIR} and "
        f"{SYSTEMD_PSTORE_DIR}, where systemd-pstore moves them)")


def add_archive_arg(parser: argparse.ArgumentParser) -> None:
    """``--archive DIR``."""
    parser.add_argument("--archive", metavar="DIR", type=Path, default=DEFAULT_ARCHIVE_DIR,
                        help=f"the memconsole archive (default {DEFAULT_ARCHIVE_DIR})")


@dataclass(frozen=True)
class PstoreSource:
    """A directory of records.

    Attributes:
        path: the directory.
        erasable: records are erased after archiving (the kernel's pstore);
            systemd-pstore's archive is only read.
    """

    path: Path
    erasable: bool


def pstore_sources(args: argparse.Namespace, command: str) -> list[PstoreSource]:
    """The pstore directories to read, after checking they exist.

    An explicit ``--pstore`` that is missing is an error; the default
    ``/sys/fs/pstore`` that is not mounted is a warning.
    """
    if args.pstore is not None:
        if not args.pstore.is_dir():
            what = "is not a directory" if args.pstore.exists() else "does not exist"
            raise ConfigError(f"pstore directory {args.pstore} {what}")
        # Never delete from systemd-pstore's archive, even when named explicitly.
        return [PstoreSource(args.pstore, args.pstore.resolve() != SYSTEMD_PSTORE_DIR)]
    sources = []
    if DEFAULT_PSTORE_DIR.is_dir() and os.path.ismount(DEFAULT_PSTORE_DIR):
        sources.append(PstoreSource(DEFAULT_PSTORE_DIR, True))
    else:
        warn(command, f"pstore is not mounted at {DEFAULT_PSTORE_DIR} "
             f"(mount -t pstore pstore {DEFAULT_PSTORE_DIR})")
    if SYSTEMD_PSTORE_DIR.is_dir():
        sources.append(PstoreSource(SYSTEMD_PSTORE_DIR, False))
    return sources


def read_sources(sources: list[PstoreSource]
                 ) -> tuple[list[tuple[PstoreRecord, PstoreSource]], list[ReadFailure]]:
    """Read every record of every source; duplicates (same bytes) are kept
    once, the first source winning."""
    seen: set[str] = set()
    out = []
    failures: list[ReadFailure] = []
    for src in sources:
        try:
            records, bad = read_pstore_dir(src.path)
        except OSError as exc:
            failures.append(ReadFailure(str(src.path), f"cannot list: {exc.strerror}"))
            continue
        failures += bad
        for rec in records:
            digest = sha256(rec.raw)
            if digest not in seen:
                seen.add(digest)
                out.append((rec, src))
    return out, failures


def all_events(args: argparse.Namespace, command: str) -> list[CrashEvent]:
    """Crash events from the archive and from records not yet archived,
    oldest first."""
    archive = Archive(args.archive)
    events: list[CrashEvent] = []
    archived = archive.known_hashes() if archive.exists() else {}
    for boot_id in archive.boots():
        events += group_events(boot_id, archive.load(boot_id))
    pending, failures = read_sources(pstore_sources(args, command))
    for failure in failures:
        warn(command, f"{failure.path}: {failure.reason}, skipping")
    fresh = [rec for rec, _ in pending if sha256(rec.raw) not in archived]
    for boot in group_boots(fresh):
        events += group_events(boot.id, boot.records)
    events.sort(key=lambda e: e.time_ns)
    return events
