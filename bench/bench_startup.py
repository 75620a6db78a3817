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
* ``memconsole list --pstore EMPTY --archive A``: every crash event of it;

and three floors, what any implementation in this interpreter pays before its
own code runs:

* ``floor: argparse``: ``import argparse`` and one parser with one option (what
  argparse imports while it builds a parser, ``shutil`` and ``locale``, included);
* ``floor: the standard library of collect`` (and of ``show``): one ``python -c``
  that imports every module outside memconsole that the command imports (read
  from ``python -X importtime`` of the command, minus those of ``-c pass``) and
  builds that parser;
* ``floor: durable copy, os only``: a ``python -c`` script that copies the 8
  records into a new directory with the durability ``collect`` promises (each
  file written, fsynced, renamed, the directory fsynced, an index written the
  same way) using the ``os`` module only: no parsing, no hashing, no checks.

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


#: The durable-copy floor: SRC DST; os only (see the module docstring).
_DURABLE_COPY = """
import os, sys
src, dst = sys.argv[1], sys.argv[2]
os.mkdir(dst)
boot = os.path.join(dst, "boot")
os.mkdir(boot)
def sync(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
def put(path, data):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, path)
sync(dst)
sync(os.path.dirname(dst))
names = sorted(os.listdir(src))
for name in names:
    with open(os.path.join(src, name), "rb") as f:
        put(os.path.join(boot, name), f.read())
put(os.path.join(boot, "records.json"), repr(names).encode())
sync(boot)
"""

_PARSER = "import argparse; argparse.ArgumentParser().add_argument('-x')"


def _imported(python: str, argv: list[str]) -> set[str]:
    """The modules ``python -X importtime ARGV`` imports."""
    done = subprocess.run([python, "-X", "importtime", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    return {line.rsplit("|", 1)[1].strip()
            for line in done.stderr.decode(errors="replace").splitlines()
            if line.startswith("import time:") and "cumulative" not in line}


def _stdlib_floor(python: str, tool: str, args: list[str]) -> tuple[list[str], list[str]]:
    """``python -c`` importing the modules outside memconsole that ``tool ARGS``
    imports beyond ``-c pass`` (those it only tried, e.g. ``nt`` on Linux, are
    tried the same way), then building one argparse parser."""
    used = _imported(python, [tool, *args]) - _imported(python, ["-c", "pass"])
    mods = sorted(m for m in used if m.split(".")[0] != "memconsole")
    return [python, "-c", f"MODULES = {mods!r}\n"
            "for m in MODULES:\n    try:\n        __import__(m)\n"
            "    except ImportError:\n        pass\n" + _PARSER], mods


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

        copies = iter(range(1 << 30))

        def durable_copy() -> list[str]:
            return [python, "-c", _DURABLE_COPY, str(pstore), str(base / f"d{next(copies)}")]

        show_args = ["show", "--pstore", str(empty), "--archive", str(archive)]
        floor_collect, collect_mods = _stdlib_floor(
            python, tool, ["collect", "--pstore", str(pstore), "--archive", str(base / "f"),
                           "--keep"])
        floor_show, show_mods = _stdlib_floor(python, tool, show_args)
        commands: dict[str, Callable[[], list[str]]] = {
            "python3 -c pass": lambda: [python, "-c", "pass"],
            "floor: argparse": lambda: [python, "-c", _PARSER],
            "floor: the standard library of collect": lambda: floor_collect,
            "floor: the standard library of show": lambda: floor_show,
            "floor: durable copy, os only": durable_copy,
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
    for title, mods in (("collect", collect_mods), ("show", show_mods)):
        print(f"\nThe standard library of {title}: {len(mods)} modules beyond `-c pass`: "
              + ", ".join(f"`{m}`" for m in mods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
