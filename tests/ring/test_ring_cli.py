"""``show --ring``, ``collect --ring`` and ``list`` with rings, on rings
written here and pstore records a real kernel left (tests/fixtures/lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import lab_fixture
from memconsole.cli import main
from memconsole.history import RingLog, attach_rings
from memconsole.ring import RecordType, Ring, current_boot_id
from memconsole.ring.regions import open_region

BOOT_A, BOOT_B, BOOT_C = b"\xaa" * 16, b"\xbb" * 16, b"\xcc" * 16
ID_A = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
ID_C = "cccccccc-cccc-cccc-cccc-cccccccccccc"
S = 10**9


@pytest.fixture(autouse=True)
def _no_env_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMCONSOLE_RING", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def write_boot(path: Path, boot: bytes, start_ns: int, lines: list[str], *,
               stop: bool = False, gap: int = 0) -> None:
    """One boot of a recorder: a start note, kernel lines one second apart
    (from *start_ns*), an optional overrun gap, an optional stop note."""
    region = open_region(str(path), write=True, create_size=1 << 18)
    ring = Ring.attach(region, boot=boot)
    ring.append(b"memconsole record: recording /dev/kmsg", rtype=RecordType.START,
                mono_ns=0, time_ns=start_ns)
    for i, line in enumerate(lines):
        if gap and i == len(lines) // 2:
            ring.append_gap(gap, i, mono_ns=i * S)
        ring.append(line.encode(), pri=6, source_seq=i + (gap if gap and i >= len(lines) // 2
                                                           else 0),
                    mono_ns=i * S, time_ns=start_ns + i * S)
    if stop:
        ring.append(b"memconsole record: stopped (SIGTERM)", rtype=RecordType.STOP,
                    mono_ns=len(lines) * S, time_ns=start_ns + len(lines) * S)
    ring.close()
    region.close()


def three_boots(path: Path, t0: int) -> None:
    write_boot(path, BOOT_A, t0, ["Linux version A", "a working", "a last words"], gap=5)
    write_boot(path, BOOT_B, t0 + 3600 * S, ["Linux version B", "b clean"], stop=True)
    write_boot(path, BOOT_C, t0 + 7200 * S, ["Linux version C", "c hangs here"])


T0 = 1_795_600_000 * S


def test_show_ring_previous_boot_all_and_json(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ring = tmp_path / "ring"
    three_boots(ring, T0)
    write_boot(ring, current_boot_id(), T0 + 9000 * S, ["Linux version now", "running"])
    rc, out, err = run(capsys, "show", "--ring", str(ring))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Boot {ID_C} (ring {ring}): 3 records"
    assert lines[1] == "[    0.000000] -- memconsole record: recording /dev/kmsg --"
    assert lines[3] == "[    1.000000] c hangs here"
    assert "without a clean stop: the boot ended in a hang, a reset or a crash" in lines[-1]
    rc, out, _ = run(capsys, "show", "--ring", str(ring), "--boot", "-2")
    assert "b clean" in out and "the recorder stopped cleanly" in out.splitlines()[-1]
    rc, out, _ = run(capsys, "show", "--ring", str(ring), "--boot", "0")
    assert "this boot, still running" in out.splitlines()[-1]
    rc, out, _ = run(capsys, "show", "--ring", str(ring), "--boot", "all")
    assert out.count("\nBoot ") + out.startswith("Boot ") == 4
    assert "[... 5 records lost by the source (overrun) ...]" in out
    rc, out, _ = run(capsys, "show", "--ring", str(ring), "--boot", ID_A[:8], "--json")
    objs = [json.loads(x) for x in out.splitlines()]
    assert objs[0]["type"] == "start" and objs[0]["boot"] == ID_A
    log = objs[1]
    assert {k: log[k] for k in ("seq", "boot", "time", "uptime", "type", "level", "facility",
                                "source_seq", "text")} == {
        "seq": 2, "boot": ID_A, "time": "2026-11-25T09:46:40.000000Z", "uptime": 0.0,
        "type": "log", "level": 6, "facility": 0, "source_seq": 0, "text": "Linux version A"}
    gap = next(o for o in objs if "gap" in o)
    assert gap == {"gap": 5, "boot": ID_A, "reason": "overrun", "after_seq": 2,
                   "first_source_seq": 1}
    rc, _, err = run(capsys, "show", "--ring", str(ring), "--boot", "-9")
    assert rc == 4 and "no boot -9" in err


def test_show_ring_garbage_missing_and_bad_boot(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"DBGC" + bytes(range(256)) * 64)
    rc, out, err = run(capsys, "show", "--ring", str(junk))
    assert rc == 4 and out == ""
    assert "not a memconsole ring: ramoops persistent_ram zone (signature DBGC)" in err
    rc, _, err = run(capsys, "show", "--ring", str(tmp_path / "none"))
    assert rc == 1 and "no such file" in err
    ring = tmp_path / "ring"
    three_boots(ring, T0)
    with pytest.raises(SystemExit) as exc:  # a bad --boot is a usage error
        run(capsys, "show", "--ring", str(ring), "--boot", "x")
    assert exc.value.code == 2 and "argument --boot: 'x' is not" in capsys.readouterr().err
    rc, _, err = run(capsys, "show", "--ring", "mem:0x7200000:1000")
    assert rc == 1 and "multiples of the page size" in err


def test_collect_ring_only_boots_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ring, pstore, archive = tmp_path / "ring", tmp_path / "pstore", tmp_path / "archive"
    pstore.mkdir()
    three_boots(ring, T0)
    before = ring.read_bytes()
    args = ("--pstore", str(pstore), "--archive", str(archive), "--ring", str(ring))
    rc, out, err = run(capsys, "collect", *args, "--json")
    assert rc == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    # The cleanly stopped boot B is not archived; A and C are, each in its own boot dir.
    assert [(r["status"], r["ring_boot"][:2]) for r in rows] == [("archived", "aa"),
                                                               ("archived", "cc")]
    assert [r["boot"] for r in rows] == ["20261125T094642Z", "20261125T114641Z"]
    assert ring.read_bytes() == before, "collect wrote to the ring"
    boot_dir = archive / "boots" / rows[0]["boot"]
    assert sorted(p.name for p in boot_dir.iterdir()) == [
        "console-ring", "console-ring.jsonl", "ring.json"]
    assert (boot_dir / "console-ring").stat().st_mode & 0o777 == 0o600
    text = (boot_dir / "console-ring").read_text()
    assert "a last words" in text and "[... 5 records lost" in text
    index = json.loads((boot_dir / "ring.json").read_text())
    assert index[0]["ring_boot"] == ID_A and index[0]["records"] == 4
    assert index[0]["missing"] == 5 and index[0]["stopped"] is False
    rc, out, err = run(capsys, "collect", *args, "--json")
    assert rc == 0 and [json.loads(x)["status"] for x in out.splitlines()] == ["duplicate"] * 2
    assert "0 archived, 2 already archived" in err
    rc, out, _ = run(capsys, "list", "--pstore", str(pstore), "--archive", str(archive),
                     "--json")
    events = [json.loads(x) for x in out.splitlines()]
    assert [e["kind"] for e in events] == ["unknown", "unknown"]
    assert events[0]["headline"] == ('hang or reset: console ended at 2026-11-25 09:46:42 UTC '
                                     '(uptime 2.0 s) with "a last words"')
    assert events[0]["sources"] == ["ring"] and events[0]["records"] == ["console-ring"]
    assert events[0]["ring"]["boot"] == ID_A and events[0]["ring"]["missing"] == 5
    rc, out, _ = run(capsys, "show", "--pstore", str(pstore), "--archive", str(archive))
    assert out.startswith("Boot 20261125T114641Z ended in a hang or reset: console ended at ")
    assert "[    1.000000] c hangs here" in out


def test_ring_and_ramoops_of_one_boot_are_one_event(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A real sysrq panic's pstore record (6.1 lab fixture) and a ring boot
    whose last record is a few seconds before the dump: one event, both
    sources, whether the ring is read live or after collect."""
    ring, pstore, archive = tmp_path / "ring", tmp_path / "pstore", tmp_path / "archive"
    lab_fixture("6.1", "sysrq", pstore)
    dump_ns = (pstore / "dmesg-ramoops-0").stat().st_mtime_ns
    write_boot(ring, BOOT_A, dump_ns - 3600 * S, ["Linux version old", "old hang"])
    write_boot(ring, BOOT_C, dump_ns - 30 * S, ["Linux version C"] + ["work"] * 27
               + ["about to panic"])
    base = ("--pstore", str(pstore), "--archive", str(archive))
    rc, out, err = run(capsys, "list", *base, "--ring", str(ring), "--json")
    assert rc == 0, err
    events = [json.loads(x) for x in out.splitlines()]
    assert [e["kind"] for e in events] == ["unknown", "panic"]
    panic = events[1]
    assert panic["sources"] == ["pstore", "ring"] and panic["ring"]["boot"] == ID_C
    assert panic["records"] == ["dmesg-ramoops-0", "console-ring"]
    assert panic["panic_reason"] == "sysrq triggered crash"
    rc, out, err = run(capsys, "collect", *base, "--ring", str(ring), "--json")
    assert rc == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    dump_boot = rows[0]["boot"]
    assert rows[0]["path"].endswith("dmesg-ramoops-0")
    ring_rows = {r["ring_boot"]: r["boot"] for r in rows[1:]}
    assert ring_rows[ID_C] == dump_boot        # archived beside the dump of the same boot
    assert ring_rows[ID_A] != dump_boot
    rc, out, _ = run(capsys, "list", *base, "--json")
    events = [json.loads(x) for x in out.splitlines()]
    assert [(e["kind"], e["sources"]) for e in events] == [
        ("unknown", ["ring"]), ("panic", ["pstore", "ring"])]
    rc, out, _ = run(capsys, "show", *base)
    assert "ended in a kernel panic: sysrq triggered crash" in out.splitlines()[0]
    assert "Records: dmesg-ramoops-0, console-ring" in out
    assert f"--- console-ring (memconsole ring, boot {ID_C}) ---" in out
    assert "about to panic" in out


def _log(first: int, last: int, stopped: bool = False, boot: str = "x") -> RingLog:
    return RingLog(boot, "console-ring", first, last, None, b"last", 3, 0, stopped, b"")


def test_attach_rings_window_and_next_boot() -> None:
    from memconsole.history import CrashEvent, Dump
    from memconsole.pstore import decode_record

    def event(t: int) -> CrashEvent:
        rec = decode_record("dmesg-ramoops-0", b"Panic#1 Part1\nKernel panic - not syncing: x\n",
                            t, "/x")
        return CrashEvent("b", (Dump((rec,)),), (), None)

    e = event(1000 * S)
    assert attach_rings([e], [_log(900 * S, 999 * S)])[0].ring is not None
    assert attach_rings([e], [_log(100 * S, 700 * S, boot="old")])[0].ring is not None  # 300 s
    out = attach_rings([e], [_log(100 * S, 699 * S)])
    assert next(x for x in out if x.dumps).ring is None
    assert [x.ring_only for x in out] == [True, False]     # the hang stays an event
    # ...never past the next boot's first record:
    out = attach_rings([e], [_log(100 * S, 800 * S, boot="r1"), _log(999 * S, 1100 * S,
                                                                      boot="r2")])
    panic = next(x for x in out if x.dumps)
    assert panic.ring is not None and panic.ring.ring_boot == "r2"
    # A ring boot that stopped cleanly and matches nothing is no event.
    assert attach_rings([], [_log(1, 2, stopped=True)]) == []
    (hang,) = attach_rings([], [_log(1 * S, 5 * S)])
    assert hang.kind == "unknown" and hang.boot == "19700101T000005Z"
    assert hang.to_json()["sources"] == ["ring"]
