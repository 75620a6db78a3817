"""The VM crash lab: boot a real Debian kernel under QEMU, crash it, let it
warm-reboot, and run memconsole inside the rebooted guest.

How a drill works:

1. The guest boots the host's kernel with a small busybox initramfs
   (:mod:`memconsole.lab._initramfs`), mounts the host's root read-only over 9p,
   chroots into it, and runs ``/run/lab/stage.sh`` from a second, writable
   9p share (the drill's work directory on the host).
2. The stage script loads ramoops with explicit parameters on a
   ``memmap=``-reserved range, mounts pstore, and on the first boot runs the
   crash (a test module built from ``lab/crashy.c`` or sysrq).
3. ``panic=1`` reboots the same QEMU process; guest RAM survives the reset,
   as DRAM does on hardware.  On the second boot the stage script sees the
   first boot's marker and runs the drill's stage-2 commands (typically
   ``memconsole collect``/``list``), whose output lands in the share's
   ``out/`` directory, then powers off.

With ``memfile=True`` the guest RAM is a host file and QEMU runs with
``-no-reboot``: the first process exits at the reset, the host copies the raw
ramoops region, and a second QEMU process boots on the same memory.

Kernel command-line facts used here are collected in docs/vmlab.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import memconsole
import memconsole.lab._initramfs as _initramfs_module
from memconsole.errors import LabError
from memconsole.lab._initramfs import build_initramfs, default_busybox
from memconsole.lab._model import DrillResult, Kernel, Ramoops
from memconsole.lab._model import tail as _tail
from memconsole.lab._systemd import SystemdDrill, run_systemd_drill

__all__ = [
    "CRASH_ACTIONS",
    "PANIC_EVENTS",
    "CrashAction",
    "Drill",
    "DrillResult",
    "Kernel",
    "Lab",
    "Ramoops",
    "SystemdDrill",
    "find_kernels",
    "pick_kernel",
]

_LAB_SOURCES = Path(__file__).parent


def find_kernels(boot: Path = Path("/boot"), modules_root: Path = Path("/lib/modules")
                 ) -> list[Kernel]:
    """Return the installed kernels that can run the lab (they must have 9p
    modules, which Debian's ``-cloud-amd64`` flavour lacks), oldest first."""
    found = []
    for image in sorted(boot.glob("vmlinuz-*")):
        release = image.name[len("vmlinuz-"):]
        mdir = modules_root / release
        if not (mdir / "kernel" / "fs" / "9p").is_dir():
            continue
        found.append(Kernel(release, image, mdir))
    found.sort(key=lambda k: (k.version, k.release))
    return found


def pick_kernel(spec: str | None = None, kernels: Sequence[Kernel] | None = None) -> Kernel:
    """Return the kernel matching *spec* (a release or a prefix like ``6.12``),
    or the newest one.  Raises :class:`LabError` naming what is installed."""
    kernels = list(find_kernels() if kernels is None else kernels)
    if not kernels:
        raise LabError("no bootable Debian kernel with 9p modules under /boot; "
                       "install linux-image-amd64 (run scripts/bootstrap.sh)")
    if spec is None:
        return kernels[-1]
    for k in kernels:
        if k.release == spec or k.release.startswith((spec + ".", spec + "-")):
            return k
    names = ", ".join(k.release for k in kernels)
    raise LabError(f"no installed kernel matches {spec!r} (have: {names})")


@dataclass(frozen=True)
class CrashAction:
    """How to crash the guest one way.

    Attributes:
        cmdline: extra kernel boot options the crash needs.
        trigger: shell commands (run as root in the guest) that crash it.
    """

    cmdline: tuple[str, ...]
    trigger: str


_STRICT_WATCHDOG = "echo 1 > /proc/sys/kernel/watchdog_thresh; "


def _crashy(action: str, *cmdline: str, pre: str = "", module: str = "crashy") -> CrashAction:
    path = '"$CRASHY"' if module == "crashy" else f'"${{CRASHY%/*}}/{module}.ko"'
    return CrashAction(cmdline, f"{pre}insmod {path} action={action}")


#: Every crash the lab knows, by name.  Module actions are documented in
#: ``lab/crashy.c`` (``hardlockup``: ``lab/crashcon.c``, built beside it);
#: ``sysrq`` is ``echo c > /proc/sysrq-trigger``.
CRASH_ACTIONS: dict[str, CrashAction] = {
    "null": _crashy("null"),
    "bug": _crashy("bug"),
    "warn": _crashy("warn", "panic_on_warn=1"),
    "divide": _crashy("divide"),
    "gpf": _crashy("gpf"),
    "rodata": _crashy("rodata"),
    "list": _crashy("list"),
    # The watchdog is made strict only now, not on the command line: under
    # TCG on a loaded host a boot-time stall of 2 s is a soft lockup too,
    # and softlockup_panic=1 from the first second panicked the first boot
    # before the drill began.
    "softlockup": _crashy("softlockup", pre=_STRICT_WATCHDOG + "echo 1 > "
                          "/proc/sys/kernel/softlockup_panic; "),
    "hung": _crashy("hung", "hung_task_panic=1",
                    pre="echo 3 > /proc/sys/kernel/hung_task_timeout_secs; "),
    "panic": _crashy("panic"),
    "workqueue": _crashy("workqueue"),
    "sysrq": CrashAction((), "echo c > /proc/sysrq-trigger"),
    # No panic, no dump: an immediate reset, as a hardware watchdog does.
    "reset": CrashAction((), "echo b > /proc/sysrq-trigger"),
    # A soft lockup that does not panic: the watchdog only reports it.  Pair
    # it with Drill.monitor_reset_on to reset the machine from outside.
    "lockup": _crashy("softlockup", pre=_STRICT_WATCHDOG),
    # Interrupts off and spinning: nothing runs on that CPU any more (not the
    # watchdogs either).  Pair it with Drill.monitor_reset_on.
    "hardlockup": _crashy("hardlockup", module="crashcon"),
    # No crash: a clean restart (kernel_restart(), after the shutdown steps).
    "reboot": CrashAction((), "busybox reboot -f"),
}


#: What each panicking crash action must leave once collected: the event's
#: kind, the prefix of its task, and the prefix of its panic reason (``None``:
#: the reason must contain "panic_on_warn set").  The crash drills and the
#: soak check their events against it.
PANIC_EVENTS: dict[str, tuple[str, str, str | None]] = {
    "null": ("null-pointer", "insmod", "Fatal exception"),
    "bug": ("bug", "insmod", "Fatal exception"),
    "warn": ("warning", "insmod", None),
    "divide": ("divide-error", "insmod", "Fatal exception"),
    "gpf": ("general-protection", "insmod", "Fatal exception"),
    "rodata": ("page-fault", "insmod", "Fatal exception"),
    "list": ("list-corruption", "insmod", "Fatal exception"),
    "softlockup": ("soft-lockup", "insmod", "softlockup: hung tasks"),
    "hung": ("hung-task", "insmod", "hung_task: blocked tasks"),
    "panic": ("panic", "insmod", "crashy: requested panic"),
    "workqueue": ("null-pointer", "kworker/", "Fatal exception"),
    "sysrq": ("panic", "sh", "sysrq triggered crash"),
}

# Boot options every drill uses: serial console, reboot one second after a
# panic, and an oops is fatal (so one crash leaves Oops#1 and Panic#2).
# no_timer_check: under TCG on a loaded host the IO-APIC timer check can fail
# ("IO-APIC + timer doesn't work!") and panic a boot before the drill starts.
_BASE_CMDLINE = ("console=ttyS0", "panic=1", "oops=panic", "loglevel=7", "no_timer_check")


@dataclass
class Drill:
    """One crash drill.

    Attributes:
        kernel: the kernel to boot.
        action: a key of :data:`CRASH_ACTIONS`, or ``None`` to let ``stage1``
            do the crashing.
        then: crash actions for further boots: the guest crashes once per
            boot, ``action`` first, and runs ``stage2`` on the boot after the
            last crash (so records of several crashed boots meet in pstore).
        ramoops: module parameters and reserved range; ``None`` loads no
            ramoops and reserves nothing (a boot that only looks around).
        stage1: shell run on the first boot before the trigger.
        stage2: shell run on the second boot; ``$OUT`` is the output
            directory shared with the host and ``mc`` runs memconsole.
        memfile: keep guest RAM in a host file and capture the ramoops region
            between the two boots (two QEMU processes, ``-no-reboot``).
        memory_mb: guest RAM.
        smp: virtual CPUs (2 lets a user-space recorder run beside a CPU that
            is locked up).
        extra_cmdline: more kernel boot options.
        monitor_reset_on: when a serial line contains this text (or one of
            these texts) during a crashing boot, the host resets the guest
            through the QEMU monitor (``system_reset``), like a reset button
            or an external watchdog, ``RESET_PAUSE`` seconds later.
        between_boots: with ``memfile``, called as ``f(guest_ram_file,
            mem_address)`` after the crash and before the stage-2 boot, to
            change the memory the next kernel finds (fault injection).
        timeout: seconds allowed for the whole drill.
        each_boot: shell run on every crashing boot before ``stage1`` (on
            the first) and the trigger; ``$boot`` is the boot's number, so
            per-boot setup (a recorder to start again) goes here.
        firmware: a firmware image for QEMU's ``-bios`` (e.g. OVMF's
            ``/usr/share/ovmf/OVMF.fd`` for a UEFI boot through the
            kernel's EFI stub); ``None`` is QEMU's default SeaBIOS.
        initrd_size: pad the lab initramfs with zeros to this many bytes
            (the kernel skips zeros between cpio archives), so the boot
            loader places an initrd as large as a distribution's.
        boot_image: boot this CD image (``-cdrom``) instead of QEMU's
            ``-kernel``: a real boot loader on it (e.g. GRUB from
            ``grub-mkrescue``) loads the kernel, an initramfs built by
            :meth:`Lab.initramfs` and the command line from its own
            configuration; the drill's command-line options are not used.
        sparse_ram: map guest RAM without reserving it on the host
            (``memory-backend-ram,reserve=off``, MAP_NORESERVE), so a guest
            as large as a real machine (RAM at the address a plan chose, say
            at 25 GiB) boots on a host with less free memory: the guest
            touches only what it uses.  Ignored with ``memfile``.
    """

    kernel: Kernel
    action: str | None = "null"
    then: tuple[str, ...] = ()
    ramoops: Ramoops | None = field(default_factory=Ramoops)
    stage1: str = ""
    stage2: str = ""
    memfile: bool = False
    memory_mb: int = 512
    smp: int = 1
    extra_cmdline: tuple[str, ...] = ()
    monitor_reset_on: str | tuple[str, ...] | None = None
    between_boots: Callable[[Path, int], None] | None = None
    timeout: float = 300.0
    each_boot: str = ""
    firmware: Path | None = None
    initrd_size: int | None = None
    boot_image: Path | None = None
    sparse_ram: bool = False

    @property
    def crashes(self) -> tuple[str | None, ...]:
        """The crash of each crashing boot, in order."""
        return (self.action, *self.then)


#: Seconds between a ``monitor_reset_on`` line on the serial port and the
#: reset: the consoles registered after the serial port print the same line
#: after it (under load, a reset at once lost the last line of a console
#: module's ring).
RESET_PAUSE = 2.0


def _monitor(argv: list[str], command: str) -> None:
    """Send one command to the QEMU monitor socket named in *argv*."""
    spec = argv[argv.index("-monitor") + 1]
    path = spec.split(":", 1)[1].split(",", 1)[0]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        time.sleep(0.2)  # let the monitor read the line before we hang up


#: A UNIX socket's path holds at most this many bytes, its NUL included (unix(7)).
_SUN_PATH = 108


def _short_monitor(argv: list[str]) -> tuple[list[str], Path | None]:
    """*argv* with its ``-monitor unix:PATH`` moved into a new private
    directory under the temporary directory when PATH is too long for a
    socket (a drill deep in pytest's or a CI runner's tree), and that
    directory (``None`` when nothing moved): QEMU would refuse to start."""
    if "-monitor" not in argv:
        return argv, None
    i = argv.index("-monitor") + 1
    kind, _, rest = argv[i].partition(":")
    path, sep, options = rest.partition(",")
    if kind != "unix" or len(os.fsencode(path)) < _SUN_PATH:
        return argv, None
    short = Path(tempfile.mkdtemp(prefix="memconsole-monitor-"))
    moved = list(argv)
    moved[i] = f"unix:{short / 'monitor.sock'}{sep}{options}"
    return moved, short


def _default_cache() -> Path:
    env = os.environ.get("MEMCONSOLE_LAB_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "memconsole" / "lab"


class Lab:
    """Builds the lab's artefacts (initramfs, test module) once per kernel
    and runs drills.

    Args:
        cache: where built artefacts are kept (default
            ``$MEMCONSOLE_LAB_CACHE`` or ``~/.cache/memconsole/lab``).
        progress: called with one human line per step (default: stderr).
    """

    def __init__(self, cache: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.cache = cache or _default_cache()
        self.progress = progress or (lambda msg: print(f"lab: {msg}", file=sys.stderr))

    # -- artefacts ---------------------------------------------------------

    def initramfs(self, kernel: Kernel) -> Path:
        """Return the path of the lab initramfs for *kernel*, building it once."""
        busybox = default_busybox()
        recipe = Path(_initramfs_module.__file__).read_bytes()
        key = hashlib.sha256(
            f"{kernel.release}:{busybox.stat().st_mtime_ns}:".encode() + recipe).hexdigest()[:16]
        path = self.cache / kernel.release / f"initramfs-{key}.cpio"
        with self._build_lock(kernel):
            if not path.exists():
                self.progress(f"building initramfs for {kernel.release}")
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_bytes(build_initramfs(kernel.modules_dir, busybox))
                tmp.replace(path)
        return path

    @contextlib.contextmanager
    def _build_lock(self, kernel: Kernel) -> Iterator[None]:
        """Serialise builds for one kernel across processes (parallel tests)."""
        directory = self.cache / kernel.release
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def crashy(self, kernel: Kernel) -> Path:
        """Return the path of the ``crashy`` test module built for *kernel*
        (``crashcon.ko``, the console tests, is built beside it)."""
        sources = [_LAB_SOURCES / n for n in ("crashy.c", "crashcon.c", "Kbuild")]
        return self.module(kernel, sources, "crashy")

    def module(self, kernel: Kernel, sources: Sequence[Path], name: str) -> Path:
        """Return the path of the out-of-tree module ``name.ko`` built from
        *sources* (its C files and Kbuild) for *kernel*, once per content."""
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
        build = self.cache / kernel.release / f"{name}-{digest}"
        ko = build / f"{name}.ko"
        with self._build_lock(kernel):
            if not ko.exists():
                self._build_module(kernel, sources, build, ko)
        return ko

    def _build_module(self, kernel: Kernel, sources: Sequence[Path], build: Path,
                      ko: Path) -> None:
        if not (kernel.headers / "Makefile").exists():
            raise LabError(f"no kernel headers at {kernel.headers}: "
                           f"install linux-headers-{kernel.release}")
        if shutil.which("make") is None:
            raise LabError("make not found: install make and gcc")
        self.progress(f"building {ko.name} for {kernel.release}")
        build.mkdir(parents=True, exist_ok=True)
        for src in sources:
            shutil.copy2(src, build / src.name)
        proc = subprocess.run(["make", "-C", str(kernel.headers), f"M={build}", "modules"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not ko.exists():
            raise LabError(f"building {ko.name} for {kernel.release} failed "
                           f"(make exit {proc.returncode})", _tail(proc.stdout + proc.stderr))

    # -- drills ------------------------------------------------------------

    def _stage_script(self, drill: Drill, crashy: Path | None) -> str:
        pkg_root = str(Path(memconsole.__file__).resolve().parent.parent)
        # The guest reads the host's root, /etc/modprobe.d included: hide the
        # host's module configuration (a host set up by memconsole has ramoops
        # options and an install guard there) behind the drill's own.
        modconf = ("[ -d /etc/modprobe.d ] && mount -t tmpfs modprobe.d /etc/modprobe.d")
        if drill.ramoops is None:
            load = 'echo "memconsole-lab: no ramoops"'
        elif drill.ramoops.modprobe_conf is not None:
            modconf += " && cp /run/lab/modprobe.conf /etc/modprobe.d/memconsole.conf"
            load = ('if ! modprobe ramoops; then '
                    'echo "memconsole-lab: modprobe ramoops failed"; fi')
        else:
            modargs = " ".join(drill.ramoops.module_args())
            load = (f'if ! modprobe ramoops {modargs}; then '
                    f'echo "memconsole-lab: modprobe ramoops failed"; fi')
        # A writable /var/lib (memconsole's default archive, systemd-pstore's
        # directory), unless the project itself lives there.
        varlib = "mount -t tmpfs varlib /var/lib"
        if any(str(p).startswith("/var/lib/") for p in (sys.executable, pkg_root)):
            varlib = 'echo "memconsole-lab: project under /var/lib: no tmpfs there"'
        cases = []
        for n, action in enumerate(drill.crashes, start=1):
            setup = drill.each_boot + (drill.stage1 if n == 1 else "")
            cases.append(f"""    {n})
        echo "memconsole-lab: stage 1 (crash {n}: {action or 'custom'}) on $(uname -r)"
{setup}
        echo "memconsole-lab: trigger"
        {CRASH_ACTIONS[action].trigger if action else ""}
        sleep 60
        echo "memconsole-lab: stage 1 ended without a crash"
        exit 1
        ;;""")
        final = len(drill.crashes) + 1
        return f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run/tmp TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
export PYTHONPATH={shlex.quote(pkg_root)}
if [ ! -x {shlex.quote(sys.executable)} ] || [ ! -d {shlex.quote(pkg_root)} ]; then
    echo "memconsole-lab: {sys.executable} or {pkg_root} is not visible in the guest"
    exit 1
fi
{varlib}
OUT=/run/lab/out
CRASHY={shlex.quote(str(crashy)) if crashy else ""}
mkdir -p "$OUT"
mc() {{ {shlex.quote(sys.executable)} -m memconsole "$@"; }}
echo 1 > /proc/sys/kernel/sysrq
{modconf}
{load}
mountpoint -q /sys/fs/pstore || mount -t pstore pstore /sys/fs/pstore
boot=$(( $(cat /run/lab/boot.count 2>/dev/null || echo 0) + 1 ))
echo $boot > /run/lab/boot.count
if [ $boot = 1 ]; then
    for p in /sys/module/ramoops/parameters/*; do
        echo "${{p##*/}}=$(cat $p)"
    done > "$OUT/ramoops-params.txt"
fi
sync
case $boot in
{chr(10).join(cases)}
    {final})
        echo "memconsole-lab: stage 2 on $(uname -r)"
{drill.stage2}
        echo $? > "$OUT/stage2.rc"
        echo "memconsole-lab: stage 2 done"
        ;;
    *)
        echo "memconsole-lab: unexpected boot $boot"
        exit 1
        ;;
esac
sync
"""

    def _qemu_argv(self, drill: Drill, workdir: Path, initrd: Path, no_reboot: bool
                   ) -> list[str]:
        qemu = shutil.which("qemu-system-x86_64")
        if qemu is None:
            raise LabError("qemu-system-x86_64 not found: install qemu-system-x86 "
                           "(run scripts/bootstrap.sh)")
        action_cmdline = [opt for a in drill.crashes if a for opt in CRASH_ACTIONS[a].cmdline]
        memmap = drill.ramoops.memmap() if drill.ramoops is not None else None
        cmdline = " ".join(dict.fromkeys((*_BASE_CMDLINE, *([memmap] if memmap else []),
                                          *action_cmdline, *drill.extra_cmdline)))
        if drill.boot_image is not None:
            boot = ["-cdrom", str(drill.boot_image), "-boot", "d"]
        else:
            boot = ["-kernel", str(drill.kernel.vmlinuz), "-initrd", str(initrd),
                    "-append", cmdline]
        argv = [
            qemu, "-accel", "tcg", "-cpu", "max", "-m", f"{drill.memory_mb}M",
            "-smp", str(drill.smp), *boot,
            "-display", "none", "-serial", "stdio", "-nic", "none",
            "-monitor", f"unix:{workdir / 'monitor.sock'},server=on,wait=off",
            # multidevs=remap: the host root spans several filesystems; without
            # it their inode numbers collide in the guest, and with cache=loose
            # the chroot's /proc bind mount landed on the wrong directory.
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
            "multidevs=remap",
            "-virtfs", f"local,path={workdir},mount_tag=lab,security_model=none",
        ]
        if drill.firmware is not None:
            argv += ["-bios", str(drill.firmware)]
        if drill.memfile:
            argv += ["-object", f"memory-backend-file,id=ram0,size={drill.memory_mb}M,"
                     f"mem-path={workdir / 'guest.ram'},share=on",
                     "-machine", "pc,memory-backend=ram0"]
        elif drill.sparse_ram:
            argv += ["-object", f"memory-backend-ram,id=ram0,size={drill.memory_mb}M,"
                     "reserve=off", "-machine", "pc,memory-backend=ram0"]
        if no_reboot:
            argv.append("-no-reboot")
        return argv

    def _run_qemu(self, argv: list[str], serial_log: Path, deadline: float, label: str,
                  max_boots: int, reset_on: str | tuple[str, ...] | None = None
                  ) -> tuple[int, int]:
        """Run one QEMU process to its end; return (exit code, boots seen)."""
        argv, short = _short_monitor(argv)
        try:
            return self._run_qemu_process(argv, serial_log, deadline, label, max_boots,
                                          reset_on)
        finally:
            if short is not None:
                shutil.rmtree(short, ignore_errors=True)

    def _run_qemu_process(self, argv: list[str], serial_log: Path, deadline: float,
                          label: str, max_boots: int,
                          reset_on: str | tuple[str, ...] | None) -> tuple[int, int]:
        boots = 0
        triggers = (reset_on,) if isinstance(reset_on, str) else reset_on or ()
        with serial_log.open("ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            stdout = proc.stdout

            def pump() -> None:
                nonlocal boots
                for raw in stdout:
                    log.write(raw)
                    log.flush()
                    line = raw.decode(errors="replace")
                    if "Linux version" in line:
                        boots += 1
                        self.progress(f"{label}: kernel booting (boot {boots})")
                        if boots > max_boots:
                            # More boots than the drill has stages: a reboot loop.
                            proc.kill()
                    elif "memconsole-lab: stage" in line or "memconsole-lab: trigger" in line:
                        self.progress(f"{label}: {line.split('memconsole-lab: ', 1)[1].strip()}")
                    elif "Kernel panic - not syncing" in line:
                        self.progress(f"{label}: guest panicked, warm reboot follows")
                    seen = next((t for t in triggers if t in line), None)
                    if seen is not None and boots < max_boots:
                        self.progress(f"{label}: {seen!r} seen: system_reset via the "
                                      f"QEMU monitor in {RESET_PAUSE:g} s")
                        # The serial port is the first console to print a
                        # line, not the last: the other consoles (a console
                        # module's ring) print it after.  Like a person or a
                        # watchdog, press the button a moment later.
                        time.sleep(RESET_PAUSE)
                        _monitor(argv, "system_reset")

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                reader.join(5)
                raise LabError(f"{label}: the guest did not finish in time",
                               _tail(serial_log.read_text(errors="replace"))) from None
            reader.join(5)
        return rc, boots

    def run(self, drill: Drill, workdir: Path) -> DrillResult:
        """Run *drill* in *workdir* (created; any earlier drill there is
        cleared).  Raises :class:`LabError` with the serial tail on failure."""
        for action in drill.crashes:
            if action is not None and action not in CRASH_ACTIONS:
                raise LabError(f"unknown crash action {action!r} "
                               f"(known: {', '.join(CRASH_ACTIONS)})")
        if drill.memfile and drill.ramoops is None:
            raise LabError("memfile drills capture the ramoops region: give ramoops")
        initrd = self.initramfs(drill.kernel)
        needs_module = any(a not in (None, "sysrq") for a in drill.crashes)
        crashy = self.crashy(drill.kernel) if needs_module or "$CRASHY" in drill.stage1 else None
        workdir = workdir.resolve()
        if workdir.exists():
            shutil.rmtree(workdir)
        (workdir / "out").mkdir(parents=True)
        (workdir / "stage.sh").write_text(self._stage_script(drill, crashy))
        if drill.ramoops is not None and drill.ramoops.modprobe_conf is not None:
            (workdir / "modprobe.conf").write_text(drill.ramoops.modprobe_conf)
        if drill.initrd_size is not None:
            initrd = self._padded_initrd(initrd, drill.initrd_size, workdir)
        serial_log = workdir / "serial.log"
        deadline = time.monotonic() + drill.timeout
        label = f"{drill.kernel.release} {'+'.join(a or 'custom' for a in drill.crashes)}"
        expected = len(drill.crashes) + 1
        self.progress(f"{label}: starting QEMU (TCG) in {workdir}")
        region = None
        if drill.memfile:
            # One QEMU process per crash (-no-reboot), then one for stage 2.
            boots, rc = 0, 0
            while boots < len(drill.crashes) and rc == 0:
                rc, n = self._run_qemu(self._qemu_argv(drill, workdir, initrd, True),
                                       serial_log, deadline, label, expected - boots,
                                       drill.monitor_reset_on)
                boots += n
                if n == 0:
                    break
            region = self._read_region(drill, workdir)
            if drill.between_boots is not None and drill.ramoops is not None:
                drill.between_boots(workdir / "guest.ram", drill.ramoops.mem_address)
            if rc == 0 and self._boot_count(workdir) == len(drill.crashes):
                self.progress(f"{label}: region captured; booting the same memory again")
                rc, n = self._run_qemu(self._qemu_argv(drill, workdir, initrd, False),
                                       serial_log, deadline, label, 1)
                boots += n
        else:
            rc, boots = self._run_qemu(self._qemu_argv(drill, workdir, initrd, False),
                                       serial_log, deadline, label, expected,
                                       drill.monitor_reset_on)
        serial = serial_log.read_text(errors="replace")
        result = DrillResult(workdir, serial, region, boots)
        if boots > expected:
            raise LabError(f"{label}: the guest booted {boots} times, expected {expected}",
                           _tail(serial))
        if rc != 0:
            raise LabError(f"{label}: QEMU exited with status {rc}", _tail(serial))
        if self._boot_count(workdir) == 0:
            raise LabError(f"{label}: the guest never reached stage 1", _tail(serial))
        if "stage 1 ended without a crash" in serial:
            raise LabError(f"{label}: the crash trigger did not crash the guest", _tail(serial))
        if not (workdir / "out" / "stage2.rc").exists():
            raise LabError(f"{label}: the guest did not come back after the crash",
                           _tail(serial))
        self.progress(f"{label}: done ({boots} boots)")
        return result

    def run_systemd(self, drill: SystemdDrill, workdir: Path) -> DrillResult:
        """Run a drill whose guest boots systemd as PID 1 (see
        :mod:`memconsole.lab._systemd`)."""
        return run_systemd_drill(self, drill, workdir)

    @staticmethod
    def _padded_initrd(initrd: Path, size: int, workdir: Path) -> Path:
        have = initrd.stat().st_size
        if size < have:
            raise LabError(f"initrd_size {size} is smaller than the lab initramfs ({have})")
        padded = workdir / "initrd-padded.cpio"
        with initrd.open("rb") as src, padded.open("wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.truncate(size)  # a sparse run of zeros
        return padded

    @staticmethod
    def _boot_count(workdir: Path) -> int:
        try:
            return int((workdir / "boot.count").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @staticmethod
    def _read_region(drill: Drill, workdir: Path) -> bytes:
        # Guest physical address == file offset below the PCI hole (3 GiB on pc).
        assert drill.ramoops is not None  # run() refuses memfile without ramoops
        end = drill.ramoops.mem_address + drill.ramoops.mem_size
        if end > min(drill.memory_mb << 20, 3 << 30):
            raise LabError(f"ramoops region {drill.ramoops.mem_address:#x}+"
                           f"{drill.ramoops.mem_size:#x} is outside the guest's low RAM")
        with (workdir / "guest.ram").open("rb") as f:
            f.seek(drill.ramoops.mem_address)
            return f.read(drill.ramoops.mem_size)

