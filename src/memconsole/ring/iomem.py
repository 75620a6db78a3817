"""Pure parsers and rules for physical ranges: /proc/iomem, ``memmap=``
options of a kernel command line, ramoops's module parameters, and the rule
that decides whether a ``mem:ADDR:SIZE`` ring may be written
(:func:`check_mem_range`).  No I/O: :mod:`memconsole.regions` reads the files
and re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from memconsole.errors import RegionError

__all__ = ["IomemEntry", "check_mem_access", "check_mem_range", "covered", "memmap_ranges",
           "memparse", "parse_iomem", "ramoops_range"]

_IOMEM_RE = re.compile(rb"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")
# simple_strtoull() digits, at most 64 bits' worth (longer runs are cut and
# the item is then rejected for its trailing digits).
_DIGITS = r"0[xX][0-9a-fA-F]{1,16}|0[0-7]{0,22}|[1-9][0-9]{0,19}"
_MEMPARSE_RE = re.compile(rf"({_DIGITS})([KkMmGgTtPpEe]?)")
# The rest of a ``memmap=SIZE%START`` item: ``[-OLDTYPE][+NEWTYPE]``.
_E820_UPDATE_RE = re.compile(rf"(?:-({_DIGITS}))?(?:\+({_DIGITS}))?")
_E820_RESERVED = 2
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


def memparse(text: str) -> tuple[int, str] | None:
    """The kernel's ``memparse()`` (lib/cmdline.c) on the start of *text*:
    ``simple_strtoull(text, 0)`` (``0x`` hex, a leading ``0`` octal, else
    decimal), then an optional ``K M G T P E`` (any case) shift; returns the
    value and the rest of *text*, or None when no digit starts it."""
    m = _MEMPARSE_RE.match(text)
    if m is None:
        return None
    return _strtoull(m.group(1)) << _SHIFT[m.group(2).lower()], text[m.end():]


def _strtoull(digits: str) -> int:
    """simple_strtoull(digits, 0) on digits that _MEMPARSE_RE matched."""
    if digits[:2].lower() == "0x":
        return int(digits[2:], 16)
    return int(digits, 8) if digits[0] == "0" else int(digits)


def _memmap_item(item: str) -> tuple[int, int] | None:
    """``(start, size)`` if one ``memmap=`` item makes an e820 *reserved*
    range, as parse_memmap_one() (arch/x86/kernel/e820.c) reads it:
    ``SIZE$START`` (range added as E820_TYPE_RESERVED), or
    ``SIZE%START[-OLD]+2`` (type changed or added as reserved).  An item the
    kernel would reject (trailing text) is not counted, so a reservation
    memconsole relies on is always one the kernel took whole."""
    first = memparse(item)
    if first is None or not first[1]:
        return None
    size, rest = first
    mark, rest = rest[0], rest[1:]
    second = memparse(rest)
    if mark not in "$%" or second is None:
        return None
    start, rest = second
    if mark == "$":
        return (start, size) if not rest and size else None
    new_type = _E820_UPDATE_RE.fullmatch(rest)
    if new_type is None or new_type.group(2) is None or not size:
        return None
    return (start, size) if _strtoull(new_type.group(2)) == _E820_RESERVED else None


def memmap_ranges(cmdline: bytes) -> list[tuple[int, int]]:
    """``(start, size)`` of every range a ``memmap=`` option of the kernel
    command line *cmdline* reserves (comma lists included; see
    :func:`_memmap_item`).  Words after ``--`` go to init, not the kernel,
    and are ignored, as the kernel's parse_args() stops there."""
    out = []
    for word in cmdline.decode("ascii", "replace").split()[:4096]:
        if word == "--":
            break
        if not word.startswith("memmap="):
            continue
        value = word[len("memmap="):]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        for item in value.split(",")[:64]:
            got = _memmap_item(item)
            if got is not None:
                out.append(got)
    return out


def covered(ranges: Iterable[tuple[int, int]], start: int, size: int) -> bool:
    """Whether the union of the ``(start, size)`` *ranges* covers
    ``[start, start+size)``."""
    pos, end = start, start + size
    for lo, length in sorted(ranges):
        if lo > pos:
            break
        pos = max(pos, lo + length)
        if pos >= end:
            return True
    return pos >= end


def _firmware_types(firmware: list[IomemEntry], start: int, end: int) -> str:
    """What the firmware's map says about ``[start, end]``, for a message."""
    parts = [f"{e.name!r} ({e.start:#x}-{e.end:#x})" for e in firmware
             if e.start <= end and e.end >= start][:4]
    return ", ".join(parts) if parts else "nothing (a hole)"


def check_mem_access(entries: list[IomemEntry], start: int, size: int, *,
                     cmdline: bytes | None, firmware: list[IomemEntry] | None,
                     ramoops: tuple[int, int] | None = None, write: bool,
                     force: bool = False) -> tuple[str, ...]:
    """Decide whether the physical range ``[start, start+size)`` may be
    mapped through /dev/mem, for writing or only reading; raise
    :class:`RegionError` with the reason, or return warnings for a person.

    Always refused (*force* changes nothing): whatever
    :func:`check_mem_range` refuses (System RAM, a driver's claim, ...),
    and an overlap with ramoops's range (*ramoops*, from its module
    parameters: ramoops maps its range without claiming it).

    Then where the reservation comes from.  *cmdline* is /proc/cmdline
    (None: unreadable), *firmware* the firmware's own memory map
    (/sys/firmware/memmap, which x86 fills from e820_table_firmware before
    ``memmap=`` changes e820_table; None: not available):

    * reserved by ``memmap=`` on this boot's command line, and RAM in the
      firmware's map (or no map to ask): read and write;
    * anything else, above all a range the firmware itself calls
      ``Reserved`` (ACPI, SMM, device memory, a hole): writing is refused
      unless *force*; reading is allowed, with a warning, when the firmware
      calls the range RAM (a read of RAM changes nothing), and refused
      otherwise unless *force* (device registers can change when read).
    """
    end = start + size - 1
    label = f"physical range {start:#x}-{end:#x}"
    check_mem_range(entries, start, size)
    if ramoops and ramoops[0] <= end and start < ramoops[0] + ramoops[1]:
        raise RegionError(f"{label}: overlaps the range ramoops uses "
                          f"({ramoops[0]:#x}+{ramoops[1]:#x})")
    reserved = cmdline is not None and covered(memmap_ranges(cmdline), start, size)
    fw_ram: bool | None = None
    if firmware is not None:
        fw_ram = covered([(e.start, e.end - e.start + 1) for e in firmware
                          if e.name == "System RAM"], start, size)
    if reserved and fw_ram is not False:
        return ()
    if reserved:
        why = ("memmap= on the kernel command line reserves it, but the firmware's own map "
               f"(/sys/firmware/memmap) shows {_firmware_types(firmware or [], start, end)}, "
               "not RAM")
    elif cmdline is None:
        why = "the kernel command line (/proc/cmdline) cannot be read to confirm a memmap="
    else:
        why = f"no memmap={size:#x}${start:#x} (or wider) on the kernel command line reserves it"
        if fw_ram is False:
            why += f"; the firmware's map shows {_firmware_types(firmware or [], start, end)}"
    if write:
        if force:
            return (f"{label}: {why}; writing it anyway (--force)",)
        raise RegionError(f"{label}: {why}: writing it could corrupt memory that firmware or "
                          f"a device uses; boot with memmap={size:#x}${start:#x} (docs/ring.md) "
                          "or give --force")
    if fw_ram:
        return (f"{label}: {why}; reading it, as the firmware's map calls it RAM",)
    if force:
        return (f"{label}: {why}; reading it anyway",)
    where = "the firmware's map does not call it RAM" if fw_ram is False \
        else "no firmware map (/sys/firmware/memmap) says it is RAM"
    raise RegionError(f"{label}: {why}; {where}, and device memory can change when read: "
                      "not reading it")


def ramoops_range(params: dict[str, bytes]) -> tuple[int, int] | None:
    """``(start, size)`` of a loaded ramoops from its module parameters
    (``mem_address``, ``mem_size`` as /sys/module/ramoops/parameters shows
    them), or None."""
    try:
        start, size = int(params["mem_address"], 0), int(params["mem_size"], 0)
    except (KeyError, ValueError):
        return None
    return (start, size) if size > 0 else None
