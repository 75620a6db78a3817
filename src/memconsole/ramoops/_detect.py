"""Finding a ramoops region in a memory image and inferring its geometry
(private; public names re-exported by :mod:`memconsole.ramoops`).

:func:`detect` looks for zone headers (``PERSISTENT_RAM_SIG``, "DBGC", as
persistent_ram_post_init() checks it in fs/pstore/ram_core.c), finds the
arithmetic progression the dmesg zones form (ramoops_init_przs() in
fs/pstore/ram.c gives them one size), walks the zones after them, tells
ftrace zones by their ``PERSISTENT_RAM_SIG ^ LINUX_VERSION_CODE`` signature,
and finds the ECC size from the header parity persistent_ram_update_header_ecc()
writes at the end of each zone.  :func:`scan_headerless` recovers dmesg
records when no header survives.  Every scan is chunked and bounded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from memconsole.errors import ParseError
from memconsole.ramoops import _rs
from memconsole.ramoops._dmesg import CANONICAL, parse_dmesg_header
from memconsole.ramoops._geometry import (
    HEADER,
    HEADER_SIZE,
    MIN_MEM_SIZE,
    PERSISTENT_RAM_SIG,
    Buffer,
    Geometry,
    Progress,
    ZoneKind,
    ZoneOrder,
)
from memconsole.ramoops._records import Record
from memconsole.ramoops._zone import version_code

__all__ = ["Detection", "detect", "detect_ecc", "scan_headerless"]

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
    start: int = HEADER.unpack_from(mv, pos)[1]
    size: int = HEADER.unpack_from(mv, pos)[2]
    return 0 <= start <= size


def _is_ftrace_header(mv: memoryview, pos: int) -> bool:
    if pos + HEADER_SIZE > len(mv) or not _plausible(mv, pos):
        return False
    sig: int = HEADER.unpack_from(mv, pos)[0]
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


def detect_ecc(mv: memoryview, zones: list[tuple[int, int]]) -> int:
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
    stored = HEADER.unpack_from(mv, pos)[2]
    size = default
    while size - HEADER_SIZE < stored and size < 1 << 30:
        size *= 2
    return min(size, room) if room > HEADER_SIZE else size


def _looks_dmesg(mv: memoryview, pos: int) -> bool:
    size: int = HEADER.unpack_from(mv, pos)[2]
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
                ftrace_sig is None or HEADER.unpack_from(mv, pos)[0] == ftrace_sig):
            ftrace_sig = HEADER.unpack_from(mv, pos)[0]
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
    ecc = detect_ecc(mv, known)
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
        if not hdr.length or not CANONICAL.match(head):
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
