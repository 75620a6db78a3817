"""Pure parsers and rules for physical ranges: /proc/iomem, ``memmap=``
options of a kernel command line, ramoops's module parameters, and the rule
that decides whether a ``mem:ADDR:SIZE`` ring may be written
(:func:`check_mem_range`).  No I/O: :mod:`memconsole.regions` reads the files
and re-exports these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memconsole.errors import RegionError

__all__ = ["IomemEntry", "check_mem_range", "memmap_ranges", "parse_iomem", "ramoops_range"]

_IOMEM_RE = re.compile(rb"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")
_MEMMAP_RE = re.compile(r"^(0[xX][0-9a-fA-F]+|\d+)([KkMmGgTtPpEe]?)\$(0[xX][0-9a-fA-F]+|\d+)"
                        r"([KkMmGgTtPpEe]?)$")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


@dataclass(frozen=True)
class IomemEntry:
    """One line of /proc/iomem.

    Attributes:
        start: first byte.
        end: last byte (inclusive, as the kernel prints it).
        name: the resource name (``System RAM``, ``reserved``, a driver's).
        depth: nesting level (0 for top-level entries).
    """

    start: int
    end: int
    name: str
    depth: int


def parse_iomem(text: bytes) -> list[IomemEntry]:
    """Parse /proc/iomem (``  start-end : name``, two spaces per level,
    kernel/resource.c r_show()).  Lines that do not match are skipped."""
    out = []
    for line in text.splitlines()[:100_000]:
        m = _IOMEM_RE.match(line)
        if m is None:
            continue
        out.append(IomemEntry(int(m.group(2), 16), int(m.group(3), 16),
                              m.group(4).decode("utf-8", "replace"), len(m.group(1)) // 2))
    return out


def check_mem_range(entries: list[IomemEntry], start: int, size: int) -> None:
    """Refuse, with the reason, a physical range that is not safe to write.

    The range ``[start, start+size)`` must be covered by top-level entries
    named ``reserved`` (``memmap=nn$ss``; x86 e820 prints E820_TYPE_RESERVED
    as ``Reserved``), overlap no System RAM, no other top-level entry and no
    nested entry (a driver's claim, e.g. ramoops's ``persistent_ram``), and
    lie above the first MiB (legacy BIOS area).
    """
    end = start + size - 1
    label = f"physical range {start:#x}-{end:#x}"
    if entries and all(e.start == 0 and e.end == 0 for e in entries):
        raise RegionError(f"{label}: /proc/iomem shows no addresses to this user; "
                          "reading them (and writing /dev/mem) needs root")
    if start < 1 << 20:
        raise RegionError(f"{label}: below 1 MiB (legacy BIOS area)")
    covered: list[tuple[int, int]] = []
    for e in entries:
        if e.end < start or e.start > end:
            continue
        where = f"{e.name!r} ({e.start:#x}-{e.end:#x})"
        if e.depth > 0:
            raise RegionError(f"{label}: part of it is claimed by {where}")
        if e.name == "System RAM":
            raise RegionError(f"{label}: overlaps System RAM {e.start:#x}-{e.end:#x}: "
                              "writing there would corrupt live memory")
        if e.name.startswith("Persistent Memory"):
            raise RegionError(f"{label}: overlaps {where}, which nd_pmem drives: use its "
                              "block device (/dev/pmemN) instead")
        if e.name.lower() != "reserved":
            raise RegionError(f"{label}: overlaps {where}, which is not reserved memory")
        covered.append((e.start, e.end))
    pos = start
    for lo, hi in sorted(covered):
        if lo > pos:
            break
        pos = max(pos, hi + 1)
    if pos <= end:
        raise RegionError(f"{label}: {pos:#x}-{end:#x} is not shown as reserved in "
                          "/proc/iomem (reserve it with memmap=SIZE$ADDR)")


def memmap_ranges(cmdline: bytes) -> list[tuple[int, int]]:
    """``(start, size)`` of every ``memmap=SIZE$ADDR`` on a kernel command
    line (comma lists included, sizes as the kernel's memparse() reads them)."""
    out = []
    for word in cmdline.decode("ascii", "replace").split()[:4096]:
        if not word.startswith("memmap="):
            continue
        for item in word[len("memmap="):].split(",")[:64]:
            m = _MEMMAP_RE.match(item)
            if m:
                size = int(m.group(1), 0) << _SHIFT[m.group(2).lower()]
                addr = int(m.group(3), 0) << _SHIFT[m.group(4).lower()]
                out.append((addr, size))
    return out


def ramoops_range(params: dict[str, bytes]) -> tuple[int, int] | None:
    """``(start, size)`` of a loaded ramoops from its module parameters
    (``mem_address``, ``mem_size`` as /sys/module/ramoops/parameters shows
    them), or None."""
    try:
        start, size = int(params["mem_address"], 0), int(params["mem_size"], 0)
    except (KeyError, ValueError):
        return None
    return (start, size) if size > 0 else None
