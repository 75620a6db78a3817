"""Benchmark the crash report page: how long headless Chromium takes to
render the page of a 1,000-boot archive.

    PYTHONPATH=src python3 bench/bench_report.py [--boots 1000] [--rounds 3]

The events are real: every crash of tests/fixtures/lab (both kernels, every
crash action, see capture.py there) collected into an archive as
``memconsole collect`` does, plus the hang-or-reset boot of each ring
fixture, read back with ``memconsole.history.crash_history``.  Those 34
events are repeated, each copy with its own boot id and a time one hour
after the previous one, until there are --boots boots (a machine that
crashed once an hour for six weeks), and :func:`memconsole.ops.report.page`
renders them.

Per round, alternately, with the files in the page cache:

1. Chromium (``--headless=new --screenshot``, 1280x2000) on a page holding
   one line of text: start-up and shutdown, the floor;
2. the same on the report page: parse, style, layout and paint of the whole
   page (the screenshot needs all of them);
3. ``--dump-dom`` of the report page (parse and DOM, no paint).

The render time is (2) - (1).  Prints a Markdown table for
docs/benchmarks.md: best and median of the rounds, wall clock.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "ops"))

from labarchive import build  # noqa: E402

from memconsole.archive import Archive  # noqa: E402
from memconsole.history import CrashEvent, crash_history  # noqa: E402
from memconsole.ops.report import page  # noqa: E402

CHROMIUM = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            "--user-data-dir=/tmp/memconsole-chromium-bench"]


def events_of(n_boots: int, work: Path) -> list[CrashEvent]:
    base = list(crash_history(Archive(build(work)), [], None).events)
    out: list[CrashEvent] = []
    start = base[0].time_ns
    hour = 3600 * 10**9
    while len({e.boot for e in out}) < n_boots:
        for e in base:
            k = len(out)
            when = start + k * hour
            boot = datetime.fromtimestamp(when // 10**9, timezone.utc).strftime(
                "%Y%m%dT%H%M%SZ")
            shift = when - e.time_ns
            dumps = tuple(replace(d, parts=tuple(replace(r, mtime_ns=r.mtime_ns + shift)
                                                 for r in d.parts)) for d in e.dumps)
            ring = replace(e.ring, first_ns=e.ring.first_ns + shift,
                           last_ns=e.ring.last_ns + shift) if e.ring else None
            out.append(replace(e, boot=boot, dumps=dumps, ring=ring))
            if len({x.boot for x in out}) == n_boots:
                break
    return out


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boots", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="memconsole-bench-report-") as tmp:
        work = Path(tmp)
        events = events_of(args.boots, work)
        t0 = time.perf_counter()
        html = page(events, (), time.time_ns(), "bench")
        build_s = time.perf_counter() - t0
        report = work / "report.html"
        report.write_text(html)
        blank = work / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body><p>memconsole</p></body></html>\n")
        shot = ["--window-size=1280,2000", f"--screenshot={work / 'shot.png'}"]
        floor, full, dom = [], [], []
        timed([*CHROMIUM, *shot, blank.as_uri()])  # warm the binary and profile
        for _ in range(args.rounds):
            floor.append(timed([*CHROMIUM, *shot, blank.as_uri()]))
            full.append(timed([*CHROMIUM, *shot, report.as_uri()]))
            dom.append(timed([*CHROMIUM, "--dump-dom", report.as_uri()]))
        render = [f - b for f, b in zip(full, floor, strict=True)]
        print(f"{len(events)} crash events in {args.boots} boots, page {len(html) / 1e6:.1f} MB, "
              f"built in {build_s:.2f} s")
        print("| what | best s | median s |\n|---|---:|---:|")
        for label, xs in (("Chromium start-up, one-line page (screenshot)", floor),
                          (f"Chromium screenshot of the {args.boots}-boot page", full),
                          (f"Chromium --dump-dom of the {args.boots}-boot page", dom),
                          ("render (screenshot - start-up)", render)):
            print(f"| {label} | {min(xs):.2f} | {statistics.median(xs):.2f} |")


if __name__ == "__main__":
    main()
