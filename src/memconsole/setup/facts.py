"""What ``memconsole setup`` reads from a machine before it plans: the
installed kernels (/boot, /lib/modules), the chosen kernel's configuration
and ramoops build, the firmware (UEFI or BIOS, ACPI ERST, the UEFI memory
overwrite request), the running command line and the ``memmap=`` words
already in GRUB's configuration.

Everything is read below a root directory (``/`` for the machine itself, a
chroot or a scratch tree in tests); the planner (:mod:`memconsole.setup.planner`)
is a pure function of what this module returns.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import lzma
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from memconsole.errors import ParseError, SetupError
from memconsole.setup.kernel import (
    BootHeader,
    builtin_params,
    modinfo_params,
    parse_bzimage,
    parse_kconfig,
    release_key,
)

__all__ = [
    "GRUB_DROPIN",
    "MOR_VARIABLE",
    "Facts",
    "InstalledKernel",
    "KernelFacts",
    "MachineFacts",
    "RamoopsBuild",
    "gather",
    "installed_kernels",
    "pick_release",
]

#: The GRUB drop-in setup writes; its own words are not "already in use".
GRUB_DROPIN = "/etc/default/grub.d/90-memconsole.cfg"
#: The TCG memory overwrite request variable (efivarfs name).
MOR_VARIABLE = "MemoryOverwriteRequestControl-e20939be-32d4-41be-a150-897f85d49829"

_RAMOOPS_KO = "kernel/fs/pstore/ramoops.ko"
_EFI_PSTORE_KO = "kernel/drivers/firmware/efi/efi-pstore.ko"
_HEADER_BYTES = 64 << 10
_GRUB_WORD = re.compile(r"""(?:memmap|panic|reserve_mem)=[^\s"']+""")


class RamoopsBuild(enum.Enum):
    """How a kernel carries ramoops."""

    MODULE = "module"
    BUILTIN = "built in"
    MISSING = "missing"


@dataclass(frozen=True)
class InstalledKernel:
    """One kernel under /boot.

    Attributes:
        release: ``uname -r`` of it.
        header: its bzImage boot header (None when unreadable).
        initrd_size: bytes of ``/boot/initrd.img-RELEASE`` (None: no initrd).
        has_config: ``/boot/config-RELEASE`` exists.
    """

    release: str
    header: BootHeader | None
    initrd_size: int | None
    has_config: bool


@dataclass(frozen=True)
class KernelFacts:
    """The kernel the plan is for.

    Attributes:
        release: its ``uname -r``.
        chosen_because: why this kernel (running, newest installed, asked).
        config: its configuration (``/boot/config-R`` or ``--kernel-config``),
            names without ``CONFIG_``; None when none was found.
        config_source: where :attr:`config` came from.
        ramoops: module, built in, or missing.
        ramoops_params: ramoops's parameter names (``mem_name`` on 6.11+);
            empty when they could not be read.
        efi_pstore: the kernel has the efi_pstore backend (module, built in
            or ``CONFIG_EFI_VARS_PSTORE``).
        notes: what could not be read, said once each.
    """

    release: str
    chosen_because: str
    config: Mapping[str, str] | None
    config_source: str | None
    ramoops: RamoopsBuild
    ramoops_params: frozenset[str]
    efi_pstore: bool
    notes: tuple[str, ...] = ()

    @property
    def has_mem_name(self) -> bool:
        """ramoops takes its range from a ``reserve_mem=`` region (Linux 6.11+)."""
        return "mem_name" in self.ramoops_params

    def option(self, name: str) -> str:
        """``y``, ``m``, a value, ``n`` (not set) or ``?`` (no configuration)."""
        if self.config is None:
            return "?"
        return self.config.get(name, "n")


@dataclass(frozen=True)
class MachineFacts:
    """The machine (or root) the plan is for.

    Attributes:
        uefi: booted through UEFI (``/sys/firmware/efi`` exists).
        erst: the firmware has an ACPI ERST table (a pstore backend).
        mor: the UEFI memory overwrite request variable's value (1 = the
            firmware wipes RAM at the next reset), None when it does not exist.
        kernels: every kernel under /boot, oldest first.
        cmdline: the running kernel's command line ("" when not known).
        grub_words: ``memmap=``, ``reserve_mem=`` and ``panic=`` words already
            in GRUB's configuration (escaping removed), except setup's own.
        grub: GRUB's configuration (/etc/default/grub) exists.
    """

    uefi: bool
    erst: bool
    mor: int | None
    kernels: tuple[InstalledKernel, ...]
    cmdline: str
    grub_words: tuple[str, ...]
    grub: bool


@dataclass(frozen=True)
class Facts:
    """Everything the planner needs besides the memory map."""

    kernel: KernelFacts
    machine: MachineFacts
    notes: tuple[str, ...] = field(default=())


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _read(path: Path, limit: int | None = None) -> bytes | None:
    try:
        with path.open("rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError:
        return None


def installed_kernels(root: Path) -> tuple[InstalledKernel, ...]:
    """Every ``/boot/vmlinuz-*`` below *root*, oldest first (version order)."""
    boot = _under(root, "/boot")
    out = []
    try:
        names = sorted(os.listdir(boot))
    except OSError:
        names = []
    for name in names:
        if not name.startswith("vmlinuz-"):
            continue
        release = name[len("vmlinuz-"):]
        header = None
        data = _read(boot / name, _HEADER_BYTES)
        if data is not None:
            try:
                header = parse_bzimage(data)
            except ParseError:
                header = None
        try:
            initrd: int | None = (boot / f"initrd.img-{release}").stat().st_size
        except OSError:
            initrd = None
        out.append(InstalledKernel(release, header, initrd,
                                   (boot / f"config-{release}").is_file()))
    out.sort(key=lambda k: release_key(k.release))
    return tuple(out)


def pick_release(root: Path, requested: str | None, kernels: tuple[InstalledKernel, ...],
                 running: str) -> tuple[str, str]:
    """The kernel to plan for and why: *requested* (which must be installed),
    else the running kernel when its configuration is in /boot, else the
    newest installed kernel (what GRUB boots by default)."""
    names = [k.release for k in kernels]
    if requested is not None:
        if requested in names or _under(root, f"/lib/modules/{requested}").is_dir():
            return requested, "as asked (--kernel-release)"
        have = ", ".join(names) or "none"
        raise SetupError(f"unknown kernel release {requested!r}: no /boot/vmlinuz-{requested} "
                         f"or /lib/modules/{requested} (installed: {have})")
    if _under(root, f"/boot/config-{running}").is_file():
        return running, "the running kernel"
    if not kernels:
        raise SetupError("no kernel under /boot (vmlinuz-*): give --kernel-release and "
                         "--kernel-config")
    newest = kernels[-1].release
    return newest, (f"the newest installed kernel in /boot, which GRUB boots by default; "
                    f"the running kernel {running} has no /boot/config-{running}")


def _module_file(mdir: Path, rel: str) -> Path | None:
    for suffix in ("", ".xz", ".zst", ".gz"):
        p = mdir / f"{rel}{suffix}"
        if p.is_file():
            return p
    return None


def _module_params(path: Path) -> tuple[frozenset[str], str | None]:
    """Parameter names of a module file (compressed or not), or a note."""
    raw = _read(path)
    if raw is None:
        return frozenset(), f"cannot read {path}"
    try:
        if path.suffix == ".xz":
            raw = lzma.decompress(raw)
        elif path.suffix == ".gz":
            raw = gzip.decompress(raw)
        elif path.suffix == ".zst":
            # No zstd in the standard library: ask kmod's modinfo.
            modinfo = shutil.which("modinfo")
            if modinfo is None:
                return frozenset(), f"{path}: zstd module and no modinfo to read it"
            proc = subprocess.run([modinfo, "-F", "parm", str(path)], capture_output=True,
                                  text=True, check=False, timeout=30)
            return frozenset(line.split(":", 1)[0] for line in proc.stdout.splitlines()
                             if ":" in line), None
        return modinfo_params(raw), None
    except (lzma.LZMAError, OSError, EOFError, ParseError) as exc:
        return frozenset(), f"{path}: {exc}"


def _kernel_facts(root: Path, release: str, why: str, kernel_config: Path | None
                  ) -> KernelFacts:
    notes = []
    config: dict[str, str] | None = None
    source: str | None = str(kernel_config) if kernel_config else f"/boot/config-{release}"
    path = kernel_config if kernel_config else _under(root, f"/boot/config-{release}")
    data = _read(path)
    if data is None:
        if kernel_config is not None:
            raise SetupError(f"cannot read --kernel-config {kernel_config}")
        notes.append(f"no /boot/config-{release}: the configuration is not checked")
        source = None
    else:
        try:
            config = parse_kconfig(data)
        except ParseError as exc:
            raise SetupError(f"{source}: {exc}") from None
    mdir = _under(root, f"/lib/modules/{release}")
    builtin = _read(mdir / "modules.builtin") or b""
    builtin_modinfo = _read(mdir / "modules.builtin.modinfo") or b""
    builtin_names = {line.strip() for line in builtin.decode("utf-8", "replace").splitlines()}
    params: frozenset[str] = frozenset()
    ko = _module_file(mdir, _RAMOOPS_KO)
    if f"{_RAMOOPS_KO}" in builtin_names:
        build = RamoopsBuild.BUILTIN
        params = builtin_params(builtin_modinfo, "ramoops")
    elif ko is not None:
        build = RamoopsBuild.MODULE
        params, note = _module_params(ko)
        if note:
            notes.append(note)
    else:
        value = config.get("PSTORE_RAM", "n") if config else "n"
        build = {"y": RamoopsBuild.BUILTIN, "m": RamoopsBuild.MODULE}.get(
            value, RamoopsBuild.MISSING)
        if build is RamoopsBuild.MODULE:
            notes.append(f"CONFIG_PSTORE_RAM=m but no {_RAMOOPS_KO}* under /lib/modules/"
                         f"{release}: are the kernel's modules installed?")
        if build is not RamoopsBuild.MISSING:
            notes.append("ramoops's parameters could not be read (no module file): "
                         "reserve_mem support unknown")
    efi_pstore = (_module_file(mdir, _EFI_PSTORE_KO) is not None
                  or _EFI_PSTORE_KO in builtin_names
                  or (config is not None and config.get("EFI_VARS_PSTORE", "n") in ("y", "m")))
    return KernelFacts(release, why, config, source, build, params, efi_pstore, tuple(notes))


def _grub_words(root: Path) -> tuple[tuple[str, ...], bool]:
    main = _under(root, "/etc/default/grub")
    files = [main]
    dropins = _under(root, "/etc/default/grub.d")
    with contextlib.suppress(OSError):
        files += sorted(dropins / n for n in os.listdir(dropins) if n.endswith(".cfg"))
    words = []
    own = _under(root, GRUB_DROPIN)
    for f in files:
        if f == own:
            continue
        text = (_read(f) or b"").decode("utf-8", "replace")
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            for m in _GRUB_WORD.finditer(line):
                words.append(m.group(0).replace("\\", ""))
    return tuple(words), main.is_file()


def _mor(root: Path) -> int | None:
    data = _read(_under(root, f"/sys/firmware/efi/efivars/{MOR_VARIABLE}"))
    if data is None or len(data) < 5:
        return None
    return data[4]  # efivarfs: 4 bytes of attributes, then the value


def gather(root: Path = Path("/"), release: str | None = None,
           kernel_config: Path | None = None) -> Facts:
    """Read every fact the planner needs below *root*."""
    kernels = installed_kernels(root)
    running = os.uname().release
    chosen, why = pick_release(root, release, kernels, running)
    kernel = _kernel_facts(root, chosen, why, kernel_config)
    grub_words, grub = _grub_words(root)
    cmdline = (_read(_under(root, "/proc/cmdline")) or b"").decode("utf-8", "replace").strip()
    machine = MachineFacts(
        uefi=_under(root, "/sys/firmware/efi").is_dir(),
        erst=_under(root, "/sys/firmware/acpi/tables/ERST").exists(),
        mor=_mor(root), kernels=kernels, cmdline=cmdline, grub_words=grub_words, grub=grub)
    return Facts(kernel, machine, kernel.notes)
