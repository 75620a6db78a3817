"""Build the VM lab's small initramfs: busybox, the modules needed to mount
the host's root over 9p, and an ``/init`` that chroots into it.

The archive is written in the kernel's "newc" cpio format directly
(Documentation/driver-api/early-userspace/buffer-format.rst), so no
``cpio`` binary is needed.
"""

from __future__ import annotations

import lzma
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from memconsole.errors import LabError

__all__ = ["CpioEntry", "build_initramfs", "default_busybox", "module_load_order",
           "read_module", "write_newc"]

# Modules whose dependency closure the guest needs before it can mount the
# host root: the virtio PCI transport, the 9p virtio transport and 9p itself.
NEEDED_MODULES = ("virtio_pci", "9pnet_virtio", "9p")

_MODULE_SUFFIXES = (".ko", ".ko.xz")


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive.

    Attributes:
        name: path inside the archive, without a leading slash.
        mode: full st_mode (file type and permission bits).
        data: file contents, or the link target for a symlink.
    """

    name: str
    mode: int
    data: bytes = b""


def _newc_header(ino: int, entry: CpioEntry) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = (
        ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name), 0,
    )
    return b"070701" + b"".join(b"%08X" % f for f in fields) + name


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def write_newc(entries: Iterable[CpioEntry]) -> bytes:
    """Return a newc cpio archive holding *entries*, with its trailer."""
    out = bytearray()
    for ino, entry in enumerate([*entries, CpioEntry("TRAILER!!!", 0)], start=1):
        header = _newc_header(ino, entry)
        out += header + _pad4(len(header))
        out += entry.data + _pad4(len(entry.data))
    out += _pad4(len(out))
    return bytes(out)


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES[::-1]:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def module_load_order(modules_dir: Path, wanted: Iterable[str] = NEEDED_MODULES) -> list[str]:
    """Return the relative paths of *wanted* modules and their dependencies,
    in an order in which ``insmod`` can load them (dependencies first).

    Modules built into the kernel (``modules.builtin``) are left out.  The
    dependency graph is read from ``modules.dep`` as depmod writes it.
    """
    dep_file = modules_dir / "modules.dep"
    try:
        dep_text = dep_file.read_text()
    except OSError as exc:
        raise LabError(f"cannot read {dep_file}: {exc.strerror}") from exc
    builtin: set[str] = set()
    builtin_file = modules_dir / "modules.builtin"
    if builtin_file.exists():
        builtin = {_module_name(line) for line in builtin_file.read_text().split()}
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in dep_text.splitlines():
        path, _, rest = line.partition(":")
        deps[_module_name(path)] = (path, rest.split())
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, depth: int) -> None:
        if name in seen or name in builtin:
            return
        if depth > 64:
            raise LabError(f"module dependency chain too deep at {name}")
        if name not in deps:
            raise LabError(f"module {name} is neither in {dep_file} nor built in")
        seen.add(name)
        path, needs = deps[name]
        for dep in needs:
            visit(_module_name(dep), depth + 1)
        order.append(path)

    for name in wanted:
        visit(name, 0)
    return order


def read_module(path: Path) -> bytes:
    """Return a module's ELF bytes, decompressing ``.ko.xz`` (busybox
    ``insmod`` loads only uncompressed modules)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        try:
            return lzma.decompress(data)
        except lzma.LZMAError as exc:
            raise LabError(f"cannot decompress {path}: {exc}") from exc
    return data


_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "memconsole-lab: initramfs up"
for m in $(cat /modules.order); do
    insmod "/lib/lab/$m" || echo "memconsole-lab: insmod $m failed"
done
mkdir -p /newroot
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot /newroot; then
    echo "memconsole-lab: FAILED to mount host root over 9p"; echo o > /proc/sysrq-trigger
fi
# Writable places live under /run only: the host's /tmp stays visible (the
# project or its virtual environment may be there), TMPDIR points to /run/tmp.
mount -t tmpfs run /newroot/run
mkdir -p /newroot/run/lab /newroot/run/tmp
chmod 1777 /newroot/run/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,rw,cache=none lab /newroot/run/lab
mount --bind /proc /newroot/proc
mount --bind /sys /newroot/sys
mount --bind /dev /newroot/dev
echo "memconsole-lab: chroot into host root"
chroot /newroot /bin/sh /run/lab/stage.sh
echo "memconsole-lab: stage script exited with status $?"
# Power off from the initramfs: its busybox lives in RAM, while programs from
# the 9p root would fault once the virtio device is shut down.
sync
poweroff -f
"""


def build_initramfs(modules_dir: Path, busybox: Path) -> bytes:
    """Return the lab initramfs for the kernel whose modules are in
    *modules_dir*, with the static *busybox*."""
    order = module_load_order(modules_dir)
    entries = [CpioEntry(d, 0o40755) for d in
               ("bin", "dev", "proc", "sys", "lib", "lib/lab", "newroot", "tmp")]
    entries.append(CpioEntry("bin/busybox", 0o100755, busybox.read_bytes()))
    names = []
    for rel in order:
        name = _module_name(rel) + ".ko"
        names.append(name)
        entries.append(CpioEntry(f"lib/lab/{name}", 0o100644, read_module(modules_dir / rel)))
    entries.append(CpioEntry("modules.order", 0o100644, ("\n".join(names) + "\n").encode()))
    entries.append(CpioEntry("init", 0o100755, _INIT.encode()))
    return write_newc(entries)


def default_busybox() -> Path:
    """The static busybox Debian's busybox-static installs."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return Path(candidate)
    raise LabError("busybox not found: install busybox-static")
