"""pstore records from decoded zones (private; public names re-exported by
:mod:`memconsole.ramoops`).

Builds what ramoops_pstore_read() (fs/pstore/ram.c) returns zone by zone,
decompressed as decompress_record() (fs/pstore/platform.c) does, with the
ECC notice of persistent_ram_ecc_string() (fs/pstore/ram_core.c) and the
file names pstore_mkfile() (fs/pstore/inode.c) gives.  Per-CPU ftrace zones
are merged as pstore_ftrace_combine_log() merges them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from memconsole.pstore.compress import Decompressed, decompress, inflate
from memconsole.ramoops._dmesg import DmesgHeader, parse_dmesg_header
from memconsole.ramoops._geometry import MIN_MEM_SIZE, Geometry, ZoneKind
from memconsole.ramoops._zone import ZoneResult, ZoneStatus

__all__ = ["Record", "build_records", "ecc_notice"]



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


def _decompress_cap(geom: Geometry, zones: tuple[ZoneResult, ...]) -> int:
    # decompress_record() since v6.6: 3 * psinfo->bufsize, where bufsize is
    # dprzs[0]->buffer_size.  (6.1's crypto cap was zbufsize_deflate(bufsize),
    # smaller, but never smaller than what its own compressor accepted.)
    for z in zones:
        if z.spec.kind is ZoneKind.DMESG:
            return 3 * z.capacity
    return 3 * MIN_MEM_SIZE


def _dmesg_record(z: ZoneResult, text: bytes, geom: Geometry, cap: int,
                  recovered: bool = False, note: str = "", hdr: DmesgHeader | None = None,
                  inflated: Decompressed | None = None) -> Record | str:
    """ramoops_pstore_read() for one dmesg zone holding *text*; *hdr* and
    *inflated*, when given, are its header and decompressed body, already
    worked out.  Returns the problem line when the kernel would discard it."""
    if hdr is None:
        hdr = parse_dmesg_header(text)
    if not hdr.length:
        return (f"zone {z.spec.number} ({z.spec.label}) at {z.spec.offset:#x}: no "
                f"'====sec.usec-C|D' header in {len(text)} bytes; the kernel discards it")
    name = f"dmesg-ramoops-{z.spec.id}"
    if hdr.compressed:
        res = (inflated if inflated is not None
               else decompress(memoryview(text)[hdr.length:], cap))
        if res.data is not None:
            payload = res.data
        else:
            payload = text[hdr.length:]
            name += ".enc.z"
            note = (note + "; " if note else "") + f"decompression failed: {res.reason}"
    else:
        payload = text[hdr.length:]
    return Record(z.spec.number, ZoneKind.DMESG, z.spec.id, name, hdr.time_ns,
                  hdr.compressed, payload,
                  ecc_notice(geom.ecc_size, z.ecc_corrected, z.ecc_bad_blocks),
                  z.ecc_corrected, z.ecc_bad_blocks, recovered, note)


def _inflate_all(bodies: list[memoryview], cap: int) -> list[Decompressed]:
    """decompress() every body; zlib releases the GIL, so chunks of them run
    in parallel threads (one future per chunk, not per record)."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or len(bodies) < 4:
        return [decompress(b, cap) for b in bodies]
    step = max(1, min(64, len(bodies) // (4 * workers)))
    chunks = [bodies[i:i + step] for i in range(0, len(bodies), step)]
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda chunk: [decompress(b, cap) for b in chunk], chunks)
        return [res for part in parts for res in part]


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
                out = inflate(data[hdr.length:], cap).data
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


def build_records(geom: Geometry, zones: tuple[ZoneResult, ...], scan: bool = False
                  ) -> tuple[tuple[Record, ...], tuple[str, ...]]:
    """The records ramoops_pstore_read() returns for decoded *zones*, in its
    order, and one problem line per zone the kernel would discard.  With
    *scan*, discarded zones are salvaged as ``recovered`` records."""
    problems = [z.problem for z in zones if z.problem]
    cap = _decompress_cap(geom, zones)
    records: list[Record] = []
    by_kind: dict[ZoneKind, list[ZoneResult]] = {k: [] for k in ZoneKind}
    for z in zones:
        by_kind[z.spec.kind].append(z)
    salvage = [z for z in zones if z.status in (ZoneStatus.BAD_SIG, ZoneStatus.INVALID)]
    # ramoops_pstore_read(): dmesg zones, then console, pmsg, ftrace.
    live = [(z, parse_dmesg_header(z.old_log)) for z in by_kind[ZoneKind.DMESG]
            if z.status is ZoneStatus.OK and z.old_log]
    packed = [i for i, (_, hdr) in enumerate(live) if hdr.length and hdr.compressed]
    inflated = dict(zip(packed, _inflate_all(
        [memoryview(live[i][0].old_log)[live[i][1].length:] for i in packed], cap),
        strict=True))
    for i, (z, hdr) in enumerate(live):
        rec = _dmesg_record(z, z.old_log, geom, cap, hdr=hdr, inflated=inflated.get(i))
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
    return tuple(records), tuple(problems)
