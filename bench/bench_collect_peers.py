"""``memconsole collect`` of 8 real records, side by side with a bare
interpreter and with systemd-pstore on the same records.

    python3 -m venv /tmp/bvenv && /tmp/bvenv/bin/pip install --no-deps .
    python3 bench/bench_collect_peers.py --memconsole /tmp/bvenv/bin/memconsole [--runs 21]

The records are the 8 of bench_startup.py (tests/fixtures/lab, the 6.1 and
6.12 NULL-pointer, BUG, WARNING and panic records), copied into a pstore
directory as ``dmesg-ramoops-0`` ... ``dmesg-ramoops-7`` before every run, off
the clock.  Each tool does the whole job on them: copy every record into a
new, empty archive directory and erase it from the pstore directory.

Commands, each run --runs times, round robin:

* ``PYTHON -c pass``: the venv's interpreter doing nothing (the unit);
* ``memconsole collect --pstore DIR --archive NEW`` (an installed,
  non-editable memconsole; every copy fsynced, with its directory and the
  boot's index, before the record is erased);
* ``systemd-pstore DIR NEW`` (/usr/lib/systemd/systemd-pstore, source and
  archive directories as arguments; /etc/systemd/pstore.conf as installed,
  Storage=external and Unlink=yes by default).

Then once per tool under ``strace -f -c``: the number of fsync-family calls
and of all system calls, and the files each left in the archive.  Prints
Markdown tables: medians of wall clock and CPU time, quartiles, the ratios
to ``-c pass`` and to systemd-pstore.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    RECORDS,
    SYSTEMD_PSTORE,
    fill,
    load,
    median,
    python_of,
    quartiles,
    round_robin,
    table,
)

SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "msync")


def pstore_conf() -> str:
    """Storage= and Unlink= as systemd-pstore will read them (main file and drop-ins)."""
    conf = configparser.ConfigParser(strict=False)
    files = [Path("/etc/systemd/pstore.conf"),
             *sorted(Path("/etc/systemd/pstore.conf.d").glob("*.conf"))]
    conf.read([str(f) for f in files if f.is_file()])
    storage = conf.get("PStore", "Storage", fallback="external")
    unlink = conf.get("PStore", "Unlink", fallback="yes")
    return f"Storage={storage}, Unlink={unlink}"


def strace_counts(argv: list[str]) -> tuple[dict[str, int], int]:
    """Calls per fsync-family system call and all calls, of one run under strace."""
    with tempfile.NamedTemporaryFile(prefix="bench-strace-", suffix=".txt") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name, *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = Path(out.name).read_text()
    counts: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if not m:
            continue
        if m.group(2) == "total":
            total = int(m.group(1))
        elif m.group(2) in SYNC_CALLS:
            counts[m.group(2)] = int(m.group(1))
    return counts, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--memconsole", default=str(Path(sys.executable).parent / "memconsole"),
                    help="the installed console script (default: next to this interpreter)")
    ap.add_argument("--systemd-pstore", default=str(SYSTEMD_PSTORE))
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the pstore and archive directories go (default: $TMPDIR)")
    args = ap.parse_args(argv)
    tool, python, sdp = args.memconsole, python_of(args.memconsole), args.systemd_pstore
    for exe in (tool, python, sdp):
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"{exe}: not found (systemd-pstore: apt-get install systemd)")
    with tempfile.TemporaryDirectory(prefix="bench-collect-", dir=args.dir) as tmp:
        base = Path(tmp)
        pstore = base / "pstore"
        counter = iter(range(1 << 30))
        last: dict[str, Path] = {}

        def fresh(name: str) -> Path:
            path = base / f"a{next(counter)}"
            last[name] = path
            return path

        mc, sd = "memconsole collect --pstore DIR --archive NEW", "systemd-pstore DIR NEW"
        commands: dict[str, Callable[[], list[str]]] = {
            "python3 -c pass": lambda: [python, "-c", "pass"],
            mc: lambda: [tool, "collect", "--pstore", str(pstore), "--archive",
                         str(fresh(mc))],
            sd: lambda: [sdp, str(pstore), str(fresh(sd))],
        }
        load0 = load()
        times = round_robin(commands, args.runs, before=lambda _name: fill(pstore))
        load1 = load()
        files = {name: sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                              if p.is_file()) for name, path in last.items()}
        fill(pstore)
        subprocess.run([sdp, str(pstore), str(base / "check")], check=True,
                       capture_output=True)
        erased = {sd: not any(pstore.iterdir())}
        fill(pstore)
        subprocess.run([tool, "collect", "--pstore", str(pstore), "--archive",
                        str(base / "check-mc")], check=True, capture_output=True)
        erased[mc] = not any(pstore.iterdir())
        traced: dict[str, tuple[dict[str, int], int]] = {}
        if shutil.which("strace"):
            for name in (mc, sd):
                fill(pstore)
                traced[name] = strace_counts(commands[name]())
    unit = median([s.wall for s in times["python3 -c pass"]])
    unit_cpu = median([s.cpu for s in times["python3 -c pass"]])
    peer = median([s.wall for s in times[sd]])
    peer_cpu = median([s.cpu for s in times[sd]])
    print(f"8 records (tests/fixtures/lab, {sum(p.stat().st_size for p in RECORDS)} bytes), "
          f"{args.runs} runs each, round robin; {os.cpu_count()} CPUs; load average "
          f"{load0} before, {load1} after; systemd-pstore configuration: {pstore_conf()}\n")
    rows: list[list[object]] = []
    for name, samples in times.items():
        wall = [s.wall for s in samples]
        cpu = median([s.cpu for s in samples])
        q0, q3 = quartiles(wall)
        med = median(wall)
        rows.append([f"`{name}`", f"{med * 1e3:.1f}", f"{q0 * 1e3:.1f}-{q3 * 1e3:.1f}",
                     f"{med / unit:.2f}", f"{med / peer:.2f}", f"{cpu * 1e3:.1f}",
                     f"{cpu / unit_cpu:.2f}", f"{cpu / peer_cpu:.2f}"])
    print(table(["command", "wall median ms", "wall quartiles ms", "x `-c pass` (wall)",
                 "x systemd-pstore (wall)", "CPU median ms", "x `-c pass` (CPU)",
                 "x systemd-pstore (CPU)"], rows))
    print()
    rows = []
    for name in (mc, sd):
        counts, total = traced.get(name, ({}, 0))
        syncs = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        rows.append([f"`{name}`", len(files.get(name, [])),
                     "yes" if erased.get(name) else "no",
                     syncs if name in traced else "strace missing",
                     total if name in traced else "-"])
    print(table(["command", "files in the archive", "pstore emptied",
                 "fsync-family calls (strace -f -c)", "system calls"], rows, right=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
