"""Memory regions: ring specs, /proc/iomem rules on real guest memory maps,
file regions and their refusals."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from memconsole.errors import RegionError, RingFormatError
from memconsole.ring import Ring, parse_ring
from memconsole.ring.regions import (
    check_mem_range,
    memmap_ranges,
    open_region,
    parse_iomem,
    parse_spec,
    ramoops_range,
)

RING_FIXTURES = FIXTURES / "ring"


def iomem(release: str) -> list:  # type: ignore[type-arg]
    return parse_iomem((RING_FIXTURES / f"iomem-{release}.txt").read_bytes())


def test_parse_spec() -> None:
    spec = parse_spec("mem:0x7200000:1M")
    assert (spec.path, spec.address, spec.size) == (None, 0x7200000, 1 << 20)
    assert parse_spec("/dev/pmem0").path == Path("/dev/pmem0")
    for bad in ("mem:0x7200000", "mem::1M", "mem:zz:1M", "mem:0x7200001:1M",
                "mem:0x7200000:100"):
        with pytest.raises(RegionError):
            parse_spec(bad)


# /proc/iomem of a 6.12 guest booted with memmap=0x100000$0x7000000 (ramoops),
# memmap=1M$0x7200000 and memmap=128M!0x8000000 (nd_pmem loaded); see
# tests/fixtures/ring/README.md.
@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_memmap_reserved_range_is_accepted(release: str) -> None:
    check_mem_range(iomem(release), 0x7200000, 1 << 20)
    check_mem_range(iomem(release), 0x7200000, 4096)
    check_mem_range(iomem(release), 0x72ff000, 4096)


@pytest.mark.parametrize("release", ["6.1", "6.12"])
@pytest.mark.parametrize("start, size, why", [
    (0x1000000, 1 << 20, "overlaps System RAM"),
    (0x7100000, 1 << 20, "overlaps System RAM"),
    (0x7200000, 2 << 20, "overlaps System RAM"),
    (0x8000000, 1 << 20, "nd_pmem drives"),
    (0xfd000000, 4096, "not reserved memory"),
    (0x0, 4096, "below 1 MiB"),
    (0x180000000, 4096, "not shown as reserved"),
])
def test_unsafe_ranges_are_refused(release: str, start: int, size: int, why: str) -> None:
    with pytest.raises(RegionError, match=why):
        check_mem_range(iomem(release), start, size)


def test_claimed_part_is_refused() -> None:
    entries = parse_iomem(b"07000000-070fffff : reserved\n"
                          b"  07080000-070fffff : ramoops:dmesg(0/4)\n")
    with pytest.raises(RegionError, match="claimed by 'ramoops"):
        check_mem_range(entries, 0x7000000, 1 << 20)
    check_mem_range(entries, 0x7000000, 0x80000)


def test_non_root_sees_zero_addresses() -> None:
    text = (RING_FIXTURES / "iomem-6.12.txt").read_bytes()
    zeroed = re.sub(rb"[0-9a-f]+-[0-9a-f]+ :", b"00000000-00000000 :", text)
    with pytest.raises(RegionError, match="needs root"):
        check_mem_range(parse_iomem(zeroed), 0x7200000, 1 << 20)


def test_memmap_ranges_from_cmdline() -> None:
    cmdline = (RING_FIXTURES / "cmdline-6.12.txt").read_bytes()
    assert memmap_ranges(cmdline) == [(0x7000000, 0x100000), (0x7200000, 1 << 20)]
    assert memmap_ranges(b"memmap=64K$0x1000000,2M$32M quiet") == [
        (0x1000000, 65536), (32 << 20, 2 << 20)]


def test_ramoops_range() -> None:
    assert ramoops_range({"mem_address": b"0x7000000", "mem_size": b"1048576"}) == \
        (0x7000000, 1 << 20)
    assert ramoops_range({"mem_address": b"0", "mem_size": b"0"}) is None
    assert ramoops_range({}) is None


# -- file regions ---------------------------------------------------------------------


def test_file_ring_created_with_size(tmp_path: Path) -> None:
    path = tmp_path / "ring"
    with open_region(str(path), write=True, create_size=65536) as region:
        assert region.created and region.kind == "file" and region.size == 65536
        ring = Ring.attach(region)
        ring.append(b"persisted")
        ring.flush()
        ring.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [r.text for r in parse_ring(path.read_bytes()).boots[0].records] == [b"persisted"]
    with open_region(str(path), write=True, create_size=4096) as region:
        assert region.size == 65536 and "keeping that size" in region.warnings[0]


def test_foreign_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"important notes\n" * 1000)
    with open_region(str(path), write=True) as region, \
            pytest.raises(RingFormatError, match="not a memconsole ring"):
        Ring.attach(region)
    assert path.read_bytes() == b"important notes\n" * 1000


def test_zero_file_is_formatted(tmp_path: Path) -> None:
    path = tmp_path / "zero"
    path.write_bytes(bytes(8192))
    with open_region(str(path), write=True) as region:
        ring = Ring.attach(region)
        assert ring.reset_reason == "region is empty (all zero)"
        ring.close()


def test_one_writer_per_ring(tmp_path: Path) -> None:
    path = str(tmp_path / "ring")
    with open_region(path, write=True, create_size=8192):
        with pytest.raises(RegionError, match="another memconsole writer"):
            open_region(path, write=True)
        with open_region(path) as reader:      # readers never need the lock
            assert reader.size == 8192


def test_missing_file_for_reading(tmp_path: Path) -> None:
    with pytest.raises(RegionError, match="no such file"):
        open_region(str(tmp_path / "nope"))


def test_character_device_is_refused() -> None:
    with pytest.raises(RegionError, match="not a regular file or a pmem block device"):
        open_region("/dev/null", write=True)


def test_non_pmem_block_device_is_refused() -> None:
    disks = [f"/dev/{n}" for n in ("vda", "sda", "nvme0n1", "loop0", "xvda")
             if os.path.exists(f"/dev/{n}")]
    if not disks:
        pytest.skip("no block device to try")
    with pytest.raises(RegionError, match="not a pmem device"):
        open_region(disks[0], write=True)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 2**40), st.integers(1, 2**30))
def test_arbitrary_iomem_gives_entries_or_a_refusal(text: bytes, start: int, size: int) -> None:
    entries = parse_iomem(text)
    try:
        check_mem_range(entries, start, size)
    except RegionError:
        return
    # Accepted: every byte is under top-level "reserved" entries and nothing nested.
    assert any(e.name.lower() == "reserved" for e in entries)
    memmap_ranges(text)
