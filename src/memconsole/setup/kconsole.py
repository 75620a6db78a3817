"""``memconsole setup --kernel-console``: memconsole.ko through DKMS, its
module options, and the ``kernel-console`` check (docs/kmod.md).

What setup adds to its transaction (:func:`memconsole.setup.install.apply`):

* the module's source, package data of this memconsole
  (``memconsole/kmod/``: ``dkms.conf``, ``Kbuild``, ``Makefile``,
  ``memconsole.c``), as ``/usr/src/memconsole-VERSION/``, where DKMS wants
  it;
* ``/etc/modprobe.d/memconsole-kmod.conf`` (``options memconsole
  mem_address=... mem_size=...``: the ring's range) and
  ``/etc/modules-load.d/memconsole-kmod.conf`` (load it at every boot);
* a drop-in ordering ``memconsole-record.service`` after
  systemd-modules-load, so the recorder sees the module and steps aside;

then, once the files are committed, ``dkms add``, ``dkms build -k R`` and
``dkms install -k R`` (:class:`Dkms`).  A DKMS failure puts every file
back; ``--undo`` runs ``dkms remove memconsole/VERSION --all`` before the
files are restored.  For ``--root DIR`` DKMS runs on its trees below DIR
(``--sourcetree``, ``--dkmstree``, ``--installtree``,
``--kernelsourcedir``) without depmod, which is left to that system.

The commands are the only boundary: :class:`Dkms` takes the function that
runs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import memconsole
from memconsole.errors import RegionError, SetupError
from memconsole.ring.kconsole import PARAMS, KernelConsole, parse_params, read_params
from memconsole.ring.regions import RegionSpec, parse_spec
from memconsole.setup.files import BLOCK_BEGIN, BLOCK_END, CONFIG, Desired

__all__ = [
    "KMOD_SOURCES",
    "MODPROBE",
    "MODULES_LOAD",
    "RECORD_DROPIN",
    "SOURCE_FILES",
    "Check",
    "Dkms",
    "KernelConsolePlan",
    "Run",
    "check_kernel_console",
    "config_ring",
    "desired_files",
    "dkms_for_undo",
    "dkms_version",
    "plan_kernel_console",
    "ring_for",
    "source_dir",
]

#: The module's source in this package.
KMOD_SOURCES = Path(memconsole.__file__).resolve().parent / "kmod"
SOURCE_FILES = ("dkms.conf", "Kbuild", "Makefile", "memconsole.c")
MODPROBE = "/etc/modprobe.d/memconsole-kmod.conf"
MODULES_LOAD = "/etc/modules-load.d/memconsole-kmod.conf"
RECORD_DROPIN = "/etc/systemd/system/memconsole-record.service.d/memconsole-kmod.conf"
_NAME = "memconsole"
_DKMS_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"

#: Runs one command: argv in, (exit status, output) out.
Run = Callable[[Sequence[str]], "tuple[int, str]"]


def dkms_version(sources: Path = KMOD_SOURCES) -> str:
    """``PACKAGE_VERSION`` of the module's dkms.conf."""
    try:
        text = (sources / "dkms.conf").read_text()
    except OSError as exc:
        raise SetupError(f"cannot read the module's dkms.conf in {sources}: "
                         f"{exc.strerror}") from None
    m = re.search(r'^PACKAGE_VERSION="?([0-9A-Za-z.+~-]+)"?\s*$', text, re.M)
    if m is None:
        raise SetupError(f"{sources / 'dkms.conf'} has no PACKAGE_VERSION")
    return m.group(1)


def source_dir(version: str) -> str:
    """Where DKMS wants the source: ``/usr/src/memconsole-VERSION``."""
    return f"/usr/src/{_NAME}-{version}"


def config_ring(config: bytes | None) -> str | None:
    """The ``ring = SPEC`` value of /etc/memconsole.conf (*config*), the
    last one given, or None."""
    found = None
    for raw in (config or b"").decode("utf-8", "replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ring" and value.strip():
            found = value.strip()
    return found


def _outside_block(config: bytes | None) -> bytes:
    """*config* without setup's own block (what other writers keep)."""
    data = config or b""
    begin = data.find(BLOCK_BEGIN)
    end = data.find(BLOCK_END, begin + 1) if begin >= 0 else -1
    return data if begin < 0 or end < 0 else data[:begin] + data[end + len(BLOCK_END):]


def ring_for(plan_ring: str | None, config: bytes | None) -> tuple[RegionSpec, str]:
    """The range the module writes and where it comes from: the plan's
    ring (``--ring SIZE``), else the ``ring =`` key another writer keeps in
    /etc/memconsole.conf.  It must be a ``mem:ADDR:SIZE`` range."""
    if plan_ring is not None:
        spec, where = plan_ring, "the plan's ring (--ring)"
    else:
        found = config_ring(_outside_block(config))
        if found is None:
            raise SetupError("--kernel-console needs a ring: give --ring SIZE (setup reserves "
                             f"it), or put 'ring = mem:ADDR:SIZE' in {CONFIG}")
        spec, where = found, f"{CONFIG} (ring = {found})"
    try:
        parsed = parse_spec(spec)
    except RegionError as exc:
        raise SetupError(f"{where}: {exc}") from None
    if parsed.address is None or parsed.size is None:
        raise SetupError(f"{where}: memconsole.ko writes physical memory only "
                         "(mem:ADDR:SIZE), not a file")
    return parsed, where


def desired_files(ring: RegionSpec, version: str, sources: Path = KMOD_SOURCES
                  ) -> list[Desired]:
    """The files of the kernel console for the range *ring*."""
    assert ring.address is not None and ring.size is not None
    out = []
    for name in SOURCE_FILES:
        try:
            data = (sources / name).read_bytes()
        except OSError as exc:
            raise SetupError(f"cannot read the module source {sources / name}: "
                             f"{exc.strerror}") from None
        out.append(Desired(f"{source_dir(version)}/{name}", "kmod-source", data))
    out.append(Desired(MODPROBE, "kmod-modprobe", (
        "# memconsole setup --kernel-console: memconsole.ko writes the kernel console into\n"
        f"# the ring {ring.text} (docs/kmod.md).  'memconsole setup --undo' removes this.\n"
        f"options {_NAME} mem_address={ring.address:#x} mem_size={ring.size:#x}\n").encode()))
    out.append(Desired(MODULES_LOAD, "kmod-modules-load", (
        "# memconsole setup --kernel-console: load memconsole.ko at every boot.\n"
        f"{_NAME}\n").encode()))
    out.append(Desired(RECORD_DROPIN, "kmod-record", (
        b"# memconsole setup --kernel-console: start the recorder after the modules are\n"
        b"# loaded, so it sees memconsole.ko on its ring and steps aside (one writer).\n"
        b"[Unit]\nAfter=systemd-modules-load.service\n")))
    return out


def _run_command(argv: Sequence[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                              timeout=1800, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout + proc.stderr


def _last_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln]
    return (errors or lines or ["no output"])[-1]


class Dkms:
    """``dkms`` for the system below *root*, for kernel *release*.

    *run* executes one command (the default: subprocess, ``LC_ALL=C``);
    *exe* is the dkms program (default: found in /usr/sbin, /usr/bin)."""

    def __init__(self, root: Path, release: str, version: str, run: Run = _run_command,
                 exe: str | None = None) -> None:
        self.root = root
        self.release = release
        self.version = version
        self.run = run
        self.exe = exe if exe is not None else shutil.which("dkms", path=_DKMS_PATH)
        self.chroot = root.resolve() != Path("/")

    @property
    def module(self) -> str:
        return f"{_NAME}/{self.version}"

    @property
    def headers(self) -> Path:
        """The kernel's build tree below the root."""
        return self.root / "lib" / "modules" / self.release / "build"

    def missing(self) -> list[str]:
        """Debian packages missing for the build: ``dkms``,
        ``linux-headers-RELEASE``."""
        out = []
        # Below another root, that system's dkms package must own the tree
        # (/var/lib/dkms) the host's dkms program writes.
        if self.exe is None or (self.chroot and not (self.root / "var/lib/dkms").is_dir()):
            out.append("dkms")
        if not (self.headers / "Makefile").exists():
            out.append(f"linux-headers-{self.release}")
        return out

    def require(self) -> None:
        """Raise :class:`SetupError` naming what is missing and the apt line."""
        missing = self.missing()
        if missing:
            where = f" in {self.root}" if self.chroot else ""
            raise SetupError(f"--kernel-console needs {' and '.join(missing)}{where} (DKMS "
                             f"builds memconsole.ko against the headers of {self.release}): "
                             f"apt install {' '.join(missing)}; nothing was changed")

    def argv(self, *words: str) -> list[str]:
        assert self.exe is not None
        argv = [self.exe]
        if self.chroot:
            argv += [f"--sourcetree={self.root / 'usr' / 'src'}",
                     f"--dkmstree={self.root / 'var' / 'lib' / 'dkms'}",
                     f"--installtree={self.root / 'lib' / 'modules'}"]
        return argv + list(words)

    def _do(self, *words: str, kernel: bool = False) -> str:
        argv = self.argv(*words)
        if kernel:
            argv += ["-k", self.release]
            if self.chroot:
                argv += [f"--kernelsourcedir={self.headers}", "--no-depmod"]
        rc, output = self.run(argv)
        if rc != 0:
            raise SetupError(f"dkms {' '.join(words)} failed (exit {rc}): "
                             f"{_last_line(output)}")
        return output

    def status(self) -> str:
        """``dkms status memconsole/VERSION`` (empty: DKMS does not know it)."""
        rc, output = self.run(self.argv("status", self.module))
        return output.strip() if rc == 0 else ""

    def _fix_source_link(self) -> None:
        # dkms add links DKMS's tree to the source by its path on this
        # machine, which is not its path inside the root: a relative link
        # is right in both.
        link = self.root / "var" / "lib" / "dkms" / _NAME / self.version / "source"
        if link.is_symlink():
            target = self.root / source_dir(self.version).lstrip("/")
            link.unlink()
            os.symlink(os.path.relpath(target, link.parent), link)

    def install(self) -> str:
        """add (unless DKMS has it), build and install for the release; one
        sentence saying what was done."""
        status = self.status()
        if f"{self.release}" in status and "installed" in status:
            return f"DKMS: {self.module} already installed for {self.release}"
        added = not status
        if added:
            self._do("add", self.module)
        try:
            if added and self.chroot:
                self._fix_source_link()
            self._do("build", self.module, kernel=True)
            self._do("install", self.module, kernel=True)
        except (SetupError, OSError) as exc:
            if added:  # leave DKMS as it was
                self.run(self.argv("remove", self.module, "--all"))
            if isinstance(exc, OSError):
                raise SetupError(f"dkms add: {exc}") from None
            raise
        tail = (f"; depmod not run for --root: run 'chroot {self.root} depmod -a "
                f"{self.release}'" if self.chroot else "")
        return f"DKMS: built and installed {self.module} for {self.release}{tail}"

    def remove(self) -> str:
        """``dkms remove memconsole/VERSION --all`` when DKMS knows it."""
        if self.exe is None:
            return f"DKMS: not installed, nothing to remove ({self.module})"
        if not self.status():
            return f"DKMS: {self.module} not known, nothing to remove"
        self._do("remove", self.module, "--all")
        return f"DKMS: removed {self.module} (all kernels)"


# -- the kernel-console check -------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The ``kernel-console`` check's result, in doctor's terms (a
    ``Finding``: check, status, detail, fix).

    Attributes:
        check: ``kernel-console``.
        status: ``ok``, ``warn`` or ``fail``.
        detail: what was found, one sentence with the numbers.
        fix: what fixes it ("" when nothing needs fixing).
    """

    check: str
    status: str
    detail: str
    fix: str = ""


def _uptime_ns(procfs: Path) -> int | None:
    try:
        return int(float((procfs / "uptime").read_text().split()[0]) * 1e9)
    except (OSError, ValueError, IndexError):
        return None


def check_kernel_console(ring: str | None = None, *, root: Path = Path("/"),
                         sysfs: Path = Path("/sys"), procfs: Path = Path("/proc"),
                         ring_bytes: bytes | None = None,
                         stale_s: float = 24 * 3600) -> Check:
    """Is memconsole.ko loaded, writing, on *ring* (the configuration's
    ``ring =``; :func:`config_ring`), and is its newest record recent?

    Reads only: *sysfs*'s ``module/memconsole/parameters``, *procfs*'s
    ``uptime``, and whether setup configured the module below *root*
    (``etc/modules-load.d/memconsole-kmod.conf``).  *ring_bytes*, the
    ring's content when the caller could read it, adds the newest record
    the module wrote this boot and its age (``mono_ns`` against uptime)."""
    name = "kernel-console"
    configured = (root / MODULES_LOAD.lstrip("/")).exists()
    params = read_params(sysfs)
    if params is None:
        if configured:
            return Check(name, "fail", f"memconsole.ko is not loaded, although {MODULES_LOAD} "
                         "loads it at boot: the console since then is not in the ring",
                         "modprobe memconsole (its error is in dmesg); dkms status memconsole")
        return Check(name, "ok", "memconsole.ko is not set up (the recorder alone writes the "
                     "ring)", "")
    module: KernelConsole | None = parse_params(params)
    if module is None:
        return Check(name, "fail", f"memconsole.ko is loaded but {sysfs / PARAMS} names no "
                     "range", "rmmod memconsole; modprobe memconsole")
    facts = [f"memconsole.ko is {module.state} into {module.region} ({module.attach})"]
    if module.records is not None:
        facts.append(f"{module.records} records since it was loaded"
                     + (f", ring seq {module.last_seq}" if module.last_seq is not None else ""))
    status, fix = "ok", ""
    if module.state != "writing":
        status, fix = "fail", "rmmod memconsole; modprobe memconsole"
        facts.append("it no longer records (a stop record was written, or it detached)")
    if ring is not None:
        try:
            want: RegionSpec | None = parse_spec(ring)
        except RegionError as exc:
            want = None
            status, fix = "fail", f"correct 'ring =' in {CONFIG}"
            facts.append(f"the configured ring: {exc}")
        if want is not None and (want.address, want.size) != (module.address, module.size):
            status = "fail"
            fix = ("memconsole setup --kernel-console (writes both from one plan), or correct "
                   f"{MODPROBE}")
            facts.append(f"but the configured ring is {ring}: the recorder writes another "
                         "range than the module")
        elif want is not None:
            facts.append(f"the configured ring ({ring})")
    if ring_bytes is not None:
        status, fix, fact = _newest(ring_bytes, module, _uptime_ns(procfs), stale_s,
                                    status, fix)
        facts.append(fact)
    return Check(name, status, "; ".join(facts), fix)


def _newest(data: bytes, module: KernelConsole, uptime_ns: int | None, stale_s: float,
            status: str, fix: str) -> tuple[str, str, str]:
    from memconsole.ring import parse_ring

    image = parse_ring(data)
    want = module.boot_id.replace("-", "").lower()
    boot = next((b for b in image.boots if b.boot.hex() == want), None)
    if boot is None or not boot.records:
        return ("fail", fix or "rmmod memconsole; modprobe memconsole",
                f"the ring holds no record of the module's boot {module.boot_id}")
    last = boot.records[-1]
    fact = f"newest record: ring seq {last.seq}"
    if uptime_ns is not None and last.mono_ns is not None and last.mono_ns <= uptime_ns:
        age = (uptime_ns - last.mono_ns) / 1e9
        fact += f", {age:.0f} s ago"
        if age > stale_s:
            fact += f" (over {stale_s:.0f} s: nothing printed since, or it stopped writing)"
            if status == "ok":
                status = "warn"
    return status, fix, fact


# -- what setup --kernel-console adds ------------------------------------------


@dataclass(frozen=True)
class KernelConsolePlan:
    """What ``setup --kernel-console`` adds to a plan.

    Attributes:
        ring: the range the module writes.
        where: where that range came from (one phrase).
        files: the files to add to the transaction.
        dkms: the DKMS commands for the plan's kernel.
        missing: Debian packages the build needs and the system lacks.
    """

    ring: RegionSpec
    where: str
    files: tuple[Desired, ...]
    dkms: Dkms

    @property
    def missing(self) -> list[str]:
        return self.dkms.missing()

    def record(self) -> dict[str, str]:
        """For the manifest: what --undo removes from DKMS."""
        return {"version": self.dkms.version, "release": self.dkms.release,
                "ring": self.ring.text, "from": self.where}


def plan_kernel_console(root: Path, release: str, plan_ring: str | None,
                        run: Run = _run_command, exe: str | None = None) -> KernelConsolePlan:
    """The kernel console's part of setup for kernel *release* below
    *root*: the ring (:func:`ring_for`, reading ``etc/memconsole.conf``),
    the files and the DKMS commands."""
    try:
        config: bytes | None = (root / CONFIG.lstrip("/")).read_bytes()
    except FileNotFoundError:
        config = None
    except OSError as exc:
        raise SetupError(f"cannot read {root / CONFIG.lstrip('/')}: {exc.strerror}") from None
    ring, where = ring_for(plan_ring, config)
    version = dkms_version()
    return KernelConsolePlan(ring, where, tuple(desired_files(ring, version)),
                             Dkms(root, release, version, run, exe))


def dkms_for_undo(root: Path, manifest: dict[str, object] | None, run: Run = _run_command,
                  exe: str | None = None) -> Dkms | None:
    """The DKMS commands the last setup's manifest says it ran (None: it
    did not install the kernel console)."""
    plan = (manifest or {}).get("plan")
    kc = plan.get("kernel_console") if isinstance(plan, dict) else None
    if not isinstance(kc, dict):
        return None
    return Dkms(root, str(kc["release"]), str(kc["version"]), run, exe)
