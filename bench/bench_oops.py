"""Benchmark ``memconsole oops`` on big kernel logs, side by side with grep.

    PYTHONPATH=src python3 bench/bench_oops.py [--size 256M] [--rounds 2]
        [--logs sparse,dense,back-to-back] [--every 16M] [--period 150000]

Builds (once per kind and size; kept under --dir, default /tmp) up to three logs of
--size bytes, all from real kernel output of the lab (tests/fixtures/lab):

* ``sparse``: a kern.log: syslog-prefixed, time-stamped lines of the lab's boot logs
  in random order, with one real crash report from tests/fixtures/reports (picked at
  random) every --every bytes;
* ``dense``: the lab's 6.12 NULL-pointer ramoops record
  (tests/fixtures/lab/6.12/null/pstore/dmesg-ramoops-0: the boot from 0.027 s and its
  oops, 403 lines, 46 of them the report) every --period bytes, the gap filled with the
  level 5-7 boot lines of all lab records in order: a console log of a machine that
  crashes again and again;
* ``back-to-back``: the same record repeated without a gap (a record every 27 KB).

Then, per log, with the page cache warm, it times alternately, --rounds times each:

1. ``cat FILE > /dev/null``: the I/O floor;
2. ``LC_ALL=C grep -c -E HEADLINES FILE``: count the report headlines;
3. ``memconsole oops --json FILE > /dev/null``: every report, every field, with
   titles and signatures (a subprocess, interpreter start-up included; the needle
   search runs in up to 4 worker processes, one per usable CPU, on files of 64 MiB
   and more);
4. the same in this process (``memconsole.oops._scan.scan_file``);
5. the one-process stream scanner (``_scan.scan_stream``, what gzip and stdin input
   use) in this process;

and once: the needle search alone (``_scan.find_hits`` over the file block by block,
one process) and the number of lines the scanner feeds the report parser, which give
the cost per line fed: (stream scan - needle search) / lines fed.

Wall-clock and CPU times (user + system, worker processes included) are both taken:
on a shared machine the wall clock measures the other tenants too, the CPU time what
the command costs.  Prints Markdown tables for docs/benchmarks.md: best of the rounds,
MB/s (10^6 bytes per second) and the throughput as a fraction of grep's, by wall clock
and by CPU time.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole.oops import _builder, _scan  # noqa: E402

HEADLINES = (
    "BUG: |WARNING: |Oops|Kernel panic - not syncing|general protection fault|divide error"
    "|invalid opcode|Unable to handle kernel|INFO: task .* blocked|detected stalls? on CPU"
    "|self-detected stall|UBSAN: |invoked oom-killer|list_(add|del) corruption"
    "|Kernel stack is corrupted|Watchdog detected hard LOCKUP|Internal error: "
)
LAB = ROOT / "tests" / "fixtures" / "lab"
RECORD = LAB / "6.12" / "null" / "pstore" / "dmesg-ramoops-0"
KINDS = ("sparse", "dense", "back-to-back")


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text, 0)


def _boot_lines() -> list[bytes]:
    """The level 5-7 lines of every lab record, in order (prefix kept)."""
    out = []
    for rec in sorted(LAB.glob("*/*/pstore/dmesg-*")):
        for line in rec.read_bytes().splitlines():
            if line[:3] in (b"<5>", b"<6>", b"<7>") and b"] " in line:
                out.append(line)
    return out


def build_sparse(path: Path, size: int, every: int) -> None:
    """The syslog kern.log with a fixture report every *every* bytes (deterministic)."""
    rng = random.Random(1)
    normal = [line.split(b"] ", 1)[1] for line in _boot_lines()]
    reports = [p.read_bytes() for p in sorted((ROOT / "tests" / "fixtures" / "reports")
                                               .glob("*.txt"))]
    written, stamp = 0, 0.0
    with path.open("wb") as out:
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


def build_dense(path: Path, size: int, period: int) -> None:
    """The lab record every *period* bytes (0: back to back), boot lines between."""
    record = RECORD.read_bytes()
    if not record.endswith(b"\n"):
        record += b"\n"
    filler = [line + b"\n" for line in _boot_lines()]
    written, k = 0, 0
    with path.open("wb") as out:
        while written < size:
            chunk, n = [record], len(record)
            while n < period:
                line = filler[k % len(filler)]
                k += 1
                chunk.append(line)
                n += len(line)
            blob = b"".join(chunk)
            out.write(blob)
            written += len(blob)


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(run: Callable[[], object]) -> tuple[float, float, object]:
    c0, t0 = _cpu(), time.perf_counter()
    out = run()
    return time.perf_counter() - t0, _cpu() - c0, out


def _subprocess(argv: list[str], env: dict[str, str]) -> Callable[[], str]:
    def run() -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=env).stdout
    return run


def _count_file(path: Path) -> int:
    return sum(1 for _r in _scan.scan_file(str(path)))


def _count_stream(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _r in _scan.scan_stream(f))


def needle_search(path: Path) -> tuple[float, int]:
    """CPU seconds of the needle search alone over *path*, block by block; hits."""
    hits = 0
    with path.open("rb") as f:
        blocks = iter(lambda: f.read(_scan.BLOCK), b"")
        c0 = _cpu()
        for block in blocks:
            hits += len(_scan.find_hits(block))
        return _cpu() - c0, hits


def lines_fed(path: Path) -> int:
    """How many lines the stream scanner feeds the report parser."""
    fed = 0
    orig = _builder.LineParser.feed

    def counting(self: _builder.LineParser, idx: int, s: int, e: int, raw: bytes) -> None:
        nonlocal fed
        fed += 1
        orig(self, idx, s, e, raw)

    _builder.LineParser.feed = counting  # type: ignore[method-assign]
    try:
        _count_stream(path)
    finally:
        _builder.LineParser.feed = orig  # type: ignore[method-assign]
    return fed


def bench(path: Path, rounds: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cenv = dict(os.environ, LC_ALL="C")
    runs: dict[str, Callable[[], object]] = {
        "cat": _subprocess(["sh", "-c", f"cat '{path}' > /dev/null"], env),
        "grep": _subprocess(["grep", "-c", "-E", HEADLINES, str(path)], cenv),
        "cli": _subprocess([sys.executable, "-m", "memconsole", "oops", "--json", str(path)],
                           env),
        "file": lambda: _count_file(path),
        "stream": lambda: _count_stream(path),
    }
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, object] = {}
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm
    for _ in range(rounds):
        for key, run in runs.items():
            w, c, out = _timed(run)
            wall[key].append(w)
            cpu[key].append(c)
            outputs[key] = out
    search, hits = needle_search(path)
    return {"wall": wall, "cpu": cpu, "grep": str(outputs["grep"]).strip(),
            "cli_reports": str(outputs["cli"]).count("\n"), "reports": outputs["stream"],
            "search": search, "hits": hits, "fed": lines_fed(path)}


ROWS = (
    ("`cat FILE > /dev/null`", "cat"),
    ("`LC_ALL=C grep -c -E HEADLINES FILE`", "grep"),
    ("`memconsole oops --json FILE > /dev/null`", "cli"),
    ("`_scan.scan_file()` in process", "file"),
    ("`_scan.scan_stream()` in process (one process)", "stream"),
)


def table(size: int, res: dict[str, object]) -> str:
    wall: dict[str, list[float]] = res["wall"]  # type: ignore[assignment]
    cpu: dict[str, list[float]] = res["cpu"]  # type: ignore[assignment]
    mb = size / 1e6
    bw = {k: min(v) for k, v in wall.items()}
    bc = {k: min(v) for k, v in cpu.items()}
    out = ["| what | wall best (s) | wall rounds (s) | MB/s | vs grep | CPU best (s) | MB/s | "
           "vs grep |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for label, key in ROWS:
        rounds = ", ".join(f"{t:.2f}" for t in wall[key])
        out.append(f"| {label} | {bw[key]:.2f} | {rounds} | {mb / bw[key]:.0f} | "
                   f"{bw['grep'] / bw[key]:.2f}x | {bc[key]:.2f} | {mb / max(bc[key], 1e-9):.0f}"
                   f" | {bc['grep'] / max(bc[key], 1e-9):.2f}x |")
    fed = int(res["fed"])  # type: ignore[call-overload]
    reports = int(res["reports"])  # type: ignore[call-overload]
    search = float(res["search"])  # type: ignore[arg-type]
    per_line = (bc["stream"] - search) / fed * 1e6 if fed else 0.0
    out.append("")
    out.append(f"needle search alone (one process, CPU): {search:.2f} s "
               f"({mb / max(search, 1e-9):.0f} MB/s); lines fed to the parser: {fed} "
               f"({fed / max(reports, 1):.0f} per report); cost per line fed "
               f"(stream CPU - search) / lines: {per_line:.1f} us; per report "
               f"{(bc['stream'] - search) / max(reports, 1) * 1e3:.2f} ms")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="256M", help="bytes of each log")
    ap.add_argument("--logs", default=",".join(KINDS),
                    help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--every", default="16M", help="sparse log: bytes between two reports")
    ap.add_argument("--period", default="150000", help="dense log: bytes per record")
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the logs are kept")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    size, every, period = _size(args.size), _size(args.every), _size(args.period)
    kinds = [k for k in args.logs.split(",") if k]
    for kind in kinds:
        if kind not in KINDS:
            ap.error(f"unknown log {kind!r}")
    cpus = len(os.sched_getaffinity(0))
    print(f"Python {sys.version.split()[0]}; {cpus} CPUs; load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
    for kind in kinds:
        tag = {"sparse": f"every-{args.every}", "dense": f"period-{period}",
               "back-to-back": "period-0"}[kind]
        path = args.dir / f"memconsole-bench-{kind}-{args.size}-{tag}.log"
        if not path.exists() or path.stat().st_size < size:
            print(f"building {path} ({size >> 20} MiB)...", file=sys.stderr)
            tmp = path.with_suffix(".tmp")
            if kind == "sparse":
                build_sparse(tmp, size, every)
            else:
                build_dense(tmp, size, period if kind == "dense" else 0)
            tmp.replace(path)
        actual = path.stat().st_size
        res = bench(path, args.rounds)
        what = {"sparse": f"kern.log, a fixture report every {every >> 20} MiB",
                "dense": f"the lab's 6.12 NULL-pointer ramoops record every {period} bytes",
                "back-to-back": "the lab's 6.12 NULL-pointer ramoops record back to back"}[kind]
        print(f"### {kind}: {what}\n")
        print(f"file: {actual} bytes ({actual / 2**20:.0f} MiB); grep matched {res['grep']} "
              f"lines, memconsole found {res['cli_reports']} reports; rounds {args.rounds}; "
              "load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
        print(table(actual, res))
        print()


if __name__ == "__main__":
    main()
