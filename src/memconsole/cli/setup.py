"""``memconsole setup``: plan the reserved range and install the boot
configuration that keeps ramoops's records across a crash (docs/setup.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from memconsole._common import size_arg
from memconsole.cli.exitcodes import EXIT_OK
from memconsole.errors import SetupError

__all__ = ["make_plan", "register", "run"]


def register(sub: Any) -> None:
    """Add the ``setup`` command."""
    from memconsole.setup.planner import PANIC_ON

    p = sub.add_parser(
        "setup", help="plan and install the reservation, ramoops and panic settings",
        description="Choose a range of RAM that survives a warm reset (from /proc/iomem and "
        "the installed kernels, by the rules of docs/setup.md, each printed with its "
        "reason), then write the GRUB drop-in, modprobe.d and modules-load.d files, a "
        "systemd-pstore ordering drop-in and the memconsole block of /etc/memconsole.conf, "
        "and run update-grub when something changed.  Every edit is atomic and recorded "
        "in /var/lib/memconsole/setup.json; --undo puts every file back byte for byte.  "
        "Run it again: nothing changes the second time.  Exit status 0, 1 on error "
        "(nothing is left half-written), 2 on a bad option.")
    p.add_argument("--size", type=size_arg, default=1 << 20, metavar="SIZE",
                   help="ramoops region (default 1M)")
    p.add_argument("--record-size", type=size_arg, default=16 << 10, metavar="SIZE",
                   help="ramoops record_size, a power of two (default 16K)")
    p.add_argument("--ecc", type=int, default=0, metavar="N",
                   help="ramoops ECC bytes per 128-byte block (0 off, 1 = 16; default 0)")
    p.add_argument("--ring", type=size_arg, metavar="SIZE",
                   help="also reserve a ring of SIZE for 'memconsole record', after ramoops")
    p.add_argument("--method", choices=("auto", "memmap", "reserve-mem"), default="auto",
                   help="how the range is reserved: memmap= (auto: the measured choice), "
                   "or reserve_mem= where the kernel has it (kept no record in the lab)")
    p.add_argument("--panic", type=int, default=10, metavar="N",
                   help="reboot N seconds after a panic (panic=N, default 10; a reboot keeps "
                   "RAM, a power cycle does not)")
    p.add_argument("--panic-on", action="append", default=[], choices=sorted(PANIC_ON),
                   metavar="KIND", help="also panic on KIND: " + ", ".join(PANIC_ON)
                   + " (each explained in the plan; repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--undo", action="store_true",
                   help="put back every file the last setup wrote (as its manifest says)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--iomem", type=Path, metavar="FILE",
                   help="plan from this copy of /proc/iomem (read as root)")
    p.add_argument("--kernel-release", metavar="R",
                   help="plan for this installed kernel (default: the running one if "
                   "/boot/config-$(uname -r) exists, else the newest in /boot)")
    p.add_argument("--kernel-config", type=Path, metavar="FILE",
                   help="the kernel's configuration (default /boot/config-R)")
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                   help="configure the system below DIR (a chroot or image; default /)")
    p.add_argument("--kernel-console", action="store_true",
                   help="also build and install memconsole.ko through DKMS (needs the dkms "
                   "package and the kernel's headers) and load it at boot on the ring "
                   "(--ring SIZE, or 'ring = mem:ADDR:SIZE' in /etc/memconsole.conf); "
                   "--undo removes it (docs/kmod.md)")
    p.add_argument("--units", action="store_true",
                   help="also install and enable memconsole-collect.service and "
                   "memconsole-record.service (the recorder on the planned ring) in "
                   "/etc/systemd/system; --undo removes them (docs/operations.md)")
    p.set_defaults(func=run)


def make_plan(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(facts, plan, findings) for the parsed options."""
    from memconsole.errors import ParseError
    from memconsole.setup.facts import gather
    from memconsole.setup.install import read_manifest
    from memconsole.setup.kconfig import check_config
    from memconsole.setup.planner import Options, plan

    root = args.root
    facts = gather(root, args.kernel_release, args.kernel_config)
    source = args.iomem or root / "proc" / "iomem"
    try:
        iomem = source.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read the memory map {source}: {exc.strerror}") from None
    previous = None
    manifest = read_manifest(root)
    if manifest is not None:
        region = (manifest.get("plan") or {}).get("region")
        if isinstance(region, dict):
            previous = (int(region["address"]), int(region["size"]))
    options = Options(size=args.size, record_size=args.record_size, ecc=args.ecc,
                      ring=args.ring, method=args.method, panic=args.panic,
                      panic_on=frozenset(args.panic_on), previous=previous)
    try:
        the_plan = plan(iomem, facts, options)
    except ParseError as exc:
        raise SetupError(f"{source}: {exc}") from None
    return facts, the_plan, check_config(facts.kernel, facts.machine.uefi)


def _hex(n: int) -> str:
    return f"{n:#x}"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _print_plan(facts: Any, plan: Any, findings: Any, files: list[str]) -> None:
    out = sys.stdout.write
    out(f"Plan for kernel {plan.kernel} ({facts.kernel.chosen_because})\n")
    out(f"  method        {plan.method.value}\n")
    if plan.region is not None:
        out(f"  range         {plan.region} ({_size(plan.region.size)}), one memmap= entry:\n")
        out(f"    ramoops     {plan.ramoops.spec()}\n")
        out(f"    ring        {plan.ring.spec() if plan.ring else 'none (--ring SIZE adds one)'}"
            "\n")
        out(f"    canary      {plan.canary.spec()}\n")
    else:
        out(f"  range         reserve_mem of {_size(plan.ramoops_size)}: the kernel picks the "
            "address at each boot\n    canary      none (a reserve_mem region is System RAM, "
            "out of /dev/mem's reach)\n")
    out(f"  ramoops       record_size {_hex(plan.record_size)} ({plan.dmesg_zones} records), "
        f"max_reason {plan.max_reason}, ecc {plan.ecc}, "
        f"{'built in' if plan.ramoops_builtin else 'module'}\n")
    out(f"  command line  {' '.join(plan.cmdline)}\n")
    for line in plan.modprobe:
        out(f"  modprobe.d    {line}\n")
    for line in plan.modules_load:
        out(f"  modules-load  {line}\n")
    out("Why:\n")
    for reason in plan.reasons:
        out(f"  {reason}\n")
    source = facts.kernel.config_source or "none"
    out(f"Kernel configuration ({source}):\n")
    for f in findings:
        out(f"  {f.level.value:<8} {f.option}={f.value}: {f.text}\n")
    if plan.warnings or facts.notes:
        out("Warnings:\n")
        for w in (*plan.warnings, *facts.notes):
            out(f"  {w}\n")
    out("Also available, not turned on:\n")
    for offer in plan.offers:
        out(f"  {offer}\n")
    out("Files:\n")
    for path in files:
        out(f"  {path}\n")
    if not facts.machine.grub:
        out("  (no /etc/default/grub: add the command line above to your boot loader's "
            "kernel parameters yourself)\n")


def _install_units(root: Path, ring: str | None) -> str:
    from memconsole.errors import ConfigError
    from memconsole.setup.units import (
        UNIT_NAMES,
        UNITS_DIR,
        default_command,
        install_units,
        render_unit,
    )

    system = root / "etc/systemd/system"
    try:
        command = default_command()
        if all((system / n).is_file() and (system / "sysinit.target.wants" / n).is_symlink()
               and (system / n).read_text() == render_unit((UNITS_DIR / n).read_text(), command)
               for n in UNIT_NAMES):
            return f"{', '.join(UNIT_NAMES)} already installed and enabled"
        install_units(root, command=command, ring=ring)
    except (ConfigError, OSError) as exc:
        raise SetupError(f"cannot install the units: {exc}") from None
    return (f"installed and enabled {', '.join(UNIT_NAMES)}"
            + (f" (the recorder on {ring})" if ring else " (no ring planned: the recorder "
               "unit stays idle without one)"))


def _remove_units(root: Path) -> str:
    from memconsole.setup.units import remove_units

    removed = remove_units(root)
    # The directories the units needed, when nothing else is left in them.
    system = root / "etc/systemd/system"
    for d in (system / "sysinit.target.wants", system, system.parent):
        if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    return f"removed the units ({len(removed)} files and links)"


_NEXT = ("Next: 'memconsole verify' proves the kernel side now, in a VM (configuration, "
         "parameters, module loading); after a reboot, 'memconsole doctor' and the survival "
         "canary prove the firmware side: that this machine keeps the range across a reset.")


def run(args: argparse.Namespace) -> int:
    """Plan, print, install or undo; see :func:`register`."""
    from memconsole.setup import kconsole
    from memconsole.setup.files import desired_files
    from memconsole.setup.install import Step, apply, grub_updater, read_manifest, undo
    from memconsole.setup.kconfig import Level

    root = args.root
    if not args.dry_run and root.resolve() == Path("/") and os.geteuid() != 0:
        raise SetupError("setup writes /etc and runs update-grub: run it as root "
                         "(--dry-run prints the plan without writing)")
    update, how = grub_updater(root)
    if args.undo:
        manifest = read_manifest(root)
        dkms = kconsole.dkms_for_undo(root, manifest)
        undo_steps = [Step(dkms.remove)] if dkms is not None else []
        if ((manifest or {}).get("plan") or {}).get("units"):
            undo_steps.append(Step(lambda: _remove_units(root)))
        outcome = undo(root, update, how, undo_steps)
        if args.json:
            print(json.dumps({"undo": True, "restored": list(outcome.changed),
                              "removed": list(outcome.removed), "update_grub": outcome.grub,
                              "steps": list(outcome.steps)}))
        else:
            for note in outcome.steps:
                print(note)
            for path in outcome.changed:
                print(f"restored {path}")
            for path in outcome.removed:
                print(f"removed  {path}")
            print(outcome.grub)
        return EXIT_OK
    kc_before = kconsole.dkms_for_undo(root, read_manifest(root))
    if kc_before is not None and not args.kernel_console:
        raise SetupError(f"the last setup installed the kernel console ({kc_before.module} "
                         "through DKMS): run setup with --kernel-console to keep it, or "
                         "'memconsole setup --undo' first; nothing was changed")
    if args.kernel_console and args.ring is None:
        previous = ((read_manifest(root) or {}).get("plan") or {}).get("ring")
        if isinstance(previous, dict):
            args.ring = int(previous["size"])  # keep the ring the module writes
    facts, plan, findings = make_plan(args)
    errors = [f for f in findings if f.level is Level.ERROR]
    desired = desired_files(plan, facts.machine.grub)
    record = plan.as_dict()
    steps: list[Step] = []
    kc = None
    if args.kernel_console:
        kc = kconsole.plan_kernel_console(root, plan.kernel,
                                          plan.ring.spec() if plan.ring else None)
        desired += kc.files
        record["kernel_console"] = kc.record()
        steps.append(Step(kc.dkms.install, kc.dkms.remove))
        if not args.dry_run:
            kc.dkms.require()
    if not args.units and ((read_manifest(root) or {}).get("plan") or {}).get("units"):
        args.units = True  # installed by the last setup: kept (--undo removes them)
    if args.units:
        record["units"] = True
        ring = plan.ring.spec() if plan.ring else None
        if ring is not None:
            # The record unit's environment (memconsole-record.service): setup's
            # block in /etc/default/memconsole, the rest of the file left alone.
            from memconsole.setup.files import BLOCK_BEGIN, BLOCK_END, Desired

            block = "\n".join([BLOCK_BEGIN.decode(), "# Written by 'memconsole setup --units' "
                                "(docs/setup.md); --undo removes this block.",
                                f"MEMCONSOLE_RING={ring}", BLOCK_END.decode(), ""])
            desired.append(Desired("/etc/default/memconsole", "units", block=block.encode()))
        from memconsole.setup.units import unit_paths

        steps.append(Step(lambda: _install_units(root, ring), lambda: _remove_units(root),
                          paths=unit_paths()))
    files = [d.path for d in desired]
    if args.json:
        data = {**record, "kernel_chosen_because": facts.kernel.chosen_because,
                "files": files, "notes": list(facts.notes), "dry_run": args.dry_run,
                "config": [{"option": f.option, "value": f.value, "level": f.level.value,
                            "text": f.text} for f in findings]}
    else:
        _print_plan(facts, plan, findings, files)
        if kc is not None:
            print(f"Kernel console: memconsole.ko {kc.dkms.version} on {kc.ring.text}, from "
                  f"{kc.where}; DKMS builds it for {plan.kernel}"
                  + (f" (missing: {', '.join(kc.missing)})" if kc.missing else ""))
    if errors:
        if args.json:
            print(json.dumps(data))
        raise SetupError(f"kernel {plan.kernel}: {errors[0].option}: {errors[0].text}")
    if args.dry_run:
        if args.json:
            print(json.dumps(data))
        else:
            print("Dry run: nothing was written.")
        return EXIT_OK
    outcome = apply(root, desired, record, update, how, plan.cmdline, steps)
    if args.json:
        data.update(changed=list(outcome.changed), removed=list(outcome.removed),
                    unchanged=list(outcome.unchanged), update_grub=outcome.grub,
                    manifest=outcome.manifest, steps=list(outcome.steps))
        print(json.dumps(data))
        return EXIT_OK
    if not outcome.changed and not outcome.removed:
        print(f"Nothing to change: every file already is what this plan writes "
              f"({outcome.manifest}).")
    for path in outcome.changed:
        print(f"wrote    {path}")
    for path in outcome.removed:
        print(f"removed  {path}")
    for path in outcome.unchanged if outcome.changed or outcome.removed else ():
        print(f"kept     {path} (already right)")
    for note in outcome.steps:
        print(note)
    print(outcome.grub)
    print(_NEXT)
    return EXIT_OK
