"""Helpers shared by the benchmarks that run commands side by side.

One run of a command is a :class:`Sample`: wall-clock seconds, CPU seconds
(user + system of the child and the processes it waited for) and the peak
resident set size, all from ``wait4()`` of that one child, so a sample never
mixes in another command's figures (``RUSAGE_CHILDREN`` would keep the
largest child seen so far); the peak resident set is taken by GNU time
(see :func:`run`).  :func:`round_robin` runs several commands in
turn, so load from other tenants of a shared machine spreads over all of
them alike.  :func:`table` formats a Markdown table.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "tests" / "fixtures" / "lab"
#: The 8 real lab records bench_startup.py and the collect benchmarks use.
RECORDS = [LAB / release / kind / "pstore" / "dmesg-ramoops-0"
           for release in ("6.1", "6.12") for kind in ("null", "bug", "warn", "panic")]
SYSTEMD_PSTORE = Path("/usr/lib/systemd/systemd-pstore")
GNU_TIME = Path("/usr/bin/time")


class Sample(NamedTuple):
    """One run of one command."""

    wall: float
    """Wall-clock seconds, spawn to exit."""
    cpu: float
    """User + system CPU seconds of the child and the children it waited for."""
    maxrss_kib: int
    """Peak RSS in KiB of the largest single process of the tree (``ru_maxrss``;
    taken by GNU time when asked for, else 0)."""
    tree_kib: int
    """Peak of the summed RSS of the child and its descendants, sampled every
    10 ms from /proc (0 unless asked for)."""
    returncode: int


def _tree_rss_kib(pid: int) -> int:
    """Summed VmRSS of *pid* and its descendants, in KiB (0 once it is gone)."""
    total, todo, seen = 0, [pid], set[int]()
    while todo and len(seen) < 4096:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def run(argv: Sequence[str], *, stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = subprocess.DEVNULL,
        env: Mapping[str, str] | None = None, ok: Sequence[int] = (0,),
        tree: bool = False, feed: Callable[[IO[bytes]], None] | None = None,
        rss: bool = False) -> Sample:
    """Run *argv* once and measure it.

    *feed*, if given, is called with the child's stdin pipe (in this thread,
    while the clock runs) and must close it.  With *tree*, the summed RSS of
    the process tree is sampled while it runs.  With *rss*, the command runs
    under GNU time (``/usr/bin/time -f %M``), whose ``ru_maxrss`` is the
    command's own: the ``ru_maxrss`` of a child forked from this process
    starts at this interpreter's size, since Linux carries the peak of the
    memory image it replaces across ``exec``.  Raises ``SystemExit`` with the
    stderr tail when the exit status is not in *ok*.
    """
    report = None
    if rss:
        if not os.access(GNU_TIME, os.X_OK):
            raise SystemExit(f"{GNU_TIME}: missing (apt-get install time)")
        fd, report = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        argv = [str(GNU_TIME), "-f", "%M", "-o", report, *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if feed else stdin,
                            stdout=stdout, stderr=subprocess.PIPE,
                            env=dict(env) if env is not None else None)
    peak = [0]
    stop = threading.Event()
    err: list[bytes] = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()  # type: ignore[union-attr]
                                                       ), daemon=True)
    drain.start()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    if tree:
        sampler.start()
    if feed is not None:
        assert proc.stdin is not None
        feed(proc.stdin)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    if tree:
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    drain.join()
    maxrss = 0
    if report is not None:
        lines = Path(report).read_text().split()
        os.unlink(report)
        maxrss = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    if proc.returncode not in ok:
        tail = b"".join(err).decode(errors="replace").strip()[-2000:]
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {tail}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, maxrss, peak[0], proc.returncode)


def round_robin(commands: Mapping[str, Callable[[], list[str]]], runs: int, *,
                before: Callable[[str], None] | None = None,
                env: Mapping[str, str] | None = None, warm: bool = True
                ) -> dict[str, list[Sample]]:
    """Run every command *runs* times, one of each in turn (after one warm-up
    run each when *warm*).  *before(name)* runs before each run, off the clock
    (e.g. to refill a pstore directory)."""
    out: dict[str, list[Sample]] = {name: [] for name in commands}
    for rnd in range(runs + (1 if warm else 0)):
        for name, make in commands.items():
            if before is not None:
                before(name)
            sample = run(make(), env=env)
            if rnd or not warm:
                out[name].append(sample)
    return out


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values)."""
    return statistics.median(values) if values else 0.0


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles (the value itself for fewer than 2)."""
    if len(values) < 2:
        v = values[0] if values else 0.0
        return v, v
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def table(header: Sequence[str], rows: Sequence[Sequence[object]], right: int = 1) -> str:
    """A Markdown table; columns from index *right* on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load() -> str:
    """The load average as three numbers."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def python_of(tool: str) -> str:
    """The interpreter beside an installed console script."""
    return str(Path(tool).parent / "python3")


def fill(pstore: Path, records: Sequence[Path] = tuple(RECORDS)) -> None:
    """Empty *pstore* and copy *records* into it as dmesg-ramoops-0, -1, ..."""
    pstore.mkdir(parents=True, exist_ok=True)
    for old in pstore.iterdir():
        old.unlink()
    for n, rec in enumerate(records):
        (pstore / f"dmesg-ramoops-{n}").write_bytes(rec.read_bytes())
