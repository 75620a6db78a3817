"""Benchmark memconsole.ko: the cost per message on the kernel's printk path
with the module as the only console, against no console at all, measured
inside a lab guest (QEMU/TCG, one CPU).

    PYTHONPATH=src python3 bench/bench_kmod.py [--kernel 6.12] [--count 2000] [--repeat 5]

For each kernel, one guest boots with ``memmap=1M$0x7200000`` and runs
crashcon's ``bench`` action (src/memconsole/lab/crashcon.c): it stops every
console except the one named by ``keep=``, prints ``--count`` messages of
about 80 bytes at KERN_INFO from inside the kernel, times them with
ktime_get_ns(), and starts the consoles again.  Three configurations, each
``--repeat`` times, in this order:

* ``none``: memconsole.ko not loaded, the serial console stopped: printk
  stores the message and finds no console to call;
* ``memconsole``: the module loaded on the reserved range, serial stopped:
  the module's write (parse, CRC-32, stores into the write-combined ring)
  is the only console work;
* ``serial``: the serial console alone (ttyS0 at QEMU's emulated 8250), to
  put the other two in proportion.

Prints a Markdown table (median and best ns per message) and the ratio
memconsole / none, with the host's load average before and after: under
TCG every guest instruction is emulated, so compare rows of one run, not
runs of different days.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole.lab import Drill, Kernel, Lab, find_kernels, pick_kernel  # noqa: E402

_LINE = re.compile(r"crashy: bench: (\d+) messages in (\d+) ns, (\d+) ns per message, "
                   r"consoles: (.*)$", re.MULTILINE)
_CONFIGS = ("none", "memconsole", "serial")


def _stage(ko: Path, count: int, repeat: int) -> str:
    # Each result is taken from dmesg right away: the runs together print
    # more than the kernel's log buffer holds.
    bench = ('insmod "${{CRASHY%/*}}/crashcon.ko" action=bench count={count} keep={keep} && '
             'rmmod crashcon; '
             'echo "{config} $(dmesg | grep "crashy: bench:" | tail -n 1)" >> "$OUT/bench.txt"')
    lines = []
    for config in _CONFIGS:
        if config == "memconsole":
            lines.append(f"insmod {ko} mem_address=0x7200000 mem_size=1M")
        if config == "serial":
            lines.append("rmmod memconsole")
        keep = "ttyS" if config == "serial" else "memconsole"
        lines += [bench.format(count=count, keep=keep, config=config)] * repeat
    return "\n".join("        " + ln for ln in lines) + "\n"


def run(lab: Lab, kernel: Kernel, count: int, repeat: int, workdir: Path) -> dict[str, list[int]]:
    """ns per message of each configuration, one value per repetition."""
    kmod = ROOT / "src" / "memconsole" / "kmod"
    ko = lab.module(kernel, [kmod / "memconsole.c", kmod / "Kbuild"], "memconsole")
    drill = Drill(kernel, action="reset", stage1=_stage(ko, count, repeat), smp=1,
                  extra_cmdline=("memmap=1M$0x7200000",), timeout=3600)
    result = lab.run(drill, workdir)
    found: dict[str, list[int]] = {c: [] for c in _CONFIGS}
    expect = {"none": "none", "memconsole": "memconsole0", "serial": "ttyS0"}
    for line in result.output("bench.txt").splitlines():
        config, _, rest = line.partition(" ")
        m = _LINE.search(rest)
        if m is None or config not in found:
            raise SystemExit(f"{kernel.release}: no result in {line!r} (see {workdir})")
        if m.group(4).strip() != expect[config]:
            raise SystemExit(f"{kernel.release} {config}: consoles were {m.group(4)!r}")
        found[config].append(int(m.group(3)))
    for config, values in found.items():
        if len(values) != repeat:
            raise SystemExit(f"{kernel.release} {config}: {len(values)} of {repeat} results "
                             f"(see {workdir})")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--kernel", action="append", help="release or prefix (default: all)")
    ap.add_argument("--count", type=int, default=2000, help="messages per run")
    ap.add_argument("--repeat", type=int, default=5, help="runs per configuration")
    args = ap.parse_args(argv)
    kernels = [pick_kernel(k) for k in args.kernel] if args.kernel else find_kernels()
    lab = Lab()
    load_before = os.getloadavg()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-kmod-"))
    for kernel in kernels:
        found = run(lab, kernel, args.count, args.repeat, tmp / kernel.release)
        rows.append((kernel.release, found))
    shutil.rmtree(tmp)
    load_after = os.getloadavg()
    print(f"{args.count} messages per run, {args.repeat} runs per configuration, one vCPU "
          f"(QEMU TCG); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print()
    print("| kernel | consoles | median ns/message | best ns/message |")
    print("|---|---|---:|---:|")
    for release, found in rows:
        for config in _CONFIGS:
            values = found[config]
            print(f"| {release} | {config} | {statistics.median(values):.0f} | "
                  f"{min(values)} |")
    print()
    for release, found in rows:
        none, mod = statistics.median(found["none"]), statistics.median(found["memconsole"])
        print(f"{release}: memconsole / no console = {mod / none:.2f}x (median), "
              f"{min(found['memconsole']) / min(found['none']):.2f}x (best); "
              f"the module adds {mod - none:.0f} ns per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
