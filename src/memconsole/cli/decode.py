"""``memconsole decode IMAGE``: recover pstore records from raw ramoops memory.

IMAGE is a memory dump (bootloader, JTAG, a VM's memory-backend file), a
block device, or /dev/mem.  It is checked before it is opened: only a
regular file, a block device or /dev/mem (character device 1:1, with
``--offset`` and ``--mem-size``) is read, so a FIFO, a socket, a directory
or another device is one line and exit 1, never a hang.  Without geometry
options the region is found by its zone headers and the geometry inferred
(:func:`memconsole.ramoops.resolve_geometry`); what was inferred is said on
stderr.  Records go to ``--out DIR`` as the files the kernel would show in
/sys/fs/pstore, to stdout as JSON Lines with ``--json``, or as a
one-line-per-record summary otherwise.

``--out DIR``: DIR is created mode 0700 if missing and must not be a
symbolic link; every file is created there with ``O_EXCL | O_NOFOLLOW``,
mode 0600 (kernel logs and addresses are for root), under a temporary
name first and then linked to its own name, so a planted link is never
written through and an existing file is never replaced: when a name is
taken, decode says so and writes nothing.

JSON Lines: one object per record with ``zone``, ``name``, ``type``,
``time`` (seconds since the epoch, float, or null), ``time_ns``,
``compressed``, ``size`` (bytes of the payload, ECC notice excluded),
``ecc_corrected``, ``ecc_bad_blocks``, ``text`` (the payload; bytes that are
not UTF-8 appear as ``\\xNN``, the one JSON policy of
:func:`memconsole.render.json_safe`), ``recovered`` and ``note``.  The exact
bytes are what ``--out`` writes.

Exit codes: 0 all zones decoded, 3 some zones were discarded or damaged (one
stderr line each), 4 no record found, 1 the image could not be decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import secrets
import stat
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from memconsole import ramoops
from memconsole._common import size_arg
from memconsole.cli._output import PROGRESS_MIN, Progress, warn
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_OK, EXIT_PARTIAL
from memconsole.errors import ConfigError, ParseError
from memconsole.ramoops import Record, ZoneOrder, ZoneStatus, have_numpy
from memconsole.render import json_safe

__all__ = ["register", "run"]

#: /dev/mem: character device major 1, minor 1 (drivers/char/mem.c).
_DEV_MEM = os.makedev(1, 1)
#: Zone problems shown one per line; beyond this they are counted.
_MAX_PROBLEM_LINES = 64


def register(subparsers: Any) -> None:
    """Add the ``decode`` command to *subparsers*."""
    p = subparsers.add_parser(
        "decode", help="recover pstore records from a raw ramoops memory image",
        description="Decode ramoops zones from raw memory (a dump, a VM memory file, "
        "a block device, /dev/mem), mirroring the kernel's own rules.  Without "
        "geometry options the geometry is detected from the zone headers.")
    p.add_argument("image", metavar="IMAGE", help="memory image, block device or /dev/mem")
    p.add_argument("--offset", type=size_arg, default=None,
                   help="region start in IMAGE (default: 0 with geometry options, "
                   "else detected); the physical address with /dev/mem")
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
                   help="write one file per record (mode 0600), named as /sys/fs/pstore "
                   "names it; DIR is created 0700, existing files are never replaced")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    p.set_defaults(func=run)


def _note(msg: str) -> None:
    warn("decode", msg)


# -- the image: checked, then opened ------------------------------------------------


def _kind(path: str, st: os.stat_result) -> str:
    """What *st* is, for the refusal line."""
    m = st.st_mode
    if stat.S_ISFIFO(m):
        return "a FIFO"
    if stat.S_ISSOCK(m):
        return "a socket"
    if stat.S_ISDIR(m):
        return "a directory"
    if stat.S_ISCHR(m):
        return (f"a character device ({os.major(st.st_rdev)}:{os.minor(st.st_rdev)}), "
                "not /dev/mem (1:1)")
    return "not a regular file or device"


def _allowed(st: os.stat_result) -> bool:
    return (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)
            or (stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_MEM))


def _drop_frames(exc: BaseException) -> None:
    """Clear the locals of every finished frame an exception (and the ones
    chained to it) holds: views of the image they kept must die before the
    mapping is closed."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        todo += [e.__cause__, e.__context__]


class _Image:
    """A checked image, readable as one memoryview (:attr:`view`) for the
    duration of a ``with`` block.  ``base`` is the view's offset in IMAGE
    (the physical address for /dev/mem, else 0)."""

    def __init__(self, path: str, offset: int | None, mem_size: int | None) -> None:
        self.path = path
        self.base = 0
        self.leaked = False
        self._mm: mmap.mmap | None = None
        try:
            st = os.stat(path)  # follows a symlink: the image is only read
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
        if not _allowed(st):
            raise ConfigError(f"{path} is {_kind(path, st)}: give a memory image, a "
                              "block device or /dev/mem")
        if stat.S_ISCHR(st.st_mode) and (offset is None or mem_size is None):
            raise ConfigError(f"{path} is physical memory (/dev/mem): give --offset (the "
                              "region's physical address) and --mem-size")
        try:
            # O_NONBLOCK: if the name was swapped for a FIFO since the stat,
            # the open still returns at once, and the fstat below refuses it.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not _allowed(fst):
                raise ConfigError(f"{path} changed while it was opened; not read")
            if stat.S_ISCHR(fst.st_mode):
                assert offset is not None and mem_size is not None
                self._data: bytearray | mmap.mmap = _read_range(path, fd, offset, mem_size)
                self.base = offset
            else:
                self._data = self._map(fd, fst)
        finally:
            os.close(fd)
        self.view = memoryview(self._data)

    def _map(self, fd: int, st: os.stat_result) -> mmap.mmap:
        size = st.st_size if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
        if size == 0:
            raise ParseError(f"{self.path} is empty")
        try:
            self._mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        except (OSError, ValueError, OverflowError) as exc:
            raise ConfigError(f"cannot map {self.path}: {exc}") from None
        return self._mm

    def __enter__(self) -> _Image:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close(exc)

    def close(self, exc: BaseException | None = None) -> None:
        """Release the view and unmap the image.  When an error unwinds, the
        views its frames hold go first.  A view kept anywhere else (a bug,
        which :attr:`leaked` records for the tests) leaves the mapping to the
        garbage collector rather than turning into a BufferError."""
        if exc is not None:
            _drop_frames(exc)
        self.view.release()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                self.leaked = True
            self._mm = None


def _read_range(path: str, fd: int, offset: int, size: int) -> bytearray:
    """Read *size* bytes at *offset* of /dev/mem, which lets only reserved
    ranges be read (CONFIG_STRICT_DEVMEM); a range that is not fully
    readable is refused, and memory grows only with bytes actually read."""
    buf = bytearray()
    got = 0
    while got < size:
        try:
            chunk = os.pread(fd, min(1 << 20, size - got), offset + got)
        except OSError as exc:
            raise ConfigError(f"cannot read {path} at {offset + got:#x}: {exc.strerror} "
                              "(only reserved ranges can be read)") from None
        if not chunk:
            raise ConfigError(f"{path} ends at {offset + got:#x}, inside --offset "
                              f"{offset:#x} + --mem-size {size:#x}")
        buf += chunk
        got += len(chunk)
    return buf


# -- decoding ------------------------------------------------------------------------


def _resolve(args: argparse.Namespace, view: memoryview, offset: int | None
             ) -> ramoops.Resolved:
    progress = Progress("decode", "scanning")
    try:
        return ramoops.resolve_geometry(
            view, offset=offset, mem_size=args.mem_size, record_size=args.record_size,
            console_size=args.console_size, ftrace_size=args.ftrace_size,
            pmsg_size=args.pmsg_size, ecc=args.ecc, ftrace_cpus=args.ftrace_cpus,
            order=None if args.zone_order == "auto" else ZoneOrder(args.zone_order),
            progress=progress)
    finally:
        progress.close()


def _decode(args: argparse.Namespace, img: _Image
            ) -> tuple[tuple[Record, ...], int, tuple[str, ...]]:
    """(records, ECC size, zone problems) of the image."""
    view = img.view
    # /dev/mem was read from --offset on: the view starts at the region.
    offset = 0 if img.base else args.offset
    explicit = any(v is not None for v in (args.mem_size, args.record_size,
                                           args.console_size, args.ftrace_size,
                                           args.pmsg_size))
    try:
        res = _resolve(args, view, offset)
    except ParseError as exc:
        if explicit or not args.scan:
            raise
        _note(f"{exc}; scanning for dmesg records without zone headers")
        progress = Progress("decode", "scanning")
        try:
            return ramoops.scan_headerless(view, offset or 0, progress=progress), 0, ()
        finally:
            progress.close()
    for line in res.notes:
        _note(f"inferred: {line}")
    geom = res.geometry
    if geom.ecc_size and not have_numpy() and geom.mem_size > PROGRESS_MIN:
        _note("numpy is not installed: checking ECC with the standard library, several "
              "times slower on large regions (pip install 'memconsole[fast]')")
    progress = Progress("decode", "decoding")
    try:
        # No ``with`` on this slice: its release would fail while an error
        # unwinds with views of it in the traceback; _Image.close() clears them.
        region = view[res.offset:res.offset + geom.mem_size]
        decoded = ramoops.decode(region, geom, scan=args.scan, progress=progress)
    finally:
        progress.close()
    statuses = [z.status for z in decoded.zones]
    if decoded.zones and all(s in (ZoneStatus.BAD_SIG, ZoneStatus.TRUNCATED)
                             for s in statuses) and not decoded.records:
        first = decoded.zones[0]
        raise ParseError(f"{first.problem} (and every other zone): wrong --offset or "
                         "geometry options?")
    return decoded.records, geom.ecc_size, decoded.problems


def run(args: argparse.Namespace) -> int:
    """Handler of ``memconsole decode``; returns the exit code."""
    if args.out is not None:
        _check_out(args.out)
    with _Image(args.image, args.offset, args.mem_size) as img:
        records, ecc_size, problems = _decode(args, img)
    # Records hold bytes only: the image is unmapped before anything is written.
    return _emit(args, records, ecc_size, problems)


# -- output --------------------------------------------------------------------------


def _json(rec: Record) -> dict[str, Any]:
    return {
        "zone": rec.zone, "name": rec.name, "type": rec.kind.value,
        "time": rec.time_ns / 1e9 if rec.time_ns else None, "time_ns": rec.time_ns,
        "compressed": rec.compressed, "size": len(rec.payload),
        "ecc_corrected": rec.ecc_corrected, "ecc_bad_blocks": rec.ecc_bad_blocks,
        "text": rec.payload, "recovered": rec.recovered, "note": rec.note,
    }


def _check_out(out: Path) -> None:
    """Refuse an --out that is a symlink or not a directory before any work."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot use --out {out}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"--out {out} is a symbolic link; give the directory itself")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"--out {out} exists and is not a directory")


@contextlib.contextmanager
def _out_dir(out: Path) -> Iterator[int]:
    """A file descriptor of DIR (created 0700 when missing; never a symlink)."""
    _check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(out, 0o700)
        dfd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot write to {out}: {exc.strerror}") from None
    try:
        yield dfd
    finally:
        os.close(dfd)


def _taken(dfd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return False
    return True


def _write_records(out: Path, records: Iterable[Record]) -> None:
    """One file per record in *out*, none replacing anything: every name is
    checked first (nothing is written when one is taken), and each file is
    created under a temporary name with O_EXCL | O_NOFOLLOW, mode 0600, then
    hard-linked to its name (link() never replaces) and the temporary name
    removed.  No fsync: decode deletes nothing, so a crash loses only
    output that can be made again."""
    recs = list(records)
    with _out_dir(out) as dfd:
        names = [r.name for r in recs]
        taken = [n for n in dict.fromkeys(names) if _taken(dfd, n)]
        if taken or len(set(names)) != len(names):
            first = taken[0] if taken else next(n for n in names if names.count(n) > 1)
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise ConfigError(f"{out / first} already exists{more}: not overwritten; "
                              "give an empty or new --out directory")
        for rec in recs:
            try:
                _write_one(dfd, rec)
            except FileExistsError:
                raise ConfigError(f"{out / rec.name} appeared while decoding: not "
                                  "overwritten") from None
            except OSError as exc:
                raise ConfigError(f"cannot write {out / rec.name}: {exc.strerror}") from None


def _create(dfd: int, name: str, rec: Record) -> None:
    """Create *name* in *dfd* (O_EXCL | O_NOFOLLOW, 0600) holding the record's
    file: payload then ECC notice, straight from the record."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dfd)
    try:
        for part in (rec.payload, rec.ecc_notice):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dfd)
        raise
    os.close(fd)


def _write_one(dfd: int, rec: Record) -> None:
    for attempt in range(8):
        tmp = f".{rec.name}.tmp{os.getpid()}.{secrets.token_hex(4)}"
        try:
            _create(dfd, tmp, rec)
            break
        except FileExistsError:
            if attempt == 7:  # eight random names taken: someone is racing us
                raise ConfigError(f"cannot create a temporary file for {rec.name}: eight "
                                  "random names were taken") from None
    try:
        try:
            os.link(tmp, rec.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError:
            # A file system without hard links: create the name itself,
            # still exclusively, and write it there.
            _create(dfd, rec.name, rec)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)


def _emit(args: argparse.Namespace, records: tuple[Record, ...], ecc_size: int,
          problems: tuple[str, ...]) -> int:
    """Report problems, write/print the records, and pick the exit code."""
    for line in problems[:_MAX_PROBLEM_LINES]:
        _note(f"{line}, skipping")
    if len(problems) > _MAX_PROBLEM_LINES:
        _note(f"... and {len(problems) - _MAX_PROBLEM_LINES} more zone(s) discarded or "
              "damaged")
    for rec in records:
        if rec.note and (rec.name.endswith(".enc.z") or rec.recovered):
            _note(f"{rec.name}: {rec.note}")
    if args.out is not None:
        _write_records(args.out, records)
    if args.json:
        _print_lines(json.dumps(json_safe(_json(rec)), ensure_ascii=False) for rec in records)
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
