"""pstore records: file-name grammar, dump headers, ECC trailers,
decompression, and reading a pstore directory.

The kernel names every file in /sys/fs/pstore ``<type>-<backend>-<id>``
plus ``.enc.z`` when the payload is still compressed (fs/pstore/inode.c,
``pstore_mkfile``).  The type names come from ``pstore_type_names[]`` in
fs/pstore/platform.c; the backend is the ``pstore_info.name`` of the driver
(``ramoops`` fs/pstore/ram.c, ``efi_pstore`` drivers/firmware/efi/efi-pstore.c
(``efi`` before 5.x), ``erst`` drivers/acpi/apei/erst.c, ``pstore_blk`` /
``mtdpstore`` fs/pstore/zone.c users).

A dmesg record starts with the header ``pstore_dump()`` writes,
``"%s#%d Part%u\\n"`` (reason, per-boot dump counter, part number; part 1 is
the newest chunk of the log), and ramoops appends an ECC notice when ECC is
on (fs/pstore/ram_core.c, ``persistent_ram_ecc_string``).

Everything here but the directory functions (:func:`find_sources`,
:func:`read_pstore_dir`, :func:`read_sources`, :func:`erase_record`) is
pure: bytes in, records out.  Those read with ``lstat`` first and
``O_NOFOLLOW | O_NONBLOCK`` after: a symlink, FIFO, socket or device in a
pstore directory is reported and never opened, a file larger than any
backend writes (:data:`MAX_RECORD_SIZE`) is reported and never read.
Grouping records into dumps and boots: :mod:`memconsole.pstore.boots`.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from memconsole._common import sha256_hex
from memconsole.errors import ConfigError, CorruptRecordError
from memconsole.pstore import compress

__all__ = [
    "DEFAULT_PSTORE_DIR",
    "MAX_DECOMPRESSED",
    "MAX_RECORD_SIZE",
    "SYSTEMD_PSTORE_DIR",
    "TYPE_NAMES",
    "DumpHeader",
    "PstoreRecord",
    "PstoreSource",
    "ReadFailure",
    "RecordName",
    "SkipKind",
    "decode_record",
    "erase_record",
    "find_sources",
    "parse_dump_header",
    "parse_name",
    "read_pstore_dir",
    "read_sources",
    "sha256",
    "split_ecc_trailer",
]

#: Where the kernel mounts pstore.
DEFAULT_PSTORE_DIR = Path("/sys/fs/pstore")
#: Where systemd-pstore moves records (``Storage=external``, the default).
SYSTEMD_PSTORE_DIR = Path("/var/lib/systemd/pstore")

#: ``pstore_type_names[]`` (fs/pstore/platform.c, 5.8+), longest first so
#: that ``powerpc-ofw`` wins over a backend that happens to start like it.
TYPE_NAMES: tuple[str, ...] = tuple(sorted(
    ("dmesg", "mce", "console", "ftrace", "rtas", "powerpc-ofw", "powerpc-common",
     "pmsg", "powerpc-opal", "unknown"), key=len, reverse=True))

#: Cap on decompressed size (defined in :mod:`memconsole.pstore.compress`).
MAX_DECOMPRESSED = compress.MAX_DECOMPRESSED

#: The largest record file memconsole reads (64 MiB); a bigger file is
#: refused unread and left in place.  No backend writes one this big
#: (docs/pstore.md, "Size cap"): a ramoops zone's byte count is an
#: ``atomic_t`` checked against the zone (ram_core.c,
#: persistent_ram_post_init), a decompressed dmesg record is at most
#: ``3 * psinfo->bufsize`` (platform.c, decompress_record, 6.6+; before
#: that ``bufsize * 100 / 45``, zbufsize_deflate) where bufsize is ramoops'
#: record_size (ram.c), efi-pstore's record_size (1 KiB default,
#: drivers/firmware/efi/efi-pstore.c) or ERST's error-log range
#: (drivers/acpi/apei/erst.c); a kmsg dump never holds more than the
#: printk buffer (CONFIG_LOG_BUF_SHIFT is at most 25: 32 MiB).  It is also
#: where systemd-pstore stops: its read_full_file() refuses files of
#: 64 MiB and more (READ_FULL_BYTES_MAX, src/basic/fileio.c).
MAX_RECORD_SIZE = 64 << 20

# Files systemd-pstore writes next to the records it moved: a derived
# concatenation of the dmesg parts, not a record.
_SYSTEMD_DERIVED = frozenset({"dmesg.txt"})

_NAME_RE = re.compile(r"^(?P<rest>.+)-(?P<id>\d+)(?P<enc>\.enc\.z)?$")
# "Oops#1 Part1", "Panic#2 Part3", "Emergency#1 Part1"; older kernels used
# "Oops#1 Part1" too, and 3.x "Oops#1 Part1" preceded by nothing else.
_HEADER_RE = re.compile(
    rb"^(?P<reason>[A-Z][A-Za-z]{1,15})#(?P<count>\d{1,9}) Part(?P<part>\d{1,6})$")
# ram_core.c persistent_ram_ecc_string(): "\nECC: %d Corrected bytes, %d
# unrecoverable blocks\n" or "\nECC: No errors detected\n".
_ECC_RE = re.compile(
    rb"\nECC: (?:No errors detected|(?P<fixed>\d+) Corrected bytes, "
    rb"(?P<bad>\d+) unrecoverable blocks)\n\Z")


@dataclass(frozen=True)
class RecordName:
    """A pstore file name taken apart.

    Attributes:
        type: record type (``dmesg``, ``console``, ``pmsg``, ...), or
            ``unknown`` for a name outside the grammar.
        backend: the pstore backend (``ramoops``, ``efi_pstore``, ``erst``...).
        id: the backend's record id.
        compressed: the name ends in ``.enc.z``.
    """

    type: str
    backend: str
    id: int
    compressed: bool


def parse_name(name: str) -> RecordName | None:
    """Parse a pstore file name; ``None`` if it does not follow the grammar."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    rest = m.group("rest")
    for tname in TYPE_NAMES:
        if rest.startswith(tname + "-") and len(rest) > len(tname) + 1:
            return RecordName(tname, rest[len(tname) + 1:], int(m.group("id")),
                              m.group("enc") is not None)
    return None


@dataclass(frozen=True)
class DumpHeader:
    """The first line of a dmesg record, e.g. ``Oops#1 Part1``.

    Attributes:
        reason: ``Oops``, ``Panic``, ``Emergency``, ``Shutdown``... as
            ``kmsg_dump_reason_str()`` prints it.
        count: the per-boot dump counter (``oopscount`` in platform.c).
        part: 1 for the newest chunk of the log, higher for older ones.
    """

    reason: str
    count: int
    part: int


def parse_dump_header(text: bytes) -> DumpHeader | None:
    """Parse the first line of a dmesg record's text."""
    first = text[:64].split(b"\n", 1)[0].rstrip(b"\r")
    m = _HEADER_RE.match(first)
    if m is None:
        return None
    return DumpHeader(m.group("reason").decode(), int(m.group("count")), int(m.group("part")))


def split_ecc_trailer(data: bytes) -> tuple[bytes, int | None, int | None]:
    """Split ramoops' ECC notice off *data*.

    Returns ``(payload, corrected_bytes, bad_blocks)``; the counts are
    ``None`` when no notice is present, 0 for "No errors detected".
    """
    m = _ECC_RE.search(data, max(0, len(data) - 96))
    if m is None:
        return data, None, None
    fixed = int(m.group("fixed")) if m.group("fixed") else 0
    bad = int(m.group("bad")) if m.group("bad") else 0
    return data[: m.start()], fixed, bad


def _inflate(data: bytes, name: str) -> tuple[bytes, str | None]:
    """Inflate a ``.enc.z`` payload.  Kernels write raw deflate (6.1's crypto
    "deflate" and 6.6+'s zlib_deflate both use a negative window); a zlib
    header is accepted too.  Returns (text, problem)."""
    if not data:
        raise CorruptRecordError(f"{name}: compressed record is empty", name)
    last_error = ""
    for wbits in (compress.RAW_DEFLATE, compress.ZLIB):
        res = compress.inflate(data, MAX_DECOMPRESSED, wbits)
        if res.error:
            last_error = res.error
            continue
        if res.over_cap:
            return res.data, f"decompressed size exceeds {MAX_DECOMPRESSED} bytes; truncated"
        if not res.complete:
            return res.data, (f"compressed data truncated after {len(data)} bytes; "
                              f"recovered {len(res.data)} bytes of text")
        return res.data, None
    raise CorruptRecordError(f"{name}: cannot inflate {len(data)} bytes ({last_error})", name)


@dataclass(frozen=True)
class PstoreRecord:
    """One pstore record as found in a directory.

    Attributes:
        name: file name, as the kernel made it.
        kind: the parsed name (``type`` ``unknown`` if outside the grammar).
        mtime_ns: file mtime; the kernel sets it to the time the record was
            written (the crash), or to the mount time when the backend keeps
            no time.
        raw: the file's bytes, exactly.
        text: the payload: decompressed, ECC notice removed.  Kept as bytes.
        header: the dump header of a dmesg record.
        ecc_corrected, ecc_bad_blocks: from the ECC notice, or ``None``.
        problem: why the text may be incomplete (truncated compressed data,
            ...), or ``None``.
        source: the path it was read from ("" if built from bytes).
        file_id: ``(st_dev, st_ino)`` of the file it was read from, so that
            :func:`erase_record` unlinks that file and no other.
    """

    name: str
    kind: RecordName
    mtime_ns: int
    raw: bytes
    text: bytes
    header: DumpHeader | None = None
    ecc_corrected: int | None = None
    ecc_bad_blocks: int | None = None
    problem: str | None = None
    source: str = field(default="", compare=False)
    file_id: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def body(self) -> bytes:
        """The log text without the dump header line."""
        if self.header is not None:
            return self.text.split(b"\n", 1)[1] if b"\n" in self.text else b""
        return self.text


def decode_record(name: str, raw: bytes, mtime_ns: int, source: str = "") -> PstoreRecord:
    """Build a :class:`PstoreRecord` from a file's name, bytes and mtime.

    A payload that cannot be decoded (garbage in a ``.enc.z``) gives a record
    with empty ``text`` and ``problem`` saying why: its bytes are still
    worth archiving, so this never raises for bad content.
    """
    kind = parse_name(name) or RecordName("unknown", "", 0, name.endswith(".enc.z"))
    payload, fixed, bad = split_ecc_trailer(raw)
    problem = None
    text = payload
    if kind.compressed:
        try:
            text, problem = _inflate(payload, name)
        except CorruptRecordError as exc:
            text, problem = b"", str(exc).split(": ", 1)[-1]
    header = parse_dump_header(text) if kind.type == "dmesg" else None
    return PstoreRecord(name, kind, mtime_ns, raw, text, header, fixed, bad, problem, source)


def sha256(data: bytes) -> str:
    """Hex SHA-256 of *data*: a record's identity (the archive keeps each
    record once by it)."""
    return sha256_hex(data)


class SkipKind(enum.Enum):
    """Why a file in a pstore directory was not read."""

    #: open() or read() failed (permission, I/O error, it vanished...).
    UNREADABLE = "unreadable"
    #: a symlink, FIFO, socket, device or directory: never opened.
    NOT_REGULAR = "not-regular"
    #: larger than :data:`MAX_RECORD_SIZE` (or the cap given): never read.
    TOO_LARGE = "too-large"


@dataclass(frozen=True)
class ReadFailure:
    """A file (or directory) in a pstore directory that gave no record.

    Attributes:
        path: the file.
        reason: one line saying why, always with the cause
            (``cannot read: Permission denied``).
        kind: the class of failure.
    """

    path: str
    reason: str
    kind: SkipKind = SkipKind.UNREADABLE


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


def find_sources(explicit: Path | None = None) -> tuple[list[PstoreSource], list[str]]:
    """The pstore directories to read, and warnings (one line each).

    With *explicit*, that directory only (a :class:`ConfigError` when it is
    missing); erasable unless it is systemd-pstore's archive, which is
    never erased from.  Without: :data:`DEFAULT_PSTORE_DIR` when pstore is
    mounted there (else a warning) and :data:`SYSTEMD_PSTORE_DIR` when it
    exists.
    """
    if explicit is not None:
        if not explicit.is_dir():
            what = "is not a directory" if explicit.exists() else "does not exist"
            raise ConfigError(f"pstore directory {explicit} {what}")
        return [PstoreSource(explicit, explicit.resolve() != SYSTEMD_PSTORE_DIR)], []
    sources, warnings = [], []
    if DEFAULT_PSTORE_DIR.is_dir() and os.path.ismount(DEFAULT_PSTORE_DIR):
        sources.append(PstoreSource(DEFAULT_PSTORE_DIR, True))
    else:
        warnings.append(f"pstore is not mounted at {DEFAULT_PSTORE_DIR} "
                        f"(mount -t pstore pstore {DEFAULT_PSTORE_DIR})")
    if SYSTEMD_PSTORE_DIR.is_dir():
        sources.append(PstoreSource(SYSTEMD_PSTORE_DIR, False))
    return sources, warnings


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


_FILE_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def _not_regular(path: str, mode: int) -> ReadFailure:
    what = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return ReadFailure(path, f"{what}, not a record: not opened", SkipKind.NOT_REGULAR)


def _too_large(path: str, size: int, cap: int) -> ReadFailure:
    return ReadFailure(path, f"{size} bytes, more than the {cap}-byte record cap "
                       "(no pstore backend writes records that large): not read",
                       SkipKind.TOO_LARGE)


def _scan(directory: Path, failures: list[ReadFailure]) -> list[tuple[Path, os.stat_result]]:
    """Regular files in a pstore directory, or in systemd-pstore's archive
    (which keeps records one level down, in per-record-id directories),
    with their lstat; anything else goes to *failures*."""
    out: list[tuple[Path, os.stat_result]] = []

    def lstat(entry: os.DirEntry[str]) -> os.stat_result | None:
        try:
            return entry.stat(follow_symlinks=False)
        except OSError as exc:
            failures.append(ReadFailure(entry.path, f"cannot read: {_why(exc)}"))
            return None

    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        st = lstat(entry)
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(entry.path) as sub_it:
                    sub = sorted(sub_it, key=lambda e: e.name)
            except OSError as exc:
                failures.append(ReadFailure(entry.path, f"cannot list: {_why(exc)}"))
                continue
            for e in sub:
                est = lstat(e)
                if est is None or e.name in _SYSTEMD_DERIVED:
                    continue
                if stat.S_ISREG(est.st_mode):
                    out.append((Path(e.path), est))
                else:
                    failures.append(_not_regular(e.path, est.st_mode))
        elif stat.S_ISREG(st.st_mode):
            if entry.name not in _SYSTEMD_DERIVED:
                out.append((Path(entry.path), st))
        else:
            failures.append(_not_regular(entry.path, st.st_mode))
    return out


def _read_file(path: Path, st: os.stat_result, cap: int
               ) -> tuple[bytes, os.stat_result] | ReadFailure:
    """The bytes of the regular file *path* whose lstat is *st*: opened
    without following a symlink and without blocking (a FIFO swapped in
    after the lstat does not hang), checked to be the file that was
    lstat'ed, read up to *cap* + 1 bytes and no further."""
    where = str(path)
    if st.st_size > cap:
        return _too_large(where, st.st_size, cap)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ReadFailure(where, "a symbolic link, not a record: not opened",
                               SkipKind.NOT_REGULAR)
        return ReadFailure(where, f"cannot read: {_why(exc)}")
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            return _not_regular(where, fst.st_mode)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            return ReadFailure(where, "cannot read: the file was replaced while being read")
        if fst.st_size > cap:
            return _too_large(where, fst.st_size, cap)
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > cap:
            return _too_large(where, total, cap)
    except OSError as exc:
        return ReadFailure(where, f"cannot read: {_why(exc)}")
    finally:
        os.close(fd)
    return b"".join(chunks), fst


def read_pstore_dir(directory: Path, max_size: int = MAX_RECORD_SIZE
                    ) -> tuple[list[PstoreRecord], list[ReadFailure]]:
    """Read every record in *directory* (and one level of subdirectories).

    Returns the records and, separately, what gave no record: files that
    could not be read, non-regular files (never opened) and files over
    *max_size* bytes (never read).  Raises ``OSError`` only when the
    directory itself cannot be listed.
    """
    records: list[PstoreRecord] = []
    failures: list[ReadFailure] = []
    for path, st in _scan(directory, failures):
        got = _read_file(path, st, max_size)
        if isinstance(got, ReadFailure):
            failures.append(got)
            continue
        raw, fst = got
        rec = decode_record(path.name, raw, fst.st_mtime_ns, str(path))
        records.append(replace(rec, file_id=(fst.st_dev, fst.st_ino)))
    return records, failures


def read_sources(sources: list[PstoreSource], max_size: int = MAX_RECORD_SIZE
                 ) -> tuple[list[tuple[PstoreRecord, PstoreSource]], list[ReadFailure]]:
    """Read every record of every source, each with the source it came
    from (the same bytes in two places are two records: each file is
    archived or recognised as a duplicate, and erased, on its own)."""
    out: list[tuple[PstoreRecord, PstoreSource]] = []
    failures: list[ReadFailure] = []
    for src in sources:
        try:
            records, bad = read_pstore_dir(src.path, max_size)
        except OSError as exc:
            failures.append(ReadFailure(str(src.path), f"cannot list: {_why(exc)}"))
            continue
        failures += bad
        out += [(rec, src) for rec in records]
    return out, failures


def erase_record(record: PstoreRecord) -> str | None:
    """Unlink the file *record* was read from, by its own path, if it is
    still the same file (same device and inode).  Returns ``None`` when it
    was erased, else why it was not (one line)."""
    if not record.source:
        return "it was not read from a file"
    try:
        st = os.lstat(record.source)
    except OSError as exc:
        return f"cannot erase: {_why(exc)}"
    if not stat.S_ISREG(st.st_mode) or (
            record.file_id is not None and (st.st_dev, st.st_ino) != record.file_id):
        return "the file was replaced after it was read; left in place"
    try:
        os.unlink(record.source)
    except OSError as exc:
        return f"cannot erase: {_why(exc)}"
    return None
