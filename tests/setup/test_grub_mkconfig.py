"""The GRUB drop-in through Debian's real grub-mkconfig, in a scratch root.

grub-mkconfig runs in a private mount namespace (``unshare -m``) with the
scratch root's /etc/default over /etc/default and a scratch /boot (the
installed kernels' names, their real config files, empty images: 10_linux
only lists them) over /boot, the recipe of the research's
grub/run-mkconfig.sh; the host's /etc and /boot are not touched.  Needs
root, grub-common and util-linux's unshare: skipped with the reason, and
forced by MEMCONSOLE_FORCE_VM=1.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from setup_facts import IOMEM, scratch_root, snapshot

from conftest import require
from memconsole.setup.facts import gather
from memconsole.setup.files import GRUB_DROPIN, check_grub_cfg, desired_files
from memconsole.setup.install import apply, undo
from memconsole.setup.planner import Options, plan

MAP = IOMEM / "qemu-seabios-512M-6.12.txt"
_LINUX = ("linux\t", "linux ")


def _prerequisites() -> str:
    exe = shutil.which("grub-mkconfig", path="/usr/sbin:/sbin:/usr/bin:/bin")
    require(exe is not None, "grub-mkconfig is not installed (grub-common; "
            "scripts/bootstrap.sh installs it)")
    require(shutil.which("unshare") is not None, "unshare (util-linux) is not installed")
    require(Path("/etc/grub.d/10_linux").is_file(), "/etc/grub.d/10_linux is missing")
    require(any(Path("/boot").glob("vmlinuz-*")), "no kernel under /boot")
    assert exe is not None
    return exe


def _scratch_boot(tmp: Path) -> Path:
    boot = tmp / "boot"
    (boot / "grub").mkdir(parents=True)  # 05_debian_theme exits 1 without it
    for f in Path("/boot").iterdir():
        if f.name.startswith("config-"):
            shutil.copy(f, boot / f.name)
        elif f.name.startswith(("vmlinuz-", "initrd.img-", "System.map-")):
            (boot / f.name).write_bytes(b"")
    return boot


def _mkconfig(exe: str, root: Path, boot: Path, out: Path) -> Path:
    script = (f"mount --bind '{root}/etc/default' /etc/default && "
              f"mount --bind '{boot}' /boot && exec '{exe}' -o '{out}'")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def _linux_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(_LINUX)]


@pytest.mark.root
def test_dropin_through_real_grub_mkconfig(tmp_path: Path) -> None:
    exe = _prerequisites()
    root = scratch_root(tmp_path)
    boot = _scratch_boot(tmp_path)
    cfg = tmp_path / "grub.cfg"
    before = snapshot(root)
    the_plan = plan(MAP.read_bytes(), gather(root), Options())
    words = the_plan.cmdline
    memmap = words[0]
    assert memmap.startswith("memmap=") and "$" in memmap

    def update() -> Path:
        return _mkconfig(exe, root, boot, cfg)

    outcome = apply(root, desired_files(the_plan, grub=True), the_plan.as_dict(), update,
                    "grub-mkconfig", words)
    assert GRUB_DROPIN in outcome.changed
    assert outcome.grub.startswith("ran grub-mkconfig: all "), outcome.grub
    text = cfg.read_text()
    lines = _linux_lines(text)
    # Normal and recovery entries of every installed kernel.
    assert len(lines) >= 2 * sum(1 for _ in Path("/boot").glob("vmlinuz-*")), lines
    # GRUB reads "\$" as a literal "$": the exact text the kernel must get.
    literal = " " + " ".join(w.replace("$", "\\$") for w in words)
    for line in lines:
        assert literal in line + " ", line
        assert f" {memmap} " not in line + " ", line  # never a bare "$"
    assert check_grub_cfg(text, words) == (len(lines), [])

    # --undo: the drop-in goes, grub.cfg no longer carries the range, the
    # scratch /etc is byte for byte what it was.
    undone = undo(root, update, "grub-mkconfig")
    assert GRUB_DROPIN in undone.removed
    assert snapshot(root) == before
    after = cfg.read_text()
    assert "memmap=" not in after and _linux_lines(after)


@pytest.mark.root
def test_one_backslash_too_few_is_caught_in_real_grub_cfg(tmp_path: Path) -> None:
    """What setup refuses to write (test_install) really does break
    grub.cfg, and check_grub_cfg, which setup runs after update-grub, sees
    it in grub-mkconfig's own output."""
    exe = _prerequisites()
    root = scratch_root(tmp_path)
    boot = _scratch_boot(tmp_path)
    dropin = root / GRUB_DROPIN.lstrip("/")
    dropin.parent.mkdir(parents=True)
    dropin.write_text('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX memmap=0x101000\\$0x17b00000"\n')
    text = _mkconfig(exe, root, boot, tmp_path / "grub.cfg").read_text()
    lines = _linux_lines(text)
    assert lines and all(" memmap=0x101000$0x17b00000" in line for line in lines), lines
    n, problems = check_grub_cfg(text, ["memmap=0x101000$0x17b00000"])
    assert n == len(lines) and len(problems) == n
    assert all("bare '$'" in p for p in problems), problems
