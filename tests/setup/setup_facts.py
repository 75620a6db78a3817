"""Fixed, real facts for planner tests: the kernels of
tests/fixtures/setup/kernels/kernels.json (see capture.py there) and the
saved memory maps of tests/fixtures/setup/iomem (each with its .source.md)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from memconsole.setup.facts import (
    Facts,
    InstalledKernel,
    KernelFacts,
    MachineFacts,
    RamoopsBuild,
)
from memconsole.setup.kernel import BootHeader

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "setup"
IOMEM = FIXTURES / "iomem"
K61 = "6.1.0-57-amd64"
K612 = "6.12.117+deb12-amd64"


def _kernels() -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / "kernels" / "kernels.json").read_text())
    return list(data["kernels"])


def installed() -> tuple[InstalledKernel, ...]:
    """The fixture's kernels as :func:`installed_kernels` returns them."""
    return tuple(InstalledKernel(k["release"], BootHeader(**k["header"]), k["initrd_size"],
                                 k["has_config"]) for k in _kernels())


def kernel(release: str = K612, **changes: Any) -> KernelFacts:
    """KernelFacts of a fixture kernel (fields overridable)."""
    k = next(k for k in _kernels() if k["release"] == release)
    fields: dict[str, Any] = {
        "release": release, "chosen_because": "fixture", "config": dict(k["config"]),
        "config_source": f"/boot/config-{release}", "ramoops": RamoopsBuild[k["ramoops"]],
        "ramoops_params": frozenset(k["ramoops_params"]), "efi_pstore": k["efi_pstore"]}
    fields.update(changes)
    return KernelFacts(**fields)


def facts(release: str = K612, *, uefi: bool = False, erst: bool = False,
          mor: int | None = None, cmdline: str = "", grub_words: tuple[str, ...] = (),
          **kernel_changes: Any) -> Facts:
    """Facts of this development machine's Debian kernels on a given firmware."""
    machine = MachineFacts(uefi=uefi, erst=erst, mor=mor, kernels=installed(),
                           cmdline=cmdline, grub_words=grub_words, grub=True)
    return Facts(kernel(release, **kernel_changes), machine)


def iomem(name: str) -> bytes:
    """A saved /proc/iomem (tests/fixtures/setup/iomem/NAME.txt)."""
    assert (IOMEM / f"{name}.source.md").exists(), f"{name} has no provenance file"
    return (IOMEM / f"{name}.txt").read_bytes()


def scratch_root(tmp: Path) -> Path:
    """A root directory for setup: /etc/default/grub as Debian ships it, an
    existing /etc/modprobe.d file and /etc/memconsole.conf of another
    writer, and the machine's /boot and /lib/modules (symbolic links)."""
    root = tmp / "root"
    (root / "etc" / "default").mkdir(parents=True)
    (root / "etc" / "modprobe.d").mkdir()
    (root / "lib").mkdir()
    debian = Path("/usr/share/grub/default/grub")  # grub-common's /etc/default/grub
    if debian.exists():
        shutil.copy(debian, root / "etc" / "default" / "grub")
    else:
        (root / "etc" / "default" / "grub").write_text('GRUB_CMDLINE_LINUX=""\n')
    (root / "etc" / "modprobe.d" / "local.conf").write_text("options snd_hda_intel power_save=1\n")
    conf = root / "etc" / "memconsole.conf"
    conf.write_text("# memconsole configuration\n# archive = /var/lib/memconsole\n")
    os.chmod(conf, 0o640)
    os.utime(conf, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    os.symlink("/boot", root / "boot")
    os.symlink("/lib/modules", root / "lib" / "modules")
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """Every path below *root* (symbolic links not followed): content (None
    for directories), mode, mtime (ns; files only)."""
    out: dict[str, tuple[bytes | None, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = (os.readlink(p).encode(), st.st_mode, 0)
            elif p.is_dir():
                out[rel] = (None, st.st_mode, 0)
            else:
                out[rel] = (p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out
