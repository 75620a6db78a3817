"""What a ring spec's path names, looked at before it is opened: only a
regular file of a storage filesystem and a pmem block device pass (see
:mod:`memconsole.ring.regions`).  Reads ``lstat``, /sys/dev/block and
/proc/self/mountinfo; never opens the path itself.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from memconsole.errors import RegionError

__all__ = ["check_kind", "check_new_file", "inspect_path", "os_error"]

_MOUNTINFO = Path("/proc/self/mountinfo")
_SYS_BLOCK = Path("/sys/dev/block")
# Filesystems whose regular files are kernel interfaces, not storage (a
# sysfs binary attribute such as a PCI BAR's resource0 can even be mapped).
_INTERFACE_FS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "efivarfs", "fusectl", "mqueue", "nsfs", "proc", "pstore", "rpc_pipefs", "securityfs",
    "selinuxfs", "sysfs", "tracefs"})
_PMEM_NAME = re.compile(r"pmem\d+(?:\.\d+)?s?(?:p\d+)?")
_PMEM_DRIVERS = ("nd_pmem", "nd_btt")


def os_error(spec: str, exc: OSError, doing: str) -> RegionError:
    """A RegionError for *exc*, with the reason and a hint."""
    hint = ""
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = " (needs root)"
    elif exc.errno == errno.EBUSY:
        hint = " (mounted, or another memconsole writer has it)"
    return RegionError(f"{spec}: cannot {doing}: {exc.strerror}{hint}")


def _device(st: os.stat_result) -> str:
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _check_pmem(text: str, st: os.stat_result) -> None:
    """Refuse a block device that is not nd_pmem's, asking sysfs only (the
    device is not opened): /sys/dev/block/MAJ:MIN must lie on an nvdimm bus
    (``.../ndbusN/regionN/namespaceN.M/block/pmemN``, drivers/nvdimm), be
    named pmemN (``.M`` for a second namespace, ``s`` for BTT, ``pN`` a
    partition), and its disk's device must be bound to nd_pmem or nd_btt."""
    dev = _device(st)
    try:
        real = (_SYS_BLOCK / dev).resolve(strict=True)
    except OSError:
        raise RegionError(f"{text}: block device {dev} is not in {_SYS_BLOCK}; cannot tell "
                          "whether it is a pmem device") from None
    disk = real.parent if (real / "partition").exists() else real
    try:
        driver = (disk / "device" / "driver").resolve(strict=True).name
    except OSError:
        driver = ""
    on_bus = any(re.fullmatch(r"ndbus\d+", part) for part in real.parts)
    if not (on_bus and _PMEM_NAME.fullmatch(real.name) and driver in _PMEM_DRIVERS):
        raise RegionError(f"{text}: a block device ({dev}, {real.name}), but not a pmem device "
                          "(nd_pmem); refusing to put a ring on it")


def _filesystem_type(st_dev: int) -> str | None:
    """The filesystem type /proc/self/mountinfo gives the device *st_dev*."""
    want = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    try:
        text = _MOUNTINFO.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 7 and fields[2] == want and "-" in fields[6:]:
            sep = fields.index("-", 6)
            return fields[sep + 1] if sep + 1 < len(fields) else None
    return None


def check_kind(text: str, st: os.stat_result) -> None:
    """Refuse, from its ``lstat``, anything but a regular file of a storage
    filesystem and a pmem block device."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        fstype = _filesystem_type(st.st_dev)
        if fstype in _INTERFACE_FS:
            raise RegionError(f"{text}: a file of the kernel's {fstype} interface, not storage; "
                              "refusing to put a ring on it")
        return
    if stat.S_ISBLK(mode):
        _check_pmem(text, st)
        return
    if stat.S_ISCHR(mode):
        what = f"a character device ({_device(st)})"
        hint = ("; memconsole never opens one as a ring (opening a device can act on the "
                "hardware: a watchdog starts counting)")
        if os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 1:
            hint += "; for physical memory give mem:ADDR:SIZE"
    elif stat.S_ISFIFO(mode):
        what, hint = "a FIFO", ""
    elif stat.S_ISSOCK(mode):
        what, hint = "a socket", ""
    elif stat.S_ISDIR(mode):
        what, hint = "a directory", ""
    else:
        what, hint = f"a file of type {stat.S_IFMT(mode):#o}", ""
    raise RegionError(f"{text}: {what}, not a regular file or a pmem block device{hint}")


def inspect_path(text: str, path: Path, write: bool) -> tuple[Path, os.stat_result | None]:
    """What *path* (given as *text*) names, looked at before anything
    opens it: the path to open (a symbolic link's target) and its
    ``lstat``, or None for a missing file.  Raises :class:`RegionError`
    for anything that is not to be opened."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path, None
    except OSError as exc:
        raise os_error(text, exc, "look at it") from exc
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            if write:
                raise RegionError(f"{text}: a symbolic link to {target}, which does not "
                                  "exist; a ring file is never created through a link") from None
            raise RegionError(f"{text}: no such file (a symbolic link to {target}, "
                              "which does not exist)") from None
        except OSError as exc:
            raise os_error(text, exc, f"look at {target}") from exc
        if write and stat.S_ISREG(st.st_mode):
            raise RegionError(f"{text}: a symbolic link (to {target}); a ring file is "
                              f"written only under its own name: give {target}")
        path = target
    check_kind(text, st)
    return path, st


def check_new_file(text: str, path: Path) -> None:
    """Refuse to create a ring file where a missing name is a missing
    device (/dev: devtmpfs, where a mistyped /dev/pmem1 would become a
    file in RAM) or a kernel interface."""
    parent = Path(os.path.abspath(path)).parent
    try:
        fstype = _filesystem_type(os.stat(parent).st_dev)
    except OSError:
        return  # creating it will say why
    if fstype == "devtmpfs":
        raise RegionError(f"{text}: no such device; a ring file is never created in "
                          f"{parent} (devtmpfs)")
    if fstype in _INTERFACE_FS:
        raise RegionError(f"{text}: no such file; {parent} is the kernel's {fstype} "
                          "interface, not storage")
