"""``memconsole decode IMAGE``: recover pstore records from raw ramoops memory.

IMAGE is a memory dump (bootloader, JTAG, a VM's memory-backend file) or a
device such as /dev/mem.  Without geometry options the region is found by its
zone headers and the geometry inferred (:func:`memconsole.ramoops.detect`);
what was inferred is said on stderr.  Records go to ``--out DIR`` as the
files the kernel would show in /sys/fs/pstore, to stdout as JSON Lines with
``--json``, or as a one-line-per-record summary otherwise.

JSON Lines: one object per record with ``zone``, ``name``, ``type``,
``time`` (seconds since the epoch, float, or null), ``time_ns``,
``compressed``, ``size`` (bytes of the payload, ECC notice excluded),
``ecc_corrected``, ``ecc_bad_blocks``, ``text`` (the payload as UTF-8; bytes
that are not UTF-8 become U+FFFD), ``base64`` (the exact payload, present only
when it is not valid UTF-8), ``recovered`` and ``note``.

Exit codes: 0 all zones decoded, 3 some zones were discarded or damaged (one
stderr line each), 4 no record found, 1 the image could not be decoded.
"""

from __future__ import annotations

import argparse
import base64
import json
import mmap
import os
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memconsole import ramoops
from memconsole._common import size_arg
from memconsole.cli._output import PROGRESS_MIN, Progress, warn
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_OK, EXIT_PARTIAL
from memconsole.errors import ConfigError, ParseError
from memconsole.ramoops import (
    Geometry,
    Record,
    ZoneKind,
    ZoneOrder,
    ZoneStatus,
    detect_ecc,
    have_numpy,
)

__all__ = ["register", "run"]



def register(subparsers: Any) -> None:
    """Add the ``decode`` command to *subparsers*."""
    p = subparsers.add_parser(
        "decode", help="recover pstore records from a raw ramoops memory image",
        description="Decode ramoops zones from raw memory (a dump, a VM memory file, "
        "/dev/mem), mirroring the kernel's own rules.  Without geometry options "
        "the geometry is detected from the zone headers.")
    p.add_argument("image", metavar="IMAGE", help="memory image or device")
    p.add_argument("--offset", type=size_arg, default=None,
                   help="region start in IMAGE (default: 0 with geometry options, "
                   "else detected)")
    p.add_argument("--mem-size", type=size_arg, help="ramoops mem_size")
    p.add_argument("--record-size", type=size_arg, help="ramoops record_size (default 4096)")
    p.add_argument("--console-size", type=size_arg, help="console_size (default 4096)")
    p.add_argument("--ftrace-size", type=size_arg, help="ftrace_size (default 4096)")
    p.add_argument("--pmsg-size", type=size_arg, help="pmsg_size (default 4096)")
    p.add_argument("--ecc", type=int, help="ecc module parameter (1 means 16 bytes; "
                   "default: detected from the header parity)")
    p.add_argument("--ftrace-cpus", type=int, help="nr_cpu_ids of the crashed kernel "
                   "(ftrace zones; default: detected)")
    p.add_argument("--zone-order", choices=("auto", "6.1", "6.2"), default="auto",
                   help="ftrace before pmsg (6.1) or after (6.2+); default detected")
    p.add_argument("--scan", action="store_true",
                   help="also recover text from zones whose header was lost")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write one file per record, named as /sys/fs/pstore names it")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.set_defaults(func=run)


def _open(path: str, offset: int | None = None, size: int | None = None
          ) -> tuple[Any, memoryview, int]:
    """Map a regular file read-only, or read a device such as /dev/mem
    (which only lets reserved ranges be read: --offset is required there, and
    only ``size`` bytes from it are read).  Returns (keep-alive, view, the
    view's offset in the file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if st.st_size == 0:
                raise ParseError(f"{path} is empty")
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            return mm, memoryview(mm), 0
        if offset is None:
            raise ConfigError(f"{path} is not a regular file: give --offset (the "
                              "region's physical address) and --mem-size")
        want = size or (16 << 20)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            chunks, got = [], 0
            while got < want:
                chunk = os.read(fd, min(1 << 20, want - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except OSError as exc:
            raise ConfigError(f"cannot read {path} at {offset:#x}: {exc.strerror}") from exc
        data = b"".join(chunks)
        return data, memoryview(data), offset
    finally:
        os.close(fd)




def _note(msg: str) -> None:
    warn("decode", msg)


def _auto_order(mv: memoryview, geom: Geometry) -> Geometry:
    if not (geom.ftrace_size and geom.pmsg_size):
        return geom
    for order in (ZoneOrder.V6_2, ZoneOrder.V6_1):
        g = geom.with_(order=order)
        ft = [z for z in ramoops.layout(g) if z.kind is ZoneKind.FTRACE]
        if ft and ft[0].offset + 12 <= len(mv) and ramoops.version_code(
                int.from_bytes(mv[ft[0].offset:ft[0].offset + 4], "little")) is not None:
            _note(f"zone order {order.value} (ftrace header found there)")
            return g
    _note("zone order 6.2 assumed (no ftrace header found; pmsg and ftrace positions "
          "may be swapped, use --zone-order 6.1 for older kernels)")
    return geom.with_(order=ZoneOrder.V6_2)


def _auto_cpus(mv: memoryview, geom: Geometry) -> Geometry:
    if not geom.ftrace_size:
        return geom
    for cpus in range(64, 0, -1):
        if geom.ftrace_size // cpus < 2 * 12:
            continue
        g = geom.with_(ftrace_cpus=cpus)
        try:
            ft = [z for z in ramoops.layout(g) if z.kind is ZoneKind.FTRACE]
        except ConfigError:
            continue
        if all(z.offset + 12 <= len(mv) and ramoops.version_code(
                int.from_bytes(mv[z.offset:z.offset + 4], "little")) is not None for z in ft):
            if cpus > 1:
                _note(f"{cpus} ftrace zones (one per CPU)")
            return g
    return geom


def _explicit_geometry(args: argparse.Namespace, mv: memoryview, offset: int) -> Geometry:
    mem_size = args.mem_size
    if mem_size is None:
        mem_size = len(mv) - offset
        _note(f"mem_size {mem_size:#x} assumed (rest of the image)")
    d = ramoops.MIN_MEM_SIZE
    geom = Geometry.from_params(
        mem_size,
        d if args.record_size is None else args.record_size,
        d if args.console_size is None else args.console_size,
        d if args.ftrace_size is None else args.ftrace_size,
        d if args.pmsg_size is None else args.pmsg_size,
        args.ecc or 0, args.ftrace_cpus or 1,
        ZoneOrder(args.zone_order) if args.zone_order != "auto" else ZoneOrder.V6_2)
    region = mv[offset:offset + mem_size]
    if args.zone_order == "auto":
        geom = _auto_order(region, geom)
    if args.ftrace_cpus is None:
        geom = _auto_cpus(region, geom)
    if args.ecc is None:
        zones = ramoops.layout(geom)
        ecc = detect_ecc(region, [(z.offset, z.size) for z in zones[:4]])
        if ecc:
            _note(f"ECC of {ecc} bytes per block detected from the header parity")
            geom = geom.with_(ecc_size=ecc)
    return geom


def _json(rec: Record) -> str:
    try:
        text = rec.payload.decode("utf-8")
        b64 = None
    except UnicodeDecodeError:
        text = rec.payload.decode("utf-8", errors="replace")
        b64 = base64.b64encode(rec.payload).decode("ascii")
    obj: dict[str, Any] = {
        "zone": rec.zone, "name": rec.name, "type": rec.kind.value,
        "time": rec.time_ns / 1e9 if rec.time_ns else None, "time_ns": rec.time_ns,
        "compressed": rec.compressed, "size": len(rec.payload),
        "ecc_corrected": rec.ecc_corrected, "ecc_bad_blocks": rec.ecc_bad_blocks,
        "text": text, "recovered": rec.recovered, "note": rec.note,
    }
    if b64 is not None:
        obj["base64"] = b64
    return json.dumps(obj, ensure_ascii=False)


def _write(out: Path, rec: Record) -> None:
    """Atomic write (temporary file, rename) of the record's file: payload
    then ECC notice, straight from the record (no joined copy).  No fsync:
    decode deletes nothing, so a crash loses only output that can be made
    again."""
    tmp = out / f".{rec.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        for part in (rec.payload, rec.ecc_notice):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, out / rec.name)


def run(args: argparse.Namespace) -> int:
    """Handler of ``memconsole decode``; returns the exit code."""
    keep, mv, base = _open(args.image, args.offset, args.mem_size)
    if base:
        args.offset = 0  # the view starts at the region
    try:
        return _run(args, mv)
    finally:
        mv.release()
        if isinstance(keep, mmap.mmap):
            keep.close()


def _run(args: argparse.Namespace, mv: memoryview) -> int:
    explicit = any(v is not None for v in (args.mem_size, args.record_size,
                                           args.console_size, args.ftrace_size,
                                           args.pmsg_size))
    if args.offset is not None and args.offset >= len(mv):
        raise ConfigError(f"--offset {args.offset:#x} is beyond the end of the image "
                          f"({len(mv):#x} bytes)")
    if args.ecc is not None and not 0 <= args.ecc < 128:
        raise ConfigError(f"--ecc {args.ecc} outside 0..127 (128-byte blocks, RS(255))")
    if explicit:
        offset = args.offset or 0
        geom = _explicit_geometry(args, mv, offset)
    else:
        try:
            progress = Progress("decode", "scanning")
            try:
                det = ramoops.detect(mv, args.offset or 0, progress=progress)
            finally:
                progress.close()
        except ParseError as exc:
            if not args.scan:
                raise
            _note(f"{exc}; scanning for dmesg records without zone headers")
            progress = Progress("decode", "scanning")
            try:
                recs = ramoops.scan_headerless(mv, args.offset or 0, progress=progress)
            finally:
                progress.close()
            return _emit(args, recs, 0, ())
        offset, geom = det.offset, det.geometry
        for line in det.notes:
            _note(f"inferred: {line}")
        if args.ecc is not None:
            geom = geom.with_(ecc_size=16 if args.ecc == 1 else args.ecc)
        if args.zone_order != "auto":
            geom = geom.with_(order=ZoneOrder(args.zone_order))
        if args.ftrace_cpus is not None:
            geom = geom.with_(ftrace_cpus=args.ftrace_cpus)
    region = mv[offset:offset + geom.mem_size]
    if geom.ecc_size and not have_numpy() and geom.mem_size > PROGRESS_MIN:
        _note("numpy is not installed: checking ECC with the standard library, several "
              "times slower on large regions (pip install 'memconsole[fast]')")
    progress = Progress("decode", "decoding")
    try:
        decoded = ramoops.decode(region, geom, scan=args.scan, progress=progress)
    finally:
        progress.close()
    del region
    statuses = [z.status for z in decoded.zones]
    if decoded.zones and all(s in (ZoneStatus.BAD_SIG, ZoneStatus.TRUNCATED)
                             for s in statuses) and not decoded.records:
        first = decoded.zones[0]
        raise ParseError(f"{first.problem} (and every other zone): wrong --offset or "
                         "geometry options?")
    return _emit(args, decoded.records, geom.ecc_size, decoded.problems)


def _emit(args: argparse.Namespace, records: tuple[Record, ...], ecc_size: int,
          problems: tuple[str, ...]) -> int:
    """Report problems, write/print the records, and pick the exit code."""
    for line in problems:
        _note(f"{line}, skipping")
    for rec in records:
        if rec.note and (rec.name.endswith(".enc.z") or rec.recovered):
            _note(f"{rec.name}: {rec.note}")
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for rec in records:
                _write(args.out, rec)
        except OSError as exc:
            raise ConfigError(f"cannot write to {args.out}: {exc.strerror}") from exc
    if args.json:
        _print_lines(_json(rec) for rec in records)
    elif args.out is None:
        _print_lines(_summary(rec, ecc_size) for rec in records)
    sys.stdout.flush()
    if not records:
        _note("no records in the region")
        return EXIT_DATA_MISSING
    return EXIT_PARTIAL if problems else EXIT_OK


def _summary(rec: Record, ecc_size: int) -> str:
    """One summary line: name, type, UTC time, payload bytes, ECC counts."""
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec.time_ns // 10**9))
            if rec.time_ns else "-")
    ecc = f" ecc:{rec.ecc_corrected}/{rec.ecc_bad_blocks}" if ecc_size else ""
    return f"{rec.name}\t{rec.kind.value}\t{when}\t{len(rec.payload)}{ecc}"


def _print_lines(lines: Iterable[str], per_write: int = 256) -> None:
    """Write lines to stdout a few hundred at a time (one write each, even
    when stdout is unbuffered)."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == per_write:
            sys.stdout.write("\n".join(batch) + "\n")
            batch = []
    if batch:
        sys.stdout.write("\n".join(batch) + "\n")
