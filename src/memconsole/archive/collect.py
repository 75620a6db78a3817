"""``collect`` as a library function: archive every pstore record durably,
then erase exactly the file it came from.

:func:`collect` never prints; it returns a :class:`CollectReport` with one
:class:`CollectEntry` per file (and per ring boot), and the archive
problems it skipped.  The order of work, and why it is safe against a
``kill -9`` at any point and against a second collect (docs/archive.md):

1. create the archive (every new directory fsynced into its parent) and
   take its lock (``flock``, held to the end; a second collect waits up to
   *lock_wait* seconds, then gets :class:`~memconsole.errors.ArchiveBusyError`);
2. remove the temporary files a killed collect left;
3. read the archive's indexes (a boot whose index cannot be read is
   skipped and reported) and the pstore directories (a symlink, FIFO,
   device, or a file over the size cap is reported, never opened/read);
4. give every new record its boot directory (:func:`memconsole.pstore.boots.assign_boots`:
   a boot archived in part before is completed in its directory);
5. per boot directory, its new records together: each stored (temp file,
   fsync, rename), then the index the same way and one fsync of the
   directory (:meth:`~memconsole.archive.Archive.store_all`); only when that
   returned, unlink the very file each was read from (same path, same
   inode), unless *keep* or the source is read-only.  A record already
   archived is checked to be intact in the archive before its pstore file
   is erased.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from memconsole.archive import Archive, ArchivedRecord, ArchiveProblem, recent_boots
from memconsole.errors import ArchiveError, RegionError, RingFormatError
from memconsole.pstore import (
    MAX_RECORD_SIZE,
    PstoreRecord,
    PstoreSource,
    SkipKind,
    erase_record,
    parse_name,
    read_sources,
    sha256,
)
from memconsole.pstore.boots import assign_boots, current_boot_start_ns

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from memconsole.ring import RingBoot

__all__ = ["DEFAULT_LOCK_WAIT", "CollectEntry", "CollectReport", "Outcome", "collect"]

#: How long a collect waits for another one to finish, seconds.
DEFAULT_LOCK_WAIT = 10.0


class Outcome(enum.Enum):
    """What became of one file (or ring boot)."""

    #: Copied into the archive now.
    ARCHIVED = "archived"
    #: Already in the archive (same bytes), intact.
    DUPLICATE = "duplicate"
    #: Could not be archived (disk full, a refused symlink, ...): left in pstore.
    FAILED = "failed"
    #: Could not be read, not a regular file, or over the size cap: left alone.
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class CollectEntry:
    """The outcome for one pstore file or one ring boot.

    Attributes:
        path: the file (or the ring spec).
        outcome: see :class:`Outcome`.
        boot: the archive boot directory it is in (archived or duplicate).
        archived_as: the archived file's path.
        erased: the pstore file was unlinked.
        not_erased: why a file that was to be erased was not, or None.
        problem: why the record's text may be incomplete (it was archived
            byte for byte anyway), or None.
        error: why it failed or was not read, one line, or None.
        skip: for ``UNREADABLE``: the kind of failure.
        ring: the entry is about the ring *path*, not a pstore file.
        ring_boot: for a ring boot: its kernel boot id.
        records: for a ring boot: records archived.
    """

    path: str
    outcome: Outcome
    boot: str | None = None
    archived_as: str | None = None
    erased: bool = False
    not_erased: str | None = None
    problem: str | None = None
    error: str | None = None
    skip: SkipKind | None = None
    ring: bool = False
    ring_boot: str | None = None
    records: int | None = None


@dataclass(frozen=True)
class CollectReport:
    """What a collect did.

    Attributes:
        root: the archive.
        entries: one per pstore file and per ring boot considered.
        problems: parts of the archive that could not be read and were
            skipped (a boot with a damaged index: its records stay where
            they are, new records are still archived).
        cleaned: temporary files of an interrupted collect that were removed.
        notes: other one-line remarks (a ring with no ring in it, corrupt
            ring records skipped).
    """

    root: Path
    entries: tuple[CollectEntry, ...]
    problems: tuple[ArchiveProblem, ...] = ()
    cleaned: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def count(self, *outcomes: Outcome) -> int:
        """Entries with one of *outcomes*."""
        return sum(e.outcome in outcomes for e in self.entries)

    @property
    def complete(self) -> bool:
        """Nothing failed: every entry archived or a duplicate, every erase
        done, no archive problem."""
        return not self.problems and all(
            e.outcome in (Outcome.ARCHIVED, Outcome.DUPLICATE) and e.not_erased is None
            for e in self.entries)


def _store_records(archive: Archive, index: dict[str, list[ArchivedRecord]],
                   pending: list[tuple[PstoreRecord, PstoreSource]], keep: bool,
                   problems: list[ArchiveProblem]) -> list[CollectEntry]:
    known = {e.sha256: e for recs in index.values() for e in recs}
    anchors: dict[str, list[PstoreRecord]] = {}
    for boot in recent_boots(index, current_boot_start_ns()):
        anchors[boot], bad = archive.load(boot, index[boot])
        problems += bad
    source_of = {id(rec): src for rec, src in pending}
    # Each record goes to its boot directory (a record archived before: the
    # boot it is in, where its copy is checked); the records of one
    # directory are stored together (their fsyncs shared), then erased.
    batches: dict[str, list[PstoreRecord]] = {}
    order = []
    target_of: dict[str, str] = {e.sha256: e.boot for e in known.values()}
    for boot_id, rec in assign_boots([rec for rec, _ in pending], anchors):
        # Two files with the same bytes (pstore and systemd's copy) go to one place.
        target = target_of.setdefault(sha256(rec.raw), boot_id)
        batches.setdefault(target, []).append(rec)
        order.append(rec)
    done: dict[int, CollectEntry] = {}
    for target, recs in batches.items():
        try:
            results: list[ArchivedRecord | ArchiveError] = list(archive.store_all(target, recs))
        except ArchiveError as exc:
            results = [exc] * len(recs)
        for rec, stored in zip(recs, results, strict=True):
            if isinstance(stored, ArchiveError):
                done[id(rec)] = CollectEntry(rec.source, Outcome.FAILED, error=str(stored),
                                             problem=rec.problem)
                continue
            fresh = stored.sha256 not in known
            known[stored.sha256] = stored
            erased, why = False, None
            src = source_of[id(rec)]
            if src.erasable and not keep:
                why = erase_record(rec)
                erased = why is None
            done[id(rec)] = CollectEntry(
                rec.source, Outcome.ARCHIVED if fresh else Outcome.DUPLICATE, stored.boot,
                str(archive.boots_dir / stored.boot / stored.name), erased, why, rec.problem)
    return [done[id(rec)] for rec in order]


def _boot_dir_for(ring_boot: RingBoot, next_first: int | None,
                  times: dict[str, list[int]]) -> str:
    """The archive boot directory of the pstore boot whose dump falls within
    or right after *ring_boot*'s records, else one named by its last record."""
    from memconsole.archive.ring import RING_MATCH_WINDOW_NS

    first, last = ring_boot.first_time_ns or 0, ring_boot.last_time_ns or 0
    upper = last + RING_MATCH_WINDOW_NS
    if next_first is not None:
        upper = min(upper, next_first - 1)
    for boot_id, dumps in sorted(times.items()):
        if any(first <= t <= upper for t in dumps):
            return boot_id
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(last // 10**9))
    # A directory of that name with other dumps is another boot: do not mix.
    return name if not times.get(name) else f"{name}-ring"


def _store_ring(archive: Archive, spec: str, problems: list[ArchiveProblem],
                notes: list[str]) -> list[CollectEntry]:
    """Archive the ring's ended boots that did not stop cleanly or that
    left pstore records, each once."""
    # Imported here: a collect without --ring (early boot) does not pay for it.
    from memconsole.archive.ring import archived_rings, read_ring, store_ring_boot
    from memconsole.ring import current_boot_id

    try:
        image = read_ring(spec, lambda line: notes.append(f"ring {spec}: {line}"))
    except RingFormatError as exc:
        notes.append(f"ring {spec}: {exc}; nothing to collect from it")
        return []
    except RegionError as exc:
        return [CollectEntry(spec, Outcome.UNREADABLE, error=str(exc), ring=True)]
    if image.corrupt or image.duplicates:
        notes.append(f"ring {spec}: {image.corrupt + image.duplicates} corrupt records skipped")
    index, _ = archive.scan()
    rings, bad = archived_rings(archive, index)
    problems += bad
    done = {r.ring_boot: b for b, r in rings}
    times = {b: [e.mtime_ns for e in recs if (k := parse_name(e.original)) and k.type == "dmesg"]
             for b, recs in index.items()}
    current = current_boot_id()
    entries = []
    boots = list(image.boots)
    for n, rb in enumerate(boots):
        if rb.boot == current or rb.first_time_ns is None:
            continue
        if rb.id in done:
            entries.append(CollectEntry(spec, Outcome.DUPLICATE, done[rb.id], ring=True,
                                        ring_boot=rb.id))
            continue
        nxt = next((b.first_time_ns for b in boots[n + 1:] if b.first_time_ns), None)
        boot_dir = _boot_dir_for(rb, nxt, times)
        if rb.stopped and not times.get(boot_dir):
            # A boot that shut down cleanly and left no dump: its console is
            # in the journal; show --ring reads it while the ring keeps it.
            continue
        try:
            stored = store_ring_boot(archive, boot_dir, rb, spec)
        except ArchiveError as exc:
            entries.append(CollectEntry(spec, Outcome.FAILED, error=str(exc), ring=True,
                                        ring_boot=rb.id))
            continue
        entries.append(CollectEntry(spec, Outcome.ARCHIVED, boot_dir,
                                    str(archive.boots_dir / boot_dir / stored.name),
                                    ring=True, ring_boot=rb.id, records=stored.records))
    return entries


def collect(sources: Sequence[PstoreSource], archive: Archive, *, keep: bool = False,
            ring: str | None = None, lock_wait: float = DEFAULT_LOCK_WAIT,
            max_record_size: int = MAX_RECORD_SIZE) -> CollectReport:
    """Archive every record of *sources* into *archive*, then erase it from
    the sources that are erasable (unless *keep*); with *ring*, also the
    ring's ended boots.  See the module docstring for the order of work.

    Raises :class:`~memconsole.errors.ArchiveError` when the archive cannot
    be created or locked (nothing was done; one line says why) and
    :class:`~memconsole.errors.ArchiveBusyError` when another collect holds
    it for more than *lock_wait* seconds.  Everything else is in the report.
    """
    archive.prepare()
    with archive.lock(lock_wait):
        cleaned = archive.clean_leftovers()
        index, scan_problems = archive.scan()
        problems = list(scan_problems)
        notes: list[str] = []
        pending, failures = read_sources(list(sources), max_record_size)
        entries = [CollectEntry(f.path, Outcome.UNREADABLE, error=f.reason, skip=f.kind)
                   for f in failures]
        entries += _store_records(archive, index, pending, keep, problems)
        if ring:
            entries += _store_ring(archive, ring, problems, notes)
    return CollectReport(archive.root, tuple(entries), tuple(problems), tuple(cleaned),
                         tuple(notes))
