"""Start-up of the memconsole commands, side by side with a bare interpreter.

    python3 -m venv /tmp/bvenv && /tmp/bvenv/bin/pip install --no-deps .
    python3 bench/bench_startup.py --memconsole /tmp/bvenv/bin/memconsole [--runs 21]

Measures an installed, non-editable memconsole (the console script of a venv:
what a machine runs in early boot), not this source tree.  The records are 8 real
pstore records of the VM lab (tests/fixtures/lab, the 6.1 and 6.12 NULL-pointer,
BUG, WARNING and panic records), copied into a temporary pstore directory as
``dmesg-ramoops-0`` ... ``dmesg-ramoops-7``.

Commands, each run --runs times, round robin (one run of each in turn, so load
from other tenants spreads over all of them alike):

* ``PYTHON -c pass``: the venv's interpreter, doing nothing (the unit);
* ``memconsole --help``;
* ``memconsole collect --pstore DIR --archive NEW --keep`` (a new, empty archive
  for every run, made before the clock starts): archive the 8 records;
* ``memconsole show --pstore EMPTY --archive A``: the newest crash of an archive that
  holds the 8 records (its sentence, title, culprit and report);
* ``memconsole list --pstore EMPTY --archive A``: every crash event of it.

Prints the median and the quartiles of the wall-clock time per command, the median
CPU time (user + system: on a shared machine the wall clock also measures the other
tenants), and the ratios of the medians to ``-c pass``, as a Markdown table, then
the ten modules with the largest cumulative import time of ``python -X importtime``
for ``show`` and for ``collect`` (and whether ``collect`` imported any
``memconsole.oops`` module).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "tests" / "fixtures" / "lab"
RECORDS = [LAB / release / kind / "pstore" / "dmesg-ramoops-0"
           for release in ("6.1", "6.12") for kind in ("null", "bug", "warn", "panic")]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of *argv*."""
    c0, t0 = _cpu(), time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    if done.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: "
                         f"{done.stderr.decode(errors='replace').strip()}")
    return elapsed, cpu


def _importtime(python: str, args: list[str], top: int) -> tuple[list[tuple[int, str]], bool]:
    done = subprocess.run([python, "-X", "importtime", "-m", "memconsole", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    rows = []
    for line in done.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line[len("import time:"):].split("|", 2)
        rows.append((int(cumulative), name.strip()))
    oops = any(name.startswith("memconsole.oops") for _, name in rows)
    return sorted(rows, reverse=True)[:top], oops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memconsole", default=str(Path(sys.executable).parent / "memconsole"),
                    help="the installed console script (default: next to this interpreter)")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    tool = args.memconsole
    python = str(Path(tool).parent / "python3")
    if not os.access(tool, os.X_OK) or not os.access(python, os.X_OK):
        raise SystemExit(f"{tool}: not an installed memconsole (with python3 beside it)")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = Path(tmp)
        pstore, empty = base / "pstore", base / "empty"
        pstore.mkdir()
        empty.mkdir()
        for n, rec in enumerate(RECORDS):
            shutil.copyfile(rec, pstore / f"dmesg-ramoops-{n}")
        archive = base / "archive"
        _run([tool, "collect", "--pstore", str(pstore), "--archive", str(archive), "--keep"])
        counter = iter(range(1 << 30))

        def collect() -> list[str]:
            fresh = base / f"a{next(counter)}"
            return [tool, "collect", "--pstore", str(pstore), "--archive", str(fresh), "--keep"]

        commands: dict[str, Callable[[], list[str]]] = {
            "python3 -c pass": lambda: [python, "-c", "pass"],
            "memconsole --help": lambda: [tool, "--help"],
            "memconsole collect (8 records, --keep)": collect,
            "memconsole show": lambda: [tool, "show", "--pstore", str(empty),
                                        "--archive", str(archive)],
            "memconsole list": lambda: [tool, "list", "--pstore", str(empty),
                                        "--archive", str(archive)],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for make in commands.values():  # warm the page cache once
            _run(make())
        for _ in range(args.runs):
            for name, make in commands.items():
                times[name].append(_run(make()))
        show_imports, _ = _importtime(python, ["show", "--pstore", str(empty), "--archive",
                                               str(archive)], args.top)
        collect_imports, collect_oops = _importtime(
            python, ["collect", "--pstore", str(pstore), "--archive", str(base / "it"),
                     "--keep"], args.top)
    unit = statistics.median(w for w, _ in times["python3 -c pass"])
    unit_cpu = statistics.median(c for _, c in times["python3 -c pass"])
    load = os.getloadavg()
    print(f"{args.runs} runs each, round robin; load average {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs\n")
    print("| command | wall median ms | wall quartiles ms | x `-c pass` (wall) "
          "| CPU median ms | x `-c pass` (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        wall = [w for w, _ in values]
        cpu = statistics.median(c for _, c in values)
        q = statistics.quantiles(wall, n=4)
        med = statistics.median(wall)
        print(f"| `{name}` | {med * 1e3:.1f} | {q[0] * 1e3:.1f}-{q[2] * 1e3:.1f} | "
              f"{med / unit:.2f} | {cpu * 1e3:.1f} | {cpu / unit_cpu:.2f} |")
    for title, rows in (("show", show_imports), ("collect", collect_imports)):
        print(f"\n`python -X importtime -m memconsole {title} ...`, largest cumulative:\n")
        print("| module | cumulative ms |")
        print("|---|---:|")
        for cumulative, name in rows:
            print(f"| `{name}` | {cumulative / 1e3:.1f} |")
    print(f"\ncollect imported a memconsole.oops module: {'yes' if collect_oops else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
