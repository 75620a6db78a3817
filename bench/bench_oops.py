"""Benchmark ``memconsole oops`` on a big kernel log, side by side with grep.

    PYTHONPATH=src python3 bench/bench_oops.py [--size 1G] [--every 16M] [--rounds 2]

Builds (once per size and density; kept at --file) a kern.log of --size
bytes: syslog-prefixed, time-stamped lines of the lab's real boot logs
(tests/fixtures/lab) in random order, with one real crash report from
tests/fixtures/reports (picked at random) every --every bytes.  Then, in
one run on the same file with the page cache warm, times alternately,
--rounds times each:

1. ``cat FILE > /dev/null``: the I/O floor;
2. ``LC_ALL=C grep -c -E HEADLINES FILE``: count the report headlines;
3. ``memconsole oops --json FILE > /dev/null``: every report, every field,
   with signatures (a subprocess, interpreter start-up included; the needle
   search runs in up to 4 worker processes, one per usable CPU);
4. the same in this process (``_logscan.scan_file``);
5. the one-process stream scanner (``_logscan.scan_stream``, what gzip and
   stdin input use) in this process.

Prints a Markdown table for docs/benchmarks.md: best time of each, MB/s, and
memconsole's throughput as a fraction of grep's.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole import _logscan  # noqa: E402

HEADLINES = (
    "BUG: |WARNING: |Oops|Kernel panic - not syncing|general protection fault|divide error"
    "|invalid opcode|Unable to handle kernel|INFO: task .* blocked|detected stalls? on CPU"
    "|self-detected stall|UBSAN: |invoked oom-killer|list_(add|del) corruption"
    "|Kernel stack is corrupted|Watchdog detected hard LOCKUP|Internal error: "
)


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text, 0)


def build(path: Path, size: int, every: int) -> None:
    """Write the synthetic kern.log (deterministic)."""
    rng = random.Random(1)
    normal: list[bytes] = []
    for rec in sorted((ROOT / "tests" / "fixtures" / "lab").glob("*/*/pstore/dmesg-*")):
        for line in rec.read_bytes().splitlines():
            if line[:3] in (b"<5>", b"<6>", b"<7>") and b"] " in line:
                normal.append(line.split(b"] ", 1)[1])
    reports = [p.read_bytes() for p in sorted((ROOT / "tests" / "fixtures" / "reports")
                                               .glob("*.txt"))]
    tmp = path.with_suffix(".tmp")
    written, stamp = 0, 0.0
    with tmp.open("wb") as out:
        next_report = every
        while written < size:
            chunk = []
            for _ in range(10000):
                stamp += 0.0003
                chunk.append(b"Nov 26 05:%02d:%02d host kernel: [%12.6f] %s\n"
                             % (int(stamp / 60) % 60, int(stamp) % 60, stamp, rng.choice(normal)))
            blob = b"".join(chunk)
            if written + len(blob) >= next_report:
                blob += rng.choice(reports)
                next_report += every
            out.write(blob)
            written += len(blob)
    tmp.replace(path)


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--every", default="16M", help="bytes between two crash reports")
    ap.add_argument("--file", type=Path, default=None,
                    help="the log (default /tmp/memconsole-bench-SIZE-EVERY.log)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    size, every = _size(args.size), _size(args.every)
    if args.file is None:
        args.file = Path(f"/tmp/memconsole-bench-{args.size}-{args.every}.log")
    if not args.file.exists() or args.file.stat().st_size < size:
        print(f"building {args.file} ({size >> 20} MiB)...", file=sys.stderr)
        build(args.file, size, every)
    actual = args.file.stat().st_size
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cenv = dict(os.environ, LC_ALL="C")
    results: dict[str, list[float]] = {"cat": [], "grep": [], "cli": [], "file": [],
                                       "stream": []}
    grep_count, found = "", 0
    subprocess.run(["cat", str(args.file)], stdout=subprocess.DEVNULL, check=True)  # warm
    for _ in range(args.rounds):
        t, _out = _timed(["sh", "-c", f"cat '{args.file}' > /dev/null"])
        results["cat"].append(t)
        t, grep_count = _timed(["grep", "-c", "-E", HEADLINES, str(args.file)], cenv)
        results["grep"].append(t)
        t, out = _timed([sys.executable, "-m", "memconsole", "oops", "--json", str(args.file)],
                        env)
        results["cli"].append(t)
        found = out.count("\n")
        t0 = time.perf_counter()
        for _r in _logscan.scan_file(str(args.file)):
            pass
        results["file"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with args.file.open("rb") as f:
            for _r in _logscan.scan_stream(f):
                pass
        results["stream"].append(time.perf_counter() - t0)
    mb = actual / 1e6
    best = {k: min(v) for k, v in results.items()}
    rows = [
        ("`cat FILE > /dev/null`", "cat"),
        ("`LC_ALL=C grep -c -E HEADLINES FILE`", "grep"),
        ("`memconsole oops --json FILE > /dev/null`", "cli"),
        ("`_logscan.scan_file()` in process", "file"),
        ("`_logscan.scan_stream()` in process (one process)", "stream"),
    ]
    load = os.getloadavg()
    cpus = len(os.sched_getaffinity(0))
    print(f"file: {actual} bytes ({actual / 2**30:.2f} GiB), one report per {every >> 20} MiB; "
          f"grep matched {grep_count.strip()} lines, memconsole found {found} reports; "
          f"rounds {args.rounds}; {cpus} CPUs; load average after: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| what | best of rounds (s) | all rounds (s) | MB/s | vs grep |")
    print("|---|---:|---|---:|---:|")
    for label, key in rows:
        ratio = best["grep"] / best[key]
        rounds = ", ".join(f"{t:.2f}" for t in results[key])
        print(f"| {label} | {best[key]:.2f} | {rounds} | {mb / best[key]:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
