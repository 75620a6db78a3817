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

Everything here but :func:`read_pstore_dir` is pure: bytes in, records out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from memconsole.errors import CorruptRecordError
from memconsole.pstore import compress

__all__ = [
    "DEFAULT_PSTORE_DIR",
    "MAX_DECOMPRESSED",
    "SYSTEMD_PSTORE_DIR",
    "TYPE_NAMES",
    "DumpHeader",
    "PstoreRecord",
    "ReadFailure",
    "RecordName",
    "decode_record",
    "parse_dump_header",
    "parse_name",
    "read_pstore_dir",
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


@dataclass(frozen=True)
class ReadFailure:
    """A record file that could not be read.

    Attributes:
        path: the file.
        reason: one line saying why.
    """

    path: str
    reason: str


def _candidate_files(directory: Path) -> list[Path]:
    """Record files in a pstore directory, or in systemd-pstore's archive
    (which keeps records one level down, in per-record-id directories)."""
    files = []
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            with os.scandir(entry.path) as sub:
                files += [Path(e.path) for e in sorted(sub, key=lambda e: e.name)
                          if e.is_file(follow_symlinks=False) and e.name not in _SYSTEMD_DERIVED]
        elif entry.is_file(follow_symlinks=False) and entry.name not in _SYSTEMD_DERIVED:
            files.append(Path(entry.path))
    return files


def read_pstore_dir(directory: Path) -> tuple[list[PstoreRecord], list[ReadFailure]]:
    """Read every record in *directory*.

    Returns the records and, separately, the files that could not be read.
    Raises ``OSError`` only when the directory itself cannot be listed.
    """
    records: list[PstoreRecord] = []
    failures: list[ReadFailure] = []
    for path in _candidate_files(directory):
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except OSError as exc:
            failures.append(ReadFailure(str(path), f"cannot read: {exc.strerror or exc}"))
            continue
        records.append(decode_record(path.name, raw, st.st_mtime_ns, str(path)))
    return records, failures
