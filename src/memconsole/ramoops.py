"""ramoops regions read from raw memory: geometry, zone headers, records.

Every rule here mirrors a function of the kernel (torvalds/linux):

* :func:`layout` is ramoops_probe() + ramoops_init_przs()/ramoops_init_prz()
  (fs/pstore/ram.c): the dump area is ``mem_size - console - ftrace - pmsg``;
  ``count = dump / record_size`` dmesg zones of ``dump / count`` bytes each
  (so a zone can exceed ``record_size``), rounded down to an even size since
  "pstore/ram: Fix crash when setting number of cpus to an odd number" (v6.3,
  backported to 6.1.y); then console, and ftrace before pmsg up to 6.1 or
  pmsg before ftrace from 6.2 ("pstore/ram: Move pmsg init earlier",
  6daf4e82bd54).  ftrace is split into ``nr_cpu_ids`` zones when loaded by
  module parameters (RAMOOPS_FLAG_FTRACE_PER_CPU).
* :func:`decode_zone` is persistent_ram_post_init(), persistent_ram_init_ecc(),
  persistent_ram_ecc_old() and persistent_ram_save_old() (fs/pstore/ram_core.c).
* :func:`parse_dmesg_header` is ramoops_read_kmsg_hdr() with the kernel's
  vsscanf() semantics (lib/vsprintf.c).
* :func:`decode` builds records as ramoops_pstore_read() and
  decompress_record() (fs/pstore/platform.c) do, named as pstore_mkfile()
  (fs/pstore/inode.c) names them.

:func:`detect` infers the geometry of an image whose parameters are unknown.
Parsers take buffers and return immutable values; they never open files or log.
"""

from __future__ import annotations

import enum
import os
import re
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

from memconsole import _rs
from memconsole._compress import Decompressed, decompress
from memconsole.errors import ConfigError, ParseError

__all__ = [
    "HEADER_SIZE",
    "MIN_MEM_SIZE",
    "PERSISTENT_RAM_SIG",
    "Decoded",
    "Detection",
    "DmesgHeader",
    "EccLayout",
    "Geometry",
    "Progress",
    "Record",
    "ZoneHeader",
    "ZoneKind",
    "ZoneOrder",
    "ZoneResult",
    "ZoneSpec",
    "ZoneStatus",
    "decode",
    "decode_zone",
    "detect",
    "ecc_layout",
    "ecc_notice",
    "layout",
    "parse_dmesg_header",
    "parse_header",
    "rounddown_pow_of_two",
    "scan_headerless",
    "version_code",
]

#: ram_core.c: ``#define PERSISTENT_RAM_SIG (0x43474244) /* DBGC */``.
PERSISTENT_RAM_SIG = 0x43474244
#: sizeof(struct persistent_ram_buffer): u32 sig, atomic_t start, atomic_t size.
HEADER_SIZE = 12
#: ram.c: ``#define MIN_MEM_SIZE 4096UL``, the default of record_size,
#: console_size, ftrace_size and pmsg_size.
MIN_MEM_SIZE = 4096
_HEADER = struct.Struct("<Iii")

#: Anything :func:`decode` accepts as memory: bytes, bytearray, memoryview, mmap.
Buffer = bytes | bytearray | memoryview
#: Progress callback: (bytes done, bytes total).
Progress = Callable[[int, int], None]


class ZoneKind(enum.Enum):
    """Zone types, valued by pstore_type_to_name() (fs/pstore/platform.c)."""

    DMESG = "dmesg"
    CONSOLE = "console"
    FTRACE = "ftrace"
    PMSG = "pmsg"


class ZoneOrder(enum.Enum):
    """Order of the zones after the dmesg zones."""

    #: console, ftrace, pmsg: up to v6.1.
    V6_1 = "6.1"
    #: console, pmsg, ftrace: from v6.2 (commit 6daf4e82bd54).
    V6_2 = "6.2"


def rounddown_pow_of_two(n: int) -> int:
    """The kernel's rounddown_pow_of_two() for n > 0."""
    return 1 << (n.bit_length() - 1)


@dataclass(frozen=True)
class Geometry:
    """The effective ramoops context (``struct ramoops_context`` after
    ramoops_probe() normalised it).

    Attributes:
        mem_size: bytes in the region (``mem_size``).
        record_size: dmesg record size; 0 for no dmesg zones.
        console_size: console zone size; 0 for none.
        ftrace_size: total ftrace size, split across ``ftrace_cpus`` zones.
        pmsg_size: pmsg zone size; 0 for none.
        ecc_size: Reed-Solomon parity bytes per 128-byte block; 0 for no ECC.
        ftrace_cpus: ftrace zones (``nr_cpu_ids`` with module parameters).
        order: zone order after the console zone.
        align_even: round the dmesg/ftrace zone size down to even (v6.3+, and
            backported); False mirrors older kernels.
        ftrace_per_cpu: RAMOOPS_FLAG_FTRACE_PER_CPU (always set by module
            parameters): the ftrace zones are read back as one merged record.
    """

    mem_size: int
    record_size: int = MIN_MEM_SIZE
    console_size: int = MIN_MEM_SIZE
    ftrace_size: int = MIN_MEM_SIZE
    pmsg_size: int = MIN_MEM_SIZE
    ecc_size: int = 0
    ftrace_cpus: int = 1
    order: ZoneOrder = ZoneOrder.V6_2
    align_even: bool = True
    ftrace_per_cpu: bool = True

    @classmethod
    def from_params(cls, mem_size: int, record_size: int = MIN_MEM_SIZE,
                    console_size: int = MIN_MEM_SIZE, ftrace_size: int = MIN_MEM_SIZE,
                    pmsg_size: int = MIN_MEM_SIZE, ecc: int = 0, ftrace_cpus: int = 1,
                    order: ZoneOrder = ZoneOrder.V6_2) -> Geometry:
        """Geometry from ramoops module parameters, normalised as
        ramoops_register_dummy() (``ecc=1`` means 16 bytes) and ramoops_probe()
        (sizes rounded down to a power of two) do."""
        for name, value in (("mem_size", mem_size), ("record_size", record_size),
                            ("console_size", console_size), ("ftrace_size", ftrace_size),
                            ("pmsg_size", pmsg_size), ("ecc", ecc),
                            ("ftrace_cpus", ftrace_cpus)):
            if value < 0:
                raise ConfigError(f"{name} {value} is negative")
        if mem_size == 0 or not (record_size or console_size or ftrace_size or pmsg_size):
            # ramoops_probe(): "The memory size and the record/console size
            # must be non-zero".
            raise ConfigError("mem_size and at least one of record/console/ftrace/pmsg "
                              "size must be non-zero")

        def pow2(v: int) -> int:
            return rounddown_pow_of_two(v) if v else 0

        return cls(mem_size, pow2(record_size), pow2(console_size), pow2(ftrace_size),
                   pow2(pmsg_size), 16 if ecc == 1 else ecc, max(ftrace_cpus, 1), order)

    def with_(self, **changes: object) -> Geometry:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


class ZoneSpec(NamedTuple):
    """One zone of a layout.

    Attributes:
        number: position in the layout (0-based, all kinds).
        kind: zone type.
        id: the record id pstore gives it (dmesg zone number, ftrace CPU, 0).
        offset: byte offset of the zone header from the region start.
        size: zone size in bytes, header and ECC parity included.
    """

    number: int
    kind: ZoneKind
    id: int
    offset: int
    size: int

    @property
    def label(self) -> str:
        """``dmesg-3``, ``console``, ``ftrace-1``...: for messages."""
        multi = self.kind in (ZoneKind.DMESG, ZoneKind.FTRACE)
        return f"{self.kind.value}-{self.id}" if multi else self.kind.value


def _init_przs(kind: ZoneKind, paddr: int, mem_sz: int, record_size: int, cnt: int,
               geom: Geometry, out: list[ZoneSpec]) -> int:
    # ramoops_init_przs(): a negative record_size means "cnt zones of
    # mem_sz / cnt"; a positive one means "mem_sz / record_size zones".
    if mem_sz == 0 or record_size == 0:
        return paddr
    if record_size < 0:
        if cnt == 0:
            return paddr
        if mem_sz // cnt == 0:
            raise ConfigError(f"{kind.value} record size == 0 ({mem_sz} / {cnt})")
    else:
        cnt = mem_sz // record_size
        if cnt == 0:
            raise ConfigError(f"{kind.value} record count == 0 ({mem_sz} / {record_size})")
    if paddr + mem_sz > geom.mem_size:
        raise ConfigError(f"no room for {kind.value} mem region ({mem_sz:#x}@{paddr:#x}) "
                          f"in ({geom.mem_size:#x})")
    zone_sz = mem_sz // cnt
    if geom.align_even:
        zone_sz &= ~1  # ALIGN_DOWN(zone_sz, 2)
    if zone_sz == 0:
        raise ConfigError(f"{kind.value} zone size == 0")
    for i in range(cnt):
        out.append(ZoneSpec(len(out), kind, i, paddr, zone_sz))
        paddr += zone_sz
    return paddr


def _init_prz(kind: ZoneKind, paddr: int, sz: int, geom: Geometry,
              out: list[ZoneSpec]) -> int:
    # ramoops_init_prz(): one zone of sz bytes, if it fits.
    if not sz:
        return paddr
    if paddr + sz > geom.mem_size:
        raise ConfigError(f"no room for {kind.value} mem region ({sz:#x}@{paddr:#x}) "
                          f"in ({geom.mem_size:#x})")
    out.append(ZoneSpec(len(out), kind, 0, paddr, sz))
    return paddr + sz


def layout(geom: Geometry) -> tuple[ZoneSpec, ...]:
    """The zones ramoops_probe() carves out of a region of *geom*.

    Raises :class:`ConfigError` where the kernel's probe would fail."""
    dump_mem_sz = geom.mem_size - geom.console_size - geom.ftrace_size - geom.pmsg_size
    if dump_mem_sz < 0:
        raise ConfigError(f"console+ftrace+pmsg sizes ({geom.console_size}+"
                          f"{geom.ftrace_size}+{geom.pmsg_size}) exceed mem_size "
                          f"{geom.mem_size}")
    zones: list[ZoneSpec] = []
    paddr = _init_przs(ZoneKind.DMESG, 0, dump_mem_sz, geom.record_size, 0, geom, zones)
    paddr = _init_prz(ZoneKind.CONSOLE, paddr, geom.console_size, geom, zones)
    if geom.order is ZoneOrder.V6_2:
        paddr = _init_prz(ZoneKind.PMSG, paddr, geom.pmsg_size, geom, zones)
    cpus = geom.ftrace_cpus if geom.ftrace_per_cpu else 1
    paddr = _init_przs(ZoneKind.FTRACE, paddr, geom.ftrace_size, -1, cpus, geom, zones)
    if geom.order is ZoneOrder.V6_1:
        paddr = _init_prz(ZoneKind.PMSG, paddr, geom.pmsg_size, geom, zones)
    for z in zones:
        ecc_layout(z.size, geom.ecc_size, z)
    return tuple(zones)


class EccLayout(NamedTuple):
    """Where persistent_ram_init_ecc() puts things inside one zone.

    Attributes:
        capacity: data bytes (``prz->buffer_size`` after ECC).
        blocks: ECC blocks covering the data (``ecc_blocks``).
        par_buffer: offset of the first block's parity, from the zone start.
        par_header: offset of the header's parity, from the zone start.
    """

    capacity: int
    blocks: int
    par_buffer: int
    par_header: int


def ecc_layout(zone_size: int, ecc_size: int, spec: ZoneSpec | None = None) -> EccLayout:
    """Data capacity and parity offsets of a zone (persistent_ram_init_ecc()).
    Raises :class:`ConfigError` when the kernel would refuse the ECC size."""
    buffer_size = zone_size - HEADER_SIZE
    where = f"zone {spec.number} ({spec.label}) at {spec.offset:#x}: " if spec else ""
    if buffer_size <= 0:
        raise ConfigError(f"{where}zone size {zone_size} leaves no room after the "
                          f"{HEADER_SIZE}-byte header")
    if not ecc_size:
        return EccLayout(buffer_size, 0, zone_size, zone_size)
    bs = _rs.BLOCK_SIZE
    if ecc_size >= 255 - bs + 1 or buffer_size <= ecc_size:
        raise ConfigError(f"{where}invalid ecc_size {ecc_size} (block size {bs}, "
                          f"buffer size {buffer_size})")
    blocks = -(-(buffer_size - ecc_size) // (bs + ecc_size))  # DIV_ROUND_UP
    total = (blocks + 1) * ecc_size
    if total >= buffer_size:
        raise ConfigError(f"{where}invalid ecc_size {ecc_size} (total {total}, "
                          f"buffer size {buffer_size})")
    capacity = buffer_size - total
    par_buffer = HEADER_SIZE + capacity
    return EccLayout(capacity, blocks, par_buffer, par_buffer + blocks * ecc_size)


class ZoneHeader(NamedTuple):
    """struct persistent_ram_buffer's fixed part.

    Attributes:
        sig: PERSISTENT_RAM_SIG xor the zone type value (0, or the kernel's
            LINUX_VERSION_CODE for ftrace zones).
        start: ``atomic_t start`` read as the kernel's size_t (a negative
            value becomes huge, as buffer_start() makes it).
        size: ``atomic_t size``, likewise.
    """

    sig: int
    start: int
    size: int


def parse_header(raw: Buffer) -> ZoneHeader:
    """Parse the 12-byte zone header at the start of *raw*."""
    if len(raw) < HEADER_SIZE:
        raise ValueError(f"header needs {HEADER_SIZE} bytes, got {len(raw)}")
    sig, start, size = _HEADER.unpack_from(raw, 0)
    return ZoneHeader(sig, start % (1 << 64), size % (1 << 64))


def version_code(sig: int) -> int | None:
    """The LINUX_VERSION_CODE an ftrace zone signature encodes, if plausible
    (major 3..9)."""
    v = sig ^ PERSISTENT_RAM_SIG
    return v if 3 <= v >> 16 <= 9 else None


class ZoneStatus(enum.Enum):
    """What persistent_ram_post_init() would conclude about a zone."""

    OK = "ok"                  # valid header, data kept
    EMPTY = "empty"            # valid header, nothing stored
    BAD_SIG = "bad-signature"  # kernel: "no valid data in buffer", zapped
    INVALID = "invalid"        # kernel: "found existing invalid buffer", zapped
    TRUNCATED = "truncated"    # the image ends inside the zone


class ZoneResult(NamedTuple):
    """One zone after header checks, ECC and ring reassembly.

    Attributes:
        spec: the zone.
        status: verdict of the kernel's acceptance rules.
        header: the header after ECC correction (None when truncated).
        capacity: data bytes the zone can hold (``prz->buffer_size``).
        old_log: the saved text, oldest byte first (empty unless OK).
        ecc_corrected: bytes corrected (header and data), as prz->corrected_bytes.
        ecc_bad_blocks: uncorrectable blocks, as prz->bad_blocks.
        problem: one line naming the zone and numbers, or "".
        data: the zone's data area after correction (for --scan salvage).
    """

    spec: ZoneSpec
    status: ZoneStatus
    header: ZoneHeader | None
    capacity: int
    old_log: bytes
    ecc_corrected: int
    ecc_bad_blocks: int
    problem: str
    data: bytes


def decode_zone(region: Buffer, spec: ZoneSpec, ecc_size: int = 0,
                suspects: list[int] | None = None) -> ZoneResult:
    """Check, correct and reassemble one zone of *region*.  *suspects*, when
    given, are the full ECC blocks already found not to match their parity
    (see :func:`decode`); the others are taken as clean."""
    where = f"zone {spec.number} ({spec.label}) at {spec.offset:#x}"
    avail = len(region) - spec.offset
    if avail < spec.size:
        return ZoneResult(spec, ZoneStatus.TRUNCATED, None, 0, b"", 0, 0,
                          f"{where}: needs {spec.size} bytes, the image has "
                          f"{max(avail, 0)} from there (truncated image?)", b"")
    zone = bytearray(region[spec.offset:spec.offset + spec.size])
    lay = ecc_layout(spec.size, ecc_size, spec)
    corrected = bad = 0
    if ecc_size:
        codec = _rs.codec(ecc_size)
        # persistent_ram_init_ecc(): the header is decoded (and corrected in
        # place) before persistent_ram_post_init() looks at the signature.
        hpar = zone[lay.par_header:lay.par_header + ecc_size]
        if not codec.check(zone[:HEADER_SIZE], hpar):
            res = codec.decode(zone[:HEADER_SIZE], hpar)
            if res.corrected > 0:
                corrected += res.corrected
                zone[:HEADER_SIZE] = res.data
            elif res.corrected < 0:
                bad += 1
    hdr = parse_header(zone)
    data_end = HEADER_SIZE + lay.capacity

    def result(status: ZoneStatus, problem: str = "", old: bytes = b"") -> ZoneResult:
        return ZoneResult(spec, status, hdr, lay.capacity, old, corrected, bad, problem,
                          bytes(zone[HEADER_SIZE:data_end]))

    want = PERSISTENT_RAM_SIG
    # ramoops_init_przs("ftrace", ..., sig = LINUX_VERSION_CODE): accept the
    # version of whichever kernel wrote it.
    ok_sig = (version_code(hdr.sig) is not None if spec.kind is ZoneKind.FTRACE
              else hdr.sig == want)
    if not ok_sig:
        return result(ZoneStatus.BAD_SIG, f"{where}: signature {hdr.sig:#010x} is not "
                      f"{want:#010x}" + (" xor a kernel version" if spec.kind is
                                         ZoneKind.FTRACE else ""))
    # persistent_ram_post_init(): empty, invalid, or kept.
    if hdr.size == 0 and hdr.start == 0:
        return result(ZoneStatus.EMPTY)
    if hdr.size > lay.capacity:
        return result(ZoneStatus.INVALID, f"{where}: size {hdr.size} exceeds capacity "
                      f"{lay.capacity}")
    if hdr.start > hdr.size:
        return result(ZoneStatus.INVALID, f"{where}: start {hdr.start} > size {hdr.size}")
    if ecc_size:
        c, b = _correct_blocks(zone, lay, ecc_size, hdr.size, suspects)
        corrected += c
        bad += b
    data = zone[HEADER_SIZE:data_end]
    # persistent_ram_save_old(): oldest byte at `start` once the ring wrapped.
    old = bytes(data[hdr.start:hdr.size]) + bytes(data[:hdr.start])
    return result(ZoneStatus.OK, "", old)


def _correct_blocks(zone: bytearray, lay: EccLayout, ecc_size: int, size: int,
                    suspects: list[int] | None = None) -> tuple[int, int]:
    """persistent_ram_ecc_old(): check each 128-byte block that starts below
    the header's ``size``, correcting in place; return (corrected, bad)."""
    bs = _rs.BLOCK_SIZE
    codec = _rs.codec(ecc_size)
    nblocks = -(-size // bs)
    full = min(nblocks, lay.capacity // bs)
    if suspects is None:
        mv = memoryview(zone)
        data = mv[HEADER_SIZE:HEADER_SIZE + full * bs]
        par = mv[lay.par_buffer:lay.par_buffer + full * ecc_size]
        suspects = codec.bad_blocks(data, par, full)
        del data, par, mv
    else:
        suspects = [b for b in suspects if b < full]
    suspects.extend(range(full, nblocks))  # the short last block, if any
    corrected = bad = 0
    for blk in suspects:
        d0 = HEADER_SIZE + blk * bs
        d1 = min(d0 + bs, HEADER_SIZE + lay.capacity)
        p0 = lay.par_buffer + blk * ecc_size
        if blk >= full and codec.check(zone[d0:d1], zone[p0:p0 + ecc_size]):
            continue  # the short last block is clean
        res = codec.decode(zone[d0:d1], zone[p0:p0 + ecc_size])
        if res.corrected > 0:
            corrected += res.corrected
            zone[d0:d1] = res.data
        elif res.corrected < 0:
            bad += 1
    return corrected, bad


# -- dmesg header --------------------------------------------------------------

# The kernel's isspace(): _S for 9..13, 32 and 160 (lib/ctype.c).
_SPACE = frozenset((9, 10, 11, 12, 13, 32, 160))


class DmesgHeader(NamedTuple):
    """ramoops_read_kmsg_hdr()'s view of a dmesg zone.

    Attributes:
        length: header bytes (``%n``); 0 means "no valid header", and the
            kernel then zaps the zone instead of showing it.
        time_ns: ``tv_sec * 10**9 + usec * 1000``; 0 when absent.
        compressed: the ``-C`` marker.
    """

    length: int
    time_ns: int
    compressed: bool


def _vsscanf(buf: bytes, fmt: list[str]) -> tuple[int, list[int], int]:
    """The subset of lib/vsprintf.c vsscanf() ramoops_read_kmsg_hdr() uses:
    literals, whitespace, %lld, %lu, %c and %n.  *buf* ends at its length as
    at a NUL.  Returns (conversions, values, %n position or 0)."""
    pos, num, n_pos = 0, 0, 0
    values: list[int] = []
    end = len(buf)

    def ch(i: int) -> int:
        return buf[i] if i < end else 0

    for item in fmt:
        if item == " ":
            while ch(pos) in _SPACE:
                pos += 1
            continue
        if not item.startswith("%"):
            for c in item.encode():
                if ch(pos) != c:
                    return num, values, n_pos
                pos += 1
            continue
        if item == "%n":
            n_pos = pos
            continue
        if ch(pos) == 0:
            break
        if item == "%c":
            values.append(ch(pos))
            pos += 1
            num += 1
            continue
        while ch(pos) in _SPACE:
            pos += 1
        signed = item == "%lld"
        start = pos
        if signed and ch(pos) == ord("-"):
            pos += 1
        if not 0x30 <= ch(pos) <= 0x39:
            break
        value = 0
        while 0x30 <= ch(pos) <= 0x39 and pos - start < 64:
            value = (value * 10 + ch(pos) - 0x30) % (1 << 64)
            pos += 1
        if signed and buf[start] == ord("-"):
            value = -value
        if signed and value >= 1 << 63:
            value -= 1 << 64
        values.append(value)
        num += 1
    return num, values, n_pos


_HDR_WITH_TYPE = ["====", "%lld", ".", "%lu", "-", "%c", " ", "%n"]
_HDR_PLAIN = ["====", "%lld", ".", "%lu", " ", "%n"]


# The form ramoops_write_kmsg_hdr() writes; vsscanf() reads it the same way
# (then skips whitespace for the "\n" directive, as below).
_CANONICAL = re.compile(rb"====(\d{1,18})\.(\d{1,18})-([^\0])", re.DOTALL)


def parse_dmesg_header(old_log: bytes) -> DmesgHeader:
    """ramoops_read_kmsg_hdr(): ``====<sec>.<usec>-<C|D>\\n`` (or the older
    form without ``-C``/``-D``) at the start of a dmesg zone.  Note that the
    ``\\n`` directive skips every whitespace byte that follows, as the kernel
    does, even when it belongs to the record."""
    head = old_log[:96]  # "====" + %lld(20) + "." + %lu(20) + "-C\n" and spaces
    m = _CANONICAL.match(head)
    if m:
        pos = m.end()
        while pos < len(head) and head[pos] in _SPACE:
            pos += 1
        if pos < len(head):
            return DmesgHeader(pos, int(m.group(1)) * 10**9 + int(m.group(2)) * 1000,
                               m.group(3) == b"C")
    num, vals, n = _vsscanf(head, _HDR_WITH_TYPE)
    if num == 3:
        return DmesgHeader(n, vals[0] * 10**9 + vals[1] * 1000, vals[2] == ord("C"))
    num, vals, n = _vsscanf(head, _HDR_PLAIN)
    if num == 2:
        return DmesgHeader(n, vals[0] * 10**9 + vals[1] * 1000, False)
    return DmesgHeader(0, 0, False)


# -- records -------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record, as the kernel would show it in /sys/fs/pstore.

    Attributes:
        zone: layout index of the (first) zone it came from.
        kind: record type.
        id: pstore record id (the dmesg zone number; 0 for the others).
        name: the file name pstore_mkfile() gives it, e.g. ``dmesg-ramoops-1``
            or ``dmesg-ramoops-1.enc.z`` when decompression failed.
        time_ns: dmesg header time in nanoseconds since the epoch; 0 if none.
        compressed: the zone held compressed data (``-C``).
        payload: the record's bytes (decompressed when that worked).
        ecc_notice: the ``\\nECC: ...\\n`` text the kernel appends when ECC is on.
        ecc_corrected: bytes corrected by ECC in its zone(s).
        ecc_bad_blocks: uncorrectable blocks in its zone(s).
        recovered: salvaged by ``--scan`` from a zone the kernel would discard.
        note: why decompression failed, or how it was recovered; "" otherwise.
    """

    zone: int
    kind: ZoneKind
    id: int
    name: str
    time_ns: int
    compressed: bool
    payload: bytes
    ecc_notice: bytes
    ecc_corrected: int
    ecc_bad_blocks: int
    recovered: bool = False
    note: str = ""

    @property
    def content(self) -> bytes:
        """The file's bytes: payload followed by the ECC notice."""
        return self.payload + self.ecc_notice


def ecc_notice(ecc_size: int, corrected: int, bad: int) -> bytes:
    """persistent_ram_ecc_string()."""
    if not ecc_size:
        return b""
    if corrected or bad:
        return f"\nECC: {corrected} Corrected bytes, {bad} unrecoverable blocks\n".encode()
    return b"\nECC: No errors detected\n"


def _ftrace_combine(logs: list[bytes]) -> bytes:
    """pstore_ftrace_combine_log() applied zone after zone: drop each log's
    leading partial record, then merge 24-byte records by timestamp
    (``ts >> 8`` on 64-bit, fs/pstore/internal.h)."""
    rec = 24
    merged: list[bytes] = []
    for log in logs:
        src = log[len(log) % rec:]
        srcs = [src[i:i + rec] for i in range(0, len(src), rec)]
        out: list[bytes] = []
        i = j = 0
        while i < len(merged) and j < len(srcs):
            if _ts(merged[i]) < _ts(srcs[j]):
                out.append(merged[i])
                i += 1
            else:
                out.append(srcs[j])
                j += 1
        out.extend(merged[i:])
        out.extend(srcs[j:])
        merged = out
    return b"".join(merged)


def _ts(rec: bytes) -> int:
    return int.from_bytes(rec[16:24], "little") >> 8


@dataclass(frozen=True)
class Decoded:
    """Everything decoded from one region.

    Attributes:
        geometry: the geometry used.
        zones: per-zone results, in layout order.
        records: records in the order ramoops_pstore_read() returns them.
        problems: one line per zone the kernel would discard or that failed.
    """

    geometry: Geometry
    zones: tuple[ZoneResult, ...]
    records: tuple[Record, ...]
    problems: tuple[str, ...]


def _decompress_cap(geom: Geometry, zones: tuple[ZoneResult, ...]) -> int:
    # decompress_record() since v6.6: 3 * psinfo->bufsize, where bufsize is
    # dprzs[0]->buffer_size.  (6.1's crypto cap was zbufsize_deflate(bufsize),
    # smaller, but never smaller than what its own compressor accepted.)
    for z in zones:
        if z.spec.kind is ZoneKind.DMESG:
            return 3 * z.capacity
    return 3 * MIN_MEM_SIZE


def _dmesg_record(z: ZoneResult, text: bytes, geom: Geometry, cap: int,
                  recovered: bool = False, note: str = "",
                  inflated: Future[Decompressed] | None = None) -> Record | str:
    hdr = parse_dmesg_header(text)
    if not hdr.length:
        return (f"zone {z.spec.number} ({z.spec.label}) at {z.spec.offset:#x}: no "
                f"'====sec.usec-C|D' header in {len(text)} bytes; the kernel discards it")
    payload = text[hdr.length:]
    name = f"dmesg-ramoops-{z.spec.id}"
    if hdr.compressed:
        res = inflated.result() if inflated is not None else decompress(payload, cap)
        if res.data is not None:
            payload = res.data
        else:
            name += ".enc.z"
            note = (note + "; " if note else "") + f"decompression failed: {res.reason}"
    return Record(z.spec.number, ZoneKind.DMESG, z.spec.id, name, hdr.time_ns,
                  hdr.compressed, payload,
                  ecc_notice(geom.ecc_size, z.ecc_corrected, z.ecc_bad_blocks),
                  z.ecc_corrected, z.ecc_bad_blocks, recovered, note)


def _salvage(z: ZoneResult, geom: Geometry, cap: int) -> Record | None:
    """--scan: text from a zone whose header is lost but whose payload survived."""
    data = z.data.rstrip(b"\0")
    if not data:
        return None
    note = f"recovered from zone with {z.status.value} header"
    if z.spec.kind is ZoneKind.DMESG and data.startswith(b"===="):
        rec = _dmesg_record(z, bytes(data), geom, cap, True, note)
        if isinstance(rec, Record):
            if rec.compressed and rec.name.endswith(".enc.z"):
                # The stored size is lost; trailing bytes may follow the stream.
                hdr = parse_dmesg_header(data)
                d = zlib.decompressobj(-15)
                try:
                    out = d.decompress(data[hdr.length:], cap)
                except zlib.error:
                    out = b""
                if out:
                    rec = replace(rec, name=rec.name[:-6], payload=out,
                                  note=note + "; deflate stream possibly cut")
            return replace(rec, name=rec.name + ".recovered")
    kinds = {ZoneKind.DMESG: "dmesg", ZoneKind.CONSOLE: "console",
             ZoneKind.PMSG: "pmsg", ZoneKind.FTRACE: "ftrace"}
    return Record(z.spec.number, z.spec.kind, z.spec.id,
                  f"{kinds[z.spec.kind]}-ramoops-{z.spec.id}.recovered", 0, False, bytes(data),
                  b"", z.ecc_corrected, z.ecc_bad_blocks, True,
                  note + "; ring start unknown, bytes in memory order")


def _batch_suspects(region: Buffer, specs: tuple[ZoneSpec, ...], ecc: int
                    ) -> dict[int, list[int]]:
    """Check the full ECC blocks of every zone in one pass (numpy pays its
    per-call cost once): {zone index: blocks whose parity does not match}.
    Which blocks count depends on each header's size, so headers are read
    (and ECC-corrected) first, as decode_zone() will read them."""
    if not ecc:
        return {}
    codec = _rs.codec(ecc)
    bs = _rs.BLOCK_SIZE
    runs: list[tuple[int, int, int]] = []
    owners: list[int] = []
    for spec in specs:
        if len(region) - spec.offset < spec.size:
            continue
        lay = ecc_layout(spec.size, ecc, spec)
        raw = bytes(region[spec.offset:spec.offset + HEADER_SIZE])
        ph = spec.offset + lay.par_header
        par = bytes(region[ph:ph + ecc])
        if not codec.check(raw, par):
            res = codec.decode(raw, par)
            raw = res.data if res.corrected > 0 else raw
        hdr = parse_header(raw)
        if hdr.size > lay.capacity or hdr.start > hdr.size:
            continue
        full = min(-(-hdr.size // bs), lay.capacity // bs)
        runs.append((spec.offset + HEADER_SIZE, spec.offset + lay.par_buffer, full))
        owners.append(spec.number)
    out: dict[int, list[int]] = {s.number: [] for s in specs}
    live = [i for i, r in enumerate(runs) if r[2] > 0]
    for ri, b in codec.bad_blocks_runs(region, [runs[i] for i in live]):
        out[owners[live[ri]]].append(b)
    return out


def decode(region: Buffer, geom: Geometry, *, scan: bool = False,
           progress: Progress | None = None) -> Decoded:
    """Decode every zone of *region* (the ramoops region itself, offset 0)
    under *geom* and build the records the kernel would show.

    With *scan*, zones the kernel would discard (bad signature, invalid
    start/size, dmesg without a header) are salvaged as ``recovered`` records.
    """
    specs = layout(geom)
    results: list[ZoneResult] = []
    total = specs[-1].offset + specs[-1].size if specs else 0
    suspects = _batch_suspects(region, specs, geom.ecc_size)
    for spec in specs:
        results.append(decode_zone(region, spec, geom.ecc_size,
                                   suspects.get(spec.number) if suspects else None))
        if progress is not None:
            progress(spec.offset + spec.size, total)
    zones = tuple(results)
    problems = [z.problem for z in zones if z.problem]
    cap = _decompress_cap(geom, zones)
    records: list[Record] = []
    by_kind: dict[ZoneKind, list[ZoneResult]] = {k: [] for k in ZoneKind}
    for z in zones:
        by_kind[z.spec.kind].append(z)
    salvage = [z for z in zones if z.status in (ZoneStatus.BAD_SIG, ZoneStatus.INVALID)]
    # ramoops_pstore_read(): dmesg zones, then console, pmsg, ftrace.
    # zlib releases the GIL: inflate the compressed records in parallel.
    live = [z for z in by_kind[ZoneKind.DMESG] if z.status is ZoneStatus.OK and z.old_log]
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        inflated: dict[int, Future[Decompressed]] = {}
        for z in live:
            hdr = parse_dmesg_header(z.old_log)
            if hdr.length and hdr.compressed:
                inflated[z.spec.number] = pool.submit(decompress, z.old_log[hdr.length:], cap)
        for z in live:
            rec = _dmesg_record(z, z.old_log, geom, cap,
                                inflated=inflated.get(z.spec.number))
            if isinstance(rec, str):
                problems.append(rec)
                salvage.append(z)
            else:
                records.append(rec)
    for kind in (ZoneKind.CONSOLE, ZoneKind.PMSG):
        for z in by_kind[kind]:
            if z.status is ZoneStatus.OK and z.old_log:
                records.append(Record(
                    z.spec.number, kind, 0, f"{kind.value}-ramoops-0", 0, False, z.old_log,
                    ecc_notice(geom.ecc_size, z.ecc_corrected, z.ecc_bad_blocks),
                    z.ecc_corrected, z.ecc_bad_blocks))
    ftrace = [z for z in by_kind[ZoneKind.FTRACE] if z.status is ZoneStatus.OK and z.old_log]
    if ftrace:
        if geom.ftrace_per_cpu:
            log = _ftrace_combine([z.old_log for z in ftrace])
        else:
            log = ftrace[0].old_log
        corr = sum(z.ecc_corrected for z in ftrace)
        bad = sum(z.ecc_bad_blocks for z in ftrace)
        if log:
            records.append(Record(ftrace[0].spec.number, ZoneKind.FTRACE, 0,
                                  "ftrace-ramoops-0", 0, False, log,
                                  ecc_notice(geom.ecc_size, corr, bad), corr, bad,
                                  note="binary pstore_ftrace_record entries; the kernel "
                                  "shows them formatted with symbols"))
    if scan:
        for z in sorted(salvage, key=lambda r: r.spec.number):
            rec2 = _salvage(z, geom, cap)
            if rec2 is not None:
                records.append(rec2)
    return Decoded(geom, zones, tuple(records), tuple(problems))


# -- geometry detection ----------------------------------------------------------

_SIG_BYTES = PERSISTENT_RAM_SIG.to_bytes(4, "little")  # b"DBGC"
_SCAN_CHUNK = 16 << 20
_MAX_HITS = 1 << 16


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` inferred.

    Attributes:
        offset: region start within the image.
        geometry: a geometry whose :func:`layout` reproduces the zones found.
        notes: one line per inference, for stderr.
    """

    offset: int
    geometry: Geometry
    notes: tuple[str, ...]


def _find_all(mv: memoryview, needle: bytes, base: int, end: int,
              progress: Progress | None = None) -> list[int]:
    """Offsets of *needle* in mv[base:end], chunk by chunk (bounded)."""
    hits: list[int] = []
    pos = base
    while pos < end and len(hits) < _MAX_HITS:
        stop = min(end, pos + _SCAN_CHUNK + len(needle) - 1)
        chunk = bytes(mv[pos:stop])
        i = chunk.find(needle)
        while i >= 0 and len(hits) < _MAX_HITS:
            hits.append(pos + i)
            i = chunk.find(needle, i + 1)
        pos += _SCAN_CHUNK
        if progress is not None:
            progress(min(pos, end) - base, end - base)
    return hits


def _plausible(mv: memoryview, pos: int) -> bool:
    if pos + HEADER_SIZE > len(mv):
        return False
    start: int = _HEADER.unpack_from(mv, pos)[1]
    size: int = _HEADER.unpack_from(mv, pos)[2]
    return 0 <= start <= size


def _is_ftrace_header(mv: memoryview, pos: int) -> bool:
    if pos + HEADER_SIZE > len(mv) or not _plausible(mv, pos):
        return False
    sig: int = _HEADER.unpack_from(mv, pos)[0]
    return version_code(sig) is not None


def _progression(hits: list[int], mv: memoryview) -> tuple[int, int, int]:
    """Longest run base, base+Z, base+2Z... among *hits* (one missing header
    allowed between two found ones, unless an ftrace header sits there).
    Returns (base, Z, count)."""
    found = set(hits)
    best = (hits[0], 0, 1)
    for i, base in enumerate(hits[:4096]):
        for nxt in hits[i + 1:i + 4]:
            z = nxt - base
            if z < HEADER_SIZE + 4:
                continue
            count, pos = 1, base
            while count < 1 << 20:
                if pos + z in found:
                    pos += z
                elif pos + 2 * z in found and not _is_ftrace_header(mv, pos + z):
                    pos += 2 * z
                    count += 1
                else:
                    break
                count += 1
            if count > best[2]:
                best = (base, z, count)
    return best


def _detect_ecc(mv: memoryview, zones: list[tuple[int, int]]) -> int:
    """ECC size whose header parity (last ``ecc`` bytes of the zone,
    persistent_ram_update_header_ecc()) matches on every zone tried; 0 if none."""
    tried = [(p, s) for p, s in zones if p + s <= len(mv)][:6]
    for e in range(1, 128):
        codec = _rs.codec(e)
        ok = 0
        for pos, size in tried:
            if size < HEADER_SIZE + 2 * e + 1:
                break
            hdr = bytes(mv[pos:pos + HEADER_SIZE])
            if codec.encode(hdr) != bytes(mv[pos + size - e:pos + size]):
                break
            ok += 1  # noqa: SIM113 - counts matches, not positions
        else:
            if ok:
                return e
    return 0


def _last_size(mv: memoryview, pos: int, ecc: int, default: int) -> int:
    """Size of the last zone, whose end no header marks: the power of two
    whose end holds the header parity when ECC is on, else *default* if the
    stored size fits, else the smallest power of two that holds it."""
    room = len(mv) - pos
    if ecc:
        codec = _rs.codec(ecc)
        par = codec.encode(bytes(mv[pos:pos + HEADER_SIZE]))
        for k in range(7, 31):
            s = 1 << k
            if s > room:
                break
            if bytes(mv[pos + s - ecc:pos + s]) == par:
                return s
    stored = _HEADER.unpack_from(mv, pos)[2]
    size = default
    while size - HEADER_SIZE < stored and size < 1 << 30:
        size *= 2
    return min(size, room) if room > HEADER_SIZE else size


def _looks_dmesg(mv: memoryview, pos: int) -> bool:
    size: int = _HEADER.unpack_from(mv, pos)[2]
    return size > 0 and bytes(mv[pos + HEADER_SIZE:pos + HEADER_SIZE + 4]) == b"===="


def detect(image: Buffer, start: int = 0, end: int | None = None,
           progress: Progress | None = None) -> Detection:
    """Find a ramoops region in *image* (between *start* and *end*) from its
    zone headers and infer the geometry: dmesg zone stride and count, the
    zones after them, ftrace CPUs and the 6.1/6.2 order (ftrace zones carry
    ``PERSISTENT_RAM_SIG ^ LINUX_VERSION_CODE``), and the ECC size (header
    parity at the end of each zone).  Raises :class:`ParseError`."""
    mv = memoryview(image).cast("B") if not isinstance(image, memoryview) else image
    end = len(mv) if end is None else min(end, len(mv))
    hits = [p for p in _find_all(mv, _SIG_BYTES, start, end, progress) if _plausible(mv, p)]
    if not hits:
        raise ParseError(f"no ramoops zone header (signature {PERSISTENT_RAM_SIG:#010x} "
                         f"'DBGC') in bytes {start:#x}..{end:#x}; give --offset and the "
                         "geometry options, or --scan")
    notes: list[str] = []
    base, z, count = _progression(hits, mv)
    found = set(hits)
    if count == 1:
        # A single dmesg zone: it ends where the next header starts.
        nxt = [h for h in hits if h > base]
        z = (nxt[0] - base) if nxt else _last_size(mv, base, 0, MIN_MEM_SIZE)
        count = 2  # the walk below starts one zone further
    # The zone after the last dmesg zone starts one stride further, so the
    # run always ends on the first zone of the tail (console, usually): walk
    # header to header from there.
    tail: list[tuple[int, bool]] = []  # (position, is_ftrace)
    count -= 1
    pos = base + count * z
    ftrace_sig = None
    for _ in range(3 + 256):
        if pos in found:
            tail.append((pos, False))
        elif _is_ftrace_header(mv, pos) and (
                ftrace_sig is None or _HEADER.unpack_from(mv, pos)[0] == ftrace_sig):
            ftrace_sig = _HEADER.unpack_from(mv, pos)[0]
            tail.append((pos, True))
        else:
            break
        nexts = [h for h in hits if h > pos][:1]
        if ftrace_sig is not None:
            i = bytes(mv[pos + 1:min(end, pos + (64 << 20))]).find(
                ftrace_sig.to_bytes(4, "little"))
            if i >= 0 and _plausible(mv, pos + 1 + i):
                nexts.append(pos + 1 + i)
        else:
            for cand in (b"AC", b"BC", b"@C", b"?C"):  # majors 6, 5, 7, 8
                i = bytes(mv[pos + 4:min(end, pos + (64 << 20))]).find(cand)
                while i >= 0:
                    q = pos + 4 + i - 2
                    if _is_ftrace_header(mv, q):
                        nexts.append(q)
                        break
                    i = bytes(mv[pos + 4:min(end, pos + (64 << 20))]).find(cand, i + 1)
        if not nexts:
            pos = -1
            break
        pos = min(nexts)
    if len(tail) == 1 and not tail[0][1] and z:
        # Nothing follows: the run's last zone is a dmesg zone after all
        # (the borrowing below may still make it console/pmsg).
        tail = []
        count += 1
    kinds = "".join("F" if f else "E" for _, f in tail)
    nf = kinds.count("F")
    order = ZoneOrder.V6_2
    if "F" in kinds and "E" in kinds[kinds.index("F"):]:
        order = ZoneOrder.V6_1
    before_f = kinds.split("F")[0] if "F" in kinds else kinds
    # Zones of the dmesg run that are really console/pmsg (same size as a
    # dmesg zone): module parameters default both to 4096, so assume they
    # exist when the tail lacks them and the run's last zones hold no dmesg.
    wanted = 1 if order is ZoneOrder.V6_1 else 2
    borrow = 0
    pow2 = z > 0 and z & (z - 1) == 0
    while (pow2 and len(before_f) + borrow < wanted and count - borrow > 1
           and not _looks_dmesg(mv, base + (count - borrow - 1) * z)):
        borrow += 1
    if borrow:
        notes.append(f"took the last {borrow} zone(s) of {z} bytes as console/pmsg "
                     "(module defaults); their positions are the same either way")
    count -= borrow
    lead = [(base + (count + i) * z, False) for i in range(borrow)]
    zones_after = lead + tail
    sizes: list[int | None] = []
    for i, (p, _) in enumerate(zones_after):
        sizes.append(zones_after[i + 1][0] - p if i + 1 < len(zones_after) else None)
    known = [(base + i * z, z) for i in range(min(count, 4))] + [
        (p, s) for (p, _), s in zip(zones_after, sizes, strict=True) if s]
    ecc = _detect_ecc(mv, known)
    if sizes and sizes[-1] is None:
        p, is_f = zones_after[-1]
        if is_f and nf > 1:
            sizes[-1] = zones_after[-1][0] - zones_after[-2][0]
        else:
            sizes[-1] = _last_size(mv, p, ecc, MIN_MEM_SIZE)
            notes.append(f"last zone at {p - base:#x}: size {sizes[-1]} "
                         f"({'from its ECC parity' if ecc else 'assumed'})")
    es = [s or 0 for (p, f), s in zip(zones_after, sizes, strict=True) if not f]
    fs = [s or 0 for (p, f), s in zip(zones_after, sizes, strict=True) if f]
    if order is ZoneOrder.V6_1:
        console = es[0] if len(es) > 1 else 0
        pmsg = es[-1] if es else 0
    else:
        console = es[0] if es else 0
        pmsg = es[1] if len(es) > 1 else 0
    ftrace = sum(fs)
    sum_tail = console + pmsg + ftrace
    geom = Geometry(mem_size=count * z + sum_tail, record_size=z if count else 0,
                    console_size=console, ftrace_size=ftrace, pmsg_size=pmsg,
                    ecc_size=ecc, ftrace_cpus=max(nf, 1), order=order,
                    align_even=(z % 2 == 0) and all(s % 2 == 0 for s in fs))
    notes.insert(0, f"region at {base:#x}: {count} dmesg zone(s) of {z} bytes, console "
                 f"{console}, pmsg {pmsg}, ftrace {ftrace} in {max(nf, 1)} zone(s), "
                 f"ecc {ecc}, zone order {order.value}"
                 + ("" if nf and pmsg else " (order does not matter here)"))
    if ftrace_sig is not None:
        v = version_code(ftrace_sig) or 0
        notes.append(f"ftrace zones were set up by Linux {v >> 16}.{(v >> 8) & 255}."
                     f"{v & 255}")
    if len(hits) > count + len(tail) + borrow:
        notes.append(f"ignored {len(hits) - count - len(tail)} other 'DBGC' match(es) "
                     "outside the zone layout")
    return Detection(base, geom, tuple(notes))


def scan_headerless(image: Buffer, start: int = 0, end: int | None = None,
                    max_out: int = 3 << 20, progress: Progress | None = None
                    ) -> tuple[Record, ...]:
    """``--scan`` when no zone header survives at all: find dmesg records by
    their ``====sec.usec-C|D`` line anywhere in *image* and recover them.
    Compressed ones end where their deflate stream ends; plain ones at the
    first NUL.  Records are numbered in image order and marked recovered."""
    mv = memoryview(image).cast("B") if not isinstance(image, memoryview) else image
    end = len(mv) if end is None else min(end, len(mv))
    out: list[Record] = []
    for pos in _find_all(mv, b"====", start, end, progress):
        head = bytes(mv[pos:pos + 96])
        hdr = parse_dmesg_header(head)
        if not hdr.length or not _CANONICAL.match(head):
            continue
        body_at = pos + hdr.length
        if hdr.compressed:
            d = zlib.decompressobj(-15)
            try:
                text = d.decompress(bytes(mv[body_at:min(end, body_at + max_out)]), max_out)
            except zlib.error:
                continue
            if not d.eof:
                continue
            used = min(end, body_at + max_out) - body_at - len(d.unused_data)
            raw = bytes(mv[body_at:body_at + used])
        else:
            chunk = bytes(mv[body_at:min(end, body_at + max_out)])
            text = raw = chunk.split(b"\0", 1)[0]
        if not text:
            continue
        n = len(out)
        out.append(Record(-1, ZoneKind.DMESG, n, f"dmesg-ramoops-{n}.recovered", hdr.time_ns,
                          hdr.compressed, text, b"", 0, 0, True,
                          f"found at image offset {pos:#x} without a zone header "
                          f"({len(raw)} bytes stored)"))
        if len(out) >= 4096:
            break
    return tuple(out)
