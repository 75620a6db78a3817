"""Crash/warm-reset cycles in ONE QEMU process: does a ramoops placement
keep every boot's record?

Each cycle is one boot that writes a marker naming its boot number into the
kernel log (``memconsole-survival: crash of boot N``), then panics
(``crashy.ko action=panic``); ``panic=1`` resets the same QEMU process
(guest RAM survives, as DRAM does across a warm reset).  The next boot
counts the pstore records that carry the previous boot's marker, keeps what
it saw (``/proc/cmdline``, ``/proc/iomem``, ``dmesg``, ramoops's effective
parameters) under ``OUT/boot-N/``, and erases the records, so every cycle
is counted on its own.  ``bench/survival.py`` and the setup tests use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from memconsole.errors import LabError
from memconsole.lab import Drill, Kernel, Lab, Ramoops

__all__ = ["MARK", "Cycle", "read_cycle", "run_cycles"]

#: The marker each crashing boot writes to the kernel log.
MARK = "memconsole-survival: crash of boot"
# Under TCG on a loaded host the kernel's early "IO-APIC + timer" check can
# fail and panic at boot (seen once in 10 cycles on 6.12 while other guests
# ran); no_timer_check skips that check and changes nothing in the memory
# layout.
BASE_CMDLINE = ("no_timer_check",)

# Run on every boot from the second on ($1 is this boot's number): count
# the records of the previous crash, keep what the boot saw, erase pstore.
_SURVEY = r"""
survey() {
    d="$OUT/boot-$1"; mkdir -p "$d"; prev=$(($1 - 1))
    cat /proc/cmdline > "$d/cmdline"
    cat /proc/iomem > "$d/iomem.txt"
    dmesg > "$d/dmesg.txt"
    for p in /sys/module/ramoops/parameters/*; do
        [ -e "$p" ] && echo "${p##*/}=$(cat "$p")"
    done > "$d/ramoops-params.txt"
    : > "$d/records.txt"
    for f in /sys/fs/pstore/*; do
        [ -e "$f" ] || continue
        if grep -q "@MARK@ $prev\$" "$f"; then echo "ok ${f##*/}"; else echo "other ${f##*/}"; fi
    done >> "$d/records.txt"
    rm -f /sys/fs/pstore/*
    sync
}
""".replace("@MARK@", MARK)

_IOMEM_LINE = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) : (Kernel code|Kernel bss)$")


@dataclass(frozen=True)
class Cycle:
    """What one boot after a crash saw.

    Attributes:
        boot: the boot's number in the QEMU process (2 is the first after a crash).
        ok: pstore records carrying the previous boot's marker.
        other: pstore records without it.
        address: ramoops's effective ``mem_address`` (None: not registered).
        ramdisk: ``RAMDISK: [mem A-B]`` from dmesg.
        kernel: ``Kernel code`` start to ``Kernel bss`` end from /proc/iomem.
        notes: ramoops/persistent_ram lines of dmesg.
    """

    boot: int
    ok: int
    other: int
    address: int | None
    ramdisk: tuple[int, int] | None
    kernel: tuple[int, int] | None
    notes: tuple[str, ...]


def read_cycle(directory: Path, boot: int) -> Cycle:
    """Read what boot *boot* left in *directory* (``OUT/boot-N``)."""
    def text(name: str) -> str:
        try:
            return (directory / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    records = text("records.txt").split()
    params = dict(line.split("=", 1) for line in text("ramoops-params.txt").splitlines()
                  if "=" in line)
    try:
        address = int(params.get("mem_address") or "0", 0) or None
        if int(params.get("mem_size") or "0", 0) == 0:
            address = None
    except ValueError:
        address = None
    dmesg = text("dmesg.txt")
    m = re.search(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]", dmesg)
    ramdisk = (int(m.group(1), 16), int(m.group(2), 16)) if m else None
    spans: dict[str, tuple[int, int]] = {}
    for line in text("iomem.txt").splitlines():
        mm = _IOMEM_LINE.match(line)
        if mm and mm.group(3) not in spans:
            spans[mm.group(3)] = (int(mm.group(1), 16), int(mm.group(2), 16))
    kernel = ((spans["Kernel code"][0], spans["Kernel bss"][1])
              if "Kernel code" in spans and "Kernel bss" in spans else None)
    notes = tuple(line.split("] ", 1)[-1] for line in dmesg.splitlines()
                  if re.search(r"ramoops|persistent_ram|pstore|reserve_mem", line))
    return Cycle(boot, records[0::2].count("ok"), records[0::2].count("other"), address,
                 ramdisk, kernel, notes)


def run_cycles(lab: Lab, kernel: Kernel, ramoops: Ramoops, cycles: int, workdir: Path, *,
               memory_mb: int = 512, firmware: Path | None = None,
               initrd_size: int | None = None, cmdline: tuple[str, ...] = (),
               timeout_per_boot: float = 240.0) -> tuple[list[Cycle], str]:
    """Crash *cycles* times in one QEMU process with *ramoops* (and
    *cmdline*, e.g. the ``memmap=`` or ``reserve_mem=`` that reserves it);
    return what each boot after a crash saw, and the lab's error if the
    drill ended early ("" if not)."""
    if cycles < 1:
        raise LabError(f"cycles must be at least 1, not {cycles}")
    each = (_SURVEY + '[ "$boot" -gt 1 ] && survey "$boot"\n'
            f'echo "{MARK} $boot" > /dev/kmsg\n')
    drill = Drill(kernel, action="panic", then=("panic",) * (cycles - 1), ramoops=ramoops,
                  each_boot=each, stage2=_SURVEY + 'survey "$boot"', memory_mb=memory_mb,
                  firmware=firmware, initrd_size=initrd_size,
                  extra_cmdline=(*BASE_CMDLINE, *cmdline),
                  timeout=timeout_per_boot * (cycles + 1))
    error = ""
    try:
        lab.run(drill, workdir)
    except LabError as exc:
        # Keep the cycles that completed: each boot-N directory is one.
        error = str(exc)
    out = workdir / "out"
    return [read_cycle(out / f"boot-{n}", n) for n in range(2, cycles + 2)
            if (out / f"boot-{n}" / "records.txt").exists()], error
