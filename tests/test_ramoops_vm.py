"""Live oracle: crash a real kernel, decode its raw ramoops region on the
host, and compare with what the same kernel shows in /sys/fs/pstore after
the warm reboot.  Marked ``vm``: skipped without QEMU and Debian kernels,
failed instead when MEMCONSOLE_FORCE_VM=1 (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import kernel_for
from memconsole import cli
from memconsole.ramoops import Geometry, ZoneOrder, decode, detect
from memconsole.vmlab import Drill, Ramoops

# (kernel, crash, ramoops parameters): with and without ECC, sizes set and
# left to the module defaults, one record (sysrq panic) and two (oops=panic).
CASES = [
    ("6.1", "null", Ramoops(record_size=0x4000)),
    ("6.1", "sysrq", Ramoops(record_size=0x4000, console_size=0x2000, ftrace_size=0x2000,
                             pmsg_size=0x1000, ecc=1)),
    ("6.12", "null", Ramoops(record_size=0x2000, ecc=32)),
    ("6.12", "sysrq", Ramoops(record_size=0x8000, console_size=0x4000, pmsg_size=0x2000)),
]


def _geometry(r: Ramoops, prefix: str) -> Geometry:
    d = 4096
    return Geometry.from_params(
        r.mem_size, r.record_size or d,
        d if r.console_size is None else r.console_size,
        d if r.ftrace_size is None else r.ftrace_size,
        d if r.pmsg_size is None else r.pmsg_size, r.ecc or 0,
        order=ZoneOrder.V6_1 if prefix == "6.1" else ZoneOrder.V6_2)


@pytest.mark.vm
@pytest.mark.parametrize("prefix, action, ramoops", CASES,
                         ids=[f"{k}-{a}-ecc{r.ecc or 0}" for k, a, r in CASES])
def test_decode_matches_kernel_pstore(lab, tmp_path: Path, prefix: str, action: str,  # type: ignore[no-untyped-def]
                                      ramoops: Ramoops) -> None:
    kernel = kernel_for(prefix)
    drill = Drill(kernel=kernel, action=action, ramoops=ramoops, memfile=True,
                  memory_mb=256,
                  stage2='mkdir -p "$OUT/pstore"; cp /sys/fs/pstore/* "$OUT/pstore/"')
    res = lab.run(drill, tmp_path / "drill")
    assert res.region is not None
    kernel_files = {p.name: p.read_bytes() for p in (res.out_dir / "pstore").iterdir()}
    assert any(n.startswith("dmesg-ramoops-") for n in kernel_files)

    # The region as captured between the two boots, with the drill's parameters...
    out = decode(res.region, _geometry(ramoops, prefix))
    assert {r.name: r.content for r in out.records} == kernel_files
    # ...and with the geometry detected.
    det = detect(res.region)
    out = decode(res.region, det.geometry)
    assert {r.name: r.content for r in out.records} == kernel_files

    # The whole guest memory file, region found by its headers (after the
    # second boot: ramoops re-read but did not rewrite the dmesg zones).
    dest = tmp_path / "decoded"
    rc = cli.main(["decode", str(res.workdir / "guest.ram"), "--out", str(dest)])
    assert rc in (0, 3)
    decoded = {p.name: p.read_bytes() for p in dest.iterdir()}
    for name, content in kernel_files.items():
        assert decoded[name].split(b"\nECC:")[0] == content.split(b"\nECC:")[0]
