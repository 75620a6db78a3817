"""Ring boots in the archive: durable per-boot copies written by
``collect``, and the console text and JSON Lines views of a ring boot.

Archive layout (next to the pstore records of the same boot, docs/archive.md)::

    <root>/boots/<boot-id>/console-ring          the console as text (show --ring)
    <root>/boots/<boot-id>/console-ring.jsonl    one JSON object per record or gap
    <root>/boots/<boot-id>/ring.json             index: one object per ring boot

A ring boot is archived once: its kernel boot id is its identity, so a later
``collect`` (when the ring has wrapped over some of the boot's records, or
not) finds it in ``ring.json`` and skips it.  The crash-event summary of a
ring boot (which needs the report parser) is built by memconsole.history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from memconsole._common import write_durably
from memconsole.archive import Archive, ArchiveProblem, read_index, reason, sha256
from memconsole.errors import ArchiveError
from memconsole.render import json_line, text
from memconsole.ring import Gap, RecordType, RingBoot, RingImage, RingRecord, parse_ring
from memconsole.ring.format import DATA_OFFSET, FLAG_TRUNCATED, parse_header
from memconsole.ring.regions import open_region

__all__ = [
    "RING_INDEX",
    "RING_MATCH_WINDOW_NS",
    "RING_NAME",
    "ArchivedRing",
    "archived_rings",
    "boot_end_line",
    "entry_json",
    "jsonl",
    "read_ring",
    "render_entries",
    "store_ring_boot",
]

#: File name of a ring boot's console text in an archive boot directory.
RING_NAME = "console-ring"
#: The ring index of an archive boot directory.
RING_INDEX = "ring.json"
#: A dump belongs to a ring boot when it was written at most this long after
#: the boot's last ring record (and before the next boot's first).
RING_MATCH_WINDOW_NS = 300 * 10**9


def read_ring(spec: str) -> RingImage:
    """Read the ring at *spec* (read-only; a running recorder may go on
    writing).  Raises :class:`~memconsole.errors.RegionError` when the region
    cannot be opened, :class:`~memconsole.errors.RingFormatError` when it
    holds no ring."""
    region = open_region(spec)
    try:
        # Copy only what the header says is the ring: a ring may use the
        # first megabytes of a larger pmem device.
        header = parse_header(bytes(region.buf[:DATA_OFFSET]), region.size)
        data = bytes(region.buf[:header.data_offset + header.data_size])
    finally:
        region.close()
    return parse_ring(data)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(rec: RingRecord) -> bytes:
    if rec.mono_ns is None:
        return b"[     ?.??????]"
    us = rec.mono_ns // 1000
    return b"[%5d.%06d]" % (us // 1_000_000, us % 1_000_000)


def _gap_line(gap: Gap) -> bytes:
    why = "lost by the source (overrun)" if gap.reason == "overrun" else \
        "missing from the ring (corrupt or overwritten)"
    s = "" if gap.count == 1 else "s"
    return f"[... {gap.count} record{s} {why} ...]".encode()


def render_entries(entries: Iterable[RingRecord | Gap]) -> bytes:
    """The console as ``dmesg`` prints it: ``[  uptime] text`` per record,
    recorder notes as ``-- note --``, gaps as ``[... N records ... ]``.

    The kernel's bytes are kept as they are (this text is archived and
    parsed); a terminal gets it through :func:`memconsole.render.escape`."""
    out: list[bytes] = []
    for e in entries:
        if isinstance(e, Gap):
            out.append(_gap_line(e))
            continue
        text = e.text + (b" [cut]" if e.flags & FLAG_TRUNCATED else b"")
        if e.type != RecordType.LOG:
            text = b"-- " + (text if e.type in (RecordType.START, RecordType.STOP)
                             else e.type_name.encode() + b": " + text) + b" --"
        stamp = _stamp(e)
        if b"\n" in text:
            # Continuation lines under the text, as dmesg prints them.
            text = text.replace(b"\n", b"\n" + b" " * (len(stamp) + 1))
        out.append(stamp + b" " + text)
    return b"\n".join(out) + (b"\n" if out else b"")


def entry_json(e: RingRecord | Gap, boot: str) -> dict[str, object]:
    """The JSON Lines object of a record or a gap (docs/cli.md); kernel bytes
    that are not UTF-8 are ``\\xNN`` (:func:`memconsole.render.text`)."""
    if isinstance(e, Gap):
        return {"gap": e.count, "boot": boot, "reason": e.reason, "after_seq": e.after_seq,
                "first_source_seq": e.first_source_seq}
    obj: dict[str, object] = {
        "seq": e.seq, "boot": boot, "time": _iso(e.time_ns),
        "uptime": None if e.mono_ns is None else round(e.mono_ns / 1e9, 6),
        "type": e.type_name, "level": e.level, "facility": e.facility,
        "source_seq": e.source_seq,
        "text": text(e.text)}
    if e.flags & FLAG_TRUNCATED:
        obj["truncated"] = True
    if e.dictionary:
        obj["dict"] = text(e.dictionary)
    return obj


def jsonl(boot: RingBoot) -> Iterator[str]:
    """The boot's records and gaps as JSON Lines (:func:`memconsole.render.json_line`)."""
    for e in boot.entries:
        yield json_line(entry_json(e, boot.id))


def boot_end_line(boot: RingBoot, current: bool) -> str:
    """Where the console ended, one line."""
    last = boot.last
    when = _iso(last.time_ns) or "an unknown time"
    up = f", uptime {last.mono_ns / 1e9:.3f} s" if last.mono_ns is not None else ""
    tail = ""
    if isinstance(boot.entries[-1], Gap):
        tail = f"; {boot.entries[-1].count} later record(s) are missing, so it went on after"
    if current:
        return f"-- this boot, still running: last record at {when}{up}{tail}"
    if boot.stopped:
        return f"-- console ended at {when}{up}: the recorder stopped cleanly " \
               f"(shutdown or service stop){tail}"
    return f"-- console ended at {when}{up} without a clean stop: the boot ended in a " \
           f"hang, a reset or a crash{tail}"


@dataclass(frozen=True)
class ArchivedRing:
    """One entry of an archive boot directory's ``ring.json``.

    Attributes:
        ring_boot: kernel boot id of the ring boot (its identity).
        name: console text file; ``<name>.jsonl`` holds the JSON Lines.
        source: the ring spec it was read from.
        first_ns, last_ns: wall-clock times of its first and last record.
        last_uptime_ns: uptime of the last record, or None.
        last_line: the last log message (``backslashreplace`` text).
        records: records archived.
        missing: records known to be missing.
        stopped: the recorder had stopped cleanly.
        sha256: hash of the console text file.
        collected_ns: when it was archived.
        last_report: the last kernel crash report in it, in one sentence
            (written by earlier versions; now computed when read, see
            memconsole.history).
    """

    ring_boot: str
    name: str
    source: str
    first_ns: int
    last_ns: int
    last_uptime_ns: int | None
    last_line: str
    records: int
    missing: int
    stopped: bool
    sha256: str
    collected_ns: int
    last_report: str | None = None


def _index(archive: Archive, boot: str) -> list[ArchivedRing]:
    return read_index(archive.boots_dir / boot / RING_INDEX, ArchivedRing)


def archived_rings(archive: Archive, boots: Iterable[str] | None = None
                   ) -> tuple[list[tuple[str, ArchivedRing]], list[ArchiveProblem]]:
    """Every archived ring boot with its archive boot directory (of *boots*,
    default all); a ``ring.json`` that cannot be read is skipped and
    reported."""
    out: list[tuple[str, ArchivedRing]] = []
    problems: list[ArchiveProblem] = []
    for b in archive.boots() if boots is None else boots:
        try:
            out += [(b, r) for r in _index(archive, b)]
        except ArchiveError as exc:
            where = archive.boots_dir / b / RING_INDEX
            problems.append(ArchiveProblem(str(where), f"{reason(exc, where)}; the ring boots "
                                           f"of boot {b} skipped"))
    return out, problems


def store_ring_boot(archive: Archive, boot_dir: str, boot: RingBoot, source: str
                    ) -> ArchivedRing:
    """Archive *boot* in *boot_dir* durably: console text and JSON Lines
    first (temp file, fsync, rename, fsync directory), the index last, so an
    interrupted collect leaves no index entry and is simply done again.
    Raises :class:`ArchiveError`."""
    first, last = boot.first_time_ns, boot.last_time_ns
    if first is None or last is None:
        raise ArchiveError(f"ring boot {boot.id} has no record with a time")
    bdir = archive.boot_dir(boot_dir)
    try:
        entries = _index(archive, boot_dir)
        for e in entries:
            if e.ring_boot == boot.id:
                return e
        taken = {e.name for e in entries}
        name, n = RING_NAME, 1
        while name in taken:
            n += 1
            name = f"{RING_NAME}.{n}"
        text = render_entries(boot.entries)
        log = boot.last_log
        line = log.text.split(b"\n", 1)[0] if log else b""
        up = next((r.mono_ns for r in reversed(boot.records) if r.mono_ns is not None), None)
        write_durably(bdir / name, text, last)
        write_durably(bdir / f"{name}.jsonl", "".join(jsonl(boot)).encode(), last)
        entry = ArchivedRing(boot.id, name, source, first, last, up,
                             line.decode("utf-8", "backslashreplace"), len(boot.records),
                             boot.missing, boot.stopped, sha256(text), time.time_ns())
        write_durably(bdir / RING_INDEX, json.dumps(
            [asdict(e) for e in [*entries, entry]], indent=1).encode() + b"\n")
    except OSError as exc:
        raise ArchiveError(f"cannot archive ring boot {boot.id} in {bdir}: "
                           f"{exc.strerror or exc}") from exc
    return entry
