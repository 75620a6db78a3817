"""The durable per-boot archive ``memconsole collect`` writes.

Layout (root default ``/var/lib/memconsole``, mode 0700)::

    <root>/boots/<boot-id>/<record file>     the record's bytes, exactly, mode 0600,
                                             mtime = the record's own time
    <root>/boots/<boot-id>/records.json      one object per record (see docs/archive.md)

Every file is written as systemd-pstore and coredumps are: into a temporary
file in the same directory, fsync, rename over the final name, fsync the
directory.  A record is erased from pstore only after that returned.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from memconsole._common import write_durably
from memconsole.errors import ArchiveError
from memconsole.pstore import PstoreRecord, decode_record

__all__ = ["DEFAULT_ARCHIVE_DIR", "Archive", "ArchivedRecord", "read_index", "sha256"]

#: Where ``collect`` archives by default.
DEFAULT_ARCHIVE_DIR = Path("/var/lib/memconsole")

T = TypeVar("T")
_BOOT_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
_META = "records.json"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of *data* (the archive's identity of a record)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ArchivedRecord:
    """One record in the archive.

    Attributes:
        boot: the boot directory it is in.
        name: file name in the boot directory (the kernel's name, or the
            kernel's name with ``.N`` appended on a clash).
        original: the name it had in pstore.
        sha256: hash of its bytes.
        mtime_ns: the record's own time (its pstore mtime).
        size: byte count.
        source: the directory it was collected from.
        collected_ns: when it was archived.
    """

    boot: str
    name: str
    original: str
    sha256: str
    mtime_ns: int
    size: int
    source: str
    collected_ns: int


def read_index(path: Path, entry: Callable[..., T]) -> list[T]:
    """Read a JSON-list index file into ``entry(**item)`` objects; a missing
    file is an empty index, anything unreadable an :class:`ArchiveError`."""
    try:
        items = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{path}: unreadable index ({exc})") from exc
    if not isinstance(items, list):
        raise ArchiveError(f"{path}: not a JSON list")
    out = []
    for item in items:
        try:
            out.append(entry(**item))
        except TypeError as exc:
            raise ArchiveError(f"{path}: bad entry {item!r}") from exc
    return out


class Archive:
    """A memconsole archive rooted at *root*."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.boots_dir = root / "boots"

    # -- reading -----------------------------------------------------------

    def exists(self) -> bool:
        """Whether anything was ever archived here."""
        return self.boots_dir.is_dir()

    def boots(self) -> list[str]:
        """Boot ids in the archive, oldest first."""
        if not self.boots_dir.is_dir():
            return []
        try:
            names = os.listdir(self.boots_dir)
        except OSError as exc:
            raise ArchiveError(f"cannot list {self.boots_dir}: {exc.strerror}") from exc
        return sorted(n for n in names if _BOOT_RE.match(n) and (self.boots_dir / n).is_dir())

    def records(self, boot: str) -> list[ArchivedRecord]:
        """The records of *boot*, from its ``records.json``."""
        return read_index(self.boots_dir / boot / _META, ArchivedRecord)

    def load(self, boot: str) -> list[PstoreRecord]:
        """The records of *boot*, decoded like pstore files."""
        out = []
        for rec in self.records(boot):
            path = self.boots_dir / boot / rec.name
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise ArchiveError(f"{path}: {exc.strerror}") from exc
            out.append(decode_record(rec.original, raw, rec.mtime_ns, str(path)))
        return out

    def known_hashes(self) -> dict[str, ArchivedRecord]:
        """Every archived record by its hash."""
        return {r.sha256: r for boot in self.boots() for r in self.records(boot)}

    # -- writing -----------------------------------------------------------

    def prepare(self) -> None:
        """Create the archive root and ``boots/`` (mode 0700) if needed, and
        tighten a root that others could read."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.boots_dir.mkdir(mode=0o700, exist_ok=True)
            if self.root.stat().st_mode & 0o077 and self.root.stat().st_uid == os.getuid():
                os.chmod(self.root, 0o700)
        except OSError as exc:
            raise ArchiveError(f"cannot create archive {self.root}: {exc.strerror}") from exc

    def store(self, boot: str, record: PstoreRecord) -> ArchivedRecord:
        """Archive *record* under *boot* durably and return its entry.

        Raises :class:`ArchiveError` (e.g. disk full); then nothing of the
        record is left half-written and the index is unchanged.
        """
        if not _BOOT_RE.match(boot):
            raise ArchiveError(f"invalid boot id {boot!r}")
        self.prepare()
        bdir = self.boots_dir / boot
        digest = sha256(record.raw)
        try:
            bdir.mkdir(mode=0o700, exist_ok=True)
            entries = self.records(boot)
            for e in entries:
                if e.sha256 == digest:
                    return e
            taken = {e.name for e in entries}
            name = record.name
            n = 1
            while name in taken or name == _META:
                name = f"{record.name}.{n}"
                n += 1
            write_durably(bdir / name, record.raw, record.mtime_ns)
            entry = ArchivedRecord(boot, name, record.name, digest, record.mtime_ns,
                                   len(record.raw), record.source.rsplit("/", 1)[0],
                                   time.time_ns())
            entries.append(entry)
            try:
                write_durably(bdir / _META, json.dumps(
                    [e.__dict__ for e in entries], indent=1).encode() + b"\n")
            except BaseException:
                # Without an index entry the copy is invisible: remove it so a
                # retry starts clean, and report the failure.
                (bdir / name).unlink(missing_ok=True)
                raise
        except OSError as exc:
            what = "archive disk is full" if exc.errno == errno.ENOSPC else exc.strerror
            raise ArchiveError(f"cannot archive {record.name} in {bdir}: {what}") from exc
        return entry
