"""The durable per-boot archive ``memconsole collect`` writes.

Layout (root default ``/var/lib/memconsole``, mode 0700; docs/archive.md)::

    <root>/.lock                             flock()ed by a collect for its whole run
    <root>/boots/<boot-id>/<record file>     the record's bytes, exactly, mode 0600,
                                             mtime = the record's own time
    <root>/boots/<boot-id>/records.json      one object per record

Every file is written as systemd-pstore and coredumps are: into a temporary
file in the same directory, fsync, rename over the final name, fsync the
directory (:func:`memconsole._common.write_durably`).  Every directory
created is fsynced into its parent before anything is erased from pstore.
The archive never follows a symbolic link it finds where one of its own
directories or files should be (root, ``boots``, a boot directory,
``records.json``, a record file): it refuses with one line.

``collect`` itself (archive, then erase) is :func:`memconsole.archive.collect.collect`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from memconsole._common import fsync_dir, is_temp_name, write_durably
from memconsole.errors import ArchiveBusyError, ArchiveError
from memconsole.pstore import MAX_RECORD_SIZE, PstoreRecord, decode_record, sha256

__all__ = [
    "DEFAULT_ARCHIVE_DIR",
    "INDEX_NAME",
    "LOCK_NAME",
    "Archive",
    "ArchiveLock",
    "ArchiveProblem",
    "ArchivedRecord",
    "read_index",
    "read_nofollow",
    "reason",
    "recent_boots",
    "sha256",
]

#: Where ``collect`` archives by default.
DEFAULT_ARCHIVE_DIR = Path("/var/lib/memconsole")
#: The index of a boot directory.
INDEX_NAME = "records.json"
#: The lock file in the archive root (kept: removing it would race a waiter).
LOCK_NAME = ".lock"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")
_BOOT_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
# Names in a boot directory that are not pstore records (archive/ring.py
# writes the console-ring files); a record is never stored under them.
_RESERVED = frozenset({INDEX_NAME, "ring.json", LOCK_NAME})
_RING_PREFIX = "console-ring"
#: An index larger than this is refused unread (a boot's index is a few KiB).
_MAX_INDEX = 16 << 20


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


@dataclass(frozen=True)
class ArchiveProblem:
    """A part of the archive that could not be read and was skipped.

    Attributes:
        path: the boot directory or file.
        reason: one line saying why, with the cause.
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _symlink_refusal(path: Path) -> ArchiveError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return ArchiveError(f"{path}: a symbolic link{target}: the archive never follows one; "
                        "remove it, or give the real directory")


def reason(exc: Exception, path: Path) -> str:
    """*exc*'s message without the leading ``PATH: ``."""
    return str(exc).removeprefix(f"{path}: ")


def read_nofollow(path: Path, cap: int) -> bytes:
    """The bytes of the regular file *path*, never through a symlink
    (``O_NOFOLLOW``), never blocking on a FIFO, at most *cap* bytes.
    Raises ``OSError`` (``FileNotFoundError`` when missing) or
    :class:`ArchiveError` for a symlink, a non-regular or too large file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_refusal(path) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError(f"{path}: not a regular file")
        if st.st_size > cap:
            raise ArchiveError(f"{path}: {st.st_size} bytes, more than the {cap} expected")
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > cap:
            raise ArchiveError(f"{path}: more than {cap} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_index(path: Path, entry: Callable[..., T]) -> list[T]:
    """Read a JSON-list index file into ``entry(**item)`` objects; a missing
    file is an empty index, anything unreadable (a symlink included) an
    :class:`ArchiveError`."""
    try:
        items = json.loads(read_nofollow(path, _MAX_INDEX))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ArchiveError(f"{path}: unreadable index ({_why(exc)})") from exc
    except ValueError as exc:
        raise ArchiveError(f"{path}: unreadable index ({exc})") from exc
    if not isinstance(items, list):
        raise ArchiveError(f"{path}: unreadable index (not a JSON list)")
    out = []
    for item in items:
        try:
            out.append(entry(**item))
        except TypeError as exc:
            raise ArchiveError(f"{path}: unreadable index (bad entry {item!r:.80})") from exc
    return out


def recent_boots(index: dict[str, list[ArchivedRecord]], since_ns: int | None) -> list[str]:
    """The boots of *index* with a record collected at or after *since_ns*
    (the running boot's start: the pstore mount a rerun of collect sees
    again); all boots when *since_ns* is None."""
    return [b for b, recs in index.items()
            if since_ns is None or any(r.collected_ns >= since_ns for r in recs)]


def _ensure_dir(path: Path) -> bool:
    """Create the directory *path* (mode 0700) unless it exists; refuse a
    symlink or a non-directory there.  Returns whether it was created."""
    created = False
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise _symlink_refusal(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"{path}: exists and is not a directory")
    return created


class ArchiveLock:
    """The held lock of an archive (see :meth:`Archive.lock`); released by
    :meth:`release`, on leaving a ``with`` block, or by the kernel when the
    process dies."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock and close."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ArchiveLock:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class Archive:
    """A memconsole archive rooted at *root*."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.boots_dir = root / "boots"
        self._synced: set[str] = set()

    # -- reading -----------------------------------------------------------

    def _check_boots_dir(self) -> None:
        st = os.lstat(self.boots_dir)
        if stat.S_ISLNK(st.st_mode):
            raise _symlink_refusal(self.boots_dir)

    def boots(self) -> list[str]:
        """Boot ids in the archive, oldest first: the real directories of
        ``boots/`` (a symlink there is left out; :meth:`scan` reports it)."""
        try:
            self._check_boots_dir()
            names = os.listdir(self.boots_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ArchiveError(f"cannot list {self.boots_dir}: {_why(exc)}") from exc
        out = []
        for n in names:
            if not _BOOT_RE.match(n):
                continue
            try:
                if stat.S_ISDIR(os.lstat(self.boots_dir / n).st_mode):
                    out.append(n)
            except OSError:
                continue
        return sorted(out)

    def records(self, boot: str) -> list[ArchivedRecord]:
        """The records of *boot*, from its ``records.json``; raises
        :class:`ArchiveError` when the index cannot be read."""
        return read_index(self.boots_dir / boot / INDEX_NAME, ArchivedRecord)

    def scan(self) -> tuple[dict[str, list[ArchivedRecord]], list[ArchiveProblem]]:
        """Every boot with its records, oldest first; a boot whose index
        cannot be read, or a symlink in ``boots/``, is skipped and reported."""
        problems: list[ArchiveProblem] = []
        try:
            boots = self.boots()
        except ArchiveError as exc:
            return {}, [ArchiveProblem(str(self.boots_dir),
                                       f"{reason(exc, self.boots_dir)}; archive skipped")]
        out: dict[str, list[ArchivedRecord]] = {}
        for boot in boots:
            try:
                out[boot] = self.records(boot)
            except ArchiveError as exc:
                where = self.boots_dir / boot / INDEX_NAME
                problems.append(ArchiveProblem(str(where),
                                               f"{reason(exc, where)}; boot {boot} skipped"))
        try:
            links = sorted(n for n in os.listdir(self.boots_dir)
                           if os.path.islink(self.boots_dir / n))
        except OSError:
            links = []
        problems += [ArchiveProblem(str(self.boots_dir / n),
                                    "a symbolic link, not followed; skipped") for n in links]
        return out, problems

    def intact(self, entry: ArchivedRecord) -> bool:
        """Whether *entry*'s file is there with the bytes its hash names."""
        try:
            data = read_nofollow(self.boots_dir / entry.boot / entry.name, MAX_RECORD_SIZE)
        except (OSError, ArchiveError):
            return False
        return sha256(data) == entry.sha256

    def load(self, boot: str, entries: Iterable[ArchivedRecord] | None = None
             ) -> tuple[list[PstoreRecord], list[ArchiveProblem]]:
        """The records of *boot* (its index, or *entries* already read),
        decoded like pstore files; a record file that cannot be read is
        skipped and reported.  Raises :class:`ArchiveError` for an
        unreadable index."""
        out, problems = [], []
        for rec in self.records(boot) if entries is None else entries:
            path = self.boots_dir / boot / rec.name
            try:
                raw = read_nofollow(path, MAX_RECORD_SIZE)
            except OSError as exc:
                problems.append(ArchiveProblem(str(path), f"cannot read: {_why(exc)}; "
                                               "record skipped"))
                continue
            except ArchiveError as exc:
                problems.append(ArchiveProblem(str(path),
                                               f"{reason(exc, path)}; record skipped"))
                continue
            out.append(decode_record(rec.original, raw, rec.mtime_ns, str(path)))
        return out, problems

    # -- writing -----------------------------------------------------------

    def prepare(self) -> None:
        """Create the archive root (and the parents it needs) and ``boots/``,
        mode 0700, each fsynced into its parent; tighten a root that others
        could read.  The root and ``boots`` must be real directories: a
        symlink there is refused.  Raises :class:`ArchiveError`, one line."""
        try:
            missing, p = [], self.root
            while not os.path.lexists(p) and p != p.parent:
                missing.append(p)
                p = p.parent
            for d in reversed(missing):
                _ensure_dir(d)
                fsync_dir(d.parent)
            _ensure_dir(self.root)
            st = os.lstat(self.root)
            if st.st_mode & 0o077 and st.st_uid == os.getuid():
                os.chmod(self.root, 0o700)
            _ensure_dir(self.boots_dir)
            # Also when they existed: a collect killed between mkdir and
            # fsync left them created but not yet durable.
            fsync_dir(self.root.parent if self.root.parent != self.root else self.root)
            fsync_dir(self.root)
        except OSError as exc:
            raise ArchiveError(f"cannot create archive {self.root}: {_why(exc)}") from exc

    def lock(self, wait: float = 0.0) -> ArchiveLock:
        """Take the archive's lock (``flock`` on ``<root>/.lock``), waiting
        up to *wait* seconds for another holder; raises
        :class:`ArchiveBusyError` when it stays taken.  Call
        :meth:`prepare` first."""
        path = self.root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_refusal(path) from exc
            raise ArchiveError(f"cannot open {path}: {_why(exc)}") from exc
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return ArchiveLock(fd)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    os.close(fd)
                    raise ArchiveBusyError(
                        f"archive {self.root} is busy: another collect holds {path} "
                        f"(waited {wait:g} s)") from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.2)
            except OSError as exc:
                os.close(fd)
                raise ArchiveError(f"cannot lock {path}: {_why(exc)}") from exc

    def clean_leftovers(self) -> list[str]:
        """Remove the temporary files (:func:`memconsole._common.is_temp_name`)
        that a writer killed midway left in the root, ``boots/`` and the boot
        directories; returns their paths.  Call it holding :meth:`lock`, so
        no live writer's file is taken."""
        removed = []
        dirs = [self.root, self.boots_dir] + [self.boots_dir / b for b in self.boots()]
        for d in dirs:
            try:
                if stat.S_ISLNK(os.lstat(d).st_mode):
                    continue
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                path = d / name
                try:
                    if is_temp_name(name) and stat.S_ISREG(os.lstat(path).st_mode):
                        os.unlink(path)
                        removed.append(str(path))
                except OSError:
                    continue
        return removed

    def boot_dir(self, boot: str) -> Path:
        """The directory of *boot*, created (mode 0700) and fsynced into
        ``boots/`` if needed; a symlink there is refused."""
        if not _BOOT_RE.match(boot):
            raise ArchiveError(f"invalid boot id {boot!r}")
        bdir = self.boots_dir / boot
        try:
            self._check_boots_dir()
            _ensure_dir(bdir)
            if boot not in self._synced:
                fsync_dir(self.boots_dir)
                self._synced.add(boot)
        except OSError as exc:
            raise ArchiveError(f"cannot create {bdir}: {_why(exc)}") from exc
        return bdir

    def store(self, boot: str, record: PstoreRecord) -> ArchivedRecord:
        """Archive *record* under *boot* durably and return its entry.

        A record already in the boot's index is not stored again; if its
        file is missing or damaged, it is rewritten from *record*.  Raises
        :class:`ArchiveError` (e.g. disk full); then nothing of the record
        is left half-written and the index is unchanged.
        """
        result = self.store_all(boot, [record])[0]
        if isinstance(result, ArchiveError):
            raise result
        return result

    def store_all(self, boot: str, records: Sequence[PstoreRecord]
                  ) -> list[ArchivedRecord | ArchiveError]:
        """Archive *records* under *boot* durably: per record its entry, or
        the :class:`ArchiveError` that kept it out (then nothing of it is
        left half-written and the index does not name it).

        What :meth:`store` does for one record, with the fsyncs of the
        batch shared: every record file is written to a temporary file,
        fsynced and renamed into place; then the index, written the same
        way, and one fsync of the boot directory makes every new name
        durable at once.  Only when this returns may a record's pstore file
        go: a kill before that leaves record files the index does not name,
        as :meth:`store` killed between its two writes would, and the next
        collect stores them again.  A record whose bytes the index already
        names (one of the batch included) is not stored twice; its file is
        rewritten if missing or damaged.
        """
        bdir = self.boot_dir(boot)

        def failed(record: PstoreRecord, exc: OSError | ArchiveError) -> ArchiveError:
            if isinstance(exc, ArchiveError):
                return ArchiveError(f"cannot archive {record.name} in {bdir}: {exc}")
            what = "archive disk is full" if exc.errno == errno.ENOSPC else _why(exc)
            return ArchiveError(f"cannot archive {record.name} in {bdir}: {what}")

        try:
            entries = self.records(boot)
        except ArchiveError as exc:
            return [failed(r, exc) for r in records]
        by_digest = {e.sha256: e for e in entries}
        taken = {e.name for e in entries}
        results: list[ArchivedRecord | ArchiveError] = []
        new: list[int] = []  # indexes (of records and results) of the files written now
        rewritten: list[int] = []  # ... of the damaged copies written again
        for record in records:
            digest = sha256(record.raw)
            known = by_digest.get(digest)
            try:
                if known is not None:
                    if not self.intact(known):
                        write_durably(bdir / known.name, record.raw, record.mtime_ns,
                                      sync_dir=False)
                        rewritten.append(len(results))
                    results.append(known)
                    continue
                base = record.name
                if base.startswith(".") or base in _RESERVED or base.startswith(_RING_PREFIX):
                    base = f"pstore-{base}"
                name, n = base, 1
                while name in taken:
                    name = f"{base}.{n}"
                    n += 1
                write_durably(bdir / name, record.raw, record.mtime_ns, sync_dir=False)
            except OSError as exc:
                results.append(failed(record, exc))
                continue
            entry = ArchivedRecord(boot, name, record.name, digest, record.mtime_ns,
                                   len(record.raw), record.source.rsplit("/", 1)[0],
                                   time.time_ns())
            entries.append(entry)
            by_digest[digest] = entry
            taken.add(name)
            new.append(len(results))
            results.append(entry)
        try:
            if new:
                # The index's own directory fsync also makes the record
                # files' names durable.
                write_durably(bdir / INDEX_NAME, json.dumps(
                    [e.__dict__ for e in entries], indent=1).encode() + b"\n")
            elif rewritten:
                fsync_dir(bdir)
        except BaseException as exc:
            # Without an index entry a copy is invisible: remove the new
            # ones so a retry starts clean, and report the failure.
            for k in new:
                written = results[k]
                assert isinstance(written, ArchivedRecord)
                (bdir / written.name).unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise
            for k in new + rewritten:
                results[k] = failed(records[k], exc)
        return results
