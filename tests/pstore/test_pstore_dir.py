"""Reading and erasing in a pstore directory, finding the sources, and
joining new records to boots already archived, on real records."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import lab_fixture
from memconsole.errors import ConfigError
from memconsole.pstore import (
    SYSTEMD_PSTORE_DIR,
    SkipKind,
    erase_record,
    find_sources,
    read_pstore_dir,
)
from memconsole.pstore.boots import assign_boots, group_boots


def test_erase_only_the_file_that_was_read(tmp_path: Path) -> None:
    names = lab_fixture("6.1", "null", tmp_path)
    records, _ = read_pstore_dir(tmp_path)
    first, second = sorted(records, key=lambda r: r.name)
    # Replaced after it was read (same name, another inode): left in place.
    path = tmp_path / first.name
    path.rename(tmp_path / "old")
    path.write_bytes(b"another record")
    assert erase_record(first) == "the file was replaced after it was read; left in place"
    assert path.read_bytes() == b"another record"
    assert erase_record(second) is None
    assert sorted(os.listdir(tmp_path)) == [names[0], "old"]
    assert erase_record(second) == "cannot erase: No such file or directory"
    assert erase_record(replace(first, source="")) == "it was not read from a file"


def test_read_failures_say_what_and_why(tmp_path: Path) -> None:
    lab_fixture("6.12", "panic", tmp_path)
    os.mkfifo(tmp_path / "dmesg-ramoops-1")
    (tmp_path / "dmesg-ramoops-2").symlink_to(tmp_path / "dmesg-ramoops-0")
    (tmp_path / "dmesg-ramoops-3").write_bytes(b"x" * 5000)
    records, failures = read_pstore_dir(tmp_path, max_size=4096)
    assert records == []
    got = {Path(f.path).name: (f.kind, f.reason) for f in failures}
    size = (tmp_path / "dmesg-ramoops-0").stat().st_size
    assert got == {
        "dmesg-ramoops-0": (SkipKind.TOO_LARGE, f"{size} bytes, more than the 4096-byte "
                            "record cap (no pstore backend writes records that large): not read"),
        "dmesg-ramoops-1": (SkipKind.NOT_REGULAR, "a FIFO, not a record: not opened"),
        "dmesg-ramoops-2": (SkipKind.NOT_REGULAR, "a symbolic link, not a record: not opened"),
        "dmesg-ramoops-3": (SkipKind.TOO_LARGE, "5000 bytes, more than the 4096-byte record "
                            "cap (no pstore backend writes records that large): not read"),
    }
    records, failures = read_pstore_dir(tmp_path)
    assert [r.name for r in records] == ["dmesg-ramoops-0", "dmesg-ramoops-3"]
    assert all(r.file_id == (os.stat(r.source).st_dev, os.stat(r.source).st_ino)
               for r in records)


def test_find_sources(tmp_path: Path) -> None:
    assert find_sources(tmp_path) == ([find_sources(tmp_path)[0][0]], [])
    (src,), _ = find_sources(tmp_path)
    assert src.path == tmp_path and src.erasable
    with pytest.raises(ConfigError, match="does not exist"):
        find_sources(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        find_sources(tmp_path / "f")
    if SYSTEMD_PSTORE_DIR.is_dir():
        (systemd,), _ = find_sources(SYSTEMD_PSTORE_DIR)
        assert not systemd.erasable


def test_assign_boots_completes_an_archived_boot(tmp_path: Path) -> None:
    """6.1 null: Oops#1 archived in its boot directory, Panic#2 (moved 30 s
    later) fresh; 6.12 panic, a later crash, fresh."""
    lab_fixture("6.1", "null", tmp_path / "a")
    lab_fixture("6.12", "panic", tmp_path / "b")
    first, second = sorted(read_pstore_dir(tmp_path / "a")[0], key=lambda r: r.mtime_ns)
    second = replace(second, mtime_ns=first.mtime_ns + 30 * 10**9)
    (later,), _ = read_pstore_dir(tmp_path / "b")
    placed = assign_boots([second, later], {"20261125T000000Z": [first]})
    assert [(b, r.name, r.mtime_ns) for b, r in placed] == [
        ("20261125T000000Z", second.name, second.mtime_ns),
        (group_boots([later])[0].id, later.name, later.mtime_ns)]
    # Without the archived part, the Panic dump would name a boot of its own.
    assert group_boots([second])[0].id != group_boots([first])[0].id
