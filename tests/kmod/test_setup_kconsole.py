"""``memconsole setup --kernel-console`` in a scratch root: Debian's real
dkms builds and installs memconsole.ko against the machine's 6.1 headers
into the root's trees, and --undo leaves the root byte for byte as it was;
what is missing is named with the apt line; a DKMS failure (the command
boundary replaced by a function that fails) puts every file back."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import FIXTURES, require
from memconsole.cli.main import main
from memconsole.errors import SetupError
from memconsole.setup.install import Step, apply, read_manifest
from memconsole.setup.kconsole import (
    MODPROBE,
    MODULES_LOAD,
    RECORD_DROPIN,
    dkms_version,
    plan_kernel_console,
    source_dir,
)

K61 = "6.1.0-57-amd64"
MAP = str(FIXTURES / "setup" / "iomem" / "qemu-seabios-512M-6.12.txt")
VERSION = dkms_version()
SRC = source_dir(VERSION).lstrip("/")


def _root(tmp: Path, release: str = K61, dkms_tree: bool = True) -> Path:
    """A root with Debian's /etc/default/grub, another writer's
    /etc/memconsole.conf, the machine's /boot, and /lib/modules/RELEASE
    whose entries (build: the headers) link to the machine's, so DKMS
    installs into the root; /var/lib/dkms as the dkms package ships it."""
    root = tmp / "root"
    (root / "etc" / "default").mkdir(parents=True)
    (root / "etc" / "default" / "grub").write_text('GRUB_CMDLINE_LINUX=""\n')
    (root / "etc" / "memconsole.conf").write_text("# memconsole configuration\n")
    os.symlink("/boot", root / "boot")
    modules = root / "lib" / "modules" / release
    modules.mkdir(parents=True)
    host = Path("/lib/modules") / release
    for entry in host.iterdir() if host.is_dir() else ():
        if entry.name != "updates":
            os.symlink(entry, modules / entry.name)
    if dkms_tree:
        (root / "var" / "lib" / "dkms").mkdir(parents=True)
    return root


def _snapshot(root: Path) -> dict[str, tuple[bytes | None, int]]:
    out: dict[str, tuple[bytes | None, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(root))] = (os.readlink(p).encode(), st.st_mode)
            elif p.is_dir():
                out[str(p.relative_to(root))] = (None, st.st_mode)
            else:
                out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mode)
    return out


def _setup(root: Path, *extra: str) -> int:
    return main(["setup", "--root", str(root), "--iomem", MAP, "--kernel-release", K61, *extra])


def _real_dkms() -> None:
    require(shutil.which("dkms", path="/usr/sbin:/usr/bin") is not None,
            "dkms is not installed (scripts/bootstrap.sh installs it)")
    require((Path("/lib/modules") / K61 / "build" / "Makefile").exists(),
            f"no headers for {K61} (linux-headers-{K61})")


@pytest.mark.root  # dkms install refuses to run otherwise
def test_real_dkms_install_then_undo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _real_dkms()
    root = _root(tmp_path)
    before = _snapshot(root)
    assert _setup(root, "--ring", "1M", "--kernel-console") == 0
    out = capsys.readouterr().out
    assert "Kernel console: memconsole.ko 0.1.0 on mem:0x17b00000:0x100000, from the plan's " \
           "ring (--ring); DKMS builds it for 6.1.0-57-amd64" in out
    for path in (f"/{SRC}/dkms.conf", f"/{SRC}/memconsole.c", MODPROBE, MODULES_LOAD,
                 RECORD_DROPIN):
        assert f"wrote    {path}" in out
    assert (f"DKMS: built and installed memconsole/{VERSION} for {K61}; depmod not run for "
            f"--root: run 'chroot {root} depmod -a {K61}'") in out
    assert (root / MODPROBE.lstrip("/")).read_text().endswith(
        "options memconsole mem_address=0x17b00000 mem_size=0x100000\n")
    assert (root / MODULES_LOAD.lstrip("/")).read_text().endswith("\nmemconsole\n")
    # The ring the module is given is the one setup reserved and configured.
    assert "ring = mem:0x17b00000:0x100000\n" in (root / "etc/memconsole.conf").read_text()
    ko = root / "lib" / "modules" / K61 / "updates" / "dkms" / "memconsole.ko"
    info = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True,
                          text=True, check=True).stdout
    assert info.startswith(f"{K61} SMP"), info
    link = root / "var/lib/dkms/memconsole" / VERSION / "source"
    assert os.readlink(link) == f"../../../../../{SRC}"  # right inside the root too
    assert (link / "dkms.conf").is_file()
    manifest = read_manifest(root)
    assert manifest is not None and manifest["plan"]["kernel_console"] == {
        "version": VERSION, "release": K61, "ring": "mem:0x17b00000:0x100000",
        "from": "the plan's ring (--ring)"}
    installed = _snapshot(root)

    # Again, without --ring: the manifest's ring is kept, DKMS has it already.
    assert _setup(root, "--kernel-console") == 0
    out = capsys.readouterr().out
    assert "Nothing to change" in out
    assert f"DKMS: memconsole/{VERSION} already installed for {K61}" in out
    assert _snapshot(root) == installed

    # Setup without --kernel-console would leave the module built: refused.
    assert _setup(root, "--ring", "1M") == 1
    assert "run setup with --kernel-console to keep it" in capsys.readouterr().err
    assert _snapshot(root) == installed

    assert main(["setup", "--root", str(root), "--undo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"DKMS: removed memconsole/{VERSION} (all kernels)\n")
    assert f"removed  {MODPROBE}" in out
    assert _snapshot(root) == before


def test_missing_dkms_and_headers_named_with_the_apt_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require((Path("/lib/modules") / K61).is_dir(), f"{K61} is not installed")
    root = _root(tmp_path, dkms_tree=False)
    (root / "lib/modules" / K61 / "build").unlink()
    before = _snapshot(root)
    assert _setup(root, "--ring", "1M", "--kernel-console") == 1
    err = capsys.readouterr().err
    assert err == (f"memconsole setup: --kernel-console needs dkms and linux-headers-{K61} in "
                   f"{root} (DKMS builds memconsole.ko against the headers of {K61}): apt "
                   f"install dkms linux-headers-{K61}; nothing was changed\n")
    assert _snapshot(root) == before
    # The dry run says the same and writes nothing.
    assert _setup(root, "--ring", "1M", "--kernel-console", "--dry-run") == 0
    assert f"(missing: dkms, linux-headers-{K61})" in capsys.readouterr().out
    assert _snapshot(root) == before


def test_ring_from_the_configuration_or_none(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    require((Path("/lib/modules") / K61).is_dir(), f"{K61} is not installed")
    root = _root(tmp_path)
    assert _setup(root, "--kernel-console", "--dry-run") == 1
    assert "--kernel-console needs a ring: give --ring SIZE" in capsys.readouterr().err
    conf = root / "etc/memconsole.conf"
    conf.write_text("ring = /var/lib/memconsole/ring\n")
    assert _setup(root, "--kernel-console", "--dry-run") == 1
    assert "memconsole.ko writes physical memory only" in capsys.readouterr().err
    conf.write_text("ring = mem:0x7200000:1M\n")
    assert _setup(root, "--kernel-console", "--dry-run") == 0
    assert ("on mem:0x7200000:1M, from /etc/memconsole.conf (ring = mem:0x7200000:1M)"
            in capsys.readouterr().out)


class _FailingBuild:
    """The command boundary: what dkms would print, failing at build."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        if argv[1:2] == ["status"] or "status" in argv:
            return 0, ""
        if "build" in argv:
            return 10, "Error! Bad return status for module build on kernel: 6.1.0-57-amd64\n"
        return 0, ""


def test_dkms_failure_puts_every_file_back(tmp_path: Path) -> None:
    root = _root(tmp_path)
    before = _snapshot(root)
    run = _FailingBuild()
    kc = plan_kernel_console(root, K61, "mem:0x7200000:0x100000", run=run, exe="/usr/sbin/dkms")
    with pytest.raises(SetupError) as exc:
        apply(root, list(kc.files), {"kernel_console": kc.record()}, None, "not run", None,
              [Step(kc.dkms.install, kc.dkms.remove)])
    assert str(exc.value) == (
        "setup rolled back: dkms build memconsole/0.1.0 failed (exit 10): Error! Bad return "
        "status for module build on kernel: 6.1.0-57-amd64; every file was put back as it was")
    words = [[w for w in argv[1:] if not w.startswith("--")] for argv in run.calls]
    assert words == [["status", "memconsole/0.1.0"], ["add", "memconsole/0.1.0"],
                     ["build", "memconsole/0.1.0", "-k", K61],
                     ["remove", "memconsole/0.1.0"]]
    assert "--all" in run.calls[-1]
    assert _snapshot(root) == before
