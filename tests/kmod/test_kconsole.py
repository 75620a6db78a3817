"""memconsole.ko as sysfs shows it: the recorder stepping aside where the
module writes, and the kernel-console check, over a sysfs tree rebuilt
from what the module showed in the lab (tests/fixtures/kmod)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import FIXTURES
from memconsole.cli.main import main
from memconsole.errors import RegionError
from memconsole.ring import Ring
from memconsole.ring import kconsole as ring_kconsole
from memconsole.ring.kconsole import PARAMS, parse_params, read_kernel_console, writer_of
from memconsole.ring.regions import buffer_region, parse_spec
from memconsole.setup.kconsole import MODULES_LOAD, Check, check_kernel_console, config_ring

PARAMS_FILE = FIXTURES / "kmod" / "params-6.1.0-57.txt"


def _fixture() -> dict[str, str]:
    lines = PARAMS_FILE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def _sysfs(root: Path, **changes: str) -> Path:
    """A sysfs tree whose module/memconsole/parameters holds the fixture's
    files (each as the kernel shows it: the value and a newline)."""
    params = {**_fixture(), **changes}
    directory = root / PARAMS
    directory.mkdir(parents=True)
    for name, value in params.items():
        (directory / name).write_text(value + "\n")
    return root


def test_parse_params_of_the_real_module(tmp_path: Path) -> None:
    module = read_kernel_console(_sysfs(tmp_path))
    assert module is not None
    assert (module.region, module.address, module.size) == (
        "mem:0x7200000:0x100000", 0x7200000, 0x100000)
    assert module.state == "writing"
    assert module.attach == "continued: 2235 records, last seq 2235, 0 corrupt"
    assert module.boot_id == "93b52d69-f43d-4ad7-860e-d124e03e54ee"
    assert (module.records, module.last_seq) == (418, 2653)


def test_not_loaded_and_no_range(tmp_path: Path) -> None:
    assert read_kernel_console(tmp_path) is None
    # mem_address/mem_size stand in for an unreadable region parameter.
    params = {k: v.encode() + b"\n" for k, v in _fixture().items() if k != "region"}
    module = parse_params(params)
    assert module is not None and module.region == "mem:0x7200000:0x100000"
    assert parse_params({"state": b"writing\n"}) is None


def test_writer_of_same_overlapping_and_other_ranges(tmp_path: Path) -> None:
    module = read_kernel_console(_sysfs(tmp_path))
    assert writer_of(parse_spec("mem:0x7200000:1M"), module) is module
    assert writer_of(parse_spec("mem:0x7400000:1M"), module) is None
    assert writer_of(parse_spec(str(tmp_path / "ring")), module) is None
    assert writer_of(parse_spec("mem:0x7200000:1M"), None) is None
    with pytest.raises(RegionError, match="overlaps mem:0x7200000:0x100000"):
        writer_of(parse_spec("mem:0x7280000:1M"), module)


def test_record_steps_aside_where_the_module_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ring_kconsole, "SYSFS", _sysfs(tmp_path))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    # Returns before the source or the range is opened: no /dev/kmsg, no /dev/mem.
    assert main(["record", "--ring", "mem:0x7200000:1M", "--source", "/nonexistent"]) == 0
    err = capsys.readouterr().err
    assert err == ("memconsole record: mem:0x7200000:1M is written by memconsole.ko (state "
                   "writing, /sys/module/memconsole): not recording\n")
    # An overlapping range is refused, also before anything is opened.
    assert main(["record", "--ring", "mem:0x7100000:2M", "--source", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "overlaps mem:0x7200000:0x100000, the range memconsole.ko writes" in err
    assert len(err.splitlines()) == 1


def test_record_into_a_file_ignores_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ring_kconsole, "SYSFS", _sysfs(tmp_path / "sys"))
    log = tmp_path / "log.txt"
    log.write_text("one line\n")
    ring = tmp_path / "ring"
    assert main(["record", "--ring", str(ring), "--source", str(log)]) == 0
    assert "recording" in capsys.readouterr().err
    assert ring.stat().st_size > 0


def _ring_with(boot: str, mono_ns: int) -> tuple[bytes, int]:
    """A ring (written by the Python writer: the module writes the same
    format, tests/kmod/test_vm_kmod.py) whose newest record of *boot* is
    at *mono_ns*; and that record's seq."""
    data = bytearray(64 << 10)
    ring = Ring.attach(buffer_region(data), boot=uuid.UUID(boot).bytes)
    seq = ring.append(b"a line", pri=6, mono_ns=mono_ns, time_ns=1)
    return bytes(data), seq


def test_check_kernel_console(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path / "sys")
    procfs = tmp_path / "proc"
    procfs.mkdir()
    (procfs / "uptime").write_text("100.50 90.00\n")

    def run(ring: str | None, data: bytes | None = None, stale_s: float = 86400) -> Check:
        return check_kernel_console(ring, root=tmp_path, sysfs=sysfs, procfs=procfs,
                                    ring_bytes=data, stale_s=stale_s)

    check = run("mem:0x7200000:1M")
    assert (check.check, check.status, check.fix) == ("kernel-console", "ok", "")
    assert check.detail == (
        "memconsole.ko is writing into mem:0x7200000:0x100000 (continued: 2235 records, last "
        "seq 2235, 0 corrupt); 418 records since it was loaded, ring seq 2653; the configured "
        "ring (mem:0x7200000:1M)")

    other = run("mem:0x7400000:1M")
    assert other.status == "fail"
    assert other.detail.endswith("but the configured ring is mem:0x7400000:1M: the recorder "
                                 "writes another range than the module")

    boot = _fixture()["boot_id"]
    data, seq = _ring_with(boot, 90_000_000_000)
    recent = run(None, data)
    assert recent.status == "ok" and recent.detail.endswith(
        f"; newest record: ring seq {seq}, 10 s ago")
    stale = run(None, _ring_with(boot, 500_000_000)[0], stale_s=60)
    assert stale.status == "warn" and "100 s ago (over 60 s" in stale.detail
    foreign = run(None, _ring_with(str(uuid.uuid4()), 1)[0])
    assert foreign.status == "fail" and "no record of the module's boot" in foreign.detail

    stopped = check_kernel_console(sysfs=_sysfs(tmp_path / "b", state="stopped"))
    assert stopped.status == "fail" and "it no longer records" in stopped.detail

    empty = tmp_path / "c"
    assert check_kernel_console(root=empty, sysfs=empty).status == "ok"
    (empty / MODULES_LOAD.lstrip("/")).parent.mkdir(parents=True)
    (empty / MODULES_LOAD.lstrip("/")).write_text("memconsole\n")
    missing = check_kernel_console(root=empty, sysfs=empty)
    assert missing.status == "fail" and missing.fix.startswith("modprobe memconsole")


def test_config_ring() -> None:
    assert config_ring(b"# ring = mem:0x1000:4096\nring = mem:0x7200000:1M  # ours\n") == \
        "mem:0x7200000:1M"
    assert config_ring(b"ringsize = 4\n") is None
    assert config_ring(None) is None
