"""The block ``memconsole setup`` writes into /etc/memconsole.conf
(memconsole.setup.files.config_block), read back by the configuration
reader and used by doctor and the canary exactly as written: the plans are
the planner's own, on a saved memory map (tests/fixtures/setup/iomem), and
the live system is a tree captured in the doctor drill
(tests/fixtures/doctor, see capture.py there)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setup_facts import facts, iomem

from conftest import FIXTURES
from memconsole import config
from memconsole.setup import canary
from memconsole.setup.doctor import Paths, Status, run_checks
from memconsole.setup.files import config_block, merge_block
from memconsole.setup.planner import Method, Options, Range, plan

TREES = FIXTURES / "doctor" / "6.12"


def _written(block: bytes) -> config.Config:
    """The configuration after setup merged *block* into the shipped template."""
    text = merge_block(config.template().encode(), block).decode()
    cfg = config.parse(text, Path("/etc/memconsole.conf"))
    assert cfg.warnings == (), cfg.warnings
    return cfg


def test_memmap_plan_reads_back_as_planned() -> None:
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(), Options(ring=1 << 20))
    assert p.method is Method.MEMMAP and p.ramoops and p.ring and p.canary
    cfg = _written(config_block(p))
    assert (cfg.ramoops, cfg.ring, cfg.canary) == (p.ramoops.spec(), p.ring.spec(),
                                                   p.canary.spec())
    assert (cfg.method, cfg.panic) == ("memmap", p.panic)
    # The canary takes the spec as written, a page at the end of the range.
    assert p.canary.size == canary.PAGE_SIZE and p.canary.end == p.region.end  # type: ignore[union-attr]


def test_reserve_mem_plan_reads_back_as_planned() -> None:
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(), Options(method="reserve-mem"))
    cfg = _written(config_block(p))
    assert (cfg.method, cfg.ramoops, cfg.ring, cfg.canary) == ("reserve-mem", None, None, None)


def _tree(tmp_path: Path, name: str) -> Paths:
    dst = tmp_path / name
    shutil.copytree(TREES / name / "root", dst, symlinks=True)
    return Paths.of_tree(dst)


def test_doctor_on_setup_spelling(tmp_path: Path) -> None:
    """The drill's ranges as setup spells them (``mem:0x7000000:0x100000``,
    the canary's size ``4096``) check exactly like the drill's own spelling."""
    block = "\n".join([config.SETUP_BEGIN,
                       f"ring = {Range(0x7100000, 1 << 20).spec()}",
                       f"canary = {Range(0x7200000, 4096).spec()}",
                       f"ramoops = {Range(0x7000000, 1 << 20).spec()}",
                       "method = memmap", "panic = 1", config.SETUP_END, ""])
    cfg = _written(block.encode())
    assert cfg.ramoops == "mem:0x7000000:0x100000" and cfg.canary == "mem:0x7200000:4096"
    paths = _tree(tmp_path, "healthy")
    found = {f.check: f for f in run_checks(cfg, paths)}
    for name in ("ramoops", "backend", "pstore-mount", "panic", "recorder", "reservation"):
        assert found[name].status is Status.OK, found[name]
    assert "recording into mem:0x7100000:0x100000" in found["recorder"].detail
    assert found["reservation"].detail.startswith(
        "ramoops 0x7000000+0x100000, ring 0x7100000+0x100000, canary 0x7200000+0x1000: "
        "reserved")


def test_doctor_when_the_kernel_ignored_reserve_mem(tmp_path: Path) -> None:
    """setup said reserve-mem (no ramoops = line), but the running ramoops has
    a memmap= range and no mem_name: the ramoops and reservation lines fail."""
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(), Options(method="reserve-mem"))
    cfg = _written(config_block(p))
    found = {f.check: f for f in run_checks(cfg, _tree(tmp_path, "healthy"))}
    assert found["ramoops"].status is Status.FAIL
    assert "method = reserve-mem" in found["ramoops"].detail
    assert "ramoops.mem_name=" in found["ramoops"].fix
    assert found["reservation"].status is Status.FAIL
    assert "reserve_mem= and ramoops.mem_name= not on the kernel command line" in \
        found["reservation"].detail
