"""Measure whether ramoops records survive repeated crash/warm-reset cycles
in ONE QEMU process, for a given placement of the ramoops region.

    PYTHONPATH=src python3 bench/survival.py --kernel 6.12 --cycles 20 \\
        --place top --place reserve-mem:1M:4096 --place memmap:0x7000000 \\
        [--memory 512] [--ovmf] [--initrd-size 35M] [--out DIR] [--json FILE]

Each cycle is one boot that writes a marker naming its boot number into the
kernel log (``memconsole-survival: crash of boot N``), then panics
(``crashy.ko action=panic``); ``panic=1`` resets the same QEMU process
(guest RAM survives, as DRAM does across a warm reset).  The next boot
counts the pstore records that carry the previous boot's marker, saves
what it saw (``/proc/cmdline``, ``/proc/iomem``, ``dmesg``, ramoops's
effective parameters) under ``OUT/<placement>/boot-N/``, and erases the
records, so every cycle is counted on its own.

Placements (``--place``, repeatable; SIZE defaults to 1M):

``memmap:ADDR[:SIZE]``
    ``memmap=SIZE$ADDR`` plus ``ramoops mem_address=ADDR mem_size=SIZE``.
``top[:SIZE]``
    the naive choice: ``memmap=`` at the last SIZE bytes of the highest
    System RAM range below 4 GiB, read from /proc/iomem of a probe boot
    of the same machine (kernel, memory, firmware) without ramoops.
``reserve-mem[:SIZE[:ALIGN]]``
    ``reserve_mem=SIZE:ALIGN:oops`` and ``ramoops mem_name=oops``
    (Linux 6.11+); the address is the kernel's choice, recorded per boot.

Prints one Markdown table row per placement.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole.errors import LabError, MemconsoleError  # noqa: E402
from memconsole.lab import Drill, Kernel, Lab, Ramoops, pick_kernel  # noqa: E402
from memconsole.ring.iomem import parse_iomem  # noqa: E402

OVMF = Path("/usr/share/ovmf/OVMF.fd")
_MARK = "memconsole-survival: crash of boot"
# Under TCG on a loaded host the kernel's early "IO-APIC + timer" check can fail
# and panic at boot (seen once in 10 cycles on 6.12 while other guests ran);
# no_timer_check skips that check and changes nothing in the memory layout.
_CMDLINE = ("no_timer_check",)
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30}

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
""".replace("@MARK@", _MARK)


def _size(text: str) -> int:
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)([KMG]?)", text.strip(), re.IGNORECASE)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(m.group(1), 0) << _SHIFT[m.group(2).upper()]


@dataclass(frozen=True)
class Placement:
    """Where ramoops's region goes and how it is reserved.

    Attributes:
        name: label for tables and directories.
        ramoops: module parameters (``mem_name`` for reserve_mem).
        cmdline: boot options beyond the ``memmap=`` the lab derives.
    """

    name: str
    ramoops: Ramoops
    cmdline: tuple[str, ...] = ()


@dataclass(frozen=True)
class Boot:
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


def _probe_top(lab: Lab, kernel: Kernel, size: int, memory_mb: int, firmware: Path | None,
               initrd_size: int | None, workdir: Path) -> int:
    """The last *size* bytes of the highest System RAM below 4 GiB, as a
    boot of this machine without ramoops shows it."""
    drill = Drill(kernel, action="sysrq", ramoops=None, memory_mb=memory_mb,
                  firmware=firmware, initrd_size=initrd_size, extra_cmdline=_CMDLINE,
                  stage1='cat /proc/iomem > "$OUT/iomem.txt"; dmesg > "$OUT/dmesg.txt"',
                  stage2="true")
    result = lab.run(drill, workdir)
    entries = parse_iomem(result.output("iomem.txt").encode())
    ram = [e for e in entries if e.depth == 0 and e.name == "System RAM" and e.end < 1 << 32]
    if not ram:
        raise LabError("the probe boot's /proc/iomem shows no System RAM below 4 GiB")
    end = max(e.end for e in ram) + 1
    return (end - size) & ~0xFFF


def parse_place(spec: str, probe: dict[str, int]) -> Placement:
    """A :class:`Placement` from a ``--place`` argument (``top`` addresses
    come from *probe*, keyed by spec)."""
    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    if kind == "memmap" and 1 <= len(args) <= 2:
        addr, size = int(args[0], 0), _size(args[1]) if len(args) > 1 else 1 << 20
        return Placement(f"memmap {addr:#x}", Ramoops(mem_address=addr, mem_size=size))
    if kind == "top" and len(args) <= 1:
        size = _size(args[0]) if args else 1 << 20
        addr = probe[spec]
        return Placement(f"top {addr:#x}", Ramoops(mem_address=addr, mem_size=size))
    if kind == "reserve-mem" and len(args) <= 2:
        size = _size(args[0]) if args else 1 << 20
        align = _size(args[1]) if len(args) > 1 else 4096
        return Placement(f"reserve_mem {size:#x}:{align:#x}",
                         Ramoops(mem_name="oops", mem_size=size),
                         (f"reserve_mem={size:#x}:{align:#x}:oops",))
    raise argparse.ArgumentTypeError(f"bad --place {spec!r}")


def _read_boot(directory: Path, boot: int) -> Boot:
    def text(name: str) -> str:
        try:
            return (directory / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    records = text("records.txt").split()
    params = dict(line.split("=", 1) for line in text("ramoops-params.txt").splitlines()
                  if "=" in line)
    address = int(params["mem_address"], 0) if params.get("mem_address") else None
    if address == 0 or int(params.get("mem_size") or "0", 0) == 0:
        address = None
    dmesg = text("dmesg.txt")
    m = re.search(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]", dmesg)
    ramdisk = (int(m.group(1), 16), int(m.group(2), 16)) if m else None
    entries = parse_iomem(text("iomem.txt").encode())
    code = [e for e in entries if e.name == "Kernel code"]
    bss = [e for e in entries if e.name == "Kernel bss"]
    kernel = (code[0].start, bss[0].end) if code and bss else None
    notes = tuple(line.split("] ", 1)[-1] for line in dmesg.splitlines()
                  if re.search(r"ramoops|persistent_ram|pstore|reserve_mem", line))
    return Boot(boot, records[0::2].count("ok"), records[0::2].count("other"), address,
                ramdisk, kernel, notes)


def run_placement(lab: Lab, kernel: Kernel, place: Placement, cycles: int, memory_mb: int,
                  firmware: Path | None, initrd_size: int | None, workdir: Path
                  ) -> tuple[list[Boot], str]:
    """Crash *cycles* times in one QEMU process; return what each boot after
    a crash saw, and the lab's error if the drill ended early ("" if not)."""
    each = (_SURVEY + '[ "$boot" -gt 1 ] && survey "$boot"\n'
            f'echo "{_MARK} $boot" > /dev/kmsg\n')
    drill = Drill(kernel, action="panic", then=("panic",) * (cycles - 1), ramoops=place.ramoops,
                  each_boot=each, stage2=_SURVEY + 'survey "$boot"', memory_mb=memory_mb,
                  firmware=firmware, initrd_size=initrd_size,
                  extra_cmdline=(*_CMDLINE, *place.cmdline), timeout=240.0 * (cycles + 1))
    error = ""
    try:
        lab.run(drill, workdir)
    except LabError as exc:
        # Keep the cycles that completed: each boot-N directory is one.
        error = str(exc)
    out = workdir / "out"
    return [_read_boot(out / f"boot-{n}", n) for n in range(2, cycles + 2)
            if (out / f"boot-{n}" / "records.txt").exists()], error


def _span(boots: list[Boot], attr: str) -> str:
    values = sorted({getattr(b, attr) for b in boots if getattr(b, attr) is not None})
    if not values:
        return "-"
    if isinstance(values[0], tuple):
        return ", ".join(f"{a:#x}-{b:#x}" for a, b in values[:3]) + (
            f" (+{len(values) - 3} more)" if len(values) > 3 else "")
    return ", ".join(f"{v:#x}" for v in values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", help="release or prefix (default: newest)")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--place", action="append", required=True)
    ap.add_argument("--memory", type=int, default=512, help="guest RAM in MiB")
    ap.add_argument("--ovmf", action="store_true", help=f"boot with {OVMF} (UEFI)")
    ap.add_argument("--initrd-size", type=_size, help="pad the initrd to this size")
    ap.add_argument("--cmdline", action="append", default=[],
                    help="one more boot option for every placement (repeatable)")
    ap.add_argument("--out", type=Path, help="keep each placement's boots here")
    ap.add_argument("--json", type=Path, help="append one JSON line per placement")
    args = ap.parse_args(argv)
    try:
        kernel = pick_kernel(args.kernel)
        lab = Lab()
        firmware = OVMF if args.ovmf else None
        out = args.out or Path(tempfile.mkdtemp(prefix="survival-"))
        probe = {}
        for spec in args.place:
            if spec.split(":", 1)[0] == "top":
                size = _size(spec.split(":")[1]) if ":" in spec else 1 << 20
                probe[spec] = _probe_top(lab, kernel, size, args.memory, firmware,
                                         args.initrd_size, out / "probe")
        places = [parse_place(spec, probe) for spec in args.place]
        places = [Placement(p.name, p.ramoops, (*p.cmdline, *args.cmdline)) for p in places]
    except (MemconsoleError, argparse.ArgumentTypeError) as exc:
        print(f"survival: {exc}", file=sys.stderr)
        return 1
    machine = (f"{kernel.release}, {args.memory} MiB, {'OVMF' if args.ovmf else 'SeaBIOS'}"
               + (f", initrd {args.initrd_size >> 20} MiB" if args.initrd_size else ""))
    print("| machine | placement | cycles | records kept | ramoops address | "
          "initrd | kernel (KASLR) |")
    print("|---|---|---|---|---|---|---|")
    status = 0
    for place in places:
        workdir = out / re.sub(r"[^a-zA-Z0-9]+", "-", place.name)
        try:
            boots, error = run_placement(lab, kernel, place, args.cycles, args.memory,
                                         firmware, args.initrd_size, workdir)
        except MemconsoleError as exc:
            print(f"survival: {place.name}: {exc}", file=sys.stderr)
            status = 1
            continue
        if error:
            print(f"survival: {place.name}: ended early after {len(boots)} cycles: {error}",
                  file=sys.stderr)
            status = 1
        kept = sum(1 for b in boots if b.ok)
        print(f"| {machine} | {place.name} | {len(boots)}{' (ended early)' if error else ''} | "
              f"{kept}/{len(boots)} | "
              f"{_span(boots, 'address')} | {_span(boots, 'ramdisk')} | "
              f"{len({b.kernel for b in boots})} places, {_span(boots, 'kernel')} |",
              flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps({"machine": machine, "placement": place.name,
                                    "cmdline": (workdir / "out" / "boot-2" / "cmdline")
                                    .read_text(errors="replace").strip()
                                    if (workdir / "out" / "boot-2" / "cmdline").exists()
                                    else None,
                                    "error": error,
                                    "boots": [asdict(b) for b in boots]}) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
