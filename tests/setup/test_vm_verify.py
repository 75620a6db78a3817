"""``memconsole setup`` then ``memconsole verify --cycles 3`` on each
installed Debian kernel (marker vm): the planner's default plan (memmap=,
its modprobe.d file and install guard, pstore.backend, panic=) written into
a scratch root, then booted by verify in ONE QEMU process that crashes and
warm-resets three times; every crash's record must come back, and the last
one must be collected and explained by the memconsole in the guest.  One
boot sequence per kernel: the survival run and verify end to end share it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from setup_facts import IOMEM, scratch_root

from conftest import heavy_kernels, kernel_for
from memconsole.cli.main import main

MAP = str(IOMEM / "qemu-seabios-512M-6.12.txt")
CYCLES = 3


@pytest.mark.vm
@pytest.mark.parametrize("prefix", heavy_kernels("6.1"))
def test_setup_then_verify_survives_cycles(prefix: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    kernel = kernel_for(prefix)
    root = scratch_root(tmp_path)
    assert main(["setup", "--root", str(root), "--iomem", MAP,
                 "--kernel-release", kernel.release]) == 0
    capsys.readouterr()
    began = time.monotonic()
    rc = main(["verify", "--root", str(root), "--cycles", str(CYCLES), "--json"])
    seconds = time.monotonic() - began
    out = capsys.readouterr().out
    data = json.loads(out)
    print(f"verify --cycles {CYCLES} on {kernel.release}: {seconds:.0f} s")
    assert rc == 0, json.dumps(data["checks"], indent=1)
    assert data["ok"] is True and data["kernel"] == kernel.release
    assert data["plan"].startswith("the installed plan")
    assert data["cmdline"][0].startswith("memmap=") and "panic=10" in data["cmdline"]
    assert all(c["ok"] for c in data["checks"].values()), data["checks"]
    assert [p["kept"] for p in data["per_crash"]] == [True] * CYCLES
    # Every surveyed boot saw ramoops at the planned address.
    planned = data["modprobe"][0].split("mem_address=")[1].split()[0]
    assert all(p["address"] == int(planned, 16) for p in data["per_crash"][:-1])
    assert data["checks"]["explained"]["detail"].startswith("Last boot ended")
    assert data["kernel_side"] == "proven"
    assert "survival canary" in data["firmware_side"]


def test_verify_text_says_which_side_it_proves(capsys: pytest.CaptureFixture[str]) -> None:
    """The sentence verify prints after a drill (the JSON above carries the
    same): kernel side proven here, firmware side by the canary."""
    from memconsole.cli.verify import FIRMWARE_SIDE

    assert FIRMWARE_SIDE.startswith("not proven here")
    assert "survival canary" in FIRMWARE_SIDE and "warm reset" in FIRMWARE_SIDE
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--cycles", "0"])
    assert exit_.value.code == 2
    assert "--cycles wants a number from 1 to 100" in capsys.readouterr().err
