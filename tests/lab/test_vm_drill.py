"""End to end on real kernels: crash, warm reboot, ``memconsole collect`` and
``memconsole list --json`` inside the rebooted guest.  Every assertion is on
what the guest itself printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import kernel_for
from memconsole.cli.demo import STAGE2
from memconsole.lab import PANIC_EVENTS

pytestmark = pytest.mark.vm

# Crash kind -> (expected kind, expected comm prefix, expected panic reason prefix).
EXPECTED = PANIC_EVENTS

CAPTURE = """\
    mkdir -p "$OUT/pstore"
    for f in /sys/fs/pstore/*; do
        [ -e "$f" ] && cp "$f" "$OUT/pstore/" && stat -c "%n %.9Y" "$f" >> "$OUT/pstore.mtimes"
    done
"""


# On 6.1 four kinds of four mechanisms (an oops, panic_on_warn, the hung-task
# detector, sysrq) in every suite, the other eight with MEMCONSOLE_LONG=1
# (tests/conftest.py: the time budget).  On 6.12 every kind in every suite but
# three: null, hung and sysrq crash on 6.12 in every suite in the soak's short
# run (tests/lab/test_vm_soak.py: collected at every boot, each event's kind,
# task and panic reason checked as here), so their drills here are long.
EVERY_SUITE_61 = {"null", "warn", "hung", "sysrq"}
IN_SOAK_612 = {"null", "hung", "sysrq"}
KIND_CASES = [
    pytest.param("6.12", a, marks=pytest.mark.long) if a in IN_SOAK_612 else ("6.12", a)
    for a in sorted(EXPECTED)] + [
    ("6.1", a) if a in EVERY_SUITE_61 else pytest.param("6.1", a, marks=pytest.mark.long)
    for a in sorted(EXPECTED)]


@pytest.mark.parametrize("release, action", KIND_CASES)
def test_crash_collect_list(lab, tmp_path: Path, release: str, action: str) -> None:  # type: ignore[no-untyped-def]
    from memconsole.lab import Drill

    kernel = kernel_for(release)
    result = lab.run(Drill(kernel, action=action, stage2=CAPTURE + STAGE2), tmp_path / "drill")

    assert result.boots == 2
    # collect archived everything and erased pstore.
    assert result.output("collect.rc").strip() == "0", result.output("collect.err")
    archive_ls = result.output("archive.ls")
    assert "dmesg-ramoops-" in archive_ls, archive_ls
    assert "records.json" in archive_ls
    assert "dmesg-ramoops" not in result.output("pstore-after.ls")
    captured = sorted(p.name for p in (result.out_dir / "pstore").iterdir())
    assert captured, "the rebooted guest saw no pstore records"
    for name in captured:
        assert name in archive_ls

    events = [json.loads(line) for line in result.output("list.json").splitlines()]
    assert len(events) == 1, events
    event = events[0]
    kind, comm, reason = EXPECTED[action]
    assert event["kind"] == kind, event
    assert (event["comm"] or "").startswith(comm), event
    if reason is None:
        assert "panic_on_warn set" in (event["panic_reason"] or ""), event
    else:
        assert (event["panic_reason"] or "").startswith(reason), event
    assert sorted(event["records"]) == captured
    # show opens with a sentence about the crash, then the log.
    show = result.output("show.txt")
    # The crash happened seconds before the guest's current boot: "Last boot".
    assert show.startswith("Last boot ended in a kernel panic: "), show.splitlines()[0]
    assert "Kernel panic - not syncing" in show


@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_two_crashed_boots_are_two_events(lab, tmp_path: Path, release: str) -> None:  # type: ignore[no-untyped-def]
    """Boot 1 oopses (Oops#1 in zone 0, Panic#2 in zone 1), boot 2 panics by
    sysrq (Panic#1 overwrites zone 0), boot 3 collects: slot order says boot 2
    came first, the records' own times say otherwise."""
    from memconsole.lab import Drill

    result = lab.run(Drill(kernel_for(release), action="null", then=("sysrq",),
                           stage2=CAPTURE + STAGE2), tmp_path / "drill")
    assert result.boots == 3
    assert result.output("collect.rc").strip() == "0"
    events = [json.loads(line) for line in result.output("list.json").splitlines()]
    assert [(e["kind"], e["comm"], e["panic_reason"], e["records"]) for e in events] == [
        ("null-pointer", "insmod", "Fatal exception", ["dmesg-ramoops-1"]),
        ("panic", "sh", "sysrq triggered crash", ["dmesg-ramoops-0"]),
    ]
    assert events[0]["boot"] != events[1]["boot"]
    assert events[0]["time"] < events[1]["time"]
    assert "sysrq triggered crash" in result.output("show.txt").splitlines()[0]


def test_collect_after_systemd_pstore(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """systemd-pstore (the real binary, run in the rebooted guest) moves the
    records to /var/lib/systemd/pstore first; collect archives them from there
    and leaves systemd's copies alone."""
    from conftest import require
    from memconsole.lab import Drill

    require(Path("/lib/systemd/systemd-pstore").exists(),
            "systemd-pstore is not installed (package systemd)")
    stage2 = """
    /lib/systemd/systemd-pstore; echo $? > "$OUT/systemd-pstore.rc"
    ls /var/lib/systemd/pstore > "$OUT/systemd.ls"
    mc collect --json > "$OUT/collect.json" 2> "$OUT/collect.err"; echo $? > "$OUT/collect.rc"
    ls /var/lib/systemd/pstore > "$OUT/systemd-after.ls"
    mc list --json > "$OUT/list.json"
"""
    result = lab.run(Drill(kernel_for("6.1"), action="sysrq", stage2=stage2), tmp_path / "d")
    assert result.output("systemd-pstore.rc").strip() == "0"
    moved = result.output("systemd.ls").split()
    assert "dmesg-ramoops-0" in moved and "dmesg.txt" in moved
    assert result.output("collect.rc").strip() == "0", result.output("collect.err")
    (entry,) = [json.loads(x) for x in result.output("collect.json").splitlines()]
    assert entry["status"] == "archived" and entry["erased"] is False
    assert entry["path"] == "/var/lib/systemd/pstore/dmesg-ramoops-0"
    assert result.output("systemd-after.ls").split() == moved
    (event,) = [json.loads(x) for x in result.output("list.json").splitlines()]
    assert event["kind"] == "panic" and event["panic_reason"] == "sysrq triggered crash"


def test_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's main job, as a user runs it (temporary work directory):
    exit 0 and the recovered report on stdout."""
    from memconsole.cli import main

    kernel_for("6.1")
    rc = main(["demo", "--kernel", "6.1", "--crash", "panic"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("Last boot ended in a kernel panic: crashy: requested panic"), out[:200]
    assert "memconsole demo: the guest collected: memconsole collect: 1 archived" in err
