"""The systemd units as installed by memconsole.setup.units: systemd's own
``systemd-analyze verify`` and ``security`` on them, the enablement links
against ``systemctl --root enable``, removal, and the command they run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import UNDER_TMP, require, unit_command
from memconsole.errors import ConfigError
from memconsole.setup.units import (
    UNIT_NAMES,
    UNITS_DIR,
    Command,
    default_command,
    install_units,
    remove_units,
    render_unit,
    ring_dropin,
)

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    require(path is not None, f"{tool} is not installed (package systemd)")
    assert path is not None
    return path


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_need("systemd-analyze"), "verify", *map(str, units)],
                          capture_output=True, text=True, check=False, timeout=300)


def _tree(root: Path) -> dict[str, str]:
    """Every path under *root*: file contents or symlink targets."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_text()
        else:
            out[rel] = "<dir>"
    return out


def test_installed_units_pass_verify(tmp_path: Path) -> None:
    install_units(tmp_path, command=unit_command(), reload=False)
    units = [tmp_path / "etc/systemd/system" / name for name in UNIT_NAMES]
    proc = _verify(*units)
    # verify prints warnings (an unknown key, a bad value) but exits 0: none allowed.
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_verify_catches_what_it_should(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and the package's own files
    with a bare ``memconsole`` where none is on systemd's search path."""
    install_units(tmp_path, command=unit_command(), reload=False)
    unit = tmp_path / "etc/systemd/system/memconsole-record.service"
    unit.write_text(unit.read_text().replace("ProtectClock=", "ProtectClok="))
    assert "Unknown key 'ProtectClok'" in _verify(unit).stderr
    if not any(Path(d, "memconsole").exists() for d in
               ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")):
        proc = _verify(UNITS_DIR / "memconsole-record.service")
        assert proc.returncode != 0 and "Command memconsole is not executable" in proc.stderr


def test_the_command_runs_this_memconsole(tmp_path: Path) -> None:
    """ExecStart runs the memconsole these units came with, from / and
    without the test's PYTHONPATH, as systemd starts it."""
    command = default_command()
    if command != unit_command():
        pytest.skip(UNDER_TMP)
    install_units(tmp_path, command=command, reload=False)
    text = (tmp_path / "etc/systemd/system/memconsole-record.service").read_text()
    (exec_line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    argv = exec_line.removeprefix("ExecStart=").split()
    assert argv[-1] == "record" and tuple(argv[:-1]) == command.argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for line in text.splitlines():
        if line.startswith("Environment="):
            name, _, val = line.removeprefix("Environment=").partition("=")
            env[name] = val
    proc = subprocess.run([*argv[:-1], "collect", "--help"], cwd="/", env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--journal" in proc.stdout  # this tree's collect
    collect = (tmp_path / "etc/systemd/system/memconsole-collect.service").read_text()
    assert f"exec {' '.join(command.argv)} collect $$keep'" in collect
    assert f"\nExecStartPre=-{' '.join(command.argv)} canary\n" in collect


def test_enable_links_are_those_of_systemctl(tmp_path: Path) -> None:
    systemctl = _need("systemctl")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    install_units(ours, command=unit_command(), reload=False)
    install_units(theirs, enable=False, command=unit_command(), reload=False)
    proc = subprocess.run([systemctl, f"--root={theirs}", "enable", *UNIT_NAMES],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    links = {k: v for k, v in _tree(theirs).items() if v.startswith("-> ")}
    assert links and {k: v for k, v in _tree(ours).items() if v.startswith("-> ")} == links


def test_remove_undoes_install(tmp_path: Path) -> None:
    other = tmp_path / "etc/systemd/system/sysinit.target.wants/other.service"
    other.parent.mkdir(parents=True)
    other.symlink_to("/lib/systemd/system/other.service")
    before = _tree(tmp_path)
    written = install_units(tmp_path, ring="/dev/pmem0", command=unit_command(), reload=False)
    assert all(p.exists() or p.is_symlink() for p in written)
    removed = remove_units(tmp_path, reload=False)
    assert sorted(removed) == sorted(written)
    assert _tree(tmp_path) == before


def test_ring_dropins(tmp_path: Path) -> None:
    assert ring_dropin("mem:0x7200000:1M") is None
    assert ring_dropin("/var/lib/memconsole/ring") is None
    assert "DeviceAllow=/dev/pmem0 rw" in str(ring_dropin("/dev/pmem0"))
    assert "ReadWritePaths=/srv/rings" in str(ring_dropin("/srv/rings/console.ring"))
    with pytest.raises(ConfigError):
        ring_dropin("relative/ring")
    # A drop-in systemd accepts.
    install_units(tmp_path, ring="/srv/rings/console.ring", command=unit_command(), reload=False)
    unit = tmp_path / "etc/systemd/system/memconsole-record.service"
    dropin = tmp_path / "etc/systemd/system/memconsole-record.service.d/memconsole-ring.conf"
    assert dropin.exists()
    assert _verify(unit).returncode == 0


def test_unsafe_command_words_are_refused() -> None:
    text = (UNITS_DIR / "memconsole-record.service").read_text()
    with pytest.raises(ConfigError, match="cannot carry"):
        render_unit(text, Command(("/opt/my venv/bin/memconsole",)))
    with pytest.raises(ConfigError, match="cannot carry"):
        render_unit(text, Command(("/usr/bin/memconsole",), (("PYTHONPATH", "/a%b"),)))
    with pytest.raises(ConfigError, match="PrivateTmp"):
        render_unit(text, Command(("/tmp/venv/bin/memconsole",)))


def test_security_exposure_is_documented(tmp_path: Path) -> None:
    """``systemd-analyze security`` of the installed recorder unit, measured
    here, is the figure docs/operations.md gives (and stays "OK")."""
    analyze = _need("systemd-analyze")
    install_units(tmp_path, command=unit_command(), reload=False)
    figures = {}
    for name in UNIT_NAMES:
        proc = subprocess.run([analyze, "security", "--offline=yes",
                               str(tmp_path / "etc/systemd/system" / name)],
                              capture_output=True, text=True, check=False, timeout=300)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", proc.stdout)
        assert m, proc.stdout[-500:] + proc.stderr
        figures[name] = (float(m[1]), m[2])
        assert m[2] in ("OK", "SAFE"), (name, m[0])
    doc = (DOCS / "operations.md").read_text()
    for name, (level, word) in figures.items():
        assert f"`{name}`: {level} {word}" in doc, (name, level, word)
