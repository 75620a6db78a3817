"""The survival canary (memconsole.setup.canary): page format, verdicts,
the durable history, and the command.  Pages live in files here; the VM
drill (tests/lab/test_vm_doctor.py) runs the same code on a memmap range
through /dev/mem across a real warm reset and a cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memconsole.setup import canary
from memconsole.setup.canary import HEADER, PAGE_SIZE, Outcome, PageState

BOOT1 = uuid.UUID("11111111-2222-4333-8444-555555555555").bytes
BOOT2 = uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa").bytes
BOOT3 = uuid.UUID("bbbbbbbb-cccc-4ddd-8eee-ffffffffffff").bytes
T0 = 1_700_000_000_000_000_000


def test_page_layout_byte_by_byte() -> None:
    page = canary.encode_page(BOOT1, T0, 3)
    assert len(page) == PAGE_SIZE
    assert page[0:8] == b"MCCANARY"
    assert int.from_bytes(page[8:10], "little") == 1          # version
    assert int.from_bytes(page[10:12], "little") == 64        # header size
    assert int.from_bytes(page[12:16], "little") == 4096      # page size
    assert page[16:32] == BOOT1
    assert int.from_bytes(page[32:40], "little") == T0
    assert int.from_bytes(page[40:48], "little") == 3         # seq
    assert page[48:60] == bytes(12)                           # reserved
    assert int.from_bytes(page[60:64], "little") == zlib.crc32(page[:60])
    assert page[64:96] == __import__("hashlib").sha256(
        b"memconsole canary fill" + BOOT1 + bytes(4)).digest()
    parsed = canary.parse_page(bytes(page))
    assert (parsed.state, parsed.boot_id, parsed.time_ns, parsed.seq, parsed.changed) == (
        PageState.VALID, BOOT1, T0, 3, 0)


def test_page_states() -> None:
    assert canary.parse_page(bytes(PAGE_SIZE)).state is PageState.EMPTY
    junk = bytes(range(256)) * 16
    assert canary.parse_page(junk).state is PageState.FOREIGN
    assert canary.parse_page(junk).nonzero == 4096 - 16
    page = bytearray(canary.encode_page(BOOT1, T0, 1))
    page[20] ^= 0x01                       # a bit of the boot id: the header CRC fails
    assert canary.parse_page(bytes(page)).state is PageState.DAMAGED
    page = bytearray(canary.encode_page(BOOT1, T0, 1))
    page[1000] ^= 0x80                     # one bit of the fill
    page[4095] = 0
    parsed = canary.parse_page(bytes(page))
    assert parsed.state is PageState.VALID and parsed.changed in (1, 2)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=PAGE_SIZE + 100))
def test_any_bytes_are_a_verdict(data: bytes) -> None:
    parsed = canary.parse_page(data)
    assert isinstance(parsed.state, PageState)
    check = canary.assess("x", parsed, BOOT2, {"boot_id": str(uuid.UUID(bytes=BOOT1)),
                                               "time_ns": T0, "seq": 1}, T0)
    assert isinstance(check.outcome, Outcome)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=HEADER.size, max_size=HEADER.size))
def test_any_header_bytes_after_the_magic_are_a_verdict(head: bytes) -> None:
    page = b"MCCANARY" + head[8:] + bytes(PAGE_SIZE - HEADER.size)
    assert isinstance(canary.parse_page(bytes(page)).state, PageState)


def _written(boot: bytes) -> dict[str, object]:
    return {"boot_id": str(uuid.UUID(bytes=boot)), "time_ns": T0, "seq": 1}


def test_verdicts() -> None:
    page = canary.parse_page(canary.encode_page(BOOT1, T0, 4))
    survived = canary.assess("p", page, BOOT2, _written(BOOT1), T0 + 1)
    assert survived.outcome is Outcome.SURVIVED
    assert "4 resets in a row" in survived.detail
    assert canary.next_seq(survived) == 5
    assert canary.assess("p", page, BOOT1, _written(BOOT1), T0).outcome is Outcome.THIS_BOOT
    empty = canary.parse_page(bytes(PAGE_SIZE))
    lost = canary.assess("p", empty, BOOT2, _written(BOOT1), T0)
    assert lost.outcome is Outcome.LOST and "cleared (all zero)" in lost.detail
    assert canary.next_seq(lost) == 1
    first = canary.assess("p", empty, BOOT2, None, T0)
    assert first.outcome is Outcome.FIRST
    # The archive's record is of this very boot, and the page is empty: the
    # canary was overwritten within this boot; without an earlier boot's record
    # there is nothing to call lost.
    assert canary.assess("p", empty, BOOT2, _written(BOOT2), T0).outcome is Outcome.FIRST
    junk = canary.parse_page(b"\x5a" * PAGE_SIZE)
    assert canary.assess("p", junk, BOOT2, _written(BOOT1), T0).outcome is Outcome.LOST
    damaged = bytearray(canary.encode_page(BOOT1, T0, 1))
    damaged[2000] ^= 4
    verdict = canary.assess("p", canary.parse_page(bytes(damaged)), BOOT2, None, T0)
    assert verdict.outcome is Outcome.DAMAGED and "1 of 4032" in verdict.detail


def test_run_across_boots(tmp_path: Path) -> None:
    """Boot 1 writes, boot 2 finds it, a second run in boot 2 changes
    nothing, boot 3 finds the page cleared: lost."""
    spec, archive = str(tmp_path / "canary.page"), tmp_path / "archive"
    runs, warnings = canary.run([spec], archive, BOOT1, now_ns=T0)
    assert warnings == []
    assert runs[0].outcome == "first" and not runs[0].failed
    assert runs[0].written == {"boot_id": str(uuid.UUID(bytes=BOOT1)), "time_ns": T0, "seq": 1}
    assert Path(spec).stat().st_size == PAGE_SIZE

    runs, _ = canary.run([spec], archive, BOOT2, now_ns=T0 + 60 * 10**9)
    assert runs[0].outcome == "survived" and runs[0].written["seq"] == 2  # type: ignore[index]
    before = Path(spec).read_bytes()
    again, _ = canary.run([spec], archive, BOOT2, now_ns=T0 + 61 * 10**9)
    assert again[0].check.outcome is Outcome.THIS_BOOT  # type: ignore[union-attr]
    assert again[0].outcome == "survived" and again[0].written is None
    assert Path(spec).read_bytes() == before

    Path(spec).write_bytes(bytes(PAGE_SIZE))
    runs, _ = canary.run([spec], archive, BOOT3, now_ns=T0 + 120 * 10**9)
    assert runs[0].outcome == "lost" and runs[0].failed
    history = json.loads((archive / "canary.json").read_text())
    assert [r["outcome"] for r in history["results"]] == ["first", "survived", "lost"]
    assert history["written"][spec]["boot_id"] == str(uuid.UUID(bytes=BOOT3))
    assert history["written"][spec]["seq"] == 1
    assert (archive / "canary.json").stat().st_mode & 0o777 == 0o600


def test_check_only_records_and_writes_nothing(tmp_path: Path) -> None:
    spec, archive = str(tmp_path / "page"), tmp_path / "archive"
    canary.run([spec], archive, BOOT1, now_ns=T0)
    page = Path(spec).read_bytes()
    history = (archive / "canary.json").read_bytes()
    runs, _ = canary.run([spec], archive, BOOT2, write_new=False, keep=False)
    assert runs[0].outcome == "survived" and runs[0].written is None
    assert Path(spec).read_bytes() == page
    assert (archive / "canary.json").read_bytes() == history


def test_a_broken_history_is_started_afresh(tmp_path: Path) -> None:
    spec, archive = str(tmp_path / "page"), tmp_path / "archive"
    archive.mkdir()
    (archive / "canary.json").write_text("{not json")
    runs, warnings = canary.run([spec], archive, BOOT1, now_ns=T0)
    assert len(warnings) == 1 and "unusable" in warnings[0]
    assert runs[0].outcome == "first"
    assert json.loads((archive / "canary.json").read_text())["results"][0]["outcome"] == "first"


def test_one_bad_canary_does_not_stop_the_others(tmp_path: Path) -> None:
    good, archive = str(tmp_path / "page"), tmp_path / "archive"
    (tmp_path / "tiny").write_bytes(b"x" * 10)
    runs, _ = canary.run([str(tmp_path / "tiny"), good], archive, BOOT1, now_ns=T0)
    assert "too small" in runs[0].error and runs[0].failed
    assert runs[1].outcome == "first" and runs[1].written is not None


def test_mem_range_not_reserved_is_refused_before_dev_mem() -> None:
    # System RAM is never a canary: the ring's region rules refuse it.
    if os.geteuid() != 0:
        pytest.skip("needs root to read /proc/iomem addresses")
    with pytest.raises(Exception) as info:
        canary.read_page("mem:0x1000000:4096")
    assert "System RAM" in str(info.value) or "not shown as reserved" in str(info.value)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memconsole", "canary", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_command(tmp_path: Path) -> None:
    conf = tmp_path / "memconsole.conf"
    page = tmp_path / "canary.page"
    conf.write_text(f"canary = {page}\narchive = {tmp_path / 'archive'}\nbogus = 1\n")
    env = {"MEMCONSOLE_CONFIG": str(conf)}
    first = _cli(env=env)
    assert first.returncode == 0, first.stderr
    assert "unknown key 'bogus'" in first.stderr
    assert f"{page}: first:" in first.stdout
    assert "wrote this boot's canary" in first.stdout
    again = _cli("--json", env=env)
    assert again.returncode == 0, again.stderr
    obj = json.loads(again.stdout)
    # Checked earlier this boot: the recorded verdict stands, nothing is rewritten.
    assert obj["outcome"] == "first" and obj["written"] is None
    # The page was cleared and this boot's record is gone from the archive:
    # as a later boot would see it after a cold start.
    history = json.loads((tmp_path / "archive" / "canary.json").read_text())
    history["written"][str(page)]["boot_id"] = str(uuid.UUID(bytes=BOOT1))
    (tmp_path / "archive" / "canary.json").write_text(json.dumps(history))
    page.write_bytes(bytes(PAGE_SIZE))
    lost = _cli("--check", env=env)
    assert lost.returncode == 5, lost.stdout + lost.stderr
    assert ": lost: the canary of boot 11111111-" in lost.stdout
    none = _cli(env={"MEMCONSOLE_CONFIG": str(tmp_path / "missing.conf")})
    assert none.returncode == 4 and "no canary configured" in none.stderr
