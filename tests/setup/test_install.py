"""setup and --undo in a scratch root: what is written, that a second run
changes nothing, that undo leaves every file byte for byte (content, mode,
mtime) as before, and that no failure leaves a partial configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from setup_facts import IOMEM, K61, scratch_root, snapshot

from conftest import require, unit_command
from memconsole.cli.main import main
from memconsole.errors import SetupError
from memconsole.setup import units
from memconsole.setup.files import GRUB_DROPIN, Desired, desired_files
from memconsole.setup.install import MANIFEST, apply, read_manifest, undo

MAP = str(IOMEM / "qemu-seabios-512M-6.12.txt")
FILES = ["etc/default/grub.d/90-memconsole.cfg", "etc/modprobe.d/memconsole.conf",
         "etc/modules-load.d/memconsole.conf",
         "etc/systemd/system/systemd-pstore.service.d/memconsole.conf", "etc/memconsole.conf"]


def _setup(root: Path, *extra: str) -> int:
    return main(["setup", "--root", str(root), "--iomem", MAP, *extra])


def _boot_ready() -> None:
    require(any(Path("/boot").glob("vmlinuz-*")), "no kernel under /boot")


def test_setup_then_undo_is_byte_for_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    assert _setup(root) == 0
    out = capsys.readouterr().out
    for f in FILES:
        assert (root / f).is_file(), f
        assert f"wrote    /{f}" in out
    assert "update-grub not run for --root" in out
    # The other writer's lines survive; setup's block follows them.
    conf = (root / "etc/memconsole.conf").read_bytes()
    assert conf.startswith(b"# memconsole configuration\n# archive = /var/lib/memconsole\n")
    assert b"\ncanary = mem:0x17c00000:4096\n" in conf
    assert oct((root / "etc/memconsole.conf").stat().st_mode & 0o777) == oct(0o640)
    manifest = read_manifest(root)
    assert manifest is not None and manifest["plan"]["address"] == 0x17B00000
    assert oct((root / MANIFEST.lstrip("/")).stat().st_mode & 0o777) == oct(0o600)
    assert oct((root / "var/lib/memconsole").stat().st_mode & 0o777) == oct(0o700)
    installed = snapshot(root)

    # Second run: nothing changes, and it says so.
    assert _setup(root) == 0
    assert "Nothing to change" in capsys.readouterr().out
    assert snapshot(root) == installed

    assert main(["setup", "--root", str(root), "--undo"]) == 0
    out = capsys.readouterr().out
    assert "restored /etc/memconsole.conf" in out
    assert "removed  /etc/modprobe.d/memconsole.conf" in out
    assert snapshot(root) == before
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    assert "nothing to undo" in capsys.readouterr().out


def test_changed_plan_rewrites_only_what_differs(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    assert _setup(root) == 0
    modules_load = (root / FILES[2]).stat().st_mtime_ns
    capsys.readouterr()
    assert _setup(root, "--ring", "1M", "--panic", "30") == 0
    out = capsys.readouterr().out
    assert "kept     /etc/modules-load.d/memconsole.conf (already right)" in out
    assert (root / FILES[2]).stat().st_mtime_ns == modules_load
    assert b"panic=30" in (root / FILES[0]).read_bytes()
    assert b"ring = mem:" in (root / FILES[4]).read_bytes()
    # Undo goes back to before the FIRST setup.
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    assert snapshot(root) == before


def test_undo_takes_only_its_block_from_a_shared_file(tmp_path: Path) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    assert _setup(root) == 0
    conf = root / "etc/memconsole.conf"
    conf.write_bytes(conf.read_bytes() + b"archive = /srv/memconsole\n")
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    assert conf.read_bytes() == (b"# memconsole configuration\n# archive = /var/lib/memconsole\n"
                                 b"archive = /srv/memconsole\n")


def test_undo_refuses_a_file_changed_since(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    assert _setup(root) == 0
    modprobe = root / "etc/modprobe.d/memconsole.conf"
    modprobe.write_text("options ramoops mem_address=0x1234000\n")
    state = snapshot(root)
    capsys.readouterr()
    assert main(["setup", "--root", str(root), "--undo"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "changed since setup: /etc/modprobe.d/memconsole.conf" in err
    assert snapshot(root) == state


def _desired(root: Path) -> tuple[list[Desired], dict[str, object], tuple[str, ...]]:
    from memconsole.setup.facts import gather
    from memconsole.setup.planner import Options, plan

    p = plan(Path(MAP).read_bytes(), gather(root), Options())
    return desired_files(p, grub=True), p.as_dict(), p.cmdline


def test_failing_update_grub_rolls_everything_back(tmp_path: Path) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    desired, record, words = _desired(root)
    calls = []

    def update() -> Path | None:
        calls.append(1)
        if len(calls) == 1:
            raise SetupError("update-grub failed (exit 1): /boot/grub: no space left on device")
        return None

    with pytest.raises(SetupError, match="every file was put back as it was"):
        apply(root, desired, record, update, "update-grub", words)
    assert len(calls) == 2  # and once more after the rollback, to regenerate grub.cfg
    assert snapshot(root) == before


def test_grub_cfg_without_the_parameters_rolls_back(tmp_path: Path) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    desired, record, words = _desired(root)
    cfg = tmp_path / "grub.cfg"
    # What a one-backslash drop-in gives (tests/fixtures/setup/grub/out/v2).
    cfg.write_text(f"\tlinux\t/vmlinuz root=/dev/sda ro {words[0]} panic=10\n")
    with pytest.raises(SetupError, match=r"bare '\$'.*put back"):
        apply(root, desired, record, lambda: cfg, "update-grub", words)
    assert snapshot(root) == before


def test_one_backslash_too_few_is_never_written(tmp_path: Path) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    desired, record, words = _desired(root)
    grub = next(d for d in desired if d.path == GRUB_DROPIN)
    broken = Desired(grub.path, grub.role, (grub.content or b"").replace(b"\\\\\\$", b"\\$"))
    assert broken.content != grub.content
    with pytest.raises(SetupError, match="refusing to write it"):
        apply(root, [broken if d is grub else d for d in desired], record, None, "", words)
    assert snapshot(root) == before


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "etc" / "modules-load.d")
    before = snapshot(root)
    assert _setup(root) == 1
    assert snapshot(root) == before and list(outside.iterdir()) == []


def test_fifth_memmap_is_refused_and_nothing_written(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    grub = root / "etc/default/grub"
    grub.write_text(grub.read_text() + 'GRUB_CMDLINE_LINUX="memmap=1M\\\\\\$0x7000000,'
                    '1M\\\\\\$0x7200000 memmap=1M\\\\\\$0x7400000 memmap=1M\\\\\\$0x7600000"\n')
    before = snapshot(root)
    capsys.readouterr()
    assert _setup(root) == 1
    err = capsys.readouterr().err
    assert "4 memmap= entries are already in use" in err and err.count("\n") == 1
    assert snapshot(root) == before


@pytest.mark.parametrize("args, message", [
    (["--kernel-release", "9.9.9-nope"], "unknown kernel release '9.9.9-nope'"),
    (["--iomem", "/nonexistent/iomem"], "cannot read the memory map"),
    (["--size", "2G"], "no System RAM range holds"),
    (["--method", "reserve-mem", "--kernel-release", K61], "cannot use it"),
])
def test_errors_are_one_line_and_write_nothing(tmp_path: Path, args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _boot_ready()
    if K61 in args:
        require((Path("/boot") / f"vmlinuz-{K61}").exists(), f"{K61} is not installed")
    root = scratch_root(tmp_path)
    before = snapshot(root)
    assert _setup(root, *args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert err.startswith("memconsole setup: ")
    assert snapshot(root) == before


def test_malformed_iomem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    bad = tmp_path / "iomem"
    bad.write_bytes(Path(MAP).read_bytes()[:200] + b"\x00\xffgarbage\n")
    assert main(["setup", "--root", str(root), "--iomem", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "is not 'start-end : name'" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        main(["setup", "--root", str(root), "--size", "1.5M"])
    assert exit_.value.code == 2


def test_dry_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    assert _setup(root, "--dry-run", "--json", "--ring", "1M") == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("method", "address", "size", "cmdline", "modprobe", "files", "reasons",
                "canary", "ring"):
        assert key in data, key
    assert data["method"] == "memmap" and data["address"] == 0x17A00000
    assert data["size"] == (2 << 20) + 4096
    assert data["cmdline"][0] == "memmap=0x201000$0x17a00000"
    assert data["ring"] == {"address": 0x17B00000, "size": 1 << 20}
    assert data["canary"] == {"address": 0x17C00000, "size": 4096}
    assert data["files"] == ["/" + f for f in FILES]
    assert data["modprobe"][0].startswith("options ramoops mem_address=0x17a00000 ")
    assert data["dry_run"] is True
    assert snapshot(root) == before


@pytest.mark.root
def test_read_only_etc_leaves_nothing(tmp_path: Path) -> None:
    _boot_ready()
    require(shutil.which("unshare") is not None, "unshare (util-linux) is not installed")
    root = scratch_root(tmp_path)
    before = snapshot(root)
    # A private mount namespace: /etc of the scratch root read-only, as on a
    # machine whose /etc is a read-only mount; the host is not affected.
    script = (f"mount --bind {root}/etc {root}/etc && mount -o remount,bind,ro {root}/etc && "
              f"exec {sys.executable} -m memconsole setup --root {root} --iomem {MAP}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Read-only file system; nothing was changed" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert snapshot(root) == before


def test_undo_library_without_manifest(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert "nothing to undo" in undo(root, None, "").grub


@pytest.mark.root
def test_one_read_only_directory_leaves_nothing_half_written(tmp_path: Path) -> None:
    """/etc/modules-load.d read-only (a separate read-only mount), the rest
    writable: the GRUB drop-in and the modprobe.d file are already staged
    when the third file fails; every staged file, created directory and the
    manifest are gone afterwards, and the existing files are untouched."""
    _boot_ready()
    require(shutil.which("unshare") is not None, "unshare (util-linux) is not installed")
    root = scratch_root(tmp_path)
    (root / "etc/modules-load.d").mkdir()
    (root / "etc/modules-load.d/local.conf").write_text("loop\n")
    before = snapshot(root)
    ro = root / "etc/modules-load.d"
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
              f"{sys.executable} -m memconsole setup --root {root} --iomem {MAP}; rc=$?; "
              f"ls -a {root}/etc/default/grub.d {root}/etc/modprobe.d >&2; exit $rc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.splitlines()
    assert err[0].startswith("memconsole setup: cannot install the configuration: "), err
    assert "modules-load.d" in err[0] and "nothing was changed" in err[0], err
    # The scratch grub.d directory setup created is gone again (ls fails on
    # it), and modprobe.d holds only its own file: no staged leftovers.
    assert "modules-load.d/memconsole.conf: Read-only file system" in err[0], err
    listing = "\n".join(err[1:])
    assert "local.conf" in listing and ".memconsole-new" not in listing, listing
    assert snapshot(root) == before


def test_undo_keeps_the_time_of_a_directory_changed_since(tmp_path: Path) -> None:
    """undo gives a directory its time from before setup only when it holds
    the same entries again: one someone else added a file to keeps the time
    of that change."""
    _boot_ready()
    root = scratch_root(tmp_path)
    before = snapshot(root)
    assert _setup(root) == 0
    other = root / "etc/modprobe.d/other.conf"
    other.write_text("options loop max_loop=8\n")
    changed = (root / "etc/modprobe.d").stat().st_mtime_ns
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    after = snapshot(root)
    assert (root / "etc/modprobe.d").stat().st_mtime_ns != before["etc/modprobe.d"][2]
    assert (root / "etc/modprobe.d").stat().st_mtime_ns >= changed
    del after["etc/modprobe.d/other.conf"]
    assert {k: v for k, v in after.items() if k != "etc/modprobe.d"} == {
        k: v for k, v in before.items() if k != "etc/modprobe.d"}


def test_units_are_installed_with_the_ring_and_undone(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _boot_ready()
    # The units' command is rendered, not run: outside /tmp where this checkout is not.
    command = unit_command()
    monkeypatch.setattr(units, "default_command", lambda: command)
    root = scratch_root(tmp_path)
    before = snapshot(root)
    assert _setup(root, "--units", "--ring", "1M") == 0
    out = capsys.readouterr().out
    system = root / "etc/systemd/system"
    for name in ("memconsole-collect.service", "memconsole-record.service"):
        assert (system / name).is_file(), name
        assert (system / "sysinit.target.wants" / name).is_symlink(), name
    assert "installed and enabled memconsole-collect.service, memconsole-record.service" in out
    ring = read_manifest(root)["plan"]["ring"]  # type: ignore[index]
    spec = f"mem:{ring['address']:#x}:{ring['size']:#x}"
    env = (root / "etc/default/memconsole").read_text()
    assert f"\nMEMCONSOLE_RING={spec}\n" in env, env
    assert f"the recorder on {spec}" in out
    # A plain setup afterwards keeps the units (the manifest says they are ours).
    installed = snapshot(root)
    assert _setup(root, "--ring", "1M") == 0
    capsys.readouterr()
    assert snapshot(root) == installed
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    assert "removed the units" in capsys.readouterr().out
    # Every file as before, and the directories the units needed are gone
    # again (the time of /etc itself is not restored for them).
    after = snapshot(root)
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if v[0] is not None} == {
        k: v for k, v in before.items() if v[0] is not None}
