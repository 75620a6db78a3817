"""Which ``mem:ADDR:SIZE`` ranges may be written or read through /dev/mem,
on the /proc/iomem, /proc/cmdline and /sys/firmware/memmap of real 6.1 and
6.12 guests (tests/fixtures/ring, capture.py there).

Writing needs a range that ``memmap=`` on the kernel command line reserved
and that the firmware's own map calls RAM, or ``--force``; reading a range
the firmware calls Reserved is refused (it may be device memory); reading
RAM the kernel reserved some other way is allowed with a warning.  Every
refusal of :func:`check_mem_range` (System RAM, a driver's claim, ...) and
the ramoops overlap hold with ``--force`` too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import FIXTURES
from memconsole.cli import main
from memconsole.errors import RegionError
from memconsole.ring import regions as regions_mod
from memconsole.ring.iomem import check_mem_access, parse_iomem
from memconsole.ring.regions import open_region

RING_FIXTURES = FIXTURES / "ring"
RELEASES = ("6.1", "6.12")


def firmware(release: str) -> list:  # type: ignore[type-arg]
    """/sys/firmware/memmap of a guest, read as the region code reads it."""
    saved = regions_mod._FIRMWARE_MEMMAP
    regions_mod._FIRMWARE_MEMMAP = RING_FIXTURES / f"firmware-memmap-{release}"
    try:
        entries = regions_mod._firmware_map()
    finally:
        regions_mod._FIRMWARE_MEMMAP = saved
    assert entries, release
    return entries


def guest(release: str) -> tuple[list, bytes]:  # type: ignore[type-arg]
    return (parse_iomem((RING_FIXTURES / f"iomem-{release}.txt").read_bytes()),
            (RING_FIXTURES / f"cmdline-{release}.txt").read_bytes())


@pytest.mark.parametrize("release", RELEASES)
def test_firmware_map_is_before_memmap(release: str) -> None:
    """The guests' firmware maps call the memmap= ranges RAM and
    0x1ffe0000-0x1fffffff Reserved, as /proc/iomem does for the latter."""
    fw = firmware(release)
    ram = [(e.start, e.end) for e in fw if e.name == "System RAM"]
    assert any(lo <= 0x7200000 and hi >= 0x72fffff for lo, hi in ram), fw
    assert any(e.name == "Reserved" and e.start == 0x1ffe0000 for e in fw), fw
    iomem, _ = guest(release)
    assert any(e.name == "Reserved" and e.start == 0x1ffe0000 and e.depth == 0 for e in iomem)


@pytest.mark.parametrize("release", RELEASES)
def test_memmap_range_may_be_written(release: str) -> None:
    iomem, cmdline = guest(release)
    for write in (True, False):
        assert check_mem_access(iomem, 0x7200000, 1 << 20, cmdline=cmdline,
                                firmware=firmware(release), write=write) == ()
    # Without a firmware map (no CONFIG_FIRMWARE_MEMMAP) the command line decides.
    assert check_mem_access(iomem, 0x7200000, 1 << 20, cmdline=cmdline, firmware=None,
                            write=True) == ()


@pytest.mark.parametrize("release", RELEASES)
def test_firmware_reserved_range_needs_force(release: str) -> None:
    iomem, cmdline = guest(release)
    fw = firmware(release)
    for size in (0x20000, 0x1000):
        with pytest.raises(RegionError, match=r"no memmap=.* reserves it; the firmware's map "
                           r"shows 'Reserved' \(0x1ffe0000-0x1fffffff\): writing it could "
                           r"corrupt memory"):
            check_mem_access(iomem, 0x1ffe0000, size, cmdline=cmdline, firmware=fw, write=True)
        with pytest.raises(RegionError, match="device memory can change when read"):
            check_mem_access(iomem, 0x1ffe0000, size, cmdline=cmdline, firmware=fw,
                             write=False)
        (warning,) = check_mem_access(iomem, 0x1ffe0000, size, cmdline=cmdline, firmware=fw,
                                      write=True, force=True)
        assert "writing it anyway (--force)" in warning
    # memmap= over a range the firmware calls Reserved is not RAM either.
    with pytest.raises(RegionError, match=r"firmware's own map \(/sys/firmware/memmap\) "
                       r"shows 'Reserved'"):
        check_mem_access(iomem, 0x1ffe0000, 0x20000, cmdline=b"memmap=128K$0x1ffe0000",
                         firmware=fw, write=True)


@pytest.mark.parametrize("release", RELEASES)
def test_reserved_ram_without_memmap_is_read_only(release: str) -> None:
    """RAM the firmware gave and this kernel reserved, but not by a memmap=
    the command line shows (here: the command line read without it):
    reading is allowed with a warning, writing is not."""
    iomem, _ = guest(release)
    fw = firmware(release)
    (warning,) = check_mem_access(iomem, 0x7200000, 1 << 20, cmdline=b"console=ttyS0",
                                  firmware=fw, write=False)
    assert "reading it, as the firmware's map calls it RAM" in warning
    with pytest.raises(RegionError, match=r"no memmap=0x100000\$0x7200000"):
        check_mem_access(iomem, 0x7200000, 1 << 20, cmdline=b"console=ttyS0", firmware=fw,
                         write=True)
    with pytest.raises(RegionError, match="cannot be read to confirm a memmap="):
        check_mem_access(iomem, 0x7200000, 1 << 20, cmdline=None, firmware=fw, write=True)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("start, size, why", [
    (0x1000000, 1 << 20, "overlaps System RAM"),
    (0x8000000, 1 << 20, "nd_pmem drives"),
    (0x0, 4096, "below 1 MiB"),
    (0x7000000, 1 << 20, "overlaps the range ramoops uses"),
])
def test_force_keeps_every_other_refusal(release: str, start: int, size: int, why: str) -> None:
    iomem, cmdline = guest(release)
    for write in (True, False):
        with pytest.raises(RegionError, match=why):
            check_mem_access(iomem, start, size, cmdline=cmdline, firmware=firmware(release),
                             ramoops=(0x7000000, 0x100000), write=write, force=True)


@pytest.mark.parametrize("release", RELEASES)
def test_dev_mem_is_not_opened_for_a_firmware_range(release: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """open_region on a guest's maps: a firmware-reserved range is refused
    before /dev/mem is opened (it used to be a warning, then O_RDWR)."""
    monkeypatch.setattr(regions_mod, "_IOMEM", RING_FIXTURES / f"iomem-{release}.txt")
    monkeypatch.setattr(regions_mod, "_CMDLINE", RING_FIXTURES / f"cmdline-{release}.txt")
    monkeypatch.setattr(regions_mod, "_FIRMWARE_MEMMAP",
                        RING_FIXTURES / f"firmware-memmap-{release}", raising=False)
    monkeypatch.setattr(regions_mod, "_RAMOOPS_PARAMS", tmp_path)
    real_open = os.open
    opened: list[str] = []

    def spy(path, flags, *args):  # type: ignore[no-untyped-def]
        if str(path) == "/dev/mem":
            opened.append(f"{path} {flags:#o}")
            raise AssertionError(f"/dev/mem opened ({flags:#o})")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", spy)
    for write in (True, False):
        with pytest.raises(RegionError):
            open_region("mem:0x1ffe0000:0x20000", write=write)
    assert opened == []


def test_record_force_flag_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["record", "--help"])
    out = capsys.readouterr().out
    assert "--force" in out and "memmap=" in out


def test_memmap_grammar_is_the_kernels() -> None:
    """memparse(): 0x hex, a leading 0 octal, K..E suffixes; '$' and
    '%...+2' reserve; an item with trailing text does not count; nothing
    after '--' (init's arguments).  A leading-zero number used to raise
    ValueError (int(x, 0)), a 5000-digit one too (int's digit limit)."""
    from memconsole.ring.iomem import memmap_ranges

    assert memmap_ranges(b"memmap=0100$010") == [(8, 64)]
    assert memmap_ranges(b"memmap=1M%0x7200000-1+2,2M%0x8000000+2,1M%0x9000000-2+1") == [
        (0x7200000, 1 << 20), (0x8000000, 2 << 20)]
    assert memmap_ranges(b"memmap=1M$0x7200000x memmap=1E$0 memmap=0$0x1000") == [(0, 1 << 60)]
    assert memmap_ranges(b'memmap="64K$0x1000000" -- memmap=1M$0x7200000') == [
        (0x1000000, 65536)]
    assert memmap_ranges(b"memmap=" + b"9" * 5000 + b"$0x1000") == []


@pytest.mark.parametrize("release", RELEASES)
def test_the_guests_acpi_tables_are_refused(release: str) -> None:
    """The kernel's own log of the same boot (kmsg-R.bin) places the ACPI
    tables in 0x1ffe0000-0x1fffffff, the range that /proc/iomem shows as
    top-level Reserved and unclaimed (check_mem_range alone accepts it):
    every page holding one is refused for writing and for reading."""
    import re

    from memconsole.ring.iomem import check_mem_range

    log = (RING_FIXTURES / f"kmsg-{release}.bin").read_bytes()
    tables = [(m[1].decode(), int(m[2], 16)) for m in
              re.finditer(rb";ACPI: (\w{4}) 0x([0-9A-F]{16}) ", log)]
    high = [(name, addr) for name, addr in tables if addr >= 1 << 20]
    assert {"DSDT", "FACS", "RSDT"} <= {name for name, _ in high}, tables
    iomem, cmdline = guest(release)
    for _name, addr in high:
        page = addr & ~0xFFF
        check_mem_range(iomem, page, 4096)       # the old rule: accepted (a warning)
        for write in (True, False):
            with pytest.raises(RegionError, match="'Reserved' \\(0x1ffe0000-0x1fffffff\\)"):
                check_mem_access(iomem, page, 4096, cmdline=cmdline,
                                 firmware=firmware(release), write=write)
