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
``plan[:METHOD]``
    what ``memconsole setup --method METHOD`` (default auto) plans for this
    kernel on the probe boot's /proc/iomem (the host's /boot kernels and
    initrds feed the rules): its command line (``memmap=``, or
    ``reserve_mem=``; ``pstore.backend=``) and its modprobe.d file, loaded
    by a bare ``modprobe ramoops`` (its install guard included).  The plan's
    ``panic=10`` is left out: the lab's ``panic=1`` keeps cycles short.

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
from memconsole.lab.survival import BASE_CMDLINE, Cycle, run_cycles  # noqa: E402
from memconsole.ring.iomem import parse_iomem  # noqa: E402

OVMF = Path("/usr/share/ovmf/OVMF.fd")
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30}


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


def _probe(lab: Lab, kernel: Kernel, memory_mb: int, firmware: Path | None,
           initrd_size: int | None, workdir: Path) -> bytes:
    """/proc/iomem of a boot of this machine (kernel, memory, firmware)
    without ramoops."""
    drill = Drill(kernel, action="sysrq", ramoops=None, memory_mb=memory_mb,
                  firmware=firmware, initrd_size=initrd_size, extra_cmdline=BASE_CMDLINE,
                  stage1='cat /proc/iomem > "$OUT/iomem.txt"; dmesg > "$OUT/dmesg.txt"',
                  stage2="true")
    return lab.run(drill, workdir).output("iomem.txt").encode()


def _top(iomem: bytes, size: int) -> int:
    """The last *size* bytes of the highest System RAM below 4 GiB."""
    entries = parse_iomem(iomem)
    ram = [e for e in entries if e.depth == 0 and e.name == "System RAM" and e.end < 1 << 32]
    if not ram:
        raise LabError("the probe boot's /proc/iomem shows no System RAM below 4 GiB")
    end = max(e.end for e in ram) + 1
    return (end - size) & ~0xFFF


def _plan(iomem: bytes, kernel: Kernel, method: str) -> Placement:
    """What ``memconsole setup --method METHOD`` plans on *iomem*."""
    from memconsole.cli.verify import plan_drill
    from memconsole.setup.facts import gather
    from memconsole.setup.planner import Options, plan

    the_plan = plan(iomem, gather(Path("/"), kernel.release), Options(method=method))
    ramoops, cmdline = plan_drill(the_plan.as_dict())
    where = f"{the_plan.region.start:#x}" if the_plan.region else "kernel's choice"
    return Placement(f"plan {the_plan.method.value} {where}", ramoops,
                     tuple(w for w in cmdline if not w.startswith("panic=")))


def parse_place(spec: str, iomem: bytes | None, kernel: Kernel) -> Placement:
    """A :class:`Placement` from a ``--place`` argument (``top`` and
    ``plan`` read the probe boot's *iomem*)."""
    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    if kind == "memmap" and 1 <= len(args) <= 2:
        addr, size = int(args[0], 0), _size(args[1]) if len(args) > 1 else 1 << 20
        return Placement(f"memmap {addr:#x}", Ramoops(mem_address=addr, mem_size=size))
    if kind == "top" and len(args) <= 1 and iomem is not None:
        size = _size(args[0]) if args else 1 << 20
        addr = _top(iomem, size)
        return Placement(f"top {addr:#x}", Ramoops(mem_address=addr, mem_size=size))
    if kind == "reserve-mem" and len(args) <= 2:
        size = _size(args[0]) if args else 1 << 20
        align = _size(args[1]) if len(args) > 1 else 4096
        return Placement(f"reserve_mem {size:#x}:{align:#x}",
                         Ramoops(mem_name="oops", mem_size=size),
                         (f"reserve_mem={size:#x}:{align:#x}:oops",))
    if kind == "plan" and len(args) <= 1 and iomem is not None:
        return _plan(iomem, kernel, args[0] if args else "auto")
    raise argparse.ArgumentTypeError(f"bad --place {spec!r}")


def _span(boots: list[Cycle], attr: str) -> str:
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
        iomem = None
        if any(spec.split(":", 1)[0] in ("top", "plan") for spec in args.place):
            iomem = _probe(lab, kernel, args.memory, firmware, args.initrd_size,
                           out / "probe")
        places = [parse_place(spec, iomem, kernel) for spec in args.place]
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
            boots, error = run_cycles(lab, kernel, place.ramoops, args.cycles, workdir,
                                      memory_mb=args.memory, firmware=firmware,
                                      initrd_size=args.initrd_size, cmdline=place.cmdline)
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
            cmdline_file = workdir / "out" / "boot-2" / "cmdline"
            with args.json.open("a") as f:
                f.write(json.dumps({"machine": machine, "placement": place.name,
                                    "cycles": args.cycles,
                                    "cmdline": cmdline_file.read_text(errors="replace").strip()
                                    if cmdline_file.exists() else None,
                                    "error": error,
                                    "boots": [asdict(b) for b in boots]}) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
