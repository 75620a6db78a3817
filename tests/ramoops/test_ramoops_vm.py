"""Live oracle: crash a real kernel, decode its raw ramoops region on the
host, and compare with what the same kernel shows in /sys/fs/pstore after
the warm reboot.  Marked ``vm``: skipped without QEMU and Debian kernels,
failed instead when MEMCONSOLE_FORCE_VM=1 (see conftest.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import kernel_for
from memconsole import cli
from memconsole.lab import Drill, Ramoops
from memconsole.ramoops import Geometry, ZoneOrder, decode, detect

# (kernel, crash, ramoops parameters, CPUs): with and without ECC, sizes set
# and left to the module defaults, one record (sysrq panic) and two
# (oops=panic), and two CPUs so that the ftrace area is split per CPU
# (RAMOOPS_FLAG_FTRACE_PER_CPU, nr_cpu_ids zones).
CASES = [
    ("6.1", "null", Ramoops(record_size=0x4000), 1),
    ("6.1", "sysrq", Ramoops(record_size=0x4000, console_size=0x2000, ftrace_size=0x2000,
                             pmsg_size=0x1000, ecc=1), 1),
    ("6.12", "null", Ramoops(record_size=0x2000, ecc=32), 1),
    ("6.12", "sysrq", Ramoops(record_size=0x8000, console_size=0x4000, pmsg_size=0x2000), 1),
    ("6.12", "sysrq", Ramoops(record_size=0x4000, ftrace_size=0x4000, ecc=16), 2),
]


def _geometry(r: Ramoops, prefix: str, cpus: int) -> Geometry:
    d = 4096
    return Geometry.from_params(
        r.mem_size, r.record_size or d,
        d if r.console_size is None else r.console_size,
        d if r.ftrace_size is None else r.ftrace_size,
        d if r.pmsg_size is None else r.pmsg_size, r.ecc or 0, ftrace_cpus=cpus,
        order=ZoneOrder.V6_1 if prefix == "6.1" else ZoneOrder.V6_2)


@pytest.mark.vm
@pytest.mark.parametrize("prefix, action, ramoops, cpus", CASES,
                         ids=[f"{k}-{a}-ecc{r.ecc or 0}-smp{c}" for k, a, r, c in CASES])
def test_decode_matches_kernel_pstore(lab, tmp_path: Path, prefix: str, action: str,  # type: ignore[no-untyped-def]
                                      ramoops: Ramoops, cpus: int) -> None:
    kernel = kernel_for(prefix)
    snapshot = tmp_path / "guest-between-boots.ram"

    def keep_guest_ram(guest_ram: Path, mem_address: int) -> None:
        shutil.copyfile(guest_ram, snapshot)  # all of guest RAM, as the crash left it

    drill = Drill(kernel=kernel, action=action, ramoops=ramoops, memfile=True,
                  memory_mb=256, smp=cpus, between_boots=keep_guest_ram,
                  stage2='mkdir -p "$OUT/pstore"; cp /sys/fs/pstore/* "$OUT/pstore/"')
    res = lab.run(drill, tmp_path / "drill")
    assert res.region is not None
    kernel_files = {p.name: p.read_bytes() for p in (res.out_dir / "pstore").iterdir()}
    assert any(n.startswith("dmesg-ramoops-") for n in kernel_files)

    # The region as captured between the two boots, with the drill's parameters...
    out = decode(res.region, _geometry(ramoops, prefix, cpus))
    assert {r.name: r.content for r in out.records} == kernel_files
    # ...and with the geometry detected (per-CPU ftrace zones included).
    det = detect(res.region)
    assert det.geometry.ftrace_cpus == cpus
    out = decode(res.region, det.geometry)
    assert {r.name: r.content for r in out.records} == kernel_files

    # All of guest RAM between the boots, region found by its headers among
    # everything else: the same files, byte for byte, ECC notice included.
    dest = tmp_path / "decoded-snapshot"
    assert cli.main(["decode", str(snapshot), "--out", str(dest)]) == 0
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == kernel_files

    # Guest RAM after the second boot (a running VM's memory file): ramoops
    # re-read but did not rewrite the dmesg zones; console and ECC state moved on.
    dest = tmp_path / "decoded"
    rc = cli.main(["decode", str(res.workdir / "guest.ram"), "--out", str(dest)])
    assert rc in (0, 3)
    decoded = {p.name: p.read_bytes() for p in dest.iterdir()}
    for name, content in kernel_files.items():
        assert decoded[name].split(b"\nECC:")[0] == content.split(b"\nECC:")[0]
