"""ramoops regions read from raw memory: the public API.

Every rule mirrors a function of the kernel (torvalds/linux); each private
module owns one part and cites its sources:

* geometry (``_geometry``): :func:`layout` is ramoops_probe() +
  ramoops_init_przs()/ramoops_init_prz() (fs/pstore/ram.c), :func:`ecc_layout`
  persistent_ram_init_ecc() (fs/pstore/ram_core.c);
* one zone (``_zone``): :func:`decode_zone` is persistent_ram_post_init(),
  persistent_ram_init_ecc(), persistent_ram_ecc_old() and
  persistent_ram_save_old() (fs/pstore/ram_core.c), with Reed-Solomon in
  ``_rs``;
* the dmesg header (``_dmesg``): :func:`parse_dmesg_header` is
  ramoops_read_kmsg_hdr() with the kernel's vsscanf() semantics (lib/vsprintf.c);
* records (``_records``): built as ramoops_pstore_read() and
  decompress_record() (fs/pstore/platform.c) build them, named as
  pstore_mkfile() (fs/pstore/inode.c) names them;
* detection (``_detect``): :func:`detect` infers the geometry of an image
  whose parameters are unknown, in named steps that mirror ramoops_probe(),
  ramoops_init_przs() and persistent_ram_post_init();
* options (``_resolve``): :func:`resolve_geometry` assembles the geometry
  from module parameters, detection, or both, as ``memconsole decode`` uses it;
* headerless scan (``_scan``): :func:`scan_headerless` recovers dmesg
  records when no zone header survives.

:func:`decode` ties them together.  Parsers take buffers and return immutable
values; they never open files or log.
"""

from __future__ import annotations

from dataclasses import dataclass

from memconsole.ramoops._detect import MIN_DMESG_ZONE, Detection, detect, detect_ecc
from memconsole.ramoops._dmesg import DmesgHeader, parse_dmesg_header
from memconsole.ramoops._geometry import (
    HEADER_SIZE,
    MAX_ECC_SIZE,
    MAX_FTRACE_CPUS,
    MAX_ZONES,
    MIN_MEM_SIZE,
    PERSISTENT_RAM_SIG,
    Buffer,
    EccLayout,
    Geometry,
    Progress,
    ZoneKind,
    ZoneOrder,
    ZoneSpec,
    ecc_layout,
    layout,
    rounddown_pow_of_two,
)
from memconsole.ramoops._records import Record, build_records, ecc_notice
from memconsole.ramoops._resolve import Resolved, resolve_geometry
from memconsole.ramoops._rs_batch import have_numpy
from memconsole.ramoops._scan import MAX_RECOVERED, scan_headerless
from memconsole.ramoops._zone import (
    ZoneHeader,
    ZoneResult,
    ZoneStatus,
    batch_suspects,
    decode_zone,
    parse_header,
    version_code,
)

__all__ = [
    "HEADER_SIZE",
    "MAX_ECC_SIZE",
    "MAX_FTRACE_CPUS",
    "MAX_RECOVERED",
    "MAX_ZONES",
    "MIN_DMESG_ZONE",
    "MIN_MEM_SIZE",
    "PERSISTENT_RAM_SIG",
    "Decoded",
    "Detection",
    "DmesgHeader",
    "EccLayout",
    "Geometry",
    "Progress",
    "Record",
    "Resolved",
    "ZoneHeader",
    "ZoneKind",
    "ZoneOrder",
    "ZoneResult",
    "ZoneSpec",
    "ZoneStatus",
    "decode",
    "decode_zone",
    "detect",
    "detect_ecc",
    "ecc_layout",
    "ecc_notice",
    "have_numpy",
    "layout",
    "parse_dmesg_header",
    "parse_header",
    "resolve_geometry",
    "rounddown_pow_of_two",
    "scan_headerless",
    "version_code",
]


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
    suspects = batch_suspects(region, specs, geom.ecc_size)
    for spec in specs:
        results.append(decode_zone(region, spec, geom.ecc_size,
                                   suspects.get(spec.number) if suspects else None))
        if progress is not None:
            progress(spec.offset + spec.size, total)
    zones = tuple(results)
    records, problems = build_records(geom, zones, scan)
    return Decoded(geom, zones, records, problems)
