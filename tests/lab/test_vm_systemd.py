"""memconsole's systemd units in a real boot, systemd as PID 1 (Debian 6.1
and 6.12; the host's root and systemd 252 under a volatile overlay,
docs/vmlab.md).  One QEMU process, three boots:

1. ramoops is loaded by the collect unit's ``modprobe@ramoops`` (options in
   /etc/modprobe.d only, nothing in modules-load.d); the recorder unit
   formats the ring on a memmap range through /dev/mem and is READY
   (Type=notify: active) before ``echo c > /proc/sysrq-trigger``;
2. the collect unit ran after ramoops and before systemd-pstore, archived
   the panic's records and the first boot's ring, and wrote one journal
   entry; systemd-pstore ran too and moved the same records (nothing lost to
   either); the recorder is READY again; then ``echo b`` (a reset, no panic);
3. the collect unit archived the second boot from the ring as a hang or
   reset and wrote one journal entry for it, none again for the panic
   (``memconsole list`` of the archive the guest left is run here).

Every assertion is on what the guest's systemd, journal and memconsole
showed, and on the archive the guest wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import heavy_kernels, kernel_for
from memconsole.cli import main
from memconsole.lab import DrillResult

pytestmark = pytest.mark.vm

RING = "mem:0x7200000:1M"
MESSAGE_ID = "2163281d23394f449b6023c81a5a83a3"
UNITS = ("memconsole-collect.service", "memconsole-record.service", "systemd-pstore.service",
         "modprobe@ramoops.service")
PROPS = ("ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts", "Type",
         "ConditionResult", "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic",
         "StatusText")

STAGE = rf"""
n=0
until [ "$(systemctl show -P ActiveState memconsole-record.service)" = active ]; do
    n=$((n + 1)); [ $n -gt 600 ] && break; sleep 0.5
done
for u in {" ".join(UNITS)}; do
    systemctl show "$u" {" ".join("-p " + p for p in PROPS)} > "$OUT/$u.$boot.show"
    journalctl -b -u "$u" -o cat --no-pager > "$OUT/$u.$boot.journal"
done
systemctl status --no-pager {" ".join(UNITS[:3])} > "$OUT/status.$boot.txt" 2>&1
journalctl -b -o json --all --no-pager MESSAGE_ID={MESSAGE_ID} > "$OUT/entries.$boot.json"
journalctl -b -o json --no-pager -n 1 > "$OUT/last.$boot.json"
ls -A /sys/fs/pstore > "$OUT/pstore.$boot.ls"
(cd /var/lib/systemd/pstore && find . -type f -exec stat -c '%n %Y' {{}} + \
    && find . -type f -exec sha256sum {{}} +) > "$OUT/systemd-pstore.$boot.txt" 2>&1
cat /sys/module/ramoops/parameters/mem_address > "$OUT/ramoops.$boot.txt" 2>&1
systemd-analyze > "$OUT/analyze.$boot.txt" 2>&1
case $boot in
    1)
        echo "memconsole-lab: last words of boot 1" > /dev/kmsg
        sleep 2
        echo "memconsole-lab: trigger"
        echo c > /proc/sysrq-trigger
        ;;
    2)
        mc list --json > "$OUT/list.2.json" 2> "$OUT/list.2.err"
        systemctl start memconsole-lab-probe.service
        journalctl -b -u memconsole-lab-probe.service -o cat --no-pager > "$OUT/probe.journal"
        echo "memconsole-lab: last words of boot 2" > /dev/kmsg
        sleep 2
        echo "memconsole-lab: trigger"
        echo b > /proc/sysrq-trigger
        ;;
esac
"""


def _show(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _entries(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# Run with the collect unit's own sandbox (the installed unit with another
# ExecStart): where may it write?  pstore refuses to create files (EACCES)
# but is mounted writable, so collect can erase records there when
# systemd-pstore is not enabled; the rest of the system is read-only.
PROBE = r"""#!/bin/sh
for d in /sys/fs/pstore /var/lib/memconsole /var/lib/systemd/pstore /etc /usr; do
    if err=$(touch "$d/.memconsole-probe" 2>&1); then
        rm -f "$d/.memconsole-probe"; echo "probe $d: writable"
    else
        echo "probe $d: ${err##*: }"
    fi
done
"""


def _install(sysroot: Path) -> None:
    from memconsole.setup.units import install_units

    install_units(sysroot, reload=False)
    units = sysroot / "etc/systemd/system"
    collect = (units / "memconsole-collect.service").read_text()
    probe = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/sh /memconsole-lab/probe.sh",
                   collect.split("[Install]")[0])
    (units / "memconsole-lab-probe.service").write_text(probe)
    (sysroot.parent / "probe.sh").write_text(PROBE)


@pytest.mark.parametrize("release", heavy_kernels("6.12"))
def test_units_across_crash_and_reset(lab, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                      release: str) -> None:
    from memconsole.lab import Ramoops, SystemdDrill

    ramoops = Ramoops(record_size=0x4000)
    options = " ".join(ramoops.module_args())
    drill = SystemdDrill(
        kernel_for(release), stage=STAGE, ramoops=ramoops, boots=3, install=_install,
        files={"/etc/default/memconsole": f"MEMCONSOLE_RING={RING}\n",
               "/etc/modprobe.d/memconsole-lab.conf": f"options ramoops {options}\n",
               # Python under TCG on a loaded host: more than the unit's 5 minutes.
               "/etc/systemd/system/memconsole-collect.service.d/lab.conf":
               "[Service]\nTimeoutStartSec=20min\n"},
        extra_cmdline=("memmap=1M$0x7200000",), timeout=2400)
    check(lab.run_systemd(drill, tmp_path / "drill"), ramoops.mem_address, capsys)


def check(result: DrillResult, mem_address: int, capsys: pytest.CaptureFixture[str]) -> None:
    """What the drill must have shown (also run on a kept drill directory)."""
    out = result.output
    assert result.boots == 3
    show = {(u, b): _show(out(f"{u}.{b}.show")) for u in UNITS for b in (1, 2, 3)}

    for boot in (1, 2, 3):
        # ramoops came from the collect unit's modprobe@ramoops, before collect ran.
        assert out(f"ramoops.{boot}.txt").strip() == str(mem_address), boot
        ramoops_up = int(show["modprobe@ramoops.service", boot]["ActiveEnterTimestampMonotonic"])
        collect = show["memconsole-collect.service", boot]
        record = show["memconsole-record.service", boot]
        assert collect["ActiveState"] == "active" and collect["Result"] == "success", collect
        assert ramoops_up <= int(collect["InactiveExitTimestampMonotonic"])
        # The recorder: READY (Type=notify is "active" only after READY=1),
        # started after collect finished.
        assert record["Type"] == "notify" and record["ActiveState"] == "active", record
        assert record["SubState"] == "running" and record["NRestarts"] == "0", record
        assert int(record["InactiveExitTimestampMonotonic"]) >= \
            int(collect["ActiveEnterTimestampMonotonic"])
        journal = out(f"memconsole-record.service.{boot}.journal")
        assert f"recording /dev/kmsg into {RING}" in journal, journal
        assert record["StatusText"] == f"recording /dev/kmsg into {RING}", record

    # Boot 1: nothing to collect yet.
    assert show["memconsole-collect.service", 1]["ExecMainStatus"] == "4"
    assert "formatted a new ring" in out("memconsole-record.service.1.journal")
    assert _entries(out("entries.1.json")) == []
    boot_ids = {b: _entries(out(f"last.{b}.json"))[0]["_BOOT_ID"] for b in (1, 2, 3)}
    assert len(set(boot_ids.values())) == 3

    # Boot 2: the unit archived the panic (records and ring), before systemd-pstore.
    collect2 = out("memconsole-collect.service.2.journal")
    assert show["memconsole-collect.service", 2]["ExecMainStatus"] == "0", collect2
    # sysrq c panics at once: one record (Panic#1), plus the boot from the ring.
    assert "2 archived, 0 already archived, 0 failed, into /var/lib/memconsole" in collect2, \
        collect2
    assert "journal: 1 crash event written" in collect2
    pstore2 = show["systemd-pstore.service", 2]
    assert pstore2["ActiveState"] == "active" and pstore2["Result"] == "success", pstore2
    assert int(pstore2["InactiveExitTimestampMonotonic"]) >= \
        int(show["memconsole-collect.service", 2]["ActiveEnterTimestampMonotonic"])
    assert out("pstore.2.ls").strip() == ""  # systemd-pstore moved them, after memconsole
    archive = result.workdir / "persist/var/lib/memconsole"
    records = [r for index in sorted(archive.glob("boots/*/records.json"))
               for r in json.loads(index.read_text())]
    ours = {r["original"]: r["sha256"] for r in records}
    moved: dict[str, str] = dict(tuple(reversed(line.split())) for line in  # type: ignore[misc]
                 out("systemd-pstore.2.txt").splitlines() if re.match(r"^[0-9a-f]{64} ", line))
    # dmesg.txt: systemd-pstore's own concatenation of the dmesg parts, not a record.
    theirs = {Path(path).name: digest for path, digest in moved.items()
              if Path(path).name != "dmesg.txt"}
    assert ours and ours == theirs, (ours, theirs)  # the same records, byte for byte
    assert sorted(ours) == ["dmesg-ramoops-0"]
    # systemd-pstore (252) kept the dump's time, to the second; the archive has it
    # to the microsecond ramoops keeps.
    mtimes = dict(line.split() for line in out("systemd-pstore.2.txt").splitlines()
                  if line.startswith("./") and len(line.split()) == 2)
    assert int(mtimes["./dmesg-ramoops-0"]) == records[0]["mtime_ns"] // 10**9

    (panic_entry,) = _entries(out("entries.2.json"))
    events2: list[dict[str, Any]] = [json.loads(x) for x in out("list.2.json").splitlines()]
    assert len(events2) == 1, out("list.2.err")
    panic = events2[0]
    assert panic["kind"] == "panic" and panic["panic_reason"] == "sysrq triggered crash"
    assert panic["sources"] == ["pstore", "ring"], panic
    assert panic["ring"]["boot"].replace("-", "") == boot_ids[1]
    assert panic_entry["MEMCONSOLE_SIGNATURE"] == panic["signature"]
    assert panic_entry["MEMCONSOLE_KIND"] == "panic"
    assert panic_entry["MEMCONSOLE_BOOT"] == panic["boot"]
    assert panic_entry["MEMCONSOLE_RING_BOOT"].replace("-", "") == boot_ids[1]
    assert panic_entry["PRIORITY"] == "2"
    assert panic_entry["_SYSTEMD_UNIT"] == "memconsole-collect.service"
    assert "sysrq triggered crash" in panic_entry["MEMCONSOLE_REPORT"]
    assert panic_entry["MESSAGE"].startswith("Last boot ended in a kernel panic: ")
    probe = dict(line.removeprefix("probe ").split(": ", 1)
                 for line in out("probe.journal").splitlines() if line.startswith("probe /"))
    assert probe == {"/sys/fs/pstore": "Permission denied", "/var/lib/memconsole": "writable",
                     "/var/lib/systemd/pstore": "Read-only file system",
                     "/etc": "Read-only file system", "/usr": "Read-only file system"}, probe
    ring1 = (archive / "boots" / panic["boot"] / "console-ring").read_text(errors="replace")
    assert "memconsole-lab: last words of boot 1" in ring1

    # Boot 3: the reset boot archived from the ring, journaled once; the panic not again.
    collect3 = out("memconsole-collect.service.3.journal")
    assert show["memconsole-collect.service", 3]["ExecMainStatus"] == "0", collect3
    assert "1 archived, 2 already archived, 0 failed" in collect3, collect3
    assert show["systemd-pstore.service", 3]["ConditionResult"] == "no"  # pstore was empty
    (reset_entry,) = _entries(out("entries.3.json"))
    # The archive the guest left, listed here.
    capsys.readouterr()
    assert main(["list", "--json", "--archive", str(archive), "--pstore",
                 str(result.workdir / "persist/var/lib/systemd/pstore")]) == 0
    events3: list[dict[str, Any]] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e["kind"] for e in events3] == ["panic", "unknown"], events3
    reset = events3[1]
    assert reset["headline"].startswith("hang or reset: console ended at ")
    assert 'with "memconsole-lab: last words of boot 2"' in reset["headline"]
    assert reset["sources"] == ["ring"] and reset["ring"]["boot"].replace("-", "") == \
        boot_ids[2]
    assert reset_entry["MEMCONSOLE_KIND"] == "unknown"
    assert reset_entry["MEMCONSOLE_RING_BOOT"].replace("-", "") == boot_ids[2]
    assert reset_entry["MEMCONSOLE_TITLE"] == reset["headline"]
    assert "memconsole-lab: last words of boot 2" in reset_entry["MEMCONSOLE_REPORT"]
    sent = json.loads((archive / "journal.json").read_text())
    assert [s["kind"] for s in sent] == ["panic", "unknown"]
