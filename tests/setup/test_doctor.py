"""``memconsole doctor`` on trees captured from a real guest
(tests/fixtures/doctor, recipe capture.py there: Debian 6.12 and 6.1 under
QEMU, each tree one step of the drills in tests/lab/test_vm_doctor.py).  The
configuration is the one those drills wrote; the canary's history is made
by memconsole.setup.canary itself for the tree's boot id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import FIXTURES
from memconsole.config import Config
from memconsole.setup import canary
from memconsole.setup.doctor import CHECKS, Finding, Paths, Status, run_checks

DOCTOR = FIXTURES / "doctor"
CFG = Config(ramoops="mem:0x7000000:1M", ring="mem:0x7100000:1M",
             canary="mem:0x7200000:4096", method="memmap", panic=1)
EARLIER = uuid.UUID("11111111-2222-4333-8444-555555555555").bytes
T0 = 1_700_000_000_000_000_000


@pytest.fixture(params=["6.12", "6.1"])
def trees(request: pytest.FixtureRequest) -> Path:
    """The captured trees of one kernel (Debian 6.12, 6.1)."""
    return DOCTOR / str(request.param)


def tree(trees: Path, tmp_path: Path, name: str) -> Paths:
    """A copy of the captured tree *name* (so a test may change it)."""
    dst = tmp_path / name
    shutil.copytree(trees / name / "root", dst, symlinks=True)
    # Every captured tree had /sys/fs/pstore (empty when nothing waited, a
    # bare mount point when unmounted); git keeps no empty directory.
    (dst / "sys" / "fs" / "pstore").mkdir(parents=True, exist_ok=True)
    return Paths.of_tree(dst)


def boot_id(paths: Paths) -> bytes:
    return canary.read_boot_id(paths.procfs)


def canary_result(paths: Paths, page: bytes, cfg: Config = CFG,
                  written: dict[str, object] | None = None) -> None:
    """What ``memconsole canary`` records when this boot finds *page*."""
    assert cfg.canary is not None
    check = canary.assess(cfg.canary, canary.parse_page(page), boot_id(paths), written, T0)
    canary.record(paths.under(cfg.archive), [check], {})


def survived(paths: Paths) -> None:
    canary_result(paths, canary.encode_page(EARLIER, T0 - 60 * 10**9, 1))


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    assert [f.check for f in findings] == list(CHECKS)
    return {f.check: f for f in findings}


def statuses(findings: list[Finding]) -> dict[str, str]:
    return {f.check: f.status.value for f in findings}


def test_healthy_tree_is_all_ok(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "healthy")
    survived(paths)
    found = by_check(run_checks(CFG, paths))
    assert statuses(list(found.values())) == dict.fromkeys(CHECKS, "ok"), found
    assert found["ramoops"].detail == ("loaded: region 0x7000000+0x100000, record_size 16384, "
                                       "max_reason 2")
    assert found["backend"].detail == "ramoops holds the pstore backend"
    assert found["pstore-mount"].detail == "pstore mounted at /sys/fs/pstore"
    assert found["panic"].detail.startswith("kernel.panic = 1: reboots 1 s after a panic; "
                                            "an oops panics too")
    assert found["recorder"].detail.startswith("memconsole record (pid ")
    assert "recording into mem:0x7100000:1M" in found["recorder"].detail
    assert "survived" in found["canary"].detail and "(1 of 1 checks survived)" in \
        found["canary"].detail
    assert found["reservation"].detail == (
        "ramoops 0x7000000+0x100000, ring 0x7100000+0x100000, canary 0x7200000+0x1000: "
        "reserved (memmap= on the command line, Reserved in /proc/iomem)")
    assert all(f.fix == "" for f in found.values())


def test_records_waiting_and_no_recorder_yet(trees: Path, tmp_path: Path) -> None:
    """Right after the warm reset: the crash's records wait, the recorder
    has not started, the canary is not checked in this boot yet."""
    paths = tree(trees, tmp_path, "pending")
    found = by_check(run_checks(CFG, paths))
    names = sorted(p.name for p in (paths.sysfs / "fs/pstore").iterdir())
    assert names, "the capture should hold the crash's records"
    assert found["records"].status is Status.WARN
    assert found["records"].detail.startswith(f"{len(names)} records wait in /sys/fs/pstore "
                                              f"({names[0]}")
    assert "memconsole collect" in found["records"].fix
    assert found["recorder"].status is Status.FAIL
    assert found["canary"].status is Status.WARN  # no result at all in this archive


@pytest.mark.parametrize("name, check, detail, fix", [
    ("recorder-stopped", "recorder", "no memconsole record is recording into "
     "mem:0x7100000:1M", "memconsole-record.service"),
    ("no-panic", "panic", "kernel.panic = 0: a panicked machine waits for ever",
     "sysctl kernel.panic=1"),
    ("pstore-unmounted", "pstore-mount", "pstore is not mounted",
     "mount -t pstore pstore /sys/fs/pstore"),
    ("ramoops-unloaded", "ramoops", "ramoops is not loaded", "modprobe ramoops"),
])
def test_each_fault_fails_its_line(trees: Path, tmp_path: Path, name: str, check: str,
                                   detail: str, fix: str) -> None:
    paths = tree(trees, tmp_path, name)
    survived(paths)
    found = by_check(run_checks(CFG, paths))
    assert found[check].status is Status.FAIL, found[check]
    assert detail in found[check].detail
    assert fix in found[check].fix


def test_faults_add_up_one_line_each(trees: Path, tmp_path: Path) -> None:
    """The drill piles the faults up; each tree fails exactly one more line
    (ramoops removed also leaves pstore without a backend)."""
    steps = [("healthy", set()), ("recorder-stopped", {"recorder"}), ("no-panic", {"panic"}),
             ("pstore-unmounted", {"pstore-mount"}), ("ramoops-unloaded",
                                                       {"ramoops", "backend"})]
    failed: set[str] = set()
    for name, new in steps:
        paths = tree(trees, tmp_path, name)
        survived(paths)
        now = {f.check for f in run_checks(CFG, paths) if f.status is Status.FAIL}
        assert now - failed == new, (name, now, failed)
        failed = now


def test_no_backend_after_rmmod(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "ramoops-unloaded")
    assert (paths.sysfs / "module/pstore/parameters/backend").read_text().strip() == "(null)"
    found = by_check(run_checks(CFG, paths))
    assert found["backend"].detail == ("no pstore backend is registered (ramoops is not "
                                       "loaded)")
    # Without ramoops's parameters the configured ranges are still checked.
    assert found["reservation"].status is Status.OK


def test_efi_pstore_holds_the_backend(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "efi-backend")
    found = by_check(run_checks(CFG, paths))
    assert found["backend"].status is Status.FAIL
    assert found["backend"].detail.startswith("efi_pstore holds the pstore backend")
    assert "pstore.backend=efi_pstore is on the kernel command line" in found["backend"].detail
    assert found["backend"].fix.startswith("replace pstore.backend=efi_pstore by "
                                           "pstore.backend=ramoops on the kernel command line")
    assert found["ramoops"].status is Status.OK


def test_small_records(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "small-records")
    found = by_check(run_checks(CFG, paths))
    assert found["ramoops"].status is Status.WARN
    assert "records of 4096 bytes cut a crash report short" in found["ramoops"].detail
    assert "record_size=0x4000" in found["ramoops"].fix


def test_ramoops_elsewhere_than_configured(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "healthy")
    cfg = replace(CFG, ramoops="mem:0x8000000:1M")
    found = by_check(run_checks(cfg, paths, config_name="/etc/memconsole.conf"))
    assert found["ramoops"].status is Status.FAIL
    assert found["ramoops"].detail == ("ramoops uses 0x7000000+0x100000, but "
                                       "/etc/memconsole.conf says ramoops = mem:0x8000000:1M")
    assert "mem_address=0x8000000 mem_size=0x100000" in found["ramoops"].fix
    # And 0x8000000 is System RAM in that boot: the reservation line says so.
    assert found["reservation"].status is Status.FAIL
    assert "ramoops 0x8000000+0x100000 lies in System RAM" in found["reservation"].detail
    assert "memmap=" in found["reservation"].fix


def test_reservation_not_on_the_command_line(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "healthy")
    cmdline = paths.procfs / "cmdline"
    words = [w for w in cmdline.read_text().split() if w != "memmap=0x101000$0x7100000"]
    cmdline.write_text(" ".join(words) + "\n")
    found = by_check(run_checks(CFG, paths))
    assert found["reservation"].status is Status.FAIL
    assert "ring 0x7100000+0x100000 is not in a memmap= range" in found["reservation"].detail
    assert found["reservation"].fix.startswith("memmap=0x201000$0x7000000 on the kernel "
                                               "command line")


def test_iomem_without_addresses(trees: Path, tmp_path: Path) -> None:
    """/proc/iomem as a user other than root sees it (captured as uid 65534)."""
    paths = tree(trees, tmp_path, "small-records")
    shutil.copy(paths.procfs / "iomem.nonroot", paths.procfs / "iomem")
    found = by_check(run_checks(CFG, paths))
    assert found["reservation"].status is Status.WARN
    assert found["reservation"].fix == "run as root"


def test_canary_lost_and_first(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "cold-start")
    written = {"boot_id": str(uuid.UUID(bytes=EARLIER)), "time_ns": T0, "seq": 3}
    canary_result(paths, bytes(canary.PAGE_SIZE), written=written)
    found = by_check(run_checks(CFG, paths))
    assert found["canary"].status is Status.FAIL
    assert found["canary"].detail.startswith("lost at ")
    assert "was lost: the page was cleared (all zero)" in found["canary"].detail
    assert "reboot warm" in found["canary"].fix

    paths = tree(trees, tmp_path / "2", "boot1")
    canary_result(paths, bytes(canary.PAGE_SIZE))
    found = by_check(run_checks(CFG, paths))
    assert found["canary"].status is Status.WARN
    assert found["canary"].detail.startswith("the first canary was written at ")


def test_canary_checked_in_another_boot(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "healthy")
    other = tree(trees, tmp_path / "other", "boot1")
    # boot1's tree checked the canary; the healthy tree is a later boot.
    canary_result(other, canary.encode_page(EARLIER, T0, 1))
    shutil.copytree(other.under(CFG.archive), paths.under(CFG.archive))
    found = by_check(run_checks(CFG, paths))
    assert found["canary"].status is Status.WARN
    assert found["canary"].detail.startswith("not checked in this boot (last: survived")
    assert found["canary"].fix.startswith("memconsole canary")


def test_no_canary_configured(trees: Path, tmp_path: Path) -> None:
    found = by_check(run_checks(replace(CFG, canary=None), tree(trees, tmp_path, "healthy")))
    assert found["canary"].status is Status.WARN
    assert "memconsole setup" in found["canary"].fix
    assert found["reservation"].detail.startswith("ramoops 0x7000000+0x100000, ring "
                                                  "0x7100000+0x100000: reserved")


HOST_PSTORE_UNIT = Path("/lib/systemd/system/systemd-pstore.service")


def _systemd(paths: Paths, *, collect_before: bool = False, conf: str = "",
             dropin: str = "") -> None:
    """systemd as PID 1 with Debian's systemd-pstore.service (the host's own
    file) enabled, and optionally memconsole's collect unit and settings."""
    (paths.under("run/systemd/system")).mkdir(parents=True)
    unit_dir = paths.under("lib/systemd/system")
    wants = unit_dir / "sysinit.target.wants"
    wants.mkdir(parents=True)
    shutil.copy(HOST_PSTORE_UNIT, unit_dir / "systemd-pstore.service")
    (wants / "systemd-pstore.service").symlink_to("../systemd-pstore.service")
    if collect_before:
        etc = paths.under("etc/systemd/system")
        (etc / "sysinit.target.wants").mkdir(parents=True)
        (etc / "memconsole-collect.service").write_text(
            "[Unit]\nBefore=systemd-pstore.service sysinit.target shutdown.target\n"
            "[Service]\nType=oneshot\nExecStart=memconsole collect\n")
        (etc / "sysinit.target.wants" / "memconsole-collect.service").symlink_to(
            "../memconsole-collect.service")
    if conf:
        d = paths.under("etc/systemd/pstore.conf.d")
        d.mkdir(parents=True)
        (d / "50-test.conf").write_text(f"[PStore]\n{conf}\n")
    if dropin:
        d = paths.under("etc/systemd/system/systemd-pstore.service.d")
        d.mkdir(parents=True)
        (d / "memconsole.conf").write_text(f"[Unit]\n{dropin}\n")


@pytest.mark.skipif(not HOST_PSTORE_UNIT.exists(), reason="no systemd-pstore.service here")
@pytest.mark.parametrize("setup, status, words", [
    ({}, "warn", "ordered after modprobe@efi_pstore only"),
    ({"dropin": "After=systemd-modules-load.service"}, "ok", "moves records to "
     "/var/lib/systemd/pstore"),
    ({"collect_before": True}, "ok", "memconsole-collect.service runs before it"),
    ({"conf": "Storage=journal"}, "fail", "moves each record into the journal and erases it"),
    ({"conf": "Storage=journal\nUnlink=no", "dropin": "After=systemd-modules-load.service"},
     "ok", "Storage=journal, Unlink=no"),
    ({"conf": "Storage=none"}, "ok", "leaves the records alone"),
    ({"conf": "Storage=journal", "collect_before": True}, "ok", "runs before it"),
])
def test_systemd_pstore(trees: Path, tmp_path: Path, setup: dict[str, object], status: str,
                        words: str) -> None:
    paths = tree(trees, tmp_path, "healthy")
    _systemd(paths, **setup)  # type: ignore[arg-type]
    found = by_check(run_checks(CFG, paths))["systemd-pstore"]
    assert found.status.value == status, found
    assert words in found.detail


def test_systemd_pstore_masked_or_absent(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "healthy")
    paths.under("run/systemd/system").mkdir(parents=True)
    assert by_check(run_checks(CFG, paths))["systemd-pstore"].detail == (
        "systemd-pstore is not installed")
    etc = paths.under("etc/systemd/system")
    etc.mkdir(parents=True)
    (etc / "systemd-pstore.service").symlink_to("/dev/null")
    assert "masked" in by_check(run_checks(CFG, paths))["systemd-pstore"].detail


def test_ram_wipe_variable(trees: Path, tmp_path: Path) -> None:
    """UEFI's MemoryOverwriteRequestControl as efivarfs shows it (4 bytes of
    attributes, then the value).  QEMU shows none without a TPM, so this
    file is made here, in the layout efivarfs gives every variable."""
    paths = tree(trees, tmp_path, "healthy")
    efivars = paths.sysfs / "firmware/efi/efivars"
    efivars.mkdir(parents=True)
    assert by_check(run_checks(CFG, paths))["ram-wipe"].status is Status.WARN  # not mounted
    (efivars / "Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(b"\x07\0\0\0\x01")
    assert by_check(run_checks(CFG, paths))["ram-wipe"].status is Status.OK
    mor = efivars / "MemoryOverwriteRequestControl-e20939be-32d4-41be-a150-897f85d49829"
    mor.write_bytes(b"\x07\0\0\0\x01")
    found = by_check(run_checks(CFG, paths))["ram-wipe"]
    assert found.status is Status.WARN and "= 1: the firmware wipes RAM" in found.detail
    mor.write_bytes(b"\x07\0\0\0\x00")
    assert by_check(run_checks(CFG, paths))["ram-wipe"].status is Status.OK


def test_unreadable_parts_are_warnings_not_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "proc").mkdir(parents=True)
    (empty / "sys").mkdir()
    found = by_check(run_checks(CFG, Paths.of_tree(empty)))
    assert found["pstore-mount"].status is Status.WARN
    assert found["panic"].status is Status.WARN
    assert found["reservation"].status is Status.WARN
    assert found["ramoops"].status is Status.FAIL  # no /sys/module/ramoops: not loaded


def _cli(*args: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memconsole", "doctor", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MEMCONSOLE_CONFIG": str(conf)})


def test_command_json_schema_and_exit_status(trees: Path, tmp_path: Path) -> None:
    conf = tmp_path / "memconsole.conf"
    conf.write_text("ramoops = mem:0x7000000:1M\nring = mem:0x7100000:1M\n"
                    "canary = mem:0x7200000:4096\nmethod = memmap\npanic = 1\nnonsense\n")
    healthy = tree(trees, tmp_path, "healthy")
    survived(healthy)
    ok = _cli("--json", "--root", str(healthy.root), conf=conf)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "not KEY = VALUE" in ok.stderr  # the bad line warns, doctor goes on
    rows = [json.loads(line) for line in ok.stdout.splitlines()]
    assert [r["check"] for r in rows] == list(CHECKS)
    assert all(set(r) == {"check", "status", "detail", "fix"} for r in rows)
    assert {r["status"] for r in rows} == {"ok"}
    bad = _cli("--root", str(tree(trees, tmp_path, "no-panic").root), conf=conf)
    assert bad.returncode == 5
    lines = bad.stdout.splitlines()
    assert len(lines) == len(CHECKS) + 1
    panic = next(ln for ln in lines if ln.split()[1] == "panic")
    assert panic.startswith("FAIL  panic ") and " -- fix: panic=1 on the kernel" in panic
    assert lines[-1].startswith("doctor: ") and lines[-1].endswith(" fail")


def _module_params(paths: Paths, **changes: str) -> None:
    """memconsole.ko's parameters as the module showed them in the lab
    (tests/fixtures/kmod), written into the tree's sysfs."""
    lines = (FIXTURES / "kmod" / "params-6.1.0-57.txt").read_text().splitlines()
    params = {**dict(line.split("=", 1) for line in lines), **changes}
    directory = paths.sysfs / "module" / "memconsole" / "parameters"
    directory.mkdir(parents=True)
    for name, value in params.items():
        (directory / name).write_text(value + "\n")


def test_kernel_console_is_the_recorder(trees: Path, tmp_path: Path) -> None:
    # The recorder was stopped in this tree: with memconsole.ko writing the
    # configured ring, the recorder line is the module's and is ok.
    paths = tree(trees, tmp_path, "recorder-stopped")
    assert by_check(run_checks(CFG, paths))["recorder"].status is Status.FAIL
    cfg = Config(ramoops=CFG.ramoops, ring="mem:0x7200000:1M", canary=None,
                 method="memmap", panic=1)
    _module_params(paths)
    line = by_check(run_checks(cfg, paths))["recorder"]
    assert line.status is Status.OK, line
    assert line.detail.startswith("kernel console: memconsole.ko is writing into "
                                  "mem:0x7200000:0x100000"), line.detail
    # The module on another range than the configured ring: one writer too many.
    line = by_check(run_checks(CFG, paths))["recorder"]
    assert line.status is Status.FAIL and "another range" in line.detail, line
    assert "memconsole setup --kernel-console" in line.fix


def test_kernel_console_set_up_but_not_loaded(trees: Path, tmp_path: Path) -> None:
    paths = tree(trees, tmp_path, "healthy")
    conf = paths.under("/etc/modules-load.d/memconsole-kmod.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("memconsole\n")
    line = by_check(run_checks(CFG, paths))["recorder"]
    assert line.status is Status.FAIL and "not loaded" in line.detail, line
    assert line.fix.startswith("modprobe memconsole")
