"""Finding a ramoops region in a memory image and inferring its geometry
(private; public names re-exported by :mod:`memconsole.ramoops`).

The kernel lays a region out in one pass, ramoops_probe() calling
ramoops_init_przs()/ramoops_init_prz() (fs/pstore/ram.c): ``cnt`` dmesg
zones of one size, then console, then pmsg and ftrace (ftrace first up to
6.1), every size but the dmesg one a power of two, ftrace split into
``nr_cpu_ids`` zones of one size.  persistent_ram_new() then stamps every
zone with a header (persistent_ram_post_init(), fs/pstore/ram_core.c).
:func:`detect` reads that layout back in named steps, each mirroring one
of those rules and each bounded:

1. :func:`_candidate_headers`: the headers persistent_ram_post_init()
   would keep, found by their signature;
2. :func:`_dmesg_run`: the longest arithmetic run of them, the dmesg zones
   ramoops_init_przs() gives one size;
3. :func:`_walk_tail`: the zones after them, header to header at the
   power-of-two sizes ramoops_probe() leaves them;
4. :func:`_classify_tail`: which tail zone is console, pmsg or ftrace, and
   the zone order;
5. :func:`detect_ecc`: the ECC size, from the header parity
   persistent_ram_update_header_ecc() writes at the end of every zone;
6. :func:`_last_size`: the size of the last zone, whose end no header marks;
7. :func:`_assemble`: the geometry, checked with :func:`layout` as
   ramoops_probe() would check it.

Work is linear in the image: the signature search runs at ``bytes.find``
speed and skips windows packed with more signatures than any layout puts
there (hostile or random memory), each candidate is walked at most once per
stride, the tail walk tries at most 27 positions per zone, and no search
reads more than the image once.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

from memconsole.errors import ConfigError, ParseError
from memconsole.ramoops import _rs
from memconsole.ramoops._geometry import (
    HEADER,
    HEADER_SIZE,
    MAX_FTRACE_CPUS,
    MIN_MEM_SIZE,
    PERSISTENT_RAM_SIG,
    Buffer,
    Geometry,
    Progress,
    ZoneOrder,
    layout,
)
from memconsole.ramoops._zone import version_code

__all__ = ["MIN_DMESG_ZONE", "Detection", "detect", "detect_ecc", "find_bytes"]

_SIG_BYTES = PERSISTENT_RAM_SIG.to_bytes(4, "little")  # b"DBGC"
#: Detection looks for dmesg zones of at least this size.  Not a kernel rule
#: (modern kernels take any record_size; give the geometry options for a
#: smaller one), but below it a zone holds the dmesg header and a few lines
#: of log, and memory packed with signatures closer than that (hostile or
#: random) is not taken for thousands of tiny zones.
MIN_DMESG_ZONE = 1024
_WINDOW = 4096
#: Signatures a window can hold in a real layout: one per dmesg zone, plus
#: console and pmsg and a few stray ones in zone data.  A window holding
#: more is packed with copies; its signatures are not candidates.
_DENSE = _WINDOW // MIN_DMESG_ZONE + 4
_CHUNK = 16 << 20
_MAX_CANDIDATES = 1 << 20
_STRIDES_PER_BASE = 3
#: Tail zone sizes tried: 16 bytes to 1 GiB (powers of two, ramoops_probe()).
_TAIL_SIZES = tuple(1 << k for k in range(4, 31))


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


def find_bytes(mv: memoryview, needle: bytes, lo: int, hi: int, step: int = 1 << 20
               ) -> int | None:
    """First offset of *needle* starting in mv[lo:hi], read *step* bytes at a
    time (never the whole image at once); None if absent."""
    pos = lo
    while pos < hi:
        stop = min(hi, pos + step)
        i = bytes(mv[pos:min(len(mv), stop + len(needle) - 1)]).find(needle)
        if 0 <= i < stop - pos:
            return pos + i
        pos = stop
    return None


# -- header tests (persistent_ram_post_init()) ----------------------------------------


def _kept(mv: memoryview, pos: int, end: int) -> tuple[int, int, int] | None:
    """The header at *pos* if persistent_ram_post_init() could keep it:
    ``start <= size`` (atomic_t read as size_t, so negative values are huge
    and invalid) and ``size`` no larger than the image leaves the zone."""
    if pos < 0 or pos + HEADER_SIZE > end:
        return None
    sig, start, size = HEADER.unpack_from(mv, pos)
    if 0 <= start <= size <= end - pos - HEADER_SIZE:
        return sig, start, size
    return None


def _dbgc_at(mv: memoryview, pos: int, end: int) -> bool:
    """A dmesg, console or pmsg zone header (``sig == PERSISTENT_RAM_SIG``)."""
    h = _kept(mv, pos, end)
    return h is not None and h[0] == PERSISTENT_RAM_SIG


def _ftrace_at(mv: memoryview, pos: int, end: int, sig: int | None = None) -> bool:
    """An ftrace zone header: ramoops_init_przs("ftrace", ...,
    LINUX_VERSION_CODE) makes its signature ``PERSISTENT_RAM_SIG ^
    LINUX_VERSION_CODE``; *sig*, when given, is the one it must equal."""
    h = _kept(mv, pos, end)
    if h is None:
        return False
    return h[0] == sig if sig is not None else version_code(h[0]) is not None


# -- step 1: candidate headers --------------------------------------------------------


class _Candidates(NamedTuple):
    positions: list[int]
    dense: int          # signatures skipped in windows packed with them
    stopped_at: int     # where the search stopped at its cap, or -1


def _candidate_headers(mv: memoryview, start: int, end: int,
                       progress: Progress | None) -> _Candidates:
    """Step 1: every ``DBGC`` in mv[start:end] followed by a ``start`` and
    ``size`` persistent_ram_post_init() would keep.  Windows of 4 KiB holding
    more signatures than a layout can (:data:`_DENSE`) are skipped whole, so
    a flood costs ``bytes.count`` time, not a Python step per signature."""
    hits: list[int] = []
    dense = 0
    pos = start
    while pos < end:
        stop = min(end, pos + _CHUNK)
        chunk = bytes(mv[pos:min(end, stop + HEADER_SIZE - 1)])
        span = stop - pos + len(_SIG_BYTES) - 1  # signatures starting before stop
        windows = ((0, span),) if chunk.count(_SIG_BYTES, 0, span) <= _DENSE else (
            (w, min(span, w + _WINDOW + len(_SIG_BYTES) - 1))
            for w in range(0, stop - pos, _WINDOW))
        for w0, w1 in windows:
            n = chunk.count(_SIG_BYTES, w0, w1)
            if n > _DENSE:
                dense += n
                continue
            i = chunk.find(_SIG_BYTES, w0, w1) if n else -1
            while i >= 0:
                if i + HEADER_SIZE <= len(chunk):
                    _, hs, hz = HEADER.unpack_from(chunk, i)
                    if 0 <= hs <= hz <= end - pos - i - HEADER_SIZE:
                        hits.append(pos + i)
                        if len(hits) >= _MAX_CANDIDATES:
                            return _Candidates(hits, dense, pos + i)
                i = chunk.find(_SIG_BYTES, i + 1, w1)
        pos = stop
        if progress is not None:
            progress(pos - start, end - start)
    return _Candidates(hits, dense, -1)


# -- step 2: the dmesg run ------------------------------------------------------------


class _Run(NamedTuple):
    base: int
    stride: int
    members: int


def _dmesg_run(hits: list[int], mv: memoryview, end: int) -> _Run:
    """Step 2: ramoops_init_przs() gives the ``cnt`` dmesg zones one size, so
    their headers form the longest run base, base+Z, base+2Z...  Strides are
    the distances from each candidate to the next three at least
    :data:`MIN_DMESG_ZONE` away; one missing header is allowed between two
    found ones (unless an ftrace header sits there).  Each candidate is
    walked at most once per stride, and no walk starts that could not beat
    the longest run so far, so the work is linear in the hits."""
    found = set(hits)
    best = _Run(hits[0], 0, 1)
    walked: dict[int, set[int]] = {}
    last = hits[-1]
    for i, base in enumerate(hits):
        j = bisect.bisect_left(hits, base + MIN_DMESG_ZONE, i + 1)
        for nxt in hits[j:j + _STRIDES_PER_BASE]:
            z = nxt - base
            if (last - base) // z + 1 <= best.members:
                break  # no longer run can start here (strides only grow)
            seen = walked.setdefault(z, set())
            if base in seen:
                continue  # inside a run of this stride already walked
            count, pos = 1, base
            seen.add(pos)
            while True:
                if pos + z in found:
                    pos += z
                    count += 1
                elif pos + 2 * z in found and not _ftrace_at(mv, pos + z, end):
                    pos += 2 * z
                    count += 2
                else:
                    break
                seen.add(pos)
            if count > best.members:
                best = _Run(base, z, count)
    return best


# -- step 3: the zones after the dmesg zones ------------------------------------------


class _TailZone(NamedTuple):
    pos: int
    ftrace: bool


def _next_at_sizes(mv: memoryview, pos: int, end: int, sizes: tuple[int, ...]) -> int | None:
    """The nearest of pos + s (s in *sizes*, ascending) holding a zone header."""
    for s in sizes:
        q = pos + s
        if q + HEADER_SIZE > end:
            break
        if _dbgc_at(mv, q, end) or _ftrace_at(mv, q, end):
            return q
    return None


def _walk_tail(mv: memoryview, pos: int, end: int, stride: int) -> list[_TailZone]:
    """Step 3: walk header to header from *pos*, the run's last member (the
    zone after the last dmesg zone starts one stride further, so the run
    ends on the first tail zone, or on the last dmesg zone when no console
    or pmsg follows).  ramoops_probe() rounds console_size, pmsg_size and
    ftrace_size down to powers of two, so the next header is at one of 27
    power-of-two distances (or one dmesg stride); ftrace zones all have
    ``ftrace_size / nr_cpu_ids`` bytes, found once from the first two."""
    zones: list[_TailZone] = []
    sizes = tuple(sorted({*_TAIL_SIZES, stride} if stride else set(_TAIL_SIZES)))
    sig: int | None = None   # the ftrace signature, once one is seen
    fz = 0                   # the ftrace zone size, once two are seen
    searched = False
    while len(zones) < 3 + MAX_FTRACE_CPUS:
        if _dbgc_at(mv, pos, end):
            zones.append(_TailZone(pos, False))
        elif _ftrace_at(mv, pos, end, sig):
            sig = HEADER.unpack_from(mv, pos)[0]
            zones.append(_TailZone(pos, True))
        else:
            break
        nxt: int | None
        if zones[-1].ftrace and fz:
            nxt = pos + fz  # the next CPU's zone, or (up to 6.1) pmsg
        elif zones[-1].ftrace and not searched and sig is not None:
            searched = True
            nxt = find_bytes(mv, sig.to_bytes(4, "little"), pos + HEADER_SIZE,
                             min(end, pos + _TAIL_SIZES[-1] + 1))
            if nxt is not None and _ftrace_at(mv, nxt, end, sig):
                fz = nxt - pos
            else:
                nxt = _next_at_sizes(mv, pos, end, sizes)  # one ftrace zone
        else:
            nxt = _next_at_sizes(mv, pos, end, sizes)
        if nxt is None:
            break
        pos = nxt
    return zones


# -- step 4: console, pmsg, ftrace and the zone order ---------------------------------


class _Tail(NamedTuple):
    dmesg: int                     # dmesg zones
    zones: list[_TailZone]         # console/pmsg/ftrace zones, in order
    order: ZoneOrder
    borrowed: int                  # run members taken as console/pmsg


def _looks_dmesg(mv: memoryview, pos: int) -> bool:
    size: int = HEADER.unpack_from(mv, pos)[2]
    return size > 0 and bytes(mv[pos + HEADER_SIZE:pos + HEADER_SIZE + 4]) == b"===="


def _classify_tail(run: _Run, tail: list[_TailZone], mv: memoryview) -> _Tail:
    """Step 4: the order ramoops_probe() calls ramoops_init_prz() in.  A
    ``DBGC`` zone after the ftrace zones is pmsg, so the order is 6.1's
    (console, ftrace, pmsg; 6daf4e82bd54 moved pmsg before ftrace in 6.2).
    Console and pmsg zones of the dmesg zone size sit in the run itself:
    the module defaults both to 4096, so when the tail lacks them and the
    run's last zones hold no dmesg header, they are taken from the run."""
    count, z, base = run.members - 1, run.stride, run.base
    if len(tail) == 1 and not tail[0].ftrace and z:
        # Nothing follows: the run's last zone is a dmesg zone after all
        # (the borrowing below may still make it console/pmsg).
        tail = []
        count += 1
    kinds = "".join("F" if t.ftrace else "E" for t in tail)
    order = ZoneOrder.V6_2
    if "F" in kinds and "E" in kinds[kinds.index("F"):]:
        order = ZoneOrder.V6_1
    before_f = kinds.split("F")[0]
    wanted = 1 if order is ZoneOrder.V6_1 else 2
    borrow = 0
    pow2 = z > 0 and z & (z - 1) == 0
    while (pow2 and len(before_f) + borrow < wanted and count - borrow > 1
           and not _looks_dmesg(mv, base + (count - borrow - 1) * z)):
        borrow += 1
    count -= borrow
    lead = [_TailZone(base + (count + i) * z, False) for i in range(borrow)]
    return _Tail(count, lead + tail, order, borrow)


# -- step 5: ECC ------------------------------------------------------------------------


def _xor(data: bytes) -> int:
    acc = 0
    for b in data:
        acc ^= b
    return acc


def detect_ecc(mv: memoryview, zones: list[tuple[int, int]]) -> int:
    """Step 5: the ECC size whose header parity (last ``ecc`` bytes of the
    zone, persistent_ram_update_header_ecc()) matches on every zone tried
    (at most six); 0 if none.

    encode_rs8() with fcr 0 makes every codeword a multiple of a generator
    with root 1, so the header and its parity XOR to zero: that test, one
    pass over the last 127 bytes of each zone, leaves about one size in 256
    for the full Reed-Solomon check (and so no codec is built for sizes
    that cannot match)."""
    tried = [(p, s) for p, s in zones if p >= 0 and p + s <= len(mv)][:6]
    if not tried:
        return 0
    possible = set(range(1, 128))
    for pos, size in tried:
        acc = _xor(bytes(mv[pos:pos + HEADER_SIZE]))
        tail = bytes(mv[max(pos, pos + size - 127):pos + size])[::-1]
        ok = set()
        for e, b in enumerate(tail, 1):
            acc ^= b
            if acc == 0 and size >= HEADER_SIZE + 2 * e + 1:
                ok.add(e)
        possible &= ok
    for e in sorted(possible):
        codec = _rs.codec(e)
        if all(codec.encode(bytes(mv[pos:pos + HEADER_SIZE]))
               == bytes(mv[pos + size - e:pos + size]) for pos, size in tried):
            return e
    return 0


# -- step 6: the last zone ------------------------------------------------------------


def _last_size(mv: memoryview, pos: int, ecc: int, default: int) -> int:
    """Step 6: the size of the last zone, whose end no header marks: the
    power of two whose end holds the header parity when ECC is on, else
    *default* if the stored size fits, else the smallest power of two that
    holds it."""
    room = len(mv) - pos
    if ecc:
        codec = _rs.codec(ecc)
        par = codec.encode(bytes(mv[pos:pos + HEADER_SIZE]))
        for s in _TAIL_SIZES[3:]:
            if s > room:
                break
            if bytes(mv[pos + s - ecc:pos + s]) == par:
                return s
    stored = HEADER.unpack_from(mv, pos)[2]
    size = default
    while size - HEADER_SIZE < stored and size < 1 << 30:
        size *= 2
    return min(size, room) if room > HEADER_SIZE else size


# -- step 7: the geometry -------------------------------------------------------------


def _assemble(mv: memoryview, run: _Run, tail: _Tail, notes: list[str]) -> Geometry:
    """Step 7: the geometry of the zones found, refused (ParseError) when
    ramoops_probe() would refuse it (layout() raises ConfigError)."""
    base, z, count = run.base, run.stride, tail.dmesg
    zones = tail.zones
    sizes: list[int | None] = [zones[i + 1].pos - t.pos for i, t in enumerate(zones[:-1])]
    if zones:
        sizes.append(None)
    nf = sum(t.ftrace for t in zones)
    known = [(base + i * z, z) for i in range(min(count, 4))] + [
        (t.pos, s) for t, s in zip(zones, sizes, strict=True) if s]
    ecc = detect_ecc(mv, known)
    if sizes and sizes[-1] is None:
        last = zones[-1]
        if last.ftrace and nf > 1:
            sizes[-1] = last.pos - zones[-2].pos
        else:
            sizes[-1] = _last_size(mv, last.pos, ecc, MIN_MEM_SIZE)
            notes.append(f"last zone at {last.pos - base:#x}: size {sizes[-1]} "
                         f"({'from its ECC parity' if ecc else 'assumed'})")
    es = [s or 0 for t, s in zip(zones, sizes, strict=True) if not t.ftrace]
    fs = [s or 0 for t, s in zip(zones, sizes, strict=True) if t.ftrace]
    if tail.order is ZoneOrder.V6_1:
        console = es[0] if len(es) > 1 else 0
        pmsg = es[-1] if es else 0
    else:
        console = es[0] if es else 0
        pmsg = es[1] if len(es) > 1 else 0
    ftrace = sum(fs)
    geom = Geometry(mem_size=count * z + console + pmsg + ftrace,
                    record_size=z if count else 0, console_size=console, ftrace_size=ftrace,
                    pmsg_size=pmsg, ecc_size=ecc, ftrace_cpus=max(nf, 1), order=tail.order,
                    align_even=(z % 2 == 0) and all(s % 2 == 0 for s in fs))
    try:
        layout(geom)
    except ConfigError as exc:
        raise ParseError(f"zone headers at {base:#x} ({count} of {z} bytes) form no "
                         f"layout ramoops_probe() accepts: {exc}") from None
    notes.insert(0, f"region at {base:#x}: {count} dmesg zone(s) of {z} bytes, console "
                 f"{console}, pmsg {pmsg}, ftrace {ftrace} in {max(nf, 1)} zone(s), "
                 f"ecc {ecc}, zone order {tail.order.value}"
                 + ("" if nf and pmsg else " (order does not matter here)"))
    return geom


def detect(image: Buffer, start: int = 0, end: int | None = None,
           progress: Progress | None = None) -> Detection:
    """Find a ramoops region in *image* (between *start* and *end*) from its
    zone headers and infer the geometry: dmesg zone stride and count, the
    zones after them, ftrace CPUs and the 6.1/6.2 order (ftrace zones carry
    ``PERSISTENT_RAM_SIG ^ LINUX_VERSION_CODE``), and the ECC size (header
    parity at the end of each zone).  Raises :class:`ParseError`."""
    mv = image if isinstance(image, memoryview) else memoryview(image)
    end = len(mv) if end is None else min(end, len(mv))
    start = max(start, 0)
    cands = _candidate_headers(mv, start, end, progress)
    hits = cands.positions
    notes: list[str] = []
    if cands.dense:
        notes.append(f"ignored {cands.dense} 'DBGC' signature(s) packed closer than "
                     f"ramoops zones ({_DENSE}+ per {_WINDOW} bytes)")
    if cands.stopped_at >= 0:
        notes.append(f"stopped looking at {cands.stopped_at:#x} after {len(hits)} candidate "
                     "headers; give --offset to look further")
    if not hits:
        raise ParseError(f"no ramoops zone header (signature {PERSISTENT_RAM_SIG:#010x} "
                         f"'DBGC') in bytes {start:#x}..{end:#x}"
                         + (f" ({cands.dense} packed signatures ignored)" if cands.dense
                            else "")
                         + "; give --offset and the geometry options, or --scan")
    run = _dmesg_run(hits, mv, end)
    if run.members == 1:
        # A single dmesg zone: it ends where the next header starts.
        i = bisect.bisect_right(hits, run.base)
        z = hits[i] - run.base if i < len(hits) else _last_size(mv, run.base, 0,
                                                                 MIN_MEM_SIZE)
        run = _Run(run.base, z, 2)  # the walk below starts one zone further
    first = run.base + (run.members - 1) * run.stride
    tail = _classify_tail(run, _walk_tail(mv, first, end, run.stride), mv)
    if tail.borrowed:
        notes.append(f"took the last {tail.borrowed} zone(s) of {run.stride} bytes as "
                     "console/pmsg (module defaults); their positions are the same "
                     "either way")
    geom = _assemble(mv, run, tail, notes)
    sigs = [HEADER.unpack_from(mv, t.pos)[0] for t in tail.zones if t.ftrace][:1]
    if sigs:
        v = version_code(sigs[0]) or 0
        notes.append(f"ftrace zones were set up by Linux {v >> 16}.{(v >> 8) & 255}."
                     f"{v & 255}")
    used = tail.dmesg + sum(not t.ftrace for t in tail.zones)
    if len(hits) > used:
        notes.append(f"ignored {len(hits) - used} other 'DBGC' match(es) outside the "
                     "zone layout")
    return Detection(run.base, geom, tuple(notes))
