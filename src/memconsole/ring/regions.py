"""Memory regions a ring lives in: a file, a legacy pmem device, or a
physical range through /dev/mem.

A ring spec (``--ring SPEC``) is either a path or ``mem:ADDR:SIZE``.  What
a path names is looked at (``lstat``, and the target of a symbolic link)
before anything opens it, and only these are opened:

* a regular file (any filesystem; tmpfs and DAX included), never one of a
  kernel interface filesystem (proc, sysfs, debugfs, ...).  A missing file
  is created (``O_CREAT|O_EXCL``) with the requested size; an existing file
  that is not a ring is refused, never overwritten; a writer never goes
  through a symbolic link to a file.
* a pmem block device (``memmap=nn!ss`` gives ``/dev/pmem0``): one that
  /sys/dev/block places on an nvdimm bus with the nd_pmem (or nd_btt)
  driver.  Any other block device is refused; a writer given a size uses
  only the device's first bytes.  Writes go through the device's page cache
  and :meth:`Region.flush` (msync) pushes them to the persistent range.
* ``mem:ADDR:SIZE``: a physical range through ``/dev/mem`` (opened with
  O_SYNC, so the mapping is uncached and a store reaches RAM in program
  order), after :func:`~memconsole.ring.iomem.check_mem_access` allowed it:
  reserved in /proc/iomem and unclaimed, no ramoops overlap, and for
  writing reserved by ``memmap=`` on the kernel command line (or
  ``force``).

Character devices, FIFOs, sockets and directories are refused by their
``lstat``, so naming one never opens it (a watchdog starts counting when
opened; a FIFO blocks).  The open itself is ``O_NOFOLLOW|O_NONBLOCK``, and
``fstat`` must show the inode that was checked.

The /proc/iomem and /proc/cmdline rules are pure (:mod:`memconsole.ring.iomem`);
the rest is I/O.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from memconsole._common import parse_size
from memconsole.errors import ConfigError, RegionError, RingFormatError
from memconsole.ring._paths import check_new_file, inspect_path, os_error
from memconsole.ring.format import DATA_OFFSET, MIN_REGION, VERSION, parse_header
from memconsole.ring.iomem import (
    IomemEntry,
    check_mem_access,
    check_mem_range,
    memmap_ranges,
    parse_iomem,
    ramoops_range,
)

__all__ = [
    "DEFAULT_RING_SIZE",
    "MAX_RING_SIZE",
    "IomemEntry",
    "Region",
    "RegionSpec",
    "buffer_region",
    "check_mem_access",
    "check_mem_range",
    "check_ring_size",
    "memmap_ranges",
    "open_region",
    "parse_iomem",
    "parse_spec",
    "ramoops_range",
]

#: Size of a ring file created without ``--ring-size``.
DEFAULT_RING_SIZE = 1 << 20
#: The largest ring a writer formats or attaches to (the reader and the
#: attach scan copy the whole ring once).
MAX_RING_SIZE = 1 << 30
_PAGE = mmap.PAGESIZE
_IOMEM = Path("/proc/iomem")
_CMDLINE = Path("/proc/cmdline")
_FIRMWARE_MEMMAP = Path("/sys/firmware/memmap")
_DEV_MEM = "/dev/mem"
_LOCK_DIR = Path("/run/memconsole")
_RAMOOPS_PARAMS = Path("/sys/module/ramoops/parameters")


def check_ring_size(size: int, what: str = "ring size") -> None:
    """Refuse a ring size outside ``MIN_REGION .. MAX_RING_SIZE``."""
    if size < MIN_REGION:
        raise RegionError(f"{what} {size} is below the smallest ring ({MIN_REGION} bytes)")
    if size > MAX_RING_SIZE:
        raise RegionError(f"{what} {size} ({size / (1 << 30):.1f} GiB) exceeds the largest "
                          f"ring memconsole writes ({MAX_RING_SIZE >> 20} MiB)")
@dataclass(frozen=True)
class RegionSpec:
    """A parsed ``--ring`` value.

    Attributes:
        text: the spec as given.
        path: the file or device, or None for a physical range.
        address: physical start of a ``mem:`` range.
        size: bytes of a ``mem:`` range.
    """

    text: str
    path: Path | None
    address: int | None = None
    size: int | None = None


def parse_spec(spec: str) -> RegionSpec:
    """Parse ``PATH`` or ``mem:ADDR:SIZE``."""
    if spec.startswith("mem:"):
        parts = spec.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise RegionError(f"bad ring spec {spec!r}: expected mem:ADDR:SIZE, "
                              "e.g. mem:0x7200000:1M")
        try:
            address = int(parts[1], 0)
        except ValueError:
            raise RegionError(f"bad physical address {parts[1]!r} in {spec!r}") from None
        try:
            size = parse_size(parts[2])
        except ConfigError as exc:
            raise RegionError(f"bad ring spec {spec!r}: {exc}") from None
        if address % _PAGE or size % _PAGE or size == 0:
            raise RegionError(f"{spec}: address {address:#x} and size {size:#x} must be "
                              f"non-zero multiples of the page size ({_PAGE:#x})")
        return RegionSpec(spec, None, address, size)
    if not spec:
        raise RegionError("empty ring spec")
    return RegionSpec(spec, Path(spec))


# -- regions -----------------------------------------------------------------


class Region:
    """An open region: its bytes as a memoryview, a flush, a writer lock.

    Attributes:
        spec: the spec it was opened from.
        kind: ``file``, ``pmem``, ``mem`` or ``buffer``.
        created: a file was created for it.
        warnings: things the caller should tell a person (not errors).
    """

    def __init__(self, spec: str, kind: str, view: memoryview, *, mm: mmap.mmap | None = None,
                 fd: int | None = None, created: bool = False, sync: bool = False,
                 warnings: tuple[str, ...] = (), lock_fd: int | None = None) -> None:
        self.spec = spec
        self.kind = kind
        self.created = created
        self.warnings = warnings
        self._view = view
        self._mm = mm
        self._fd = fd
        self._lock_fd = lock_fd
        self._sync = sync

    @property
    def buf(self) -> memoryview:
        """The region's bytes."""
        return self._view

    @property
    def size(self) -> int:
        """Bytes in the region."""
        return len(self._view)

    def flush(self, offset: int, length: int) -> None:
        """msync ``[offset, offset+length)`` for backends whose stores go
        through a page cache (files, pmem); uncached /dev/mem needs none."""
        if not self._sync or self._mm is None or length <= 0:
            return
        lo = offset - offset % _PAGE
        hi = min(offset + length, len(self._mm))
        self._mm.flush(lo, hi - lo)

    def may_reset(self, problem: RingFormatError) -> bool:
        """Memory (pmem, /dev/mem, buffers) holding anything but a current
        ring may be formatted: after a cold boot it holds garbage.  A file
        only when it is new, all zero, or a ring of an older version or
        other geometry: a file of another format is never overwritten."""
        if self.kind != "file" or self.created:
            return True
        if problem.reason == "version":
            return problem.version is not None and problem.version < VERSION
        return problem.reason in ("empty", "geometry", "damaged")

    def snapshot(self) -> bytes:
        """A copy of the region's bytes (one pass over uncached memory)."""
        return bytes(self._view)

    def close(self) -> None:
        """Unmap and close.  Views a caller still holds keep the mapping
        alive until they are released."""
        self._view.release()
        if self._mm is not None:
            with contextlib.suppress(BufferError):
                self._mm.close()
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None

    def __enter__(self) -> Region:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def buffer_region(data: bytearray, spec: str = "<buffer>") -> Region:
    """A region over *data* in this process (tests, benchmarks)."""
    return Region(spec, "buffer", memoryview(data))


def _lock(fd: int, spec: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise RegionError(f"{spec}: another memconsole writer has this ring") from exc
        raise os_error(spec, exc, "lock") from exc


def _open_path(spec: RegionSpec, write: bool, create_size: int | None) -> Region:
    assert spec.path is not None
    path, st = inspect_path(spec.text, spec.path, write)
    flags = ((os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
             | os.O_NONBLOCK)
    created = False
    if st is None:
        if not write:
            raise RegionError(f"{spec.text}: no such file")
        check_ring_size(create_size or DEFAULT_RING_SIZE, "--ring-size")
        check_new_file(spec.text, path)
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise os_error(spec.text, exc, "create it") from exc
        created = True
    else:
        if write and stat.S_ISBLK(st.st_mode):
            # O_EXCL on a block device fails with EBUSY while it is mounted
            # or claimed (block/bdev.c), and keeps it from being mounted
            # while the ring is open: never write under a filesystem.
            flags |= os.O_EXCL
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise os_error(spec.text, exc, "open it") from exc
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != \
                (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)):
            os.close(fd)
            raise RegionError(f"{spec.text}: replaced while it was being opened; not using it")
        # O_NONBLOCK only kept the open itself from waiting; reads of a
        # device's header must not fail with EAGAIN.
        os.set_blocking(fd, True)
    try:
        return _path_region(spec, fd, write, created, create_size)
    except BaseException:
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _map(spec: str, fd: int, size: int, write: bool, offset: int = 0) -> mmap.mmap:
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, prot, offset=offset)
    except OSError as exc:
        raise os_error(spec, exc, "map it") from exc


def _path_region(spec: RegionSpec, fd: int, write: bool, created: bool,
                 create_size: int | None) -> Region:
    st = os.fstat(fd)
    warnings: tuple[str, ...] = ()
    if stat.S_ISREG(st.st_mode):
        kind = "file"
        if created:
            size = create_size or DEFAULT_RING_SIZE
            try:
                # Allocate now: a store into a hole of a full filesystem
                # through the mapping would be SIGBUS, not an error.
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                raise os_error(spec.text, exc, f"allocate {size} bytes") from exc
        else:
            size = st.st_size
            if write and not MIN_REGION <= size <= MAX_RING_SIZE:
                raise RegionError(f"{spec.text}: {size} bytes; a ring has "
                                  f"{MIN_REGION}..{MAX_RING_SIZE} bytes (a ring file that does "
                                  "not exist yet is created with --ring-size)")
            if create_size is not None and create_size != size:
                warnings = (f"{spec.text} exists with {size} bytes; keeping that size, "
                            f"not {create_size}",)
    else:
        kind = "pmem"
        device = os.lseek(fd, 0, os.SEEK_END)
        size = device
        if write and create_size is not None:
            # A ring in the first create_size bytes of the device (its header
            # says so: readers map the device and read only that much).
            if create_size > device:
                raise RegionError(f"{spec.text}: --ring-size {create_size} exceeds the "
                                  f"device's {device} bytes")
            size = create_size
        elif write:
            # Without a size, a device that holds a ring keeps that ring's size.
            with contextlib.suppress(RingFormatError):
                held = parse_header(os.pread(fd, DATA_OFFSET, 0), device).region_size
                if MIN_REGION <= held <= device:   # a header's claim is checked too
                    size = held
            if size > MAX_RING_SIZE:
                raise RegionError(f"{spec.text}: the device has {device} bytes, more than the "
                                  f"largest ring ({MAX_RING_SIZE >> 20} MiB); give --ring-size")
    if size <= 0:
        raise RegionError(f"{spec.text}: empty (0 bytes)")
    if write:
        _lock(fd, spec.text)
    mm = _map(spec.text, fd, size, write)
    return Region(spec.text, kind, memoryview(mm), mm=mm, fd=fd, created=created,
                  sync=write, warnings=warnings)


def _read_proc(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RegionError(f"cannot read {path}: {exc.strerror}") from exc


def _mem_lock(spec: RegionSpec, devmem_fd: int) -> int | None:
    """Writer lock for a physical range: a lock file per start address under
    /run/memconsole, or /dev/mem itself when /run is not writable."""
    assert spec.address is not None
    try:
        _LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(_LOCK_DIR / f"mem-{spec.address:x}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        _lock(devmem_fd, spec.text)
        return None
    try:
        _lock(fd, spec.text)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _ramoops_params() -> dict[str, bytes]:
    out = {}
    for name in ("mem_address", "mem_size"):
        with contextlib.suppress(OSError):
            out[name] = (_RAMOOPS_PARAMS / name).read_bytes().strip()
    return out


def _firmware_map() -> list[IomemEntry] | None:
    """/sys/firmware/memmap (the firmware's e820 table, before ``memmap=``
    changed it) as entries, or None when the kernel has none."""
    try:
        names = sorted((n for n in os.listdir(_FIRMWARE_MEMMAP) if n.isdigit()), key=int)
    except OSError:
        return None
    out = []
    for name in names[:4096]:
        d = _FIRMWARE_MEMMAP / name
        try:
            out.append(IomemEntry(int((d / "start").read_text().strip(), 16),
                                  int((d / "end").read_text().strip(), 16),
                                  (d / "type").read_text().strip(), 0))
        except (OSError, ValueError):
            continue
    return out or None


def _open_dev_mem(spec: RegionSpec, write: bool) -> int:
    """Open /dev/mem, after making sure it is the memory device (1:1)."""
    try:
        st = os.lstat(_DEV_MEM)
    except OSError as exc:
        raise os_error(spec.text, exc, f"look at {_DEV_MEM}") from exc
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != 1 or os.minor(st.st_rdev) != 1:
        raise RegionError(f"{spec.text}: {_DEV_MEM} is not the memory device (1:1)")
    flags = ((os.O_RDWR if write else os.O_RDONLY) | os.O_SYNC | os.O_CLOEXEC
             | os.O_NOFOLLOW)
    try:
        return os.open(_DEV_MEM, flags)
    except OSError as exc:
        raise os_error(spec.text, exc, f"open {_DEV_MEM}") from exc


def _open_mem(spec: RegionSpec, write: bool, force: bool) -> Region:
    assert spec.address is not None and spec.size is not None
    cmdline = None
    with contextlib.suppress(OSError):
        cmdline = _CMDLINE.read_bytes()
    # ramoops maps its range without claiming it in /proc/iomem (the vmap
    # path of fs/pstore/ram_core.c): its module parameters say where it is.
    warnings = check_mem_access(parse_iomem(_read_proc(_IOMEM)), spec.address, spec.size,
                                cmdline=cmdline, firmware=_firmware_map(),
                                ramoops=ramoops_range(_ramoops_params()), write=write,
                                force=force)
    fd = _open_dev_mem(spec, write)
    lock_fd = None
    try:
        if write:
            lock_fd = _mem_lock(spec, fd)
        mm = _map(spec.text, fd, spec.size, write, spec.address)
    except BaseException:
        os.close(fd)
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    return Region(spec.text, "mem", memoryview(mm), mm=mm, fd=fd, warnings=warnings,
                  lock_fd=lock_fd)


def open_region(spec: str, *, write: bool = False, create_size: int | None = None,
                force: bool = False) -> Region:
    """Open the region named by *spec* for reading or, with *write*, for
    one writer (an exclusive lock; a second writer gets :class:`RegionError`).

    A writer creates a missing file of *create_size* bytes (default
    :data:`DEFAULT_RING_SIZE`); for an existing file *create_size* only
    draws a warning when it differs.  *force* lets a ``mem:`` range be used
    that the kernel command line did not reserve (see
    :func:`~memconsole.ring.iomem.check_mem_access`); nothing else.
    What the spec names is checked before it is opened or created (see the
    module docstring): a :class:`RegionError` means nothing was created or
    written, and no device, FIFO or socket was opened.
    """
    parsed = parse_spec(spec)
    if write and create_size is not None:
        check_ring_size(create_size, "--ring-size")
    if parsed.path is None:
        return _open_mem(parsed, write, force)
    return _open_path(parsed, write, create_size)
