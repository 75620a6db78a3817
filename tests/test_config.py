"""The configuration reader (memconsole.config): defaults, the shipped
template, and broken files (one warning each, defaults, never an exception)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memconsole import config
from memconsole.config import KEYS, Config, load, parse, template, write_template

SETUP_BLOCK = """\
# BEGIN memconsole setup
ramoops = mem:0x7000000:1M
ring = mem:0x7100000:0x100000
canary = mem:0x7200000:4096
method = memmap
panic = 10
# END memconsole setup
"""


def test_missing_file_is_the_defaults_silently(tmp_path: Path) -> None:
    cfg = load(tmp_path / "nothing.conf")
    assert cfg == Config()
    assert cfg.warnings == ()
    assert cfg.archive == Path("/var/lib/memconsole")
    assert (cfg.ring, cfg.canary, cfg.ramoops, cfg.method, cfg.panic) == (
        None, None, None, "none", 10)


def test_defaults_agree_with_the_commands() -> None:
    from memconsole.archive import DEFAULT_ARCHIVE_DIR

    assert Config().archive == DEFAULT_ARCHIVE_DIR


def test_template_lists_every_key_with_its_default_commented_out() -> None:
    text = template()
    commented = dict(re.findall(r"^#([a-z_]+) = (.*)$", text, re.M))
    assert tuple(commented) == KEYS
    # As shipped, nothing is set: the template is the defaults, no warning.
    assert parse(text) == Config()
    # Uncommented, every line is valid and gives the default again.
    uncommented = re.sub(r"^#([a-z_]+ = )", r"\1", text, flags=re.M)
    cfg = parse(uncommented)
    assert cfg.warnings == ()
    assert cfg == Config()
    assert set(KEYS) == {f.name for f in fields(Config)} - {"source", "warnings"}


def test_setup_block(tmp_path: Path) -> None:
    path = tmp_path / "memconsole.conf"
    path.write_text(template().replace(
        "# BEGIN memconsole setup\n# END memconsole setup\n", SETUP_BLOCK))
    cfg = load(path)
    assert cfg.warnings == ()
    assert cfg.source == path
    assert cfg.ramoops == "mem:0x7000000:1M"
    assert cfg.ring == "mem:0x7100000:0x100000"
    assert cfg.canary == "mem:0x7200000:4096"
    assert cfg.method == "memmap"
    assert cfg.panic == 10


def test_bad_values_warn_once_each_and_keep_the_defaults() -> None:
    text = ("archive = relative/dir\n"
            "ring = mem:0x7100001:1M\n"
            "canary = mem:0x7200000:8192\n"
            "ramoops = /dev/pmem0\n"
            "method = grub\n"
            "panic = soon\n"
            "colour = yes\n"
            "this line has no equals sign\n"
            "  # an indented comment\n"
            "\n")
    cfg = parse(text, Path("/etc/memconsole.conf"))
    assert len(cfg.warnings) == 8, cfg.warnings
    for n, warning in enumerate(cfg.warnings, start=1):
        assert warning.startswith(f"/etc/memconsole.conf:{n}: "), warning
    assert "unknown key 'colour'" in cfg.warnings[6]
    assert "not KEY = VALUE" in cfg.warnings[7]
    assert "a canary is one page" in cfg.warnings[2]
    assert cfg.warnings[5].endswith("using 10")
    assert replace_meta(cfg) == Config()


def replace_meta(cfg: Config) -> Config:
    from dataclasses import replace

    return replace(cfg, source=None, warnings=())


def test_a_bad_value_keeps_an_earlier_good_one() -> None:
    cfg = parse("ring = /var/lib/memconsole/ring\nring = mem:zz:1M\n")
    assert cfg.ring == "/var/lib/memconsole/ring"
    assert len(cfg.warnings) == 1 and "using /var/lib/memconsole/ring" in cfg.warnings[0]


def test_a_key_given_twice_warns_and_the_last_counts() -> None:
    cfg = parse("panic = 5\npanic = 20\n")
    assert cfg.panic == 20
    assert len(cfg.warnings) == 1 and "first on line 1" in cfg.warnings[0]


def test_none_and_hash_in_values() -> None:
    cfg = parse("ring = none\ncanary = NONE\narchive = /srv/crash#1\n")
    assert cfg.warnings == ()
    assert (cfg.ring, cfg.canary, cfg.archive) == (None, None, Path("/srv/crash#1"))


@pytest.mark.parametrize("kind", ["directory", "fifo", "binary", "huge"])
def test_unreadable_file_is_one_warning_and_the_defaults(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "memconsole.conf"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opened without blocking, refused as not a regular file
    elif kind == "binary":
        path.write_bytes(b"ring = /tmp/\xff\xfe\n")
    else:
        path.write_text("# padding\n" * 10_000)
    cfg = load(path)
    assert len(cfg.warnings) == 1, cfg.warnings
    assert cfg.warnings[0].startswith(f"{path}: cannot read the configuration")
    assert replace_meta(cfg) == Config()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "memconsole.conf"
    path.write_text("panic = 3\n")
    path.chmod(0)
    cfg = load(path)
    assert len(cfg.warnings) == 1 and "Permission denied" in cfg.warnings[0]
    assert cfg.panic == 10


def test_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.conf"
    path.write_text("panic = 3\n")
    monkeypatch.setenv(config.CONFIG_ENV, str(path))
    assert config.default_path() == path
    assert load().panic == 3


def test_write_template_only_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "memconsole.conf"
    path.parent.mkdir()
    assert write_template(path) is True
    assert path.read_text() == template()
    assert path.stat().st_mode & 0o777 == 0o644
    path.write_text("panic = 1\n")
    assert write_template(path) is False
    assert path.read_text() == "panic = 1\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["memconsole.conf"]
    dangling = tmp_path / "etc" / "link.conf"
    dangling.symlink_to(tmp_path / "elsewhere")
    assert write_template(dangling) is False
    assert not (tmp_path / "elsewhere").exists()


def test_import_is_cheap() -> None:
    """Reading the configuration in early boot loads no other part of memconsole."""
    code = ("import sys; import memconsole.config as c; c.load(); "
            "print(sorted(m for m in sys.modules if m.startswith('memconsole')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "MEMCONSOLE_CONFIG": "/nonexistent"})
    assert out.stdout.strip() == str(sorted(
        ["memconsole", "memconsole._common", "memconsole.config", "memconsole.errors"]))



_LINES = st.one_of(
    st.text(max_size=60),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from([*KEYS, "other", ""]),
              st.text(max_size=40)),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_LINES, max_size=20))
def test_any_text_gives_a_config_and_never_raises(lines: list[str]) -> None:
    cfg = parse("\n".join(lines))
    assert isinstance(cfg, Config)
    assert all(isinstance(w, str) and "\n" not in w for w in cfg.warnings)
    assert cfg.method in config.METHODS


# The commands take their defaults from the file (cli/_sources.py).


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from memconsole.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MEMCONSOLE_RING", raising=False)
    path = tmp_path / "memconsole.conf"
    monkeypatch.setenv(config.CONFIG_ENV, str(path))
    return path


def test_collect_list_and_show_take_the_archive_from_the_file(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import lab_fixture

    archive, pstore = tmp_path / "archive", tmp_path / "pstore"
    names = lab_fixture("6.12", "null", pstore)
    conf.write_text(f"archive = {archive}\n")
    rc, _, err = _main(capsys, "collect", "--pstore", str(pstore))
    assert rc == 0 and "into " + str(archive) in err, err
    assert sorted(p.name for p in archive.glob("boots/*/dmesg-*")) == sorted(names)
    rc, out, err = _main(capsys, "list", "--pstore", str(pstore), "--json")
    assert rc == 0 and err == "", err
    assert len(out.splitlines()) == 1
    rc, out, _ = _main(capsys, "show", "--pstore", str(pstore))
    assert rc == 0 and "crashy_null" in out
    # An explicit --archive wins over the file.
    other = tmp_path / "other"
    rc, out, err = _main(capsys, "list", "--pstore", str(pstore), "--archive", str(other))
    assert out == "" and "no crash events" in err, (rc, out, err)


@pytest.mark.parametrize("garbage", [
    b"\xff\xfe\x00garbage\x00" * 40,
    b"archive = relative/path\nring = mem:zz:1M\n[section]\nnot a line\x00\n",
])
def test_collect_with_a_garbage_file_still_archives(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str], garbage: bytes) -> None:
    from conftest import lab_fixture

    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    names = lab_fixture("6.12", "null", pstore)
    conf.write_bytes(garbage)
    rc, _, err = _main(capsys, "collect", "--pstore", str(pstore), "--archive", str(archive))
    assert rc == 0, err
    assert sorted(p.name for p in archive.glob("boots/*/dmesg-*")) == sorted(names)
    assert os.listdir(pstore) == []
    # One warning line, naming the file (then collect's own summary line).
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"memconsole collect: {conf}"), err
    assert lines[1].startswith("memconsole collect: 2 archived"), err


def test_collect_with_an_unreadable_file_still_archives(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import lab_fixture

    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    names = lab_fixture("6.12", "null", pstore)
    conf.mkdir()
    rc, _, err = _main(capsys, "collect", "--pstore", str(pstore), "--archive", str(archive))
    assert rc == 0, err
    assert len(list(archive.glob("boots/*/dmesg-*"))) == len(names)
    assert "cannot read the configuration" in err and len(err.splitlines()) == 2, err


def test_record_and_list_take_the_ring_from_the_file(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ring = tmp_path / "console.ring"
    log = tmp_path / "log.txt"
    log.write_text("first line from the configured ring\nsecond line\n")
    conf.write_text(f"ring = {ring}\narchive = {tmp_path / 'archive'}\n")
    rc, _, err = _main(capsys, "record", "--source", str(log), "--format", "text")
    assert rc == 0, err
    assert ring.stat().st_size > 0
    rc, out, err = _main(capsys, "show", "--ring", str(ring), "--boot", "all")
    assert rc == 0, err
    assert "first line from the configured ring" in out
    # $MEMCONSOLE_RING still wins over the file.
    env_ring = tmp_path / "env.ring"
    monkeypatch.setenv("MEMCONSOLE_RING", str(env_ring))
    rc, _, err = _main(capsys, "record", "--source", str(log), "--format", "text")
    assert rc == 0, err
    assert env_ring.exists()
    # Without any ring: the error names all three ways of giving one.
    monkeypatch.delenv("MEMCONSOLE_RING")
    conf.write_text("ring = none\n")
    rc, _, err = _main(capsys, "record", "--source", str(log))
    assert rc == 1 and "ring = in /etc/memconsole.conf" in err, err
