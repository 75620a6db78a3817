"""``memconsole demo``: the crash drill, end to end, in a VM."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from memconsole.cli.exitcodes import EXIT_ERROR, EXIT_OK
from memconsole.errors import LabError

__all__ = ["STAGE2", "register", "run"]


#: What the rebooted guest runs: collect what ramoops saved, then report it.
STAGE2 = """\
    mc collect > "$OUT/collect.out" 2> "$OUT/collect.err"; echo $? > "$OUT/collect.rc"
    mc show > "$OUT/show.txt" 2> "$OUT/show.err"; echo $? > "$OUT/show.rc"
    mc list --json > "$OUT/list.json" 2> "$OUT/list.err"
    ls -lR /var/lib/memconsole > "$OUT/archive.ls" 2>&1
    ls -l /sys/fs/pstore > "$OUT/pstore-after.ls" 2>&1
"""


def register(sub: Any) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser(
        "demo", help="crash a real kernel in a VM and show what memconsole recovers",
        description="Boot an installed Debian kernel under QEMU with ramoops on a reserved "
        "range, crash it, let it warm-reboot, run 'memconsole collect' and 'memconsole "
        "show' inside the rebooted guest, and print the report it recovered.  Progress "
        "goes to stderr.  Needs qemu-system-x86, busybox-static and the kernel's headers "
        "(scripts/bootstrap.sh installs them).")
    p.add_argument("--kernel", metavar="RELEASE",
                   help="kernel release or prefix, e.g. 6.1 (default: the newest installed)")
    p.add_argument("--crash", default="null", metavar="KIND",
                   help="crash kind: null, bug, warn, divide, gpf, rodata, list, softlockup, "
                   "hung, panic, workqueue, sysrq (default: null)")
    p.add_argument("--workdir", type=Path, metavar="DIR",
                   help="keep the drill's files (serial log, guest output) in DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the drill; see :func:`register`."""
    from memconsole.lab import CRASH_ACTIONS, Drill, Lab, pick_kernel

    if args.crash not in CRASH_ACTIONS:
        raise LabError(f"unknown crash kind {args.crash!r} (known: {', '.join(CRASH_ACTIONS)})")
    kernel = pick_kernel(args.kernel)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="memconsole-demo-"))
    lab = Lab()
    try:
        result = lab.run(Drill(kernel, action=args.crash, stage2=STAGE2), workdir / "drill")
    except LabError as exc:
        print(f"memconsole demo: {exc}", file=sys.stderr)
        if exc.serial_tail:
            print("--- last lines of the guest's serial console ---", file=sys.stderr)
            print(exc.serial_tail, file=sys.stderr)
        print(f"(files kept in {workdir})", file=sys.stderr)
        return EXIT_ERROR
    print(f"memconsole demo: the guest collected: {result.output('collect.err').strip()}",
          file=sys.stderr)
    print("memconsole demo: 'memconsole show' in the rebooted guest printed:", file=sys.stderr)
    sys.stdout.write(result.output("show.txt"))
    sys.stdout.flush()
    # Read the guest's verdict before the work directory may be removed.
    shown = result.output("show.rc").strip() == "0"
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"memconsole demo: drill files in {workdir / 'drill'}", file=sys.stderr)
    return EXIT_OK if shown else EXIT_ERROR
