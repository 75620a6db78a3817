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

from memconsole.ramoops import _rs, _rs_batch
from memconsole.ramoops._geometry import (
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
    """Check, correct and reassemble one zone of *region*.

    *suspects*, when given (by :func:`batch_suspects`), says that the
    header's parity was found to match and lists every data block (full, or
    the short last one) below the header's ``size`` whose parity does not;
    the other blocks are taken as clean.  A zone with nothing to correct is
    read in place, without copying it."""
    avail = len(region) - spec.offset
    if avail < spec.size:
        return ZoneResult(spec, ZoneStatus.TRUNCATED, None, 0, b"", 0, 0,
                          f"{_where(spec)}: needs {spec.size} bytes, the image has "
                          f"{max(avail, 0)} from there (truncated image?)", b"")
    lay = ecc_layout(spec.size, ecc_size, spec)
    if ecc_size and (suspects is None or suspects):
        return _decode_copy(region, spec, lay, ecc_size, suspects)
    # No ECC, or every block checked and clean: nothing to correct.
    sig, start, size = HEADER.unpack_from(region, spec.offset)
    hdr = ZoneHeader(sig, start % (1 << 64), size % (1 << 64))
    d0 = spec.offset + HEADER_SIZE
    status, problem = _verdict(spec, hdr, lay.capacity)
    # An empty zone has nothing to keep or salvage: no copy of its data.
    data = b"" if status is ZoneStatus.EMPTY else bytes(region[d0:d0 + lay.capacity])
    # persistent_ram_save_old(): oldest byte at `start` once the ring wrapped.
    old = data[hdr.start:hdr.size] + data[:hdr.start] if status is ZoneStatus.OK else b""
    return ZoneResult(spec, status, hdr, lay.capacity, old, 0, 0, problem, data)


def _where(spec: ZoneSpec) -> str:
    return f"zone {spec.number} ({spec.label}) at {spec.offset:#x}"


def _verdict(spec: ZoneSpec, hdr: ZoneHeader, capacity: int) -> tuple[ZoneStatus, str]:
    """persistent_ram_post_init()'s conclusion on a (corrected) header."""
    want = PERSISTENT_RAM_SIG
    # ramoops_init_przs("ftrace", ..., sig = LINUX_VERSION_CODE): accept the
    # version of whichever kernel wrote it.
    ok_sig = (version_code(hdr.sig) is not None if spec.kind is ZoneKind.FTRACE
              else hdr.sig == want)
    if not ok_sig:
        return ZoneStatus.BAD_SIG, (
            f"{_where(spec)}: signature {hdr.sig:#010x} is not {want:#010x}"
            + (" xor a kernel version" if spec.kind is ZoneKind.FTRACE else ""))
    # persistent_ram_post_init(): empty, invalid, or kept.
    if hdr.size == 0 and hdr.start == 0:
        return ZoneStatus.EMPTY, ""
    if hdr.size > capacity:
        return ZoneStatus.INVALID, (f"{_where(spec)}: size {hdr.size} exceeds capacity "
                                    f"{capacity}")
    if hdr.start > hdr.size:
        return ZoneStatus.INVALID, f"{_where(spec)}: start {hdr.start} > size {hdr.size}"
    return ZoneStatus.OK, ""


def _decode_copy(region: Buffer, spec: ZoneSpec, lay: EccLayout, ecc_size: int,
                 suspects: list[int] | None) -> ZoneResult:
    """A zone with ECC that may need correcting: work on a copy."""
    zone = bytearray(region[spec.offset:spec.offset + spec.size])
    corrected = bad = 0
    if suspects is None:
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
    status, problem = _verdict(spec, hdr, lay.capacity)
    data_end = HEADER_SIZE + lay.capacity
    old = b""
    if status is ZoneStatus.OK:
        c, b = _correct_blocks(zone, lay, ecc_size, hdr.size, suspects)
        corrected += c
        bad += b
        data = zone[HEADER_SIZE:data_end]
        # persistent_ram_save_old(): oldest byte at `start` once the ring wrapped.
        old = bytes(data[hdr.start:hdr.size]) + bytes(data[:hdr.start])
    return ZoneResult(spec, status, hdr, lay.capacity, old, corrected, bad, problem,
                      bytes(zone[HEADER_SIZE:data_end]))


def _correct_blocks(zone: bytearray, lay: EccLayout, ecc_size: int, size: int,
                    suspects: list[int] | None = None) -> tuple[int, int]:
    """persistent_ram_ecc_old(): check each 128-byte block that starts below
    the header's ``size`` (the last one shorter when the data area ends
    inside it), correcting in place; return (corrected, bad).  *suspects*:
    as :func:`decode_zone` takes them."""
    bs = _rs.BLOCK_SIZE
    codec = _rs.codec(ecc_size)
    nblocks = -(-size // bs)
    full = min(nblocks, lay.capacity // bs)
    if suspects is None:
        mv = memoryview(zone)
        data = mv[HEADER_SIZE:HEADER_SIZE + full * bs]
        par = mv[lay.par_buffer:lay.par_buffer + full * ecc_size]
        suspects = _rs_batch.bad_blocks(codec, data, par, full)
        del data, par, mv
        if nblocks > full:  # the short last block
            d0 = HEADER_SIZE + full * bs
            p0 = lay.par_buffer + full * ecc_size
            if not codec.check(zone[d0:HEADER_SIZE + lay.capacity], zone[p0:p0 + ecc_size]):
                suspects.append(full)
    corrected = bad = 0
    for blk in suspects:
        if blk >= nblocks:
            continue
        d0 = HEADER_SIZE + blk * bs
        d1 = min(d0 + bs, HEADER_SIZE + lay.capacity)
        p0 = lay.par_buffer + blk * ecc_size
        res = codec.decode(zone[d0:d1], zone[p0:p0 + ecc_size])
        if res.corrected > 0:
            corrected += res.corrected
            zone[d0:d1] = res.data
        elif res.corrected < 0:
            bad += 1
    return corrected, bad


def batch_suspects(region: Buffer, specs: tuple[ZoneSpec, ...], ecc: int
                   ) -> dict[int, list[int]]:
    """Check the ECC of every zone of *specs* in one pass (numpy, or the
    standard-library kernel, pays its per-call cost once).

    First every zone header against its parity; then, for each zone whose
    header matched and passes persistent_ram_post_init(), every block below
    its ``size``, the short last one included.  Returns {zone number: blocks
    whose parity does not match} for those zones (the *suspects* of
    :func:`decode_zone`); zones whose header parity did not match, or that
    the image truncates, are left out and :func:`decode_zone` checks them
    alone."""
    if not ecc:
        return {}
    codec = _rs.codec(ecc)
    bs = _rs.BLOCK_SIZE
    fits = [(s, ecc_layout(s.size, ecc, s)) for s in specs
            if len(region) - s.offset >= s.size]
    bad_heads = set(_rs_batch.bad_blocks_at(
        codec, region, [(s.offset, HEADER_SIZE, s.offset + lay.par_header)
                        for s, lay in fits]))
    out: dict[int, list[int]] = {}
    runs: list[tuple[int, int, int]] = []
    run_zone: list[int] = []
    shorts: list[tuple[int, int, int]] = []
    short_block: list[tuple[int, int]] = []
    for i, (spec, lay) in enumerate(fits):
        if i in bad_heads:
            continue
        out[spec.number] = []
        hdr = parse_header(region[spec.offset:spec.offset + HEADER_SIZE])
        if _verdict(spec, hdr, lay.capacity)[0] is not ZoneStatus.OK:
            continue
        # persistent_ram_ecc_old(): blocks starting below size (<= capacity,
        # checked above); the last is short when capacity is not a multiple
        # of the block size and size reaches into it.
        nblocks = -(-hdr.size // bs)
        full = min(nblocks, lay.capacity // bs)
        data0 = spec.offset + HEADER_SIZE
        par0 = spec.offset + lay.par_buffer
        if full:
            runs.append((data0, par0, full))
            run_zone.append(spec.number)
        if nblocks > full:
            shorts.append((data0 + full * bs, lay.capacity - full * bs, par0 + full * ecc))
            short_block.append((spec.number, full))
    for ri, blk in _rs_batch.bad_blocks_runs(codec, region, runs):
        out[run_zone[ri]].append(blk)
    for si in _rs_batch.bad_blocks_at(codec, region, shorts):
        number, blk = short_block[si]
        out[number].append(blk)
    return out
