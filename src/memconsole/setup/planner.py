"""Plan the reservation: where ramoops (and the recorder's ring, and the
survival canary) live, how the range is reserved, and the kernel and module
parameters that go with it.

:func:`plan` is a pure function of the memory map (``/proc/iomem`` bytes),
the facts :mod:`memconsole.setup.facts` read, and the options.  Every rule
it applies is named (R1..R15) and justified in docs/setup.md with the
measurement or the source behind it; the plan carries one reason per rule
that shaped it, so ``memconsole setup`` can say why the range was chosen.

Layout of a ``memmap`` plan: ONE ``memmap=SIZE$ADDR`` entry holding, in this
order, the ramoops region, the ring (when ``ring`` is given), and one 4 KiB
canary page at the end.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from memconsole.errors import ConfigError, ParseError, SetupError
from memconsole.ramoops import Geometry, ZoneKind, layout
from memconsole.ring.iomem import IomemEntry, parse_iomem
from memconsole.setup.facts import Facts, RamoopsBuild

__all__ = [
    "CANARY_SIZE",
    "PANIC_ON",
    "RESERVE_MEM_LABEL",
    "Exclusion",
    "Method",
    "Options",
    "Plan",
    "Range",
    "memmap_items",
    "plan",
]

MiB = 1 << 20
GiB = 1 << 30
PAGE = 4096
#: The survival canary page at the end of a memmap= range.
CANARY_SIZE = PAGE
#: The name of a reserve_mem= region (1..15 characters, RESERVE_MEM_NAME_SIZE 16).
RESERVE_MEM_LABEL = "memconsole"
#: Start alignment of the range (R2).
ALIGN = MiB
#: x86-64 LOAD_PHYSICAL_ADDR (CONFIG_PHYSICAL_START on Debian): the lowest
#: address KASLR and the EFI stub put the kernel at.
LOAD_PHYSICAL_ADDR = 16 * MiB
#: init_size assumed when no kernel image could be read (both Debian
#: kernels here need less: 0x3f98000 and 0x37ee000).
DEFAULT_INIT_SIZE = 64 * MiB
#: Room left above the kernel's no-KASLR footprint (R4).
R4_SLACK = 16 * MiB
#: The top of the highest RAM left to the firmware (R15).
FIRMWARE_TOP = 64 * MiB
#: Initrd limits of boot loaders (R3): (limit, who).  The top of RAM below
#: 4 GiB is added by the planner; the kernel's own initrd_addr_max too.
LOADER_LIMITS: tuple[tuple[int, str], ...] = (
    (0x37FF0000, "GRUB's i386 'initrd' (GRUB_LINUX_INITRD_MAX_ADDRESS, below 896 MiB)"),
    (0x40000000, "GRUB's 'linuxefi' loader (allocates below 0x3fffffff)"),
)
#: Boot options a user may add to make more failures end in a panic (and so
#: in a ramoops record and a reboot): name -> (kernel word, what it costs).
PANIC_ON: dict[str, tuple[str, str]] = {
    "oops": ("oops=panic", "every oops panics and reboots (ramoops keeps Oops#1 and Panic#2) "
             "instead of the machine running on with a damaged kernel; costs availability "
             "when the oops would have been survivable"),
    "warn": ("panic_on_warn=1", "every WARN() panics: strictest, a harmless warning of a "
             "driver reboots the machine"),
    "softlockup": ("softlockup_panic=1", "a CPU stuck in the kernel for 2 x watchdog_thresh "
                   "seconds panics instead of only being reported"),
    "hung-task": ("hung_task_panic=1", "a task blocked in D state for hung_task_timeout_secs "
                  "(120 s) panics; a slow disk or NFS server can trigger it"),
}

_KERNEL_CHILDREN = ("Kernel code", "Kernel rodata", "Kernel data", "Kernel bss")
_MEMMAP_ITEM = re.compile(r"^([0-9a-fA-Fx]+[KkMmGgTtPpEe]?)([#$!@])([0-9a-fA-Fx]+[KkMmGgTtPpEe]?)$")
_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


class Method(enum.Enum):
    """How the range is kept from the kernel."""

    MEMMAP = "memmap"
    RESERVE_MEM = "reserve-mem"


@dataclass(frozen=True)
class Options:
    """What the user asked for.

    Attributes:
        size: bytes of the ramoops region.
        record_size: ramoops ``record_size`` (a power of two >= 4 KiB).
        ecc: ramoops ``ecc`` (0 = off, 1 = 16 bytes, else bytes per block).
        ring: bytes for the recorder's ring after ramoops (None: no ring).
        method: ``auto``, ``memmap`` or ``reserve-mem``.
        panic: ``panic=N`` (seconds before the reboot; 0 never reboots).
        panic_on: keys of :data:`PANIC_ON` to turn on.
        previous: ``(start, size)`` of the range an earlier setup reserved;
            kept when it still satisfies every rule.
    """

    size: int = MiB
    record_size: int = 16 << 10
    ecc: int = 0
    ring: int | None = None
    method: str = "auto"
    panic: int = 10
    panic_on: frozenset[str] = frozenset()
    previous: tuple[int, int] | None = None


@dataclass(frozen=True)
class Range:
    """A physical range."""

    start: int
    size: int

    @property
    def end(self) -> int:
        """First byte after the range."""
        return self.start + self.size

    def spec(self) -> str:
        """``mem:ADDR:SIZE`` as memconsole's region specs spell it."""
        return f"mem:{self.start:#x}:{self.size if self.size == PAGE else hex(self.size)}"

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end - 1:#x}"


@dataclass(frozen=True)
class Exclusion:
    """A range the planner keeps out of, and the rule that says so.

    Attributes:
        rule: ``R3`` ...
        start: first byte.
        end: first byte after it.
        why: one sentence.
    """

    rule: str
    start: int
    end: int
    why: str

    def __str__(self) -> str:
        return f"{self.rule} {self.start:#x}-{self.end - 1:#x}: {self.why}"


@dataclass(frozen=True)
class Plan:
    """What setup will configure, and why.

    Attributes:
        kernel: the release planned for.
        method: memmap or reserve_mem.
        region: the whole ``memmap=`` range (None with reserve_mem).
        ramoops: ramoops's part (None with reserve_mem: the kernel picks).
        ramoops_size: bytes of ramoops's region.
        ring: the ring's part, or None.
        canary: the canary page, or None (reserve_mem).
        record_size, ecc, max_reason: ramoops parameters.
        panic: the ``panic=`` value.
        ramoops_builtin: ramoops is built into the kernel (parameters on the
            command line) rather than a module (modprobe.d).
        cmdline: kernel boot parameters, as the kernel reads them.
        modprobe: lines of /etc/modprobe.d/memconsole.conf (empty: built in).
        modules_load: lines of /etc/modules-load.d/memconsole.conf.
        pstore_after_modules: order systemd-pstore after systemd-modules-load.
        reasons: one line per rule that shaped the plan.
        warnings: what the user must know (risks, unverifiable parts).
        offers: boot options not turned on, each with what it costs.
        exclusions: every range kept out of, with its rule.
        memmap_in_use: ``memmap=`` entries already on the command line/GRUB.
        dmesg_zones: how many dmesg records of ``record_size`` the ramoops
            region holds (ramoops_probe()'s layout).
    """

    kernel: str
    method: Method
    region: Range | None
    ramoops: Range | None
    ramoops_size: int
    ring: Range | None
    canary: Range | None
    record_size: int
    ecc: int
    max_reason: int
    panic: int
    ramoops_builtin: bool
    cmdline: tuple[str, ...]
    modprobe: tuple[str, ...]
    modules_load: tuple[str, ...]
    pstore_after_modules: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    offers: tuple[str, ...] = ()
    exclusions: tuple[Exclusion, ...] = field(default=())
    memmap_in_use: int = 0
    dmesg_zones: int = 0

    def as_dict(self) -> dict[str, object]:
        """The plan as JSON-ready values (addresses and sizes as integers)."""
        def rng(r: Range | None) -> dict[str, int] | None:
            return None if r is None else {"address": r.start, "size": r.size}

        return {
            "kernel": self.kernel, "method": self.method.value,
            "address": self.region.start if self.region else None,
            "size": self.region.size if self.region else self.ramoops_size,
            "region": rng(self.region),
            "ramoops": {"address": self.ramoops.start if self.ramoops else None,
                        "size": self.ramoops_size, "record_size": self.record_size,
                        "ecc": self.ecc, "max_reason": self.max_reason,
                        "dmesg_zones": self.dmesg_zones,
                        "built_in": self.ramoops_builtin},
            "ring": rng(self.ring), "canary": rng(self.canary), "panic": self.panic,
            "cmdline": list(self.cmdline), "modprobe": list(self.modprobe),
            "modules_load": list(self.modules_load), "reasons": list(self.reasons),
            "warnings": list(self.warnings), "offers": list(self.offers),
            "exclusions": [{"rule": e.rule, "start": e.start, "end": e.end, "why": e.why}
                           for e in self.exclusions],
            "memmap_in_use": self.memmap_in_use,
        }


def _memparse(text: str) -> int:
    """The kernel's memparse(): simple_strtoull(base 0) and a K..E suffix."""
    suffix = text[-1].lower() if text and text[-1].lower() in _SHIFT else ""
    digits = text[:-1] if suffix else text
    if digits.lower().startswith("0x"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits[1:], 8)
    else:
        value = int(digits, 10)
    return value << _SHIFT.get(suffix, 0)


def memmap_items(words: list[str] | tuple[str, ...]) -> list[tuple[str, int, int]]:
    """``(kind, start, size)`` of every addressed ``memmap=`` item in
    *words* (comma lists split), kind one of ``$ # ! @``: what
    arch/x86/boot/compressed/kaslr.c mem_avoid_memmap() counts toward its
    four (plain ``memmap=nn`` is a limit and ``exactmap`` a mode: not
    counted).  Unreadable items raise :class:`ConfigError`."""
    out = []
    for word in words:
        if not word.startswith("memmap="):
            continue
        for item in word[len("memmap="):].split(","):
            if item in ("exactmap", "") or re.fullmatch(r"[0-9a-fA-Fx]+[KkMmGgTtPpEe]?", item):
                continue
            m = _MEMMAP_ITEM.match(item)
            try:
                if m is None:
                    raise ValueError
                size, start = _memparse(m.group(1)), _memparse(m.group(3))
            except ValueError:
                raise ConfigError(f"cannot read memmap= item {item!r} in {word!r}") from None
            out.append((m.group(2), start, size))
    return out


def _strict_iomem(data: bytes) -> list[IomemEntry]:
    """parse_iomem(), refusing anything that is not a whole /proc/iomem."""
    lines = [line for line in data.splitlines() if line.strip()]
    entries = parse_iomem(data)
    if len(entries) != len(lines):
        bad = next(i for i, line in enumerate(data.splitlines(), 1)
                   if line.strip() and not re.match(rb"^ *[0-9a-fA-F]+-[0-9a-fA-F]+ : ", line))
        raise ParseError(f"iomem line {bad} is not 'start-end : name' "
                         f"({data.splitlines()[bad - 1][:60]!r})")
    if not entries:
        raise ParseError("the memory map is empty")
    if all(e.start == 0 and e.end == 0 for e in entries):
        raise ParseError("/proc/iomem shows no addresses to this user: run as root, "
                         "or give --iomem with a copy read as root")
    prev_end = -1
    for e in entries:
        if e.end < e.start:
            raise ParseError(f"iomem entry {e.start:#x}-{e.end:#x} ({e.name}) ends before it "
                             "starts")
        if e.depth == 0:
            if e.start <= prev_end:
                raise ParseError(f"iomem top-level entry {e.start:#x}-{e.end:#x} ({e.name}) "
                                 "overlaps the one before it")
            prev_end = e.end
    return entries


def _ram(entries: list[IomemEntry], previous: tuple[int, int] | None
         ) -> tuple[list[tuple[int, int]], list[IomemEntry], bool]:
    """Top-level System RAM as [start, end) ranges, the children inside
    them, and whether the previous setup's range (shown as Reserved after
    its reboot) was put back as RAM."""
    ram = []
    back = False
    for e in entries:
        if e.depth != 0:
            continue
        if e.name == "System RAM":
            ram.append([e.start, e.end + 1])
        elif (previous is not None and e.name.lower() == "reserved"
              and (e.start, e.end + 1 - e.start) == previous):
            ram.append([e.start, e.end + 1])
            back = True
    ram.sort()
    merged: list[list[int]] = []
    edges = (previous[0], previous[0] + previous[1]) if back and previous else ()
    for r in ram:
        # Only the previous range is merged with its neighbours (it was RAM
        # before setup reserved it); RAM entries the firmware split stay apart.
        if merged and merged[-1][1] == r[0] and r[0] in edges:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    children = [e for e in entries if e.depth > 0
                and any(s <= e.start < t for s, t in merged)]
    return [(s, t) for s, t in merged], children, back


def _subtract(ranges: list[tuple[int, int]], cut: list[Exclusion]) -> list[tuple[int, int]]:
    out = []
    for s, t in ranges:
        pieces = [(s, t)]
        for ex in cut:
            nxt = []
            for a, b in pieces:
                if ex.end <= a or ex.start >= b:
                    nxt.append((a, b))
                    continue
                if a < ex.start:
                    nxt.append((a, ex.start))
                if ex.end < b:
                    nxt.append((ex.end, b))
            pieces = nxt
        out += pieces
    return out


def _top_below(ram: list[tuple[int, int]], limit: int) -> int | None:
    tops = [min(t, limit) for s, t in ram if s < limit]
    return max(tops) if tops else None


def _check_options(opt: Options) -> Geometry:
    if opt.size <= 0 or opt.size % PAGE:
        raise ConfigError(f"--size {opt.size:#x} must be a non-zero multiple of 4 KiB")
    if opt.record_size < PAGE or opt.record_size & (opt.record_size - 1):
        raise ConfigError(f"--record-size {opt.record_size:#x} must be a power of two, at "
                          "least 4 KiB (ramoops rounds other values down)")
    if not 0 <= opt.ecc < 128:
        raise ConfigError(f"--ecc {opt.ecc} outside 0..127 (128-byte blocks, RS(255))")
    if opt.ring is not None and (opt.ring <= 0 or opt.ring % PAGE):
        raise ConfigError(f"--ring {opt.ring:#x} must be a non-zero multiple of 4 KiB")
    unknown = sorted(opt.panic_on - set(PANIC_ON))
    if unknown:
        raise ConfigError(f"unknown --panic-on {', '.join(unknown)} (known: "
                          f"{', '.join(PANIC_ON)})")
    # ramoops_probe() with module defaults: console, ftrace and pmsg zones
    # of 4 KiB each, the rest in record_size dmesg zones.
    geom = Geometry.from_params(opt.size, opt.record_size, ecc=opt.ecc)
    try:
        zones = layout(geom)
    except (ConfigError, ParseError) as exc:
        raise ConfigError(f"--size {opt.size:#x} with --record-size {opt.record_size:#x}: "
                          f"{exc}") from None
    if not any(z.kind is ZoneKind.DMESG for z in zones):
        raise ConfigError(f"--size {opt.size:#x} leaves no room for one {opt.record_size:#x}"
                          " record after the console, ftrace and pmsg zones (4 KiB each)")
    return geom


def _method(opt: Options, facts: Facts) -> tuple[Method, list[str], list[str]]:
    k = facts.kernel
    if opt.method in ("auto", "memmap"):
        why = ("R1 method memmap: memmap=SIZE$ADDR takes the range out of the firmware "
               "memory map before the kernel allocates anything (e820, before memblock), and "
               "the x86 decompressor's KASLR avoids it; measured: memmap= kept 10 of 10 "
               "crash/reset cycles at the very address where reserve_mem= alone kept 0 of 9 "
               "(docs/setup.md)")
        if opt.method == "auto" and k.has_mem_name:
            why += (f"; {k.release} also has reserve_mem= (ramoops parm mem_name), not chosen "
                    "for that measurement")
        return Method.MEMMAP, [why], []
    if opt.method != "reserve-mem":
        raise ConfigError(f"unknown --method {opt.method!r} (auto, memmap, reserve-mem)")
    if not k.has_mem_name:
        how = ("its ramoops parameters could not be read" if not k.ramoops_params else
               "ramoops has no mem_name parameter (Linux 6.11+)")
        raise SetupError(f"--method reserve-mem: kernel {k.release} cannot use it: {how}")
    if opt.ring is not None:
        raise ConfigError("--ring needs a memmap= range (the recorder writes through "
                          "/dev/mem, which refuses System RAM, and a reserve_mem= region is "
                          "System RAM): use --method memmap")
    warn = ("reserve_mem= as asked, against the measurement: on 6.12 under QEMU it kept 0 of "
            "9 records over crash/reset cycles; the kernel allocates the region after "
            "setup_arch(), top-down, in memory the same boot has just zeroed (the percpu "
            "first chunk), so each boot's region comes up empty, and its address may move "
            "with KASLR (\"not guaranteed to be the same location\", the patch says); "
            "memmap= at the same address kept 10 of 10 (docs/setup.md)")
    return (Method.RESERVE_MEM,
            ["R1 method reserve-mem (asked): the kernel has reserve_mem= (ramoops parm "
             "mem_name, read from the module, not guessed from the version)"], [warn])


def _exclusions(ram: list[tuple[int, int]], children: list[IomemEntry], facts: Facts,
                in_use: list[tuple[str, int, int]], previous: tuple[int, int] | None
                ) -> list[Exclusion]:
    kernels = facts.machine.kernels
    ex = [Exclusion("R5", 0, LOAD_PHYSICAL_ADDR,
                    "below 16 MiB: loaders copy the protected-mode kernel to 1 MiB and the "
                    "firmware keeps its own data low (OVMF: 0x900000-0x14fffff)")]
    sized = [(k.header.init_size, k.release) for k in kernels if k.header is not None]
    init, who = max(sized) if sized else (DEFAULT_INIT_SIZE, "no readable kernel image: "
                                          "assumed")
    r4_end = -(-(LOAD_PHYSICAL_ADDR + init + R4_SLACK) // ALIGN) * ALIGN
    ex.append(Exclusion("R4", LOAD_PHYSICAL_ADDR, r4_end,
                        f"the kernel without KASLR (nokaslr, a fifth memmap=, the EFI stub "
                        f"whenever memmap= is present): 16 MiB + init_size {init:#x} "
                        f"({who}) + 16 MiB"))
    initrds = [(k.initrd_size, k.release) for k in kernels if k.initrd_size]
    biggest = max(initrds) if initrds else (0, "none")
    room = 2 * biggest[0] + 64 * MiB
    limits = [(4 * GiB, "QEMU's loader, the EFI stub and the firmware's own top-down "
               "allocations (the top of RAM below 4 GiB)"), *LOADER_LIMITS]
    max_addrs = {k.header.initrd_addr_max for k in kernels if k.header is not None}
    limits += [(m + 1, f"the EFI stub's preferred limit (initrd_addr_max {m:#x})")
               for m in sorted(max_addrs) if m + 1 < 4 * GiB]
    tops: dict[int, list[str]] = {}
    for limit, loader in limits:
        top = _top_below(ram, limit)
        if top is not None:
            tops.setdefault(top, []).append(loader)
    for top, loaders in sorted(tops.items()):
        ex.append(Exclusion("R3", max(0, top - room) // ALIGN * ALIGN, top,
                            f"where {' and '.join(loaders)} put the initrd: 2 x the largest "
                            f"initrd ({biggest[0]} bytes, {biggest[1]}) + 64 MiB below "
                            f"{top:#x}"))
    top_all = max(t for _, t in ram)
    if top_all > 4 * GiB:
        ex.append(Exclusion("R15", top_all - FIRMWARE_TOP, top_all,
                            "the top 64 MiB of RAM, left to firmware that allocates "
                            "top-down"))
    for kind, start, size in in_use:
        if previous is not None and (start, size) == previous:
            continue
        if kind != "@" and size:
            ex.append(Exclusion("R9", start, start + size,
                                f"memmap={size:#x}{kind}{start:#x} is already on the command "
                                "line or in GRUB's configuration"))
    for c in children:
        if c.name not in _KERNEL_CHILDREN:
            ex.append(Exclusion("R2", c.start, c.end + 1,
                                f"{c.name!r} is claimed inside System RAM"))
    return ex


def _place(free: list[tuple[int, int]], total: int, previous: tuple[int, int] | None
           ) -> tuple[int, str]:
    if previous is not None and previous[1] == total and any(
            s <= previous[0] and previous[0] + total <= t for s, t in free):
        return previous[0], "kept the range the previous setup chose (it still satisfies " \
            "every rule)"
    for s, t in sorted(free, key=lambda r: r[1], reverse=True):
        start = (t - total) // ALIGN * ALIGN
        if start >= s:
            return start, (f"R6 top-down (the seed's order): the highest 1 MiB-aligned place "
                           f"left, in free RAM {s:#x}-{t - 1:#x}")
    raise LookupError


def plan(iomem: bytes, facts: Facts, opt: Options) -> Plan:
    """Plan the reservation for *facts* on the memory map *iomem*.

    Raises :class:`ParseError` for a memory map that is not one,
    :class:`ConfigError` for impossible options, :class:`SetupError` when
    the kernel cannot do what is asked or no RAM satisfies the rules.
    """
    k = facts.kernel
    if k.ramoops is RamoopsBuild.MISSING:
        raise SetupError(f"kernel {k.release} has no ramoops (CONFIG_PSTORE_RAM is "
                         f"{k.option('PSTORE_RAM')}, no ramoops module): nothing to configure")
    zones = sum(1 for z in layout(_check_options(opt)) if z.kind is ZoneKind.DMESG)
    method, reasons, warnings = _method(opt, facts)
    entries = _strict_iomem(iomem)
    ram, children, back = _ram(entries, opt.previous)
    if not ram:
        raise ParseError("the memory map has no top-level 'System RAM' entry")
    words = (*facts.machine.cmdline.split(), *facts.machine.grub_words)
    in_use = sorted(set(memmap_items(words)))
    if opt.previous is not None:
        in_use = [i for i in in_use if (i[1], i[2]) != opt.previous]
    builtin = k.ramoops is RamoopsBuild.BUILTIN
    ramoops_words = [f"record_size={opt.record_size:#x}", "max_reason=2",
                     *([f"ecc={opt.ecc}"] if opt.ecc else [])]
    exclusions: list[Exclusion] = []
    cmdline: list[str] = []
    region = ramoops = ring = canary = None
    if method is Method.MEMMAP:
        if len(in_use) >= 4:
            raise SetupError(f"{len(in_use)} memmap= entries are already in use "
                             f"({', '.join(f'{z:#x}{c}{s:#x}' for c, s, z in in_use)}): the "
                             "x86 decompressor avoids at most four (kaslr.c "
                             "MAX_MEMMAP_REGIONS) and turns KASLR off beyond; remove one")
        total = opt.size + (opt.ring or 0) + CANARY_SIZE
        exclusions = _exclusions(ram, children, facts, in_use, opt.previous)
        free = _subtract(ram, sorted(exclusions, key=lambda e: e.start))
        try:
            start, how = _place(free, total, opt.previous)
        except LookupError:
            biggest = max((t - s for s, t in free), default=0)
            raise SetupError(
                f"no System RAM range holds {total:#x} bytes outside the excluded ranges "
                f"(largest free piece {biggest:#x}): "
                + "; ".join(str(e) for e in exclusions)) from None
        region = Range(start, total)
        ramoops = Range(start, opt.size)
        ring = Range(ramoops.end, opt.ring) if opt.ring else None
        canary = Range(region.end - CANARY_SIZE, CANARY_SIZE)
        host = next(f"{s:#x}-{t - 1:#x}" for s, t in ram if s <= start < t)
        reasons.append(f"range {region} inside System RAM {host}, 1 MiB aligned (R2); {how}")
        if back:
            reasons.append("the previous setup's range shows as Reserved (its memmap= is in "
                           "effect) and was counted as RAM again")
        hit = [e for e in exclusions if any(e.start < t and s < e.end for s, t in ram)]
        reasons += [f"excluded {e}" for e in hit]
        reasons.append(f"R9 one memmap= entry for ramoops, ring and canary: "
                       f"{len(in_use) + 1} of at most 4 in use")
        cmdline.append(f"memmap={total:#x}${start:#x}")
        ramoops_words = [f"mem_address={start:#x}", f"mem_size={opt.size:#x}", *ramoops_words]
    else:
        cmdline.append(f"reserve_mem={opt.size:#x}:{PAGE}:{RESERVE_MEM_LABEL}")
        ramoops_words = [f"mem_name={RESERVE_MEM_LABEL}", *ramoops_words]
        warnings.append("no canary page: a reserve_mem= region is System RAM, which /dev/mem "
                        "cannot reach (canary = none)")
    if builtin:
        cmdline += [f"ramoops.{w}" for w in ramoops_words]
        reasons.append("R11 ramoops is built in: its parameters go on the kernel command line")
        modprobe: tuple[str, ...] = ()
        modules_load: tuple[str, ...] = ()
    else:
        # The guard: ramoops on a range the kernel did not reserve would
        # write into live memory, so it loads only when this boot's command
        # line carries the reservation (grep -w: the exact word).
        modprobe = (f"options ramoops {' '.join(ramoops_words)}",
                    f"install ramoops grep -qwF '{cmdline[0]}' /proc/cmdline && "
                    "exec /sbin/modprobe --ignore-install ramoops $CMDLINE_OPTS")
        modules_load = ("ramoops",)
        reasons.append("R11 ramoops is a module that nothing loads on x86 (no alias): options "
                       "in /etc/modprobe.d, loaded by /etc/modules-load.d, and only when this "
                       f"boot's command line has {cmdline[0]} (the install line; on RAM the "
                       "kernel did not reserve ramoops would overwrite live memory); "
                       f"record_size {opt.record_size:#x} (the 4 KiB default keeps less of the "
                       "log)")
    backend = _backend(facts)
    if backend:
        cmdline.append("pstore.backend=ramoops")
        reasons.append(f"R10 pstore.backend=ramoops: {backend}; pstore takes one backend, the "
                       "first to register")
    cmdline.append(f"panic={opt.panic}")
    reasons.append(_panic_reason(opt.panic))
    if opt.panic == 0:
        warnings.append("panic=0: a panicked machine waits for ever, and the power cycle a "
                        "person then does loses the RAM (the seed rebooted on panic)")
    for key in sorted(opt.panic_on):
        cmdline.append(PANIC_ON[key][0])
    offers = tuple(f"--panic-on {key} adds {word}: {cost}"
                   for key, (word, cost) in PANIC_ON.items() if key not in opt.panic_on)
    if not builtin:
        reasons.append("R12 systemd-pstore ordered after systemd-modules-load.service, so it "
                       "looks at /sys/fs/pstore after ramoops has registered")
    warnings += _firmware_warnings(facts)
    for word in facts.machine.grub_words:
        if word.startswith("panic="):
            warnings.append(f"GRUB's configuration already has {word}; GRUB_CMDLINE_LINUX_"
                            "DEFAULT comes after setup's words and wins if it sets panic= too")
    return Plan(k.release, method, region, ramoops, opt.size, ring, canary, opt.record_size,
                opt.ecc, 2, opt.panic, builtin, tuple(cmdline), modprobe, modules_load,
                not builtin, tuple(reasons), tuple(warnings), offers, tuple(exclusions),
                len(in_use), zones)


def _backend(facts: Facts) -> str:
    k, m = facts.kernel, facts.machine
    rivals = []
    if k.efi_pstore:
        rivals.append("the kernel has efi_pstore" + (" and this machine boots UEFI (udev "
                      "loads it there)" if m.uefi else ""))
    if m.erst:
        rivals.append("the firmware has an ACPI ERST table")
    elif k.option("ACPI_APEI") == "y":
        rivals.append("the kernel has the built-in ACPI ERST backend (CONFIG_ACPI_APEI)")
    return ", ".join(rivals)


def _panic_reason(panic: int) -> str:
    if panic > 0:
        what = f"reboot {panic} s after a panic (time to read the console)"
    elif panic < 0:
        what = "reboot at once after a panic"
    else:
        what = "never reboot after a panic"
    return (f"R13 panic={panic}: {what}; a warm reboot keeps the RAM, a power cycle does not "
            "(Debian's default panic=0 waits for ever; the seed rebooted on panic)")


def _firmware_warnings(facts: Facts) -> list[str]:
    k, m = facts.kernel, facts.machine
    out = []
    if m.mor is not None:
        out.append(f"R8 the firmware implements the TCG memory overwrite request "
                   f"(MemoryOverwriteRequestControl = {m.mor}): "
                   + ("it is armed, " if m.mor else "")
                   + "this kernel sets it at every boot (RESET_ATTACK_MITIGATION), and the "
                   "firmware then wipes RAM at the next reset, ramoops included; only "
                   "clearing it after boot (writing 0, giving up that protection) keeps "
                   "records; the survival canary shows whether it happens")
    elif m.uefi and k.option("RESET_ATTACK_MITIGATION") == "y":
        out.append("R8 UEFI boot and CONFIG_RESET_ATTACK_MITIGATION=y: on firmware with a TPM "
                   "the kernel asks the firmware to wipe RAM at the next reset; the variable "
                   "is not visible here, the survival canary will tell")
    return out
