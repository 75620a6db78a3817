"""Where the read commands find records: pstore directories and the archive.

Shared by ``collect``, ``show`` and ``list`` so the three agree on defaults.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from memconsole.archive import DEFAULT_ARCHIVE_DIR, Archive, sha256
from memconsole.archive.ring import RING_NAME, load_ring_logs, read_ring, ring_log
from memconsole.cli._output import warn
from memconsole.errors import ConfigError, RegionError, RingFormatError
from memconsole.history import CrashEvent, RingLog, attach_rings, group_boots, group_events
from memconsole.pstore import (
    DEFAULT_PSTORE_DIR,
    SYSTEMD_PSTORE_DIR,
    PstoreRecord,
    ReadFailure,
    read_pstore_dir,
)
from memconsole.ring import current_boot_id

__all__ = ["RING_ENV", "PstoreSource", "add_archive_arg", "add_pstore_arg", "add_ring_arg",
           "all_events", "pstore_sources", "read_sources", "ring_logs", "ring_spec", "warn"]

#: Environment variable that gives ``--ring`` its default for ``record``,
#: ``collect`` and ``list`` (systemd units read it from /etc/default/memconsole).
RING_ENV = "MEMCONSOLE_RING"


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


def add_ring_arg(parser: argparse.ArgumentParser, what: str, env_default: bool = True) -> None:
    """``--ring SPEC``, by default from ``$MEMCONSOLE_RING``."""
    default = os.environ.get(RING_ENV) or None if env_default else None
    parser.add_argument(
        "--ring", metavar="SPEC", default=default,
        help=f"{what}: a ring file, a pmem device (/dev/pmem0), or mem:ADDR:SIZE for a "
        "memmap-reserved physical range through /dev/mem"
        + (f" (default ${RING_ENV})" if env_default else ""))


def ring_spec(args: argparse.Namespace) -> str:
    """The ``--ring`` value, or a :class:`ConfigError` saying how to give one."""
    if not args.ring:
        raise ConfigError(f"no ring: give --ring SPEC or set ${RING_ENV}")
    return str(args.ring)


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
    return attach_rings(events, ring_logs(args, command, archive))


def ring_logs(args: argparse.Namespace, command: str, archive: Archive) -> list[RingLog]:
    """Ring boots that ended: the archived ones, and those of ``--ring``
    (if given) not archived yet, the running boot left out.  A ring that
    cannot be read is a warning: its boots are left out."""
    logs = load_ring_logs(archive) if archive.exists() else []
    spec = getattr(args, "ring", None)
    if not spec:
        return logs
    try:
        image = read_ring(spec)
    except (RegionError, RingFormatError) as exc:
        warn(command, f"ring {spec}: {exc}; its boots are left out")
        return logs
    known = {log.ring_boot for log in logs}
    for boot in image.ended_boots(current_boot_id()):
        log = ring_log(boot, RING_NAME) if boot.id not in known else None
        if log is not None:
            logs.append(log)
    return logs
