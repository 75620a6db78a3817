"""The planner on every saved memory map, with this development machine's
Debian kernels (tests/fixtures/setup/kernels: 6.1 init_size 0x3f98000,
6.12 initrd 34,741,904 bytes, the largest of each).

With those kernels the rules give, on every map:
R5 excludes [0, 16 MiB); R4 [16 MiB, 0x6000000) (16 MiB + 0x3f98000 + 16 MiB,
rounded up to 1 MiB); R3 the 2 x 34,741,904 + 64 MiB = 0x8243a20 bytes below
each loader limit (rounded down to 1 MiB), clipped to the RAM below it; R15
the top 64 MiB of RAM above 4 GiB.  The range is 1 MiB ramoops + 4 KiB
canary = 0x101000 bytes, placed 1 MiB-aligned at the top of the highest free
piece (R6).  Each expected address below is that arithmetic on the map; the
map's source is its .source.md file.
"""

from __future__ import annotations

import pytest
from setup_facts import IOMEM, K61, K612, facts, iomem

from memconsole.errors import ConfigError, ParseError, SetupError
from memconsole.setup.facts import RamoopsBuild
from memconsole.setup.planner import CANARY_SIZE, Method, Options, memmap_items, plan

MiB = 1 << 20
TOTAL = MiB + CANARY_SIZE

# map -> (chosen address, the R3/R15 band the choice sits under, why)
EXPECTED = {
    # QEMU/SeaBIOS 512 MiB: RAM 0x100000-0x1ffdffff, QEMU's initrd at its top
    # (RAMDISK 0x1fcdb000-0x1ffdffff in the map's dmesg): R3 from 0x17d00000.
    "qemu-seabios-512M-6.12": (0x17B00000, ("R3", 0x17D00000, 0x1FFE0000)),
    "qemu-seabios-512M-6.1": (0x17B00000, ("R3", 0x17D00000, 0x1FFE0000)),
    # QEMU/OVMF 512 MiB: highest RAM below 4 GiB ends 0x1ff57fff; the stub put
    # the initrd at 0x1d78d000, inside R3's band.
    "qemu-ovmf-512M-6.12": (0x17B00000, ("R3", 0x17D00000, 0x1FF58000)),
    "qemu-ovmf-512M-6.1": (0x17B00000, ("R3", 0x17D00000, 0x1FF58000)),
    "qemu-ovmf-512M-6.12-grub": (0x17B00000, ("R3", 0x17D00000, 0x1FF58000)),
    # 2 GiB: RAM to 0x7ffdffff; GRUB's 896 MiB and linuxefi's 1 GiB limits cut
    # bands at 0x2fd00000 and 0x37d00000; the top band starts at 0x77d00000.
    "qemu-seabios-2G-6.12": (0x77B00000, ("R3", 0x77D00000, 0x7FFE0000)),
    "qemu-seabios-2G-6.12-grub": (0x77B00000, ("R3", 0x77D00000, 0x7FFE0000)),
    "qemu-ovmf-2G-6.12-grub": (0x77B00000, ("R3", 0x77D00000, 0x7FF58000)),
    # 4 and 8 GiB: RAM above 4 GiB wins (R6), under R15's 64 MiB.
    "qemu-seabios-4G-6.12": (0x13BE00000, ("R15", 0x13C000000, 0x140000000)),
    "qemu-seabios-4G-6.1": (0x13BE00000, ("R15", 0x13C000000, 0x140000000)),
    "qemu-ovmf-4G-6.12": (0x13BE00000, ("R15", 0x13C000000, 0x140000000)),
    "qemu-seabios-8G-6.12": (0x23BE00000, ("R15", 0x23C000000, 0x240000000)),
    # Xeon PC, PCI hole at 2 GiB: RAM to 0x7fffffff (two entries); the
    # initrd_addr_max limit 0x80000000 gives the top band.
    "pc-xeon-4g": (0x77B00000, ("R3", 0x77D00000, 0x80000000)),
    # Ryzen laptop (partial map, ends 0x4f778fff): the band under the top
    # leaves System RAM 0x45124000-0x47370fff, whose top 1 MiB-aligned place
    # is 0x47200000.
    "laptop-ryzen-6800u-partial": (0x47200000, ("R3", 0x47500000, 0x4F779000)),
    # Supermicro (partial): RAM 0x100000-0x69f0efff below ERST/ACPI areas;
    # top RAM below 4 GiB ends 0x6f7fffff.
    "server-supermicro-erst-partial": (0x67300000, ("R3", 0x67500000, 0x6F800000)),
    # This development machine (Firecracker, 24 GiB): RAM to 0x63fffffff.
    "firecracker-24G-6.18": (0x63BE00000, ("R15", 0x63C000000, 0x640000000)),
}


def test_every_saved_map_is_covered() -> None:
    maps = {p.stem for p in IOMEM.glob("*.txt") if not p.stem.endswith((".dmesg", ".efivars"))}
    assert maps == set(EXPECTED), maps ^ set(EXPECTED)
    for name in maps:
        assert (IOMEM / f"{name}.source.md").read_text().strip(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_on_saved_map(name: str) -> None:
    address, (rule, band_start, band_end) = EXPECTED[name]
    p = plan(iomem(name), facts(uefi="ovmf" in name), Options())
    assert p.method is Method.MEMMAP
    assert p.region is not None and p.ramoops is not None and p.canary is not None
    assert (p.region.start, p.region.size) == (address, TOTAL)
    assert (p.ramoops.start, p.ramoops.size) == (address, MiB)
    assert (p.canary.start, p.canary.size) == (address + MiB, CANARY_SIZE)
    assert p.ring is None
    # The range sits right under the band that stopped the top-down search.
    assert any(e.rule == rule and (e.start, e.end) == (band_start, band_end)
               for e in p.exclusions), [str(e) for e in p.exclusions]
    assert p.region.end <= band_start < p.region.end + MiB + TOTAL
    # R5 and R4 with the largest installed kernel (6.1's init_size).
    assert any(e.rule == "R5" and (e.start, e.end) == (0, 16 * MiB) for e in p.exclusions)
    assert any(e.rule == "R4" and (e.start, e.end) == (16 * MiB, 0x6000000)
               for e in p.exclusions)
    # No exclusion overlaps the chosen range.
    for e in p.exclusions:
        assert e.end <= p.region.start or e.start >= p.region.end, str(e)
    assert p.cmdline[0] == f"memmap={TOTAL:#x}${address:#x}"
    assert any("R6 top-down" in r for r in p.reasons)
    assert p.modprobe[0] == (f"options ramoops mem_address={address:#x} mem_size=0x100000 "
                             "record_size=0x4000 max_reason=2")
    assert p.modprobe[1].startswith(f"install ramoops grep -qwF '{p.cmdline[0]}' /proc/cmdline")
    assert p.modules_load == ("ramoops",)
    assert "panic=10" in p.cmdline


def test_crash_kernel_child_is_avoided() -> None:
    p = plan(iomem("pc-xeon-4g"), facts(), Options())
    crash = [e for e in p.exclusions if e.rule == "R2"]
    assert [(e.start, e.end) for e in crash] == [(0x3000000, 0xB100000)]
    assert "Crash kernel" in crash[0].why


def test_ring_sits_between_ramoops_and_canary() -> None:
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(), Options(ring=2 * MiB))
    assert p.region is not None and p.ring is not None and p.canary is not None
    assert p.region.size == MiB + 2 * MiB + CANARY_SIZE
    assert p.ring.start == p.region.start + MiB and p.ring.size == 2 * MiB
    assert p.canary.start == p.ring.end and p.canary.end == p.region.end
    assert p.cmdline[0] == f"memmap={p.region.size:#x}${p.region.start:#x}"
    assert p.ring.spec() == f"mem:{p.ring.start:#x}:0x200000"


def test_backend_and_firmware_warnings() -> None:
    # efi_pstore and ERST (CONFIG_ACPI_APEI=y) are both in Debian's kernels.
    p = plan(iomem("qemu-ovmf-512M-6.12"), facts(uefi=True, mor=1), Options())
    assert "pstore.backend=ramoops" in p.cmdline
    assert any(r.startswith("R10") and "UEFI" in r for r in p.reasons)
    assert any(w.startswith("R8") and "armed" in w for w in p.warnings)
    quiet = plan(iomem("qemu-seabios-512M-6.12"),
                 facts(efi_pstore=False, config={"ACPI_APEI": "n"}), Options())
    assert "pstore.backend=ramoops" not in quiet.cmdline
    assert not any(w.startswith("R8") for w in quiet.warnings)


def test_builtin_ramoops_goes_on_the_command_line() -> None:
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(ramoops=RamoopsBuild.BUILTIN),
             Options(ecc=16))
    assert p.modprobe == () and p.modules_load == () and not p.pstore_after_modules
    assert "ramoops.mem_address=0x17b00000" in p.cmdline
    assert "ramoops.mem_size=0x100000" in p.cmdline
    assert "ramoops.ecc=16" in p.cmdline


def test_reserve_mem_only_where_the_kernel_has_it() -> None:
    with pytest.raises(SetupError, match="no mem_name parameter"):
        plan(iomem("qemu-seabios-512M-6.1"), facts(K61), Options(method="reserve-mem"))
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(K612), Options(method="reserve-mem"))
    assert p.method is Method.RESERVE_MEM
    assert p.region is None and p.canary is None and p.ramoops is None
    assert p.cmdline[0] == "reserve_mem=0x100000:4096:memconsole"
    assert p.modprobe[0].startswith("options ramoops mem_name=memconsole ")
    assert any("0 of 9" in w for w in p.warnings)
    assert any("canary = none" in w for w in p.warnings)
    with pytest.raises(ConfigError, match="--ring needs a memmap"):
        plan(iomem("qemu-seabios-512M-6.12"), facts(K612),
             Options(method="reserve-mem", ring=MiB))
    # auto stays memmap on 6.12 and says why.
    auto = plan(iomem("qemu-seabios-512M-6.12"), facts(K612), Options())
    assert auto.method is Method.MEMMAP
    assert any("not chosen" in r for r in auto.reasons)


def test_memmap_entries_already_in_use() -> None:
    three = "memmap=1M$0x7000000,1M#0x7200000 memmap=128M!0x8000000"
    p = plan(iomem("qemu-seabios-2G-6.12"), facts(cmdline=three), Options())
    assert p.memmap_in_use == 3
    r9 = sorted((e.start, e.end) for e in p.exclusions if e.rule == "R9")
    assert r9 == [(0x7000000, 0x7100000), (0x7200000, 0x7300000), (0x8000000, 0x10000000)]
    assert any("4 of at most 4" in r for r in p.reasons)
    # The same entries in GRUB's configuration and on the command line count once.
    again = plan(iomem("qemu-seabios-2G-6.12"),
                 facts(cmdline=three, grub_words=("memmap=1M$0x7000000",)), Options())
    assert again.memmap_in_use == 3
    with pytest.raises(SetupError, match="4 memmap= entries are already in use"):
        plan(iomem("qemu-seabios-2G-6.12"),
             facts(cmdline=three, grub_words=("memmap=4K$0x30000000",)), Options())


def test_memmap_items_follow_kaslr_counting() -> None:
    items = memmap_items(["memmap=exactmap", "memmap=640K@0", "memmap=2G", "root=/dev/sda",
                          "memmap=0x100000$0x7000000,64K#0x7200000", "memmap=010$0x10"])
    assert items == [("@", 0, 640 << 10), ("$", 0x7000000, 0x100000),
                     ("#", 0x7200000, 64 << 10), ("$", 0x10, 8)]
    with pytest.raises(ConfigError):
        memmap_items(["memmap=1M$zz"])


def test_previous_range_is_kept_after_its_reboot() -> None:
    # The grub map was booted with memmap=1M$0x7000000: a Reserved hole.
    # Had setup chosen it (1 MiB = ramoops 0xff000 + canary), it keeps it.
    data = iomem("qemu-seabios-2G-6.12-grub")
    assert b"07000000-070fffff : Reserved" in data
    opts = Options(size=0xFF000, previous=(0x7000000, 0x100000))
    p = plan(data, facts(cmdline="memmap=1M$0x7000000"), opts)
    assert p.region is not None and (p.region.start, p.region.size) == (0x7000000, 0x100000)
    assert any("kept the range the previous setup chose" in r for r in p.reasons)
    assert p.memmap_in_use == 0
    # Without the previous range it is somebody else's reservation; the
    # 1 MiB range then fits exactly under the top band (0x77d00000).
    other = plan(data, facts(cmdline="memmap=1M$0x7000000"), Options(size=0xFF000))
    assert other.region is not None and other.region.start == 0x77C00000
    assert other.memmap_in_use == 1


@pytest.mark.parametrize("text, match", [
    (b"", "empty"),
    (b"00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n", "as root"),
    (b"00100000-1ffdffff : System RAM\nthis is not iomem\n", "line 2"),
    (b"1ffdffff-00100000 : System RAM\n", "ends before it starts"),
    (b"00100000-1ffdffff : System RAM\n1ff00000-2fffffff : Reserved\n", "overlaps"),
    (b"00000000-0009ffff : Reserved\n000a0000-000bffff : PCI Bus 0000:00\n", "System RAM"),
])
def test_hostile_memory_maps(text: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        plan(text, facts(), Options())


def test_no_ram_large_enough() -> None:
    with pytest.raises(SetupError, match="no System RAM range holds 0x18001000 bytes") as exc:
        plan(iomem("qemu-seabios-512M-6.12"), facts(), Options(size=384 * MiB))
    # The message names what was excluded.
    assert "R3" in str(exc.value) and "R4" in str(exc.value)


@pytest.mark.parametrize("opts, match", [
    (Options(size=MiB + 1), "multiple of 4 KiB"),
    (Options(record_size=12 << 10), "power of two"),
    (Options(ecc=200), "0..127"),
    (Options(ring=100), "multiple of 4 KiB"),
    (Options(size=16 << 10, record_size=16 << 10), "record count"),
    (Options(method="pmem"), "unknown --method"),
    (Options(panic_on=frozenset({"always"})), "unknown --panic-on"),
])
def test_impossible_options(opts: Options, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan(iomem("qemu-seabios-512M-6.12"), facts(), opts)


def test_kernel_without_ramoops() -> None:
    with pytest.raises(SetupError, match="has no ramoops"):
        plan(iomem("qemu-seabios-512M-6.12"), facts(ramoops=RamoopsBuild.MISSING),
             Options())


def test_panic_choices() -> None:
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(),
             Options(panic=0, panic_on=frozenset({"oops", "hung-task"})))
    assert "panic=0" in p.cmdline and "oops=panic" in p.cmdline
    assert "hung_task_panic=1" in p.cmdline and "panic_on_warn=1" not in p.cmdline
    assert any("waits for ever" in w for w in p.warnings)
    offered = " ".join(p.offers)
    assert "--panic-on warn" in offered and "--panic-on softlockup" in offered
    assert "--panic-on oops" not in offered


def test_dmesg_zones_follow_ramoops_layout() -> None:
    # 1 MiB - console, ftrace, pmsg (4 KiB each) = 0xfd000: 63 records of 16 KiB.
    p = plan(iomem("qemu-seabios-512M-6.12"), facts(), Options())
    assert p.dmesg_zones == (MiB - 3 * 4096) // (16 << 10)
