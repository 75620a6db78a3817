"""``memconsole collect``/``show``/``list`` on real records, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import lab_fixture
from memconsole.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def archived_files(archive: Path) -> list[str]:
    return sorted(p.name for p in archive.glob("boots/*/*") if p.name != "records.json")


def test_collect_archives_then_erases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    names = lab_fixture("6.12", "null", pstore)
    originals = {n: (pstore / n).read_bytes() for n in names}
    rc, out, err = run(capsys, "collect", "--pstore", str(pstore), "--archive", str(archive),
                       "--json")
    assert rc == 0, err
    assert sorted(os.listdir(pstore)) == []
    assert archived_files(archive) == names
    for path in archive.glob("boots/*/dmesg-*"):
        assert path.read_bytes() == originals[path.name]
        assert path.stat().st_mode & 0o777 == 0o600
    assert archive.stat().st_mode & 0o777 == 0o700
    lines = [json.loads(x) for x in out.splitlines()]
    assert {x["status"] for x in lines} == {"archived"} and all(x["erased"] for x in lines)
    # The kernel's record time is kept as the archived file's mtime.
    fixture = Path(__file__).parent.parent / "fixtures/lab/6.12/null/mtimes.json"
    mtimes = json.loads(fixture.read_text())
    for path in archive.glob("boots/*/dmesg-*"):
        assert path.stat().st_mtime_ns == mtimes[path.name]


def test_collect_twice_never_duplicates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    names = lab_fixture("6.1", "bug", pstore)
    for _ in range(2):
        rc, _, err = run(capsys, "collect", "--pstore", str(pstore), "--archive", str(archive),
                         "--keep")
        assert rc == 0, err
    assert archived_files(archive) == names
    assert "0 archived, 2 already archived" in err
    assert sorted(os.listdir(pstore)) == names  # --keep
    # ...and list sees each crash once, whether it reads pstore, the archive or both.
    rc, out, _ = run(capsys, "list", "--pstore", str(pstore), "--archive", str(archive), "--json")
    assert rc == 0 and len(out.splitlines()) == 1


@pytest.mark.parametrize(("release", "action", "kind", "comm", "reason"), [
    ("6.1", "null", "null-pointer", "insmod", "Fatal exception"),
    ("6.12", "null", "null-pointer", "insmod", "Fatal exception"),
    ("6.1", "list", "list-corruption", "insmod", "Fatal exception"),
    ("6.12", "hung", "hung-task", "insmod", "hung_task: blocked tasks"),
    ("6.1", "sysrq", "panic", "sh", "sysrq triggered crash"),
    ("6.12", "warn", "warning", "insmod", "kernel: panic_on_warn set ..."),
])
def test_list_json_on_real_records(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   release: str, action: str, kind: str, comm: str,
                                   reason: str) -> None:
    names = lab_fixture(release, action, tmp_path / "pstore")
    rc, out, _ = run(capsys, "list", "--pstore", str(tmp_path / "pstore"),
                     "--archive", str(tmp_path / "none"), "--json")
    assert rc == 0
    (event,) = [json.loads(x) for x in out.splitlines()]
    assert event["kind"] == kind
    assert event["comm"] == comm
    assert event["panic_reason"] == reason
    assert sorted(event["records"]) == names
    assert event["boot"] and event["time"].endswith("Z")


def test_show_opens_with_a_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab_fixture("6.12", "null", tmp_path / "pstore")
    rc, out, _ = run(capsys, "show", "--pstore", str(tmp_path / "pstore"),
                     "--archive", str(tmp_path / "none"))
    assert rc == 0
    first = out.splitlines()[0]
    assert (" ended in a kernel panic: BUG: unable to handle kernel NULL pointer dereference in "
            "crashy_null [crashy]") in first
    assert "task insmod" in first
    body = out.split("\n\n", 1)[1]
    # In order, without the <N> level prefixes, the report before the panic line.
    assert body.index("BUG: kernel NULL pointer dereference") < body.index(
        "Kernel panic - not syncing: Fatal exception")
    assert "\n<4>[" not in body


# -- bad input -------------------------------------------------------------------------


def test_missing_pstore_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("collect", "show", "list"):
        rc, out, err = run(capsys, cmd, "--pstore", str(tmp_path / "nope"),
                           "--archive", str(tmp_path / "a"))
        assert rc == 1
        assert err.count("\n") == 1 and "does not exist" in err and out == ""


def test_empty_pstore_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pstore").mkdir()
    args = ("--pstore", str(tmp_path / "pstore"), "--archive", str(tmp_path / "a"))
    rc, _, err = run(capsys, "collect", *args)
    assert rc == 4 and "no pstore records" in err
    rc, out, err = run(capsys, "show", *args)
    assert rc == 4 and out == "" and "no crash records" in err


def test_garbage_and_truncated_records_are_archived(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pstore = tmp_path / "pstore"
    lab_fixture("6.1", "null", pstore)
    # A truncated record the kernel could not inflate, renamed so it sits beside
    # the crash's own records as another slot would.
    lab_fixture("6.12", "sysrq-truncated", tmp_path / "t")
    os.rename(tmp_path / "t" / "dmesg-ramoops-0.enc.z", pstore / "dmesg-ramoops-7.enc.z")
    (pstore / "dmesg-ramoops-8").write_bytes(os.urandom(3000))
    (pstore / "dmesg-ramoops-9.enc.z").write_bytes(b"\xff\xfe" * 500)
    rc, _, err = run(capsys, "collect", "--pstore", str(pstore), "--archive", str(tmp_path / "a"))
    assert rc == 0, err
    assert os.listdir(pstore) == []
    assert len(archived_files(tmp_path / "a")) == 5
    assert "dmesg-ramoops-7.enc.z: archived as is, but compressed data truncated" in err
    assert "dmesg-ramoops-9.enc.z: archived as is, but cannot inflate" in err
    rc, out, _ = run(capsys, "list", "--archive", str(tmp_path / "a"), "--pstore", str(pstore))
    assert rc == 0 and out


@pytest.mark.root
def test_unreadable_record_is_skipped_not_erased(tmp_path: Path) -> None:
    """Mode 000 is unreadable only without CAP_DAC_OVERRIDE: run collect as root
    with that capability (and DAC_READ_SEARCH) removed from its bounding set."""
    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    names = lab_fixture("6.1", "null", pstore)
    os.chmod(pstore / names[0], 0)
    proc = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
         sys.executable, "-m", "memconsole", "collect", "--pstore", str(pstore),
         "--archive", str(archive)], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent.parent / "src")})
    assert proc.returncode == 3, proc.stderr
    assert f"{pstore / names[0]}: cannot read: Permission denied, skipping (not erased)" \
        in proc.stderr
    assert sorted(os.listdir(pstore)) == [names[0]]
    assert archived_files(archive) == [names[1]]


@pytest.mark.root
def test_full_archive_disk_erases_nothing(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    names = lab_fixture("6.12", "null", pstore)
    archive.mkdir()
    # A tmpfs with room for the directories but not for a 25 KiB record.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "memconsole-test", str(archive)],
                   check=True)
    try:
        rc, _, err = run(capsys, "collect", "--pstore", str(pstore), "--archive", str(archive))
    finally:
        subprocess.run(["umount", str(archive)], check=True)
    assert rc == 1
    assert "archive disk is full (not erased)" in err
    assert sorted(os.listdir(pstore)) == names


@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_two_crashed_boots_order_by_time_not_slot(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  release: str) -> None:
    """Boot 1's Panic#2 survives in zone 1; boot 2's Panic#1 overwrote zone 0."""
    lab_fixture(release, "null-then-sysrq", tmp_path / "pstore")
    args = ("--pstore", str(tmp_path / "pstore"), "--archive", str(tmp_path / "a"))
    rc, _, err = run(capsys, "collect", *args)
    assert rc == 0, err
    boots = sorted(p.name for p in (tmp_path / "a" / "boots").iterdir())
    assert len(boots) == 2
    assert sorted(os.listdir(tmp_path / "a" / "boots" / boots[0])) == [
        "dmesg-ramoops-1", "records.json"]
    rc, out, _ = run(capsys, "list", *args, "--json")
    events = [json.loads(x) for x in out.splitlines()]
    assert [(e["boot"], e["kind"], e["dumps"]) for e in events] == [
        (boots[0], "null-pointer", ["Panic#2"]), (boots[1], "panic", ["Panic#1"])]
    rc, out, _ = run(capsys, "show", *args)
    assert out.startswith(f"Boot {boots[1]} ended in a kernel panic: ")
    assert "sysrq triggered crash" in out.splitlines()[0]


@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_ecc_notice_is_split_off(tmp_path: Path, release: str) -> None:
    from memconsole.pstore import read_pstore_dir

    lab_fixture(release, "panic-ecc", tmp_path / "p")
    (rec,), _ = read_pstore_dir(tmp_path / "p")
    assert rec.raw.endswith(b"\nECC: No errors detected\n")
    assert (rec.ecc_corrected, rec.ecc_bad_blocks) == (0, 0)
    assert not rec.text.endswith(b"ECC: No errors detected\n")
    assert b"Kernel panic - not syncing: crashy: requested panic" in rec.text


def test_list_groups_the_same_bug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same NULL dereference on 6.1 and on 6.12 is one bug seen twice; a BUG()
    and a panic() are two others."""
    archive = tmp_path / "a"
    for i, (release, action) in enumerate([("6.1", "null"), ("6.12", "null"), ("6.1", "bug"),
                                           ("6.12", "panic")]):
        lab_fixture(release, action, tmp_path / f"p{i}")
        assert run(capsys, "collect", "--pstore", str(tmp_path / f"p{i}"),
                   "--archive", str(archive))[0] == 0
    args = ("--archive", str(archive), "--pstore", str(tmp_path / "p0"))
    rc, out, _ = run(capsys, "list", *args, "--json")
    assert rc == 0
    events = [json.loads(x) for x in out.splitlines()]
    # Oldest first: the captures ran 6.1 bug, 6.1 null, 6.12 null, 6.12 panic.
    assert [(e["kind"], e["occurrence"], e["repeats"]) for e in events] == [
        ("bug", 1, 1), ("null-pointer", 1, 2), ("null-pointer", 2, 2), ("panic", 1, 1)]
    assert events[1]["signature"] == events[2]["signature"] != events[0]["signature"]
    rc, out, _ = run(capsys, "list", *args, "--by-signature", "--json")
    assert rc == 0
    groups = [json.loads(x) for x in out.splitlines()]
    assert [(g["kind"], g["count"], len(g["boots"])) for g in groups] == [
        ("bug", 1, 1), ("null-pointer", 2, 2), ("panic", 1, 1)]
    rc, out, _ = run(capsys, "list", *args)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].endswith("ended in a kernel panic: crashy: requested panic, task insmod "
                             f"(pid {events[3]['pid']}), kernel tainted OE.")
    assert lines[1] == "4 crash events in 4 boots, 3 distinct bugs:"
    assert sum("(seen 2x)" in line for line in lines) == 2


def test_last_boot_sentence(tmp_path: Path) -> None:
    """A crash shortly before the running boot started ended the last boot."""
    from memconsole.history import LAST_BOOT_WINDOW_NS, group_boots, group_events
    from memconsole.pstore import read_pstore_dir

    lab_fixture("6.12", "null", tmp_path / "p")
    records, _ = read_pstore_dir(tmp_path / "p")
    (boot,) = group_boots(records)
    (event,) = group_events(boot.id, boot.records)
    assert event.report is not None
    expected = ("ended in a kernel panic: BUG: unable to handle kernel NULL pointer dereference "
                "in crashy_null [crashy], "
                f"task insmod (pid {event.report.pid}), kernel tainted OE.")
    assert event.sentence(event.time_ns + 5 * 10**9) == "Last boot " + expected
    assert event.sentence(event.time_ns + LAST_BOOT_WINDOW_NS + 1) == f"Boot {boot.id} {expected}"
    assert event.sentence(event.time_ns - 1) == f"Boot {boot.id} {expected}"
    assert event.sentence(None) == f"Boot {boot.id} {expected}"
