"""One persistent_ram zone: header, ECC, ring (private; public names
re-exported by :mod:`memconsole.ramoops`).

Mirrors persistent_ram_post_init(), persistent_ram_init_ecc(),
persistent_ram_ecc_old() and persistent_ram_save_old()
(fs/pstore/ram_core.c): the header is ECC-corrected first, then its
signature and ``start``/``size`` are checked against the zone's capacity
exactly as the kernel checks them, then the data blocks below ``size`` are
corrected and the ring is unrolled oldest byte first.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from memconsole import _rs
from memconsole._ramoops_geometry import (
    HEADER,
    HEADER_SIZE,
    PERSISTENT_RAM_SIG,
    Buffer,
    EccLayout,
    ZoneKind,
    ZoneSpec,
    ecc_layout,
)

__all__ = [
    "ZoneHeader",
    "ZoneResult",
    "ZoneStatus",
    "batch_suspects",
    "decode_zone",
    "parse_header",
    "version_code",
]


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
    sig, start, size = HEADER.unpack_from(raw, 0)
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
    (see :func:`batch_suspects`); the others are taken as clean."""
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


def batch_suspects(region: Buffer, specs: tuple[ZoneSpec, ...], ecc: int
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
