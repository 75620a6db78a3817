"""``memconsole verify``: prove a setup plan on this machine's own kernel in
the VM lab, without risking the machine.

The guest boots the planned kernel (or ``--kernel``) with its modules, the
plan's kernel command line exactly, and the plan's modprobe.d file as the
only module configuration (so its options and its install guard are what
loads ramoops); it has as much RAM as it takes for the planned address to
be RAM there too, and a Debian-sized initrd.  It crashes, warm-resets, and
the rebooted guest runs ``memconsole collect`` and ``show``.  That proves
the kernel side (configuration, parameters, module loading, the record's
way back); whether this machine's firmware keeps the range across a reset
is what the survival canary shows after a real reboot.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memconsole.cli.exitcodes import EXIT_ERROR, EXIT_OK
from memconsole.errors import LabError, ParseError, SetupError

__all__ = ["FIRMWARE_SIDE", "guest_memory", "plan_drill", "register", "run"]

OVMF = Path("/usr/share/ovmf/OVMF.fd")
MiB = 1 << 20
GiB = 1 << 30
# pc (i440FX) keeps guest RAM below 3.5 GiB in one piece; with more, 3 GiB
# below the PCI hole and the rest from 4 GiB up.
_PC_LOWMEM_MAX = 0xE0000000
_PC_LOWMEM_SPLIT = 3 * GiB

FIRMWARE_SIDE = ("the firmware side is not proven here: whether this machine's firmware "
                 "keeps the range across a warm reset (and does not wipe RAM, UEFI's memory "
                 "overwrite request) shows in the survival canary after the next reboot "
                 "('memconsole doctor')")

_STAGE2 = """\
    ls /sys/fs/pstore > "$OUT/pstore-before.ls" 2>&1
    cat /proc/iomem > "$OUT/iomem.txt"; cat /proc/cmdline > "$OUT/cmdline.txt"
"""


def register(sub: Any) -> None:
    """Add the ``verify`` command."""
    p = sub.add_parser(
        "verify", help="prove the setup plan in a VM: crash, warm reset, collect",
        description="Boot this machine's kernel (the one setup planned for, or --kernel) "
        "with its modules under QEMU, with the plan's kernel command line and its "
        "modprobe.d file, crash it, warm-reset it, and report whether the record came "
        "back and whether memconsole collected and explained it.  The plan is the "
        "installed one (/var/lib/memconsole/setup.json) or, before setup, the one "
        "'memconsole setup --dry-run' prints.  Proves the kernel side; the survival "
        "canary proves the firmware side on the machine itself.  Exit status 0 when "
        "every check passed, 1 otherwise.")
    p.add_argument("--kernel", type=Path, metavar="PATH",
                   help="boot this bzImage (its modules from /lib/modules/RELEASE) instead "
                   "of the planned kernel")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                   help="read the plan and the kernels below DIR (default /)")
    p.add_argument("--crash", default="null", metavar="KIND",
                   help="how the guest crashes (a 'memconsole demo --crash' kind; "
                   "default null)")
    p.add_argument("--workdir", type=Path, metavar="DIR",
                   help="keep the drill's files (serial log, guest output) in DIR")
    p.set_defaults(func=run)


def guest_memory(start: int, end: int, room: int) -> int:
    """MiB of guest RAM for a pc guest in which ``[start, end)`` is RAM and
    *room* bytes of RAM lie above it (QEMU puts the initrd at the top of
    RAM below 4 GiB).  Raises :class:`SetupError` when no pc guest has RAM
    there (the range lies in its PCI hole)."""
    if start >= 4 * GiB:
        return -(-(_PC_LOWMEM_SPLIT + (end - 4 * GiB) + 64 * MiB) // (256 * MiB)) * 256
    size = -(-max(512 * MiB, end + room) // (256 * MiB)) * 256 * MiB
    if end > _PC_LOWMEM_SPLIT or (size >= _PC_LOWMEM_MAX and end + room > _PC_LOWMEM_SPLIT):
        raise SetupError(f"the plan's range {start:#x}-{end - 1:#x} is where a QEMU pc guest "
                         "has its PCI hole: the VM cannot hold it there")
    return size // MiB


def plan_drill(plan: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """(lab Ramoops, kernel command line) that reproduce *plan* (a setup
    plan as JSON) in a drill: the plan's modprobe.d file, nothing else."""
    from memconsole.lab import Ramoops
    from memconsole.setup.files import modprobe_text
    from memconsole.setup.planner import RESERVE_MEM_LABEL

    ro = plan["ramoops"]
    conf = modprobe_text(plan["modprobe"]) if plan["modprobe"] else ""
    common = {"record_size": ro["record_size"], "ecc": ro["ecc"] or None,
              "max_reason": ro["max_reason"], "modprobe_conf": conf}
    if plan["method"] == "memmap":
        ramoops = Ramoops(mem_address=ro["address"], mem_size=ro["size"], reserve=False,
                          **common)
    else:
        ramoops = Ramoops(mem_name=RESERVE_MEM_LABEL, mem_size=ro["size"], **common)
    return ramoops, tuple(plan["cmdline"])


def _plan(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from memconsole.cli.setup import make_plan
    from memconsole.setup.install import read_manifest

    manifest = read_manifest(args.root)
    if manifest is not None and isinstance(manifest.get("plan"), dict):
        return manifest["plan"], "the installed plan (/var/lib/memconsole/setup.json)"
    defaults = argparse.Namespace(root=args.root, kernel_release=None, kernel_config=None,
                                  iomem=None, size=1 << 20, record_size=16 << 10, ecc=0,
                                  ring=None, method="auto", panic=10, panic_on=[])
    _, plan, _ = make_plan(defaults)
    return plan.as_dict(), "the plan 'memconsole setup --dry-run' prints (not installed yet)"


def _kernel(args: argparse.Namespace, release: str) -> Any:
    from memconsole.lab import Kernel
    from memconsole.setup.kernel import parse_bzimage

    if args.kernel is not None:
        try:
            with args.kernel.open("rb") as f:
                header = parse_bzimage(f.read(64 << 10))
        except OSError as exc:
            raise SetupError(f"cannot read --kernel {args.kernel}: {exc.strerror}") from None
        except ParseError as exc:
            raise SetupError(f"--kernel {args.kernel}: {exc}") from None
        release = header.release or args.kernel.name.removeprefix("vmlinuz-")
        vmlinuz = args.kernel
    else:
        vmlinuz = args.root / "boot" / f"vmlinuz-{release}"
    modules = args.root / "lib" / "modules" / release
    if not vmlinuz.is_file():
        raise SetupError(f"no kernel image {vmlinuz}")
    if not (modules / "kernel" / "fs" / "9p").is_dir():
        raise LabError(f"{modules} has no 9p modules, which the VM lab needs to reach this "
                       "machine's root (Debian's -cloud kernels lack them)")
    return Kernel(release, vmlinuz, modules)


def _checks(plan: dict[str, Any], result: Any) -> list[tuple[str, bool, str]]:
    from memconsole.ring.iomem import parse_iomem

    out = []
    region = plan.get("region")
    if region:
        lo, hi = region["address"], region["address"] + region["size"] - 1
        entries = parse_iomem(result.output("iomem.txt").encode())
        covered = any(e.depth == 0 and e.name.lower() == "reserved" and e.start <= lo
                      and hi <= e.end for e in entries)
        out.append(("reservation", covered,
                    f"{lo:#x}-{hi:#x} is Reserved in the guest's /proc/iomem" if covered else
                    f"{lo:#x}-{hi:#x} is not Reserved in the guest's /proc/iomem"))
    params = dict(line.split("=", 1) for line in result.output("ramoops-params.txt")
                  .splitlines() if "=" in line)
    ro = plan["ramoops"]
    try:
        address = int(params.get("mem_address", "0"), 0)
        size = int(params.get("mem_size", "0"), 0)
        record = int(params.get("record_size", "0"), 0)
    except ValueError:
        address = size = record = 0
    want = ro["address"]
    loaded = size == ro["size"] and record == ro["record_size"] and (
        address == want if want is not None else address != 0)
    out.append(("ramoops", loaded,
                f"loaded through the plan's modprobe.d file at {address:#x} ({size:#x} bytes, "
                f"record_size {record:#x})" if loaded else
                f"not loaded as planned (mem_address {params.get('mem_address', '-')}, mem_size "
                f"{params.get('mem_size', '-')}): {_guest_note(result)}"))
    records = [n for n in result.output("pstore-before.ls").split() if n.startswith("dmesg-")]
    out.append(("record", bool(records),
                f"came back after the warm reset: {', '.join(records)}" if records else
                "no dmesg record in /sys/fs/pstore after the reset"))
    collected = (result.output("collect.rc").strip() == "0"
                 and "dmesg-ramoops-" in result.output("archive.ls"))
    said = result.output("collect.err").strip().removeprefix("memconsole collect: ")
    out.append(("collected", collected, f"memconsole collect: {said or 'ok'}" if collected
                else f"memconsole collect failed: {said[-200:]}"))
    first = (result.output("show.txt").splitlines() or [""])[0]
    explained = result.output("show.rc").strip() == "0" and first.startswith("Last boot ended")
    out.append(("explained", explained, first if explained else
                f"memconsole show did not explain it: {first[:200]!r}"))
    return out


def _guest_note(result: Any) -> str:
    lines = [line for line in result.serial.splitlines()
             if "ramoops" in line or "memconsole-lab: modprobe" in line]
    return lines[-1].strip()[-200:] if lines else "nothing in the serial log"


def run(args: argparse.Namespace) -> int:
    """Run the proof; see :func:`register`."""
    from memconsole.cli.demo import STAGE2
    from memconsole.lab import CRASH_ACTIONS, Drill, Lab
    from memconsole.setup.facts import installed_kernels

    if args.crash not in CRASH_ACTIONS or args.crash in ("reset", "lockup"):
        raise LabError(f"unknown or non-panicking crash kind {args.crash!r}")
    plan, source = _plan(args)
    kernel = _kernel(args, plan["kernel"])
    ramoops, cmdline = plan_drill(plan)
    initrds = {k.release: k.initrd_size for k in installed_kernels(args.root)}
    initrd = initrds.get(kernel.release)
    region = plan.get("region")
    room = 2 * (initrd or 0) + 128 * MiB
    memory = guest_memory(region["address"], region["address"] + region["size"], room) \
        if region else 512
    uefi = (args.root / "sys" / "firmware" / "efi").is_dir() and OVMF.is_file()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="memconsole-verify-"))
    lab = Lab(progress=lambda msg: print(f"memconsole verify: {msg}", file=sys.stderr))
    drill = Drill(kernel, action=args.crash, ramoops=ramoops, extra_cmdline=cmdline,
                  memory_mb=memory, sparse_ram=True, initrd_size=initrd,
                  firmware=OVMF if uefi else None, stage2=_STAGE2 + STAGE2, timeout=900.0)
    began = time.monotonic()
    try:
        result = lab.run(drill, workdir / "drill")
    except LabError as exc:
        print(f"memconsole verify: {exc}", file=sys.stderr)
        if exc.serial_tail:
            print("--- last lines of the guest's serial console ---", file=sys.stderr)
            print(exc.serial_tail, file=sys.stderr)
        print(f"(files kept in {workdir})", file=sys.stderr)
        return EXIT_ERROR
    seconds = time.monotonic() - began
    checks = _checks(plan, result)
    ok = all(passed for _, passed, _ in checks)
    firmware = "OVMF (UEFI)" if uefi else "SeaBIOS"
    if args.json:
        print(json.dumps({
            "ok": ok, "plan": source, "kernel": kernel.release, "vmlinuz": str(kernel.vmlinuz),
            "memory_mb": memory, "firmware": firmware, "initrd_size": initrd,
            "cmdline": list(cmdline), "modprobe": plan["modprobe"], "crash": args.crash,
            "checks": {name: {"ok": passed, "detail": detail}
                       for name, passed, detail in checks},
            "seconds": round(seconds, 1),
            "kernel_side": "proven" if ok else "failed", "firmware_side": FIRMWARE_SIDE}))
    else:
        print(f"Plan: {source}, for {plan['kernel']}")
        print(f"Booted {kernel.release} under QEMU (TCG, {memory} MiB, {firmware}, initrd of "
              f"{initrd or 0} bytes) with the plan's command line:")
        print(f"  {' '.join(cmdline)}")
        print("and its modprobe.d file as the only module configuration; crashed it "
              f"({args.crash}), let it warm-reset.")
        for name, passed, detail in checks:
            print(f"  {'ok' if passed else 'FAILED':<7} {name:<12} {detail}")
        verdict = "proven" if ok else "NOT proven"
        print(f"Kernel side {verdict} in {seconds:.0f} s; {FIRMWARE_SIDE}.")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"memconsole verify: drill files in {workdir / 'drill'}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_ERROR
