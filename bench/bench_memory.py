"""Peak memory of ``memconsole collect``, ``decode``, ``oops`` on a 1 GiB log
and the recorder, each next to a peer doing the plain version of its job.

    PYTHONPATH=src python3 bench/bench_memory.py [--log-size 1G] [--region 64M]
        [--record-seconds 5] [--rounds 2] [--dir /tmp]

Every command runs under GNU time (``/usr/bin/time -f %M``: its
``ru_maxrss``, the peak resident set of the largest single process of its
tree, the processes it waited for included; a child forked by this process
directly would report at least this interpreter's size) and, sampled every
10 ms from /proc, the peak of the summed RSS of the whole tree (what
``oops``' worker processes add; a peak shorter than 10 ms can be missed).
memconsole runs from this tree (``python -m memconsole``, PYTHONPATH=src,
this interpreter).  Per job:

* collect: the 8 lab records of bench_startup.py into a new archive, erased
  from the pstore directory; peers ``python3 -c pass`` and
  ``systemd-pstore DIR NEW``;
* decode: a --region ramoops region built as bench_decode.py builds it (every
  zone full of real 6.12 panic text, ecc 16, record_size 16K), ``decode
  IMAGE`` (summary) and ``--out DIR``; peers ``cat IMAGE`` and
  ``python3 -c pass``;
* oops: ``memconsole oops --json FILE > /dev/null`` on the sparse and the
  dense log of bench_oops.py at --log-size (real kernel text, built once and
  kept under --dir); peers ``cat FILE`` and ``LC_ALL=C grep -c -E HEADLINES``
  (its count written to a file: GNU grep stops at the first match when its
  stdout is /dev/null);
* recorder: ``memconsole record --ring FILE --ring-size 1M --source stdin``
  fed for --record-seconds seconds, at 20,000 records a second, with kmsg
  records (``pri,seq,usec,-;text``) of the lab records' kernel lines; peer
  ``cat`` on the same feed.

Each command runs --rounds times, alternately within a job; the table gives
the largest peak seen and the median wall clock.  Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from benchlib import (
    RECORDS,
    ROOT,
    SYSTEMD_PSTORE,
    Sample,
    fill,
    load,
    median,
    run,
    table,
)

sys.path.insert(0, str(ROOT / "src"))
import bench_oops

RATE = 20_000  # records a second fed to the recorder


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text, 0)


def oops_log(kind: str, size_arg: str, directory: Path) -> Path:
    """bench_oops.py's *kind* log of *size_arg* bytes, built once under *directory*."""
    size = _size(size_arg)
    tag = {"sparse": "every-16M", "dense": "period-150000"}[kind]
    path = directory / f"memconsole-bench-{kind}-{size_arg}-{tag}.log"
    if not path.exists() or path.stat().st_size < size:
        print(f"building {path} ({size >> 20} MiB)...", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        if kind == "sparse":
            bench_oops.build_sparse(tmp, size, 16 << 20)
        else:
            bench_oops.build_dense(tmp, size, 150000)
        tmp.replace(path)
    return path


def kmsg_lines() -> list[bytes]:
    """kmsg-format text of the kernel lines of the 8 lab records."""
    out = []
    for rec in RECORDS:
        for line in rec.read_bytes().splitlines():
            if line.startswith(b"<") and b"] " in line:
                out.append(line.split(b"] ", 1)[1])
    return out


def feeder(seconds: float) -> Callable[[IO[bytes]], None]:
    """Write RATE kmsg records a second for *seconds* seconds, then close."""
    lines = kmsg_lines()

    def feed(pipe: IO[bytes]) -> None:
        seq, start = 0, time.monotonic()
        tick = 0.01
        try:
            while (now := time.monotonic() - start) < seconds:
                due = int(now * RATE) + int(RATE * tick)
                chunk = []
                while seq < due:
                    chunk.append(b"6,%d,%d,-;%s\n" % (seq, seq * 50, lines[seq % len(lines)]))
                    seq += 1
                pipe.write(b"".join(chunk))
                pipe.flush()
                time.sleep(tick)
        finally:
            pipe.close()
    return feed


def _job(argv: list[str], env: dict[str, str] | None = None,
         ok: tuple[int, ...] = (0,), to_file: bool = False) -> Callable[[], Sample]:
    """One run of *argv* under GNU time, tree RSS sampled; its stdout discarded,
    or with *to_file* written to a temporary file (GNU grep stops at the first
    match when its stdout is /dev/null)."""
    def job() -> Sample:
        if not to_file:
            return run(argv, env=env, ok=ok, tree=True, rss=True)
        with tempfile.TemporaryFile() as out:
            return run(argv, env=env, ok=ok, tree=True, rss=True, stdout=out)
    return job


def measure(jobs: dict[str, Callable[[], Sample]], rounds: int) -> dict[str, list[Sample]]:
    """Each job *rounds* times, alternately."""
    out: dict[str, list[Sample]] = {k: [] for k in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            out[name].append(job())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--log-size", default="1G", help="bytes of each oops log (K, M, G)")
    ap.add_argument("--logs", default="sparse,dense")
    ap.add_argument("--region", type=_size, default=64 << 20, help="decode: region size")
    ap.add_argument("--record-seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the logs are kept")
    args = ap.parse_args(argv)
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    mc = [py, "-m", "memconsole"]
    load0 = load()
    groups: list[tuple[str, dict[str, list[Sample]]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        base = Path(tmp)
        n = iter(range(1 << 30))
        pstore = base / "pstore"

        def collect_job(argv: list[str]) -> Callable[[], Sample]:
            def job() -> Sample:
                fill(pstore)
                return run([*argv, str(base / f"a{next(n)}")], env=env, tree=True, rss=True)
            return job

        jobs: dict[str, Callable[[], Sample]] = {
            "`python3 -c pass`": lambda: run([py, "-c", "pass"], tree=True, rss=True),
            "`memconsole collect --pstore DIR --archive NEW` (8 records)":
                collect_job([*mc, "collect", "--pstore", str(pstore), "--archive"]),
        }
        if os.access(SYSTEMD_PSTORE, os.X_OK):
            jobs["`systemd-pstore DIR NEW` (8 records)"] = collect_job(
                [str(SYSTEMD_PSTORE), str(pstore)])
        groups.append(("collect", measure(jobs, args.rounds)))

        import bench_decode
        region, _geom = bench_decode.build(args.region, 16, 16 << 10)
        image = base / "region.img"
        image.write_bytes(region)
        del region
        opts = ["--mem-size", str(args.region), "--record-size", str(16 << 10), "--ecc", "16",
                "--zone-order", "6.2", "--ftrace-cpus", "1"]
        mib = args.region >> 20
        jobs = {
            f"`cat IMAGE` ({mib} MiB)": lambda: run(["cat", str(image)], tree=True, rss=True),
            f"`memconsole decode IMAGE` ({mib} MiB, summary)":
                lambda: run([*mc, "decode", str(image), *opts], env=env, tree=True, rss=True),
            f"`memconsole decode IMAGE --out DIR` ({mib} MiB)":
                lambda: run([*mc, "decode", str(image), *opts, "--out",
                             str(base / f"out{next(n)}")], env=env, tree=True, rss=True),
        }
        groups.append(("decode", measure(jobs, args.rounds)))

        cenv = dict(env, LC_ALL="C")
        for kind in [k for k in args.logs.split(",") if k]:
            log = oops_log(kind, args.log_size, args.dir)
            gib = log.stat().st_size / 2**30
            what = f"{kind} log, {gib:.2f} GiB"
            jobs = {
                f"`cat FILE` ({what})": _job(["cat", str(log)]),
                f"`LC_ALL=C grep -c -E HEADLINES FILE` ({what})":
                    _job(["grep", "-c", "-E", bench_oops.HEADLINES, str(log)], env=cenv,
                         ok=(0, 1), to_file=True),
                f"`memconsole oops --json FILE > /dev/null` ({what})":
                    _job([*mc, "oops", "--json", str(log)], env=env),
            }
            groups.append((f"oops, {kind}", measure(jobs, args.rounds)))

        ring = Path("/dev/shm") if Path("/dev/shm").is_dir() else base
        secs = args.record_seconds
        with tempfile.TemporaryDirectory(prefix="bench-memory-ring-", dir=ring) as rtmp:
            what = f"{secs:g} s at {RATE} records/s"
            jobs = {
                f"`cat` of the feed ({what})":
                    lambda: run(["cat"], feed=feeder(secs), tree=True, rss=True),
                f"`memconsole record --ring FILE --ring-size 1M --source stdin` ({what})":
                    lambda: run([*mc, "record", "--ring", f"{rtmp}/r{next(n)}.ring",
                                 "--ring-size", "1M", "--source", "stdin"], env=env,
                                feed=feeder(secs), tree=True, rss=True),
            }
            groups.append(("recorder", measure(jobs, args.rounds)))
    load1 = load()
    print(f"{args.rounds} rounds per command; {os.cpu_count()} CPUs; Python "
          f"{sys.version.split()[0]}; load average {load0} before, {load1} after\n")
    rows = []
    unit = max(s.maxrss_kib for s in groups[0][1]["`python3 -c pass`"])
    for group, res in groups:
        peer = max(s.maxrss_kib for s in next(iter(res.values())))
        for name, samples in res.items():
            rss = max(s.maxrss_kib for s in samples)
            tree = max(s.tree_kib for s in samples)
            rows.append([group, name, f"{rss / 1024:.1f}", f"{tree / 1024:.1f}",
                         f"{rss / peer:.1f}", f"{rss / unit:.1f}",
                         f"{median([s.wall for s in samples]):.2f}"])
    print(table(["job", "command", "peak RSS MiB (largest process)",
                 "peak RSS MiB (whole tree, sampled)", "x first row of the job",
                 "x `python3 -c pass`", "wall median s"], rows, right=2))
    print("\nThe sampled tree figure includes GNU time itself (about 2 MiB); 0.0: the "
          "command ended before the first sample.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
