"""The geometry to decode with, from options, detection or both (private;
public names re-exported by :mod:`memconsole.ramoops`).

:func:`resolve_geometry` is what ``memconsole decode`` does before it
decodes: with any size given it assembles the geometry from the module
parameters as ramoops_probe() (fs/pstore/ram.c) would, and reads from the
zone headers only what the parameters leave open (zone order, ftrace CPUs,
ECC); with none it detects the whole geometry (:func:`detect`) and lets the
parameters that were given override what was found.  Every option is
checked against the image and the kernel's rules first, so a bad one is one
:class:`ConfigError` line and nothing is read or allocated for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from memconsole.errors import ConfigError
from memconsole.ramoops._detect import detect, detect_ecc, find_bytes
from memconsole.ramoops._geometry import (
    HEADER,
    HEADER_SIZE,
    MAX_ECC_SIZE,
    MAX_FTRACE_CPUS,
    MIN_MEM_SIZE,
    Buffer,
    Geometry,
    Progress,
    ZoneKind,
    ZoneOrder,
    layout,
)
from memconsole.ramoops._zone import version_code

__all__ = ["Resolved", "resolve_geometry"]


@dataclass(frozen=True)
class Resolved:
    """The geometry :func:`resolve_geometry` settled on.

    Attributes:
        offset: region start within the image.
        geometry: the geometry to decode with (its :func:`layout` succeeds).
        notes: one line per inference, for stderr.
    """

    offset: int
    geometry: Geometry
    notes: tuple[str, ...]


def _check(size: int, offset: int | None, mem_size: int | None, ecc: int | None,
           ftrace_cpus: int | None) -> None:
    """Options against the image and the kernel's limits."""
    if offset is not None and not 0 <= offset < size:
        raise ConfigError(f"offset {offset:#x} is beyond the end of the image "
                          f"({size:#x} bytes)")
    if mem_size is not None and (offset or 0) + mem_size > size:
        raise ConfigError(f"mem_size {mem_size:#x} from offset {offset or 0:#x} reaches past "
                          f"the end of the image ({size:#x} bytes)")
    if ecc is not None and not 0 <= ecc <= MAX_ECC_SIZE:
        # persistent_ram_init_ecc(): init_rs() over 128-byte blocks of RS(255).
        raise ConfigError(f"ecc {ecc} outside 0..{MAX_ECC_SIZE} (128-byte blocks, RS(255))")
    if ftrace_cpus is not None and not 1 <= ftrace_cpus <= MAX_FTRACE_CPUS:
        # ramoops_probe(): max_ftrace_cnt = nr_cpu_ids <= NR_CPUS.
        raise ConfigError(f"ftrace_cpus {ftrace_cpus} outside 1..{MAX_FTRACE_CPUS} "
                          "(nr_cpu_ids is at most NR_CPUS)")


def resolve_geometry(image: Buffer, *, offset: int | None = None,
                     mem_size: int | None = None, record_size: int | None = None,
                     console_size: int | None = None, ftrace_size: int | None = None,
                     pmsg_size: int | None = None, ecc: int | None = None,
                     ftrace_cpus: int | None = None, order: ZoneOrder | None = None,
                     progress: Progress | None = None) -> Resolved:
    """The geometry of the ramoops region in *image*.

    The arguments are the module parameters (None: not given; ``ecc=1``
    means 16 bytes, as ramoops_register_dummy() has it).  With any of
    *mem_size*, *record_size*, *console_size*, *ftrace_size*, *pmsg_size*
    the geometry comes from them (the others default to 4096 as the module
    does, *mem_size* to the rest of the image, *offset* to 0); otherwise
    it is detected from *offset* on.  Raises :class:`ConfigError` for an
    option the image or the kernel refuses, :class:`ParseError` when
    detection finds no region.
    """
    _check(len(image), offset, mem_size, ecc, ftrace_cpus)
    mv = image if isinstance(image, memoryview) else memoryview(image)
    if any(v is not None for v in (mem_size, record_size, console_size, ftrace_size,
                                   pmsg_size)):
        return _from_options(mv, offset or 0, mem_size, record_size, console_size,
                             ftrace_size, pmsg_size, ecc, ftrace_cpus, order)
    det = detect(mv, offset or 0, progress=progress)
    geom = det.geometry
    if ecc is not None:
        geom = geom.with_(ecc_size=16 if ecc == 1 else ecc)
    if order is not None:
        geom = geom.with_(order=order)
    if ftrace_cpus is not None:
        geom = geom.with_(ftrace_cpus=ftrace_cpus)
    if geom != det.geometry:
        layout(geom)  # the overrides must still describe a layout the probe accepts
    return Resolved(det.offset, geom, det.notes)


def _from_options(mv: memoryview, offset: int, mem_size: int | None,
                  record_size: int | None, console_size: int | None,
                  ftrace_size: int | None, pmsg_size: int | None, ecc: int | None,
                  ftrace_cpus: int | None, order: ZoneOrder | None) -> Resolved:
    """Explicit geometry: the parameters as ramoops_probe() normalises them,
    then the zone order, ftrace CPUs and ECC read from the computed zones
    where the parameters leave them open."""
    notes: list[str] = []
    if mem_size is None:
        mem_size = len(mv) - offset
        notes.append(f"mem_size {mem_size:#x} assumed (rest of the image)")
    d = MIN_MEM_SIZE
    geom = Geometry.from_params(
        mem_size, d if record_size is None else record_size,
        d if console_size is None else console_size,
        d if ftrace_size is None else ftrace_size,
        d if pmsg_size is None else pmsg_size,
        ecc or 0, ftrace_cpus or 1, order or ZoneOrder.V6_2)
    layout(geom)  # refuse what the probe refuses before reading anything
    end = offset + mem_size
    if order is None:
        geom = _find_order(mv, offset, end, geom, notes)
    if ftrace_cpus is None:
        geom = _find_cpus(mv, offset, end, geom, notes)
    if ecc is None:
        zones = layout(geom)[:4]
        found = detect_ecc(mv[:end], [(offset + z.offset, z.size) for z in zones])
        if found:
            notes.append(f"ECC of {found} bytes per block detected from the header parity")
            geom = geom.with_(ecc_size=found)
            layout(geom)
    return Resolved(offset, geom, tuple(notes))


def _ftrace_sig(mv: memoryview, pos: int, end: int) -> int | None:
    """The signature of an ftrace zone header at *pos*: PERSISTENT_RAM_SIG ^
    LINUX_VERSION_CODE (ramoops_init_przs("ftrace", ..., LINUX_VERSION_CODE))."""
    if pos + HEADER_SIZE > end:
        return None
    sig: int = HEADER.unpack_from(mv, pos)[0]
    return sig if version_code(sig) is not None else None


def _first_ftrace(geom: Geometry) -> int | None:
    return next((z.offset for z in layout(geom) if z.kind is ZoneKind.FTRACE), None)


def _find_order(mv: memoryview, offset: int, end: int, geom: Geometry,
                notes: list[str]) -> Geometry:
    """Zone order: 6.2 put pmsg before ftrace (6daf4e82bd54); the order
    whose first ftrace zone holds an ftrace header wins."""
    if not (geom.ftrace_size and geom.pmsg_size):
        return geom
    for order in (ZoneOrder.V6_2, ZoneOrder.V6_1):
        g = geom.with_(order=order, ftrace_cpus=1)
        first = _first_ftrace(g)
        if first is not None and _ftrace_sig(mv, offset + first, end) is not None:
            notes.append(f"zone order {order.value} (ftrace header found there)")
            return geom.with_(order=order)
    notes.append("zone order 6.2 assumed (no ftrace header found; pmsg and ftrace "
                 "positions may be swapped, use --zone-order 6.1 for older kernels)")
    return geom.with_(order=ZoneOrder.V6_2)


def _find_cpus(mv: memoryview, offset: int, end: int, geom: Geometry,
               notes: list[str]) -> Geometry:
    """ftrace CPUs: ramoops_init_przs() splits ftrace_size into nr_cpu_ids
    zones of ALIGN_DOWN(ftrace_size / nr_cpu_ids, 2) bytes, each with the
    same signature; the second one's distance from the first gives the
    count, which every zone header must then confirm."""
    if not geom.ftrace_size:
        return geom
    first = _first_ftrace(geom.with_(ftrace_cpus=1))
    if first is None:
        return geom
    f0 = offset + first
    sig = _ftrace_sig(mv, f0, end)
    if sig is None:
        return geom
    f1 = find_bytes(mv, sig.to_bytes(4, "little"), f0 + HEADER_SIZE,
                    min(end, f0 + geom.ftrace_size))
    if f1 is None:
        return geom.with_(ftrace_cpus=1)
    fz = f1 - f0
    total = geom.ftrace_size
    for cpus in range(max(1, total // (fz + 2)), min(MAX_FTRACE_CPUS, total // fz) + 1):
        g = geom.with_(ftrace_cpus=cpus)
        try:
            zones = [z for z in layout(g) if z.kind is ZoneKind.FTRACE]
        except ConfigError:
            continue
        if zones[1:2] and zones[1].offset == f1 - offset and all(
                _ftrace_sig(mv, offset + z.offset, end) == sig for z in zones):
            if cpus > 1:
                notes.append(f"{cpus} ftrace zones (one per CPU)")
            return g
    return geom
