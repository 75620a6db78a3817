"""ramoops zone geometry (private; public names re-exported by :mod:`memconsole.ramoops`).

Mirrors ramoops_probe(), ramoops_init_przs() and ramoops_init_prz()
(fs/pstore/ram.c), and persistent_ram_init_ecc() (fs/pstore/ram_core.c) for
where data and parity sit inside a zone:

* the dump area is ``mem_size - console - ftrace - pmsg``; ``count = dump /
  record_size`` dmesg zones of ``dump / count`` bytes each (so a zone can
  exceed ``record_size``), rounded down to an even size since "pstore/ram:
  Fix crash when setting number of cpus to an odd number" (v6.3, backported
  to 6.1.y);
* then console, and ftrace before pmsg up to 6.1 or pmsg before ftrace from
  6.2 ("pstore/ram: Move pmsg init earlier", 6daf4e82bd54);
* ftrace is split into ``nr_cpu_ids`` zones when loaded by module parameters
  (RAMOOPS_FLAG_FTRACE_PER_CPU).

Pure arithmetic on parameters: nothing here reads memory.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from memconsole.errors import ConfigError
from memconsole.ramoops import _rs

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAX_ECC_SIZE",
    "MAX_FTRACE_CPUS",
    "MAX_ZONES",
    "MIN_MEM_SIZE",
    "PERSISTENT_RAM_SIG",
    "Buffer",
    "EccLayout",
    "Geometry",
    "Progress",
    "ZoneKind",
    "ZoneOrder",
    "ZoneSpec",
    "ecc_layout",
    "layout",
    "rounddown_pow_of_two",
]

#: ram_core.c: ``#define PERSISTENT_RAM_SIG (0x43474244) /* DBGC */``.
PERSISTENT_RAM_SIG = 0x43474244
#: sizeof(struct persistent_ram_buffer): u32 sig, atomic_t start, atomic_t size.
HEADER_SIZE = 12
#: ram.c: ``#define MIN_MEM_SIZE 4096UL``, the default of record_size,
#: console_size, ftrace_size and pmsg_size.
MIN_MEM_SIZE = 4096
#: The header as the kernel lays it out (little-endian u32 sig, two atomic_t).
HEADER = struct.Struct("<Iii")
#: ramoops_init_przs() allocates its zone array with kcalloc(cnt, sizeof(ptr)),
#: which fails above KMALLOC_MAX_SIZE (4 MiB with 4 KiB pages, 6.1 and 6.12,
#: include/linux/slab.h): no probe sets up more zones of one kind.
MAX_ZONES = (4 << 20) // 8
#: ftrace zones are nr_cpu_ids of them; no kernel configuration allows more
#: than NR_CPUS = 8192 (arch/x86/Kconfig MAXSMP, the largest range of any
#: architecture).
MAX_FTRACE_CPUS = 8192
#: init_rs() takes at most 255 - 128 roots for RS(255) over 128-byte blocks
#: (decode_rs8() in persistent_ram_decode_rs8() pads 255 - ecc - 128 symbols).
MAX_ECC_SIZE = 127

#: Anything :func:`memconsole.ramoops.decode` accepts as memory: bytes,
#: bytearray, memoryview, mmap.
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
        if ecc > MAX_ECC_SIZE:
            raise ConfigError(f"ecc {ecc} outside 0..{MAX_ECC_SIZE} (128-byte blocks, RS(255))")
        if ftrace_cpus > MAX_FTRACE_CPUS:
            raise ConfigError(f"ftrace_cpus {ftrace_cpus} exceeds NR_CPUS of any kernel "
                              f"({MAX_FTRACE_CPUS})")

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
    # Every check runs before a zone is made, so a refused geometry costs
    # nothing however many zones it would have had.
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
    if cnt > MAX_ZONES:
        raise ConfigError(f"{cnt} {kind.value} zones: kcalloc() of the zone array fails above "
                          f"{MAX_ZONES} (KMALLOC_MAX_SIZE), the probe with it")
    _check_zone_size(kind, zone_sz, geom.ecc_size)
    first = len(out)
    out.extend([ZoneSpec(first + i, kind, i, paddr + i * zone_sz, zone_sz)
                for i in range(cnt)])
    return paddr + cnt * zone_sz


def _check_zone_size(kind: ZoneKind, size: int, ecc_size: int) -> None:
    # persistent_ram_buffer_map(): buffer_size = size - sizeof(struct
    # persistent_ram_buffer), a size_t that wraps for a zone no larger than
    # its header; persistent_ram_init_ecc() then refuses what ECC leaves no
    # room for.  Checked once per zone size, not once per zone.
    lay = _ecc_fit(size, ecc_size)
    if isinstance(lay, str):
        raise ConfigError(f"{kind.value} zones of {size} bytes: {lay}")


def _init_prz(kind: ZoneKind, paddr: int, sz: int, geom: Geometry,
              out: list[ZoneSpec]) -> int:
    # ramoops_init_prz(): one zone of sz bytes, if it fits.
    if not sz:
        return paddr
    if paddr + sz > geom.mem_size:
        raise ConfigError(f"no room for {kind.value} mem region ({sz:#x}@{paddr:#x}) "
                          f"in ({geom.mem_size:#x})")
    _check_zone_size(kind, sz, geom.ecc_size)
    out.append(ZoneSpec(len(out), kind, 0, paddr, sz))
    return paddr + sz


def layout(geom: Geometry) -> tuple[ZoneSpec, ...]:
    """The zones ramoops_probe() carves out of a region of *geom*.

    Raises :class:`ConfigError` where the kernel's probe would fail."""
    if geom.ftrace_cpus > MAX_FTRACE_CPUS or not 0 <= geom.ecc_size <= MAX_ECC_SIZE:
        raise ConfigError(f"ftrace_cpus {geom.ftrace_cpus} or ecc_size {geom.ecc_size} "
                          "outside what a kernel accepts")
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
    lay = _ecc_fit(zone_size, ecc_size)
    if isinstance(lay, str):
        where = f"zone {spec.number} ({spec.label}) at {spec.offset:#x}: " if spec else ""
        raise ConfigError(where + lay)
    return lay


@functools.lru_cache(maxsize=256)
def _ecc_fit(zone_size: int, ecc_size: int) -> EccLayout | str:
    """:func:`ecc_layout`, or why the kernel refuses it (cached: a region has
    a handful of zone sizes and thousands of zones)."""
    buffer_size = zone_size - HEADER_SIZE
    if buffer_size <= 0:
        return f"zone size {zone_size} leaves no room after the {HEADER_SIZE}-byte header"
    if not ecc_size:
        return EccLayout(buffer_size, 0, zone_size, zone_size)
    bs = _rs.BLOCK_SIZE
    if ecc_size >= 255 - bs + 1 or buffer_size <= ecc_size:
        return f"invalid ecc_size {ecc_size} (block size {bs}, buffer size {buffer_size})"
    blocks = -(-(buffer_size - ecc_size) // (bs + ecc_size))  # DIV_ROUND_UP
    total = (blocks + 1) * ecc_size
    if total >= buffer_size:
        return f"invalid ecc_size {ecc_size} (total {total}, buffer size {buffer_size})"
    capacity = buffer_size - total
    par_buffer = HEADER_SIZE + capacity
    return EccLayout(capacity, blocks, par_buffer, par_buffer + blocks * ecc_size)
