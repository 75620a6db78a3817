"""Drills with systemd as PID 1: the host's root, read-only over 9p, under a
volatile overlay (a tmpfs upper layer), booted by ``switch_root`` into
``/lib/systemd/systemd``.

What the guest runs is the host's own systemd with the host's unit files,
plus the files the drill puts into the overlay (``SystemdDrill.files`` and
``SystemdDrill.install``, e.g. memconsole's units installed by
:func:`memconsole.setup.units.install_units` into the drill's ``sysroot/``).
The default unit is ``memconsole-lab.target``: ``sysinit.target`` (udev,
journald, modules, systemd-pstore, memconsole's units...) and the lab's
stage service, which runs ``SystemdDrill.stage`` once per boot with
``$boot`` set to the boot's number.  The stage crashes or resets the guest
itself; after the last boot it writes ``$OUT/done`` and powers off.

The overlay's upper layer is RAM, so every boot starts from the host's
root again; the directories named in ``SystemdDrill.persist`` are bound
from the drill's work directory instead and keep what the guest wrote
across boots (the archive, systemd-pstore's directory).

Sequence in ``/init`` (busybox): mount the host root at ``/lower`` (9p,
read-only), a tmpfs at ``/rw``, ``overlay`` at ``/newroot``; the work
directory (9p, read-write) at ``/newroot/memconsole-lab``; copy ``sysroot/``
over the overlay; bind the persistent directories; move ``/dev``, ``/proc``
and ``/sys``; ``switch_root``.  The host's ``/.dockerenv`` is hidden (the
host may be a container; systemd would think the guest is one) and ``/tmp``
is a tmpfs.
"""

from __future__ import annotations

import compileall
import hashlib
import os
import resource
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import memconsole
from memconsole.errors import LabError
from memconsole.lab._initramfs import (
    NEEDED_MODULES,
    CpioEntry,
    _module_name,
    default_busybox,
    module_load_order,
    read_module,
    write_newc,
)

if TYPE_CHECKING:
    from memconsole.lab import DrillResult, Kernel, Lab, Ramoops

__all__ = ["LAB_DIR", "SystemdDrill", "build_systemd_initramfs", "run_systemd_drill"]

#: Where the work directory is mounted in the guest (``$OUT`` is its ``out/``).
LAB_DIR = "/memconsole-lab"
_TARGET = "memconsole-lab.target"
_MODULES = (*NEEDED_MODULES, "overlay")
# Units that only cost time in the lab's guest: no network to sync time
# over, and no device udev needs to handle (the 9p and virtio modules are
# loaded by /init; memconsole's units load ramoops through modprobe@).
# Under TCG udev's coldplug took more CPU than memconsole's two units.
_MASKED = ("systemd-timesyncd.service", "systemd-udevd.service",
           "systemd-udev-trigger.service", "systemd-udevd-control.socket",
           "systemd-udevd-kernel.socket")

_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "memconsole-lab: initramfs up (systemd drill)"
for m in $(cat /modules.order); do
    insmod "/lib/lab/$m" || echo "memconsole-lab: insmod $m failed"
done
fail() { echo "memconsole-lab: FAILED: $*"; echo o > /proc/sysrq-trigger; sleep 5; }
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot /lower \
    || fail "mount of the host root over 9p"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "overlay over the host root"
# The host may be a container: its /.dockerenv would make systemd believe
# it runs in one (and skip ConditionVirtualization=!container units, and
# the kernel command line).  /tmp is a tmpfs, as systemd-tmpfiles would
# otherwise empty the host's /tmp (into whiteouts) at every boot, slowly.
rm -f /newroot/.dockerenv /newroot/run/.containerenv
mount -t tmpfs -o mode=1777,nosuid,nodev tmp /newroot/tmp
mkdir -p /newroot@LAB@
mount -t 9p -o trans=virtio,version=9p2000.L,rw,cache=none lab /newroot@LAB@ \
    || fail "mount of the lab share"
cp -a /newroot@LAB@/sysroot/. /newroot/ || fail "copy of sysroot"
for d in $(cat /newroot@LAB@/persist.list); do
    mkdir -p "/newroot@LAB@/persist$d" "/newroot$d"
    mount --bind "/newroot@LAB@/persist$d" "/newroot$d" || fail "bind $d"
done
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
echo "memconsole-lab: switch_root to systemd"
exec switch_root /newroot /lib/systemd/systemd
""".replace("@LAB@", LAB_DIR)

_TARGET_UNIT = """[Unit]
Description=memconsole VM lab
Requires=sysinit.target memconsole-lab.service
After=sysinit.target memconsole-lab.service
AllowIsolate=yes
"""

_STAGE_UNIT = f"""[Unit]
Description=memconsole VM lab stage
DefaultDependencies=no
Requires=sysinit.target
After=sysinit.target

[Service]
Type=exec
ExecStart=/bin/sh {LAB_DIR}/stage.sh
StandardOutput=journal+console
StandardError=journal+console
"""


@dataclass
class SystemdDrill:
    """A drill whose guest boots systemd.

    Attributes:
        kernel: the kernel to boot.
        stage: shell run by the stage service on every boot, ``$boot`` its
            number, ``$OUT`` the output directory, ``mc`` memconsole; it
            crashes or resets the guest itself (the lab stops after
            ``boots`` boots).
        boots: how many boots the drill takes.
        files: files to place in the guest's root (absolute path -> text).
        install: called with the drill's ``sysroot`` directory to add files
            (e.g. units) that the guest then finds in its root.
        persist: directories kept across boots (bound from the work directory).
        mask: units masked in the guest (linked to /dev/null), e.g. ones that
            only cost time in a guest without network.
        ramoops: the ramoops range (its ``memmap=`` is on the command line;
            loading the module is up to the guest's configuration).
        memory_mb: guest RAM.
        smp: virtual CPUs.
        extra_cmdline: more kernel boot options.
        timeout: seconds allowed for the whole drill.
    """

    kernel: Kernel
    stage: str
    ramoops: Ramoops
    boots: int = 2
    files: Mapping[str, str] = field(default_factory=dict)
    install: Callable[[Path], None] | None = None
    persist: tuple[str, ...] = ("/var/lib/memconsole", "/var/lib/systemd/pstore")
    mask: tuple[str, ...] = _MASKED
    memory_mb: int = 512
    smp: int = 1
    extra_cmdline: tuple[str, ...] = ()
    timeout: float = 600.0


def build_systemd_initramfs(kernel: Kernel, busybox: Path) -> bytes:
    """The initramfs of a systemd drill: busybox, the 9p and overlay modules
    and the ``/init`` above."""
    order = module_load_order(kernel.modules_dir, _MODULES)
    entries = [CpioEntry(d, 0o40755) for d in
               ("bin", "dev", "proc", "sys", "lib", "lib/lab", "newroot", "tmp")]
    entries.append(CpioEntry("bin/busybox", 0o100755, busybox.read_bytes()))
    names = []
    for rel in order:
        name = _module_name(rel) + ".ko"
        names.append(name)
        entries.append(CpioEntry(f"lib/lab/{name}", 0o100644,
                                 read_module(kernel.modules_dir / rel)))
    entries.append(CpioEntry("modules.order", 0o100644, ("\n".join(names) + "\n").encode()))
    entries.append(CpioEntry("init", 0o100755, _INIT.encode()))
    return write_newc(entries)


def _initramfs(lab: Lab, kernel: Kernel) -> Path:
    busybox = default_busybox()
    recipe = Path(__file__).read_bytes()
    key = hashlib.sha256(
        f"{kernel.release}:{busybox.stat().st_mtime_ns}:".encode() + recipe).hexdigest()[:16]
    path = lab.cache / kernel.release / f"initramfs-systemd-{key}.cpio"
    with lab._build_lock(kernel):
        if not path.exists():
            lab.progress(f"building systemd initramfs for {kernel.release}")
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(build_systemd_initramfs(kernel, busybox))
            tmp.replace(path)
    return path


def _stage_script(drill: SystemdDrill) -> str:
    pkg_root = str(Path(memconsole.__file__).resolve().parent.parent)
    return f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0
OUT={LAB_DIR}/out
mkdir -p "$OUT"
mc() {{ PYTHONPATH={shlex.quote(pkg_root)} {shlex.quote(sys.executable)} -m memconsole "$@"; }}
boot=$(( $(cat {LAB_DIR}/boot.count 2>/dev/null || echo 0) + 1 ))
echo $boot > {LAB_DIR}/boot.count
echo "memconsole-lab: stage (boot $boot of {drill.boots}) on $(uname -r)"
echo 1 > /proc/sys/kernel/sysrq
{drill.stage}
if [ $boot -ge {drill.boots} ]; then
    echo "memconsole-lab: stage done"
    touch "$OUT/done"
    sync
    echo o > /proc/sysrq-trigger
fi
sleep 120
echo "memconsole-lab: boot $boot neither crashed nor ended"
echo o > /proc/sysrq-trigger
"""


def _prepare(drill: SystemdDrill, workdir: Path) -> None:
    sysroot = workdir / "sysroot"
    units = sysroot / "etc/systemd/system"
    units.mkdir(parents=True)
    (workdir / "out").mkdir()
    (units / _TARGET).write_text(_TARGET_UNIT)
    (units / "memconsole-lab.service").write_text(_STAGE_UNIT)
    for path, text in drill.files.items():
        if not path.startswith("/"):
            raise LabError(f"drill file {path!r}: give an absolute path")
        dest = sysroot / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    for unit in drill.mask:
        (units / unit).symlink_to("/dev/null")
    if drill.install is not None:
        drill.install(sysroot)
    (workdir / "persist.list").write_text("\n".join(drill.persist) + "\n")
    for d in drill.persist:
        (workdir / "persist" / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (workdir / "stage.sh").write_text(_stage_script(drill))


def _qemu_argv(drill: SystemdDrill, workdir: Path, initrd: Path) -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise LabError("qemu-system-x86_64 not found: install qemu-system-x86 "
                       "(run scripts/bootstrap.sh)")
    cmdline = " ".join(dict.fromkeys((
        "console=ttyS0", "panic=1", "oops=panic", "loglevel=6",
        *filter(None, [drill.ramoops.memmap()]),
        f"systemd.unit={_TARGET}", "systemd.show_status=error",
        # Under TCG on a loaded host a Python service can need minutes to
        # start; systemd's default 90 s would kill it and count a failure.
        "systemd.default_timeout_start_sec=900", *drill.extra_cmdline)))
    return [
        qemu, "-accel", "tcg", "-cpu", "max", "-m", f"{drill.memory_mb}M",
        "-smp", str(drill.smp),
        "-kernel", str(drill.kernel.vmlinuz), "-initrd", str(initrd), "-append", cmdline,
        "-display", "none", "-serial", "stdio", "-nic", "none",
        "-monitor", f"unix:{workdir / 'monitor.sock'},server=on,wait=off",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
        "multidevs=remap",
        "-virtfs", f"local,path={workdir},mount_tag=lab,security_model=none",
    ]


def run_systemd_drill(lab: Lab, drill: SystemdDrill, workdir: Path) -> DrillResult:
    """Run *drill* in *workdir* (created; an earlier drill there is cleared).
    Raises :class:`LabError` with the serial tail on failure."""
    from memconsole.lab import DrillResult, _tail

    initrd = _initramfs(lab, drill.kernel)
    # The units run memconsole sandboxed (a read-only root): compile its
    # modules now, as an installed copy has them, or every start in the
    # guest compiles them all again under TCG (tens of seconds).
    compileall.compile_dir(str(Path(memconsole.__file__).resolve().parent), quiet=1)
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    _prepare(drill, workdir)
    serial_log = workdir / "serial.log"
    label = f"{drill.kernel.release} systemd"
    lab.progress(f"{label}: starting QEMU (TCG) in {workdir}")
    started = time.monotonic()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, boots = lab._run_qemu(_qemu_argv(drill, workdir, initrd), serial_log,
                              started + drill.timeout, label, drill.boots)
    serial = serial_log.read_text(errors="replace")
    result = DrillResult(workdir, serial, None, boots)
    if "memconsole-lab: FAILED" in serial:
        raise LabError(f"{label}: the initramfs could not set up the root", _tail(serial))
    if boots > drill.boots:
        raise LabError(f"{label}: the guest booted {boots} times, expected {drill.boots}",
                       _tail(serial))
    if rc != 0:
        raise LabError(f"{label}: QEMU exited with status {rc}", _tail(serial))
    if not (workdir / "out" / "done").exists():
        raise LabError(f"{label}: the guest stopped after {boots} boots without "
                       "finishing its stages", _tail(serial))
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    qemu_cpu = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    # QEMU's CPU time is about the wall time on an idle host (one TCG vCPU).
    lab.progress(f"{label}: done ({boots} boots, {time.monotonic() - started:.0f} s, "
                 f"QEMU CPU {qemu_cpu:.0f} s)")
    return result
