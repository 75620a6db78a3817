"""Byte layout of memconsole's persistent console ring, format version 1.

docs/ring.md documents every byte; this module is its executable form:
struct layouts, constants, header encoding and validation, record encoding,
and the record scan.  Everything here is pure (bytes in, values out): no
I/O, no logging.

Region layout::

    0     64 B   header (primary)
    64    64 B   header (backup copy, byte-identical)
    128   ...    data area: records, each 8-byte aligned, oldest overwritten first

A header is written only when the ring is formatted; nothing in it changes
while records are appended (no head or tail pointer to tear).  Records find
themselves: a reader scans the data area for the record magic at 8-byte
aligned offsets and accepts a candidate only if its size fits and its CRC-32,
seeded with the ring's random ``nonce``, matches.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import NamedTuple

from memconsole.errors import RingFormatError

__all__ = [
    "ALIGN",
    "DATA_OFFSET",
    "FLAG_CONT",
    "FLAG_DICT",
    "FLAG_TRUNCATED",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_RECORD",
    "MIN_REGION",
    "PRI_UNKNOWN",
    "REC_HEADER",
    "REC_HEADER_SIZE",
    "REC_MAGIC",
    "REC_TAIL",
    "SEQ_UNKNOWN",
    "TIME_UNKNOWN",
    "VERSION",
    "RawRecord",
    "RecordType",
    "RingHeader",
    "aligned",
    "encode_header",
    "encode_record",
    "max_record",
    "parse_header",
    "scan_records",
]

#: First 8 bytes of a ring header.
MAGIC = b"MCONRING"
#: The format version this module reads and writes.
VERSION = 1
#: Bytes in one header copy.
HEADER_SIZE = 64
#: Where the data area starts: after the primary and the backup header.
DATA_OFFSET = 2 * HEADER_SIZE
#: Records start at multiples of this many bytes (from the data area start).
ALIGN = 8
#: The smallest region a ring is formatted in.
MIN_REGION = 4096
#: First 4 bytes of a record.  0x1e (ASCII record separator) is a control
#: character, which /dev/kmsg escapes as ``\\x1e`` in message text.
REC_MAGIC = b"\x1eMCR"
#: Bytes in a record header.
REC_HEADER_SIZE = 64
#: Largest record (header and body) a writer produces or a reader accepts.
MAX_RECORD = 64 * 1024

#: ``pri`` of a record whose syslog level and facility are not known.
PRI_UNKNOWN = 0xFFFF
#: ``source_seq`` of a record whose source has no sequence numbers.
SEQ_UNKNOWN = (1 << 64) - 1
#: ``mono_ns``/``time_ns`` of a record whose clock value is not known.
TIME_UNKNOWN = -(1 << 63)

#: Record flag: the kernel marked the message a fragment (kmsg flag ``c``).
FLAG_CONT = 0x01
#: Record flag: the text was cut to fit :data:`MAX_RECORD`.
FLAG_TRUNCATED = 0x02
#: Record flag: the body is ``text NUL dictionary`` (kmsg ``KEY=VALUE`` lines).
FLAG_DICT = 0x04

#: Header: magic, version, header_size, flags, region_size, data_offset,
#: data_size, nonce, align, created_ns, reserved, crc32 (of bytes 0..59).
HEADER = struct.Struct("<8sHHIQQQIIQII")
#: Record header: magic, crc32, size, pri, type, flags, seq, boot,
#: source_seq, mono_ns, time_ns.
REC_HEADER = struct.Struct("<4sIIHBBQ16sQqq")
#: The record header after magic and CRC (what the CRC covers, then the body).
REC_TAIL = struct.Struct("<IHBBQ16sQqq")

assert HEADER.size == HEADER_SIZE and REC_HEADER.size == REC_HEADER_SIZE


class RecordType(enum.IntEnum):
    """What a record holds.  Unknown values are kept as plain ``int``."""

    #: A log message (kernel or any text source).
    LOG = 1
    #: Messages the source lost: body is the count as u64 LE.
    GAP = 2
    #: A recorder started writing (body: what it records).
    START = 3
    #: A recorder stopped cleanly (body: why).
    STOP = 4


def aligned(n: int) -> int:
    """*n* rounded up to :data:`ALIGN`."""
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def max_record(data_size: int) -> int:
    """The largest record a writer puts in a data area of *data_size* bytes:
    :data:`MAX_RECORD`, or a quarter of the area for small rings."""
    return min(MAX_RECORD, (data_size // 4) & ~(ALIGN - 1))


class RingHeader(NamedTuple):
    """A validated ring header.

    Attributes:
        version: format version (1).
        region_size: bytes of the region the ring was formatted in.
        data_offset: where the data area starts.
        data_size: bytes in the data area.
        nonce: the CRC seed of every record of this ring (random per format).
        created_ns: wall-clock time of formatting, ns since the epoch.
        copy: ``"primary"`` or ``"backup"``: which copy was valid.
    """

    version: int
    region_size: int
    data_offset: int
    data_size: int
    nonce: int
    created_ns: int
    copy: str


def encode_header(region_size: int, nonce: int, created_ns: int) -> bytes:
    """One header copy for a region of *region_size* bytes."""
    data_size = (region_size - DATA_OFFSET) & ~(ALIGN - 1)
    raw = HEADER.pack(MAGIC, VERSION, HEADER_SIZE, 0, region_size, DATA_OFFSET, data_size,
                      nonce, ALIGN, created_ns, 0, 0)
    return raw[:-4] + zlib.crc32(raw[:-4]).to_bytes(4, "little")


def _check_copy(buf: bytes | memoryview, at: int, size: int) -> RingHeader | RingFormatError:
    raw = bytes(buf[at:at + HEADER_SIZE])
    if len(raw) < HEADER_SIZE:
        return RingFormatError(f"region of {size} bytes is too small for a ring header",
                               "geometry")
    (magic, version, hsize, _flags, region_size, data_offset, data_size, nonce, align,
     created_ns, _reserved, crc) = HEADER.unpack(raw)
    if magic != MAGIC:
        if not any(raw):
            return RingFormatError("region is empty (all zero)", "empty")
        what = "ramoops persistent_ram zone (signature DBGC)" if raw[:4] == b"DBGC" \
            else f"unknown content (first bytes {raw[:8].hex()})"
        return RingFormatError(f"not a memconsole ring: {what}", "foreign")
    if zlib.crc32(raw[:-4]) != crc:
        return RingFormatError(f"ring header at {at} is damaged (checksum mismatch)", "damaged")
    if version != VERSION:
        return RingFormatError(f"ring format version {version}; this memconsole reads "
                               f"version {VERSION}", "version", version)
    # Every geometry field is checked against the region before use.
    if (hsize != HEADER_SIZE or align != ALIGN or data_offset < DATA_OFFSET
            or data_offset % ALIGN or data_size % ALIGN or data_size < REC_HEADER_SIZE * 4
            or data_offset + data_size > size):
        return RingFormatError(
            f"ring header geometry (data {data_offset}+{data_size}, region {region_size}) "
            f"does not fit the {size}-byte region", "geometry", version)
    return RingHeader(version, region_size, data_offset, data_size, nonce, created_ns,
                      "primary" if at == 0 else "backup")


def parse_header(buf: bytes | memoryview, size: int | None = None) -> RingHeader:
    """Validate the ring header of the region *buf*: the primary copy, else
    the backup.  *size* is the region's size when *buf* holds only its start
    (default ``len(buf)``).  Raises :class:`RingFormatError` saying what the
    region holds instead (the primary copy's problem)."""
    size = len(buf) if size is None else size
    primary = _check_copy(buf, 0, size)
    if isinstance(primary, RingHeader):
        return primary
    # Whatever is wrong with the primary (a flipped bit of its magic reads
    # as foreign content, a zeroed copy as an empty region), a valid backup
    # (magic, CRC, version, geometry) is the ring's header.
    backup = _check_copy(buf, HEADER_SIZE, size)
    if isinstance(backup, RingHeader):
        return backup
    raise primary


def encode_record(nonce: int, seq: int, boot: bytes, rtype: int, body: bytes, *,
                  pri: int = PRI_UNKNOWN, flags: int = 0, source_seq: int = SEQ_UNKNOWN,
                  mono_ns: int = TIME_UNKNOWN, time_ns: int = TIME_UNKNOWN) -> bytes:
    """One complete record (unpadded).  The writer has a faster inline copy
    of this; tests use this one as the reference."""
    size = REC_HEADER_SIZE + len(body)
    tail = REC_TAIL.pack(size, pri, rtype, flags, seq, boot, source_seq, mono_ns, time_ns)
    crc = zlib.crc32(body, zlib.crc32(tail, nonce))
    return REC_MAGIC + crc.to_bytes(4, "little") + tail + body


class RawRecord(NamedTuple):
    """A record that passed every check, as stored.

    Attributes:
        offset: where it starts in the data area.
        seq: ring sequence number.
        boot: boot id (16 bytes).
        type: :class:`RecordType` value or unknown ``int``.
        pri: syslog priority or :data:`PRI_UNKNOWN`.
        flags: ``FLAG_*`` bits.
        source_seq: the source's own sequence number or :data:`SEQ_UNKNOWN`.
        mono_ns: monotonic time since boot or :data:`TIME_UNKNOWN`.
        time_ns: wall-clock time or :data:`TIME_UNKNOWN`.
        body: the bytes after the header.
        size: header plus body length.
    """

    offset: int
    seq: int
    boot: bytes
    type: int
    pri: int
    flags: int
    source_seq: int
    mono_ns: int
    time_ns: int
    body: bytes
    size: int


def scan_records(data: bytes | memoryview, nonce: int) -> tuple[list[RawRecord], int]:
    """Every valid record of the data area *data*, in offset order, and the
    number of corrupt candidates (record magic at an aligned offset, but a
    size that does not fit or a CRC that fails).

    A valid record is skipped as a whole, so text inside it is never taken
    for a record.  Each iteration advances by at least :data:`ALIGN`, so the
    scan ends after at most ``len(data) / ALIGN`` steps.
    """
    view = memoryview(data)
    blob = data if isinstance(data, bytes) else bytes(view)
    end = len(blob)
    limit = min(MAX_RECORD, end)
    found: list[RawRecord] = []
    corrupt = 0
    unpack = REC_HEADER.unpack_from
    crc32 = zlib.crc32
    pos = blob.find(REC_MAGIC)
    while 0 <= pos <= end - REC_HEADER_SIZE:
        if pos % ALIGN:
            pos = blob.find(REC_MAGIC, pos + 1)
            continue
        (_m, crc, size, pri, rtype, flags, seq, boot, src, mono, wall) = unpack(blob, pos)
        if REC_HEADER_SIZE <= size <= min(limit, end - pos) \
                and crc32(view[pos + 8:pos + size], nonce) == crc:
            found.append(RawRecord(pos, seq, boot, rtype, pri, flags, src, mono, wall,
                                   blob[pos + REC_HEADER_SIZE:pos + size], size))
            pos = blob.find(REC_MAGIC, pos + aligned(size))
        else:
            corrupt += 1
            pos = blob.find(REC_MAGIC, pos + ALIGN)
    return found, corrupt
