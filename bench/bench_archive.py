"""``memconsole show`` and ``list`` on a 1,000-boot archive, side by side
with a bare interpreter.

    PYTHONPATH=src python3 bench/bench_archive.py [--boots 1000] [--runs 11]
        [--memconsole /tmp/bvenv/bin/memconsole]

The archive is made by ``memconsole collect`` itself (``memconsole.cli.main``
in this process, the code of this tree) from real records: the pstore files
of every crash of tests/fixtures/lab (both kernels, every crash action whose
records are plain text, with the mtimes the kernel gave them), laid out again
one crash at a time with their mtimes moved one hour later per boot and the
first kernel time stamp of each record moved by one microsecond per boot (so
that no copy is byte-identical to another: collect archives a record it has
seen before only once), until the archive holds --boots boots.  It is kept under --cache (default
/tmp) and reused while the code that writes archives and the fixtures are
unchanged (the directory name carries a hash of both).

Commands, each run --runs times, round robin (an empty pstore directory, so
they read the archive only): ``PYTHON -c pass``; ``memconsole show``;
``memconsole list``; ``memconsole list --by-signature``.  With --memconsole,
the installed console script and the interpreter beside it; else this
interpreter with ``-m memconsole`` and PYTHONPATH=src.  Prints a Markdown
table: medians of wall clock and CPU time, quartiles and the ratios to
``-c pass``, with the size of the archive.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import LAB, ROOT, load, median, quartiles, round_robin, table

#: Sources whose change may change what an archive holds: a new hash, a new build.
ARCHIVE_CODE = ("archive", "pstore", "cli/collect.py", "ring/format.py")
T0_NS = 1_767_225_600 * 10**9  # 2026-01-01 00:00 UTC, the first boot's records


_STAMP = re.compile(rb"\[ *(\d+)\.(\d{6})\]")


def relabel(data: bytes, n: int) -> bytes | None:
    """*data* with the microseconds of its first kernel time stamp moved by *n*
    (same width), so that boot *n*'s copy of a record is not byte-identical to
    another boot's (collect recognises a record it archived before by its
    SHA-256); None for a record without a plain-text stamp (compressed)."""
    m = _STAMP.search(data, 0, 4096)
    if m is None:
        return None
    usec = int(m.group(1)) * 10**6 + int(m.group(2)) + n
    old = m.group(0)
    new = b"[%*d.%06d]" % (len(old) - 9, usec // 10**6, usec % 10**6)
    if len(new) != len(old):
        return None
    return data[:m.start()] + new + data[m.end():]


def crashes() -> list[Path]:
    """Every lab crash directory (with its mtimes.json) whose records all carry
    a plain-text time stamp, in a fixed order."""
    return sorted(p.parent for p in LAB.glob("*/*/mtimes.json")
                  if all(relabel(f.read_bytes(), 0) is not None
                         for f in (p.parent / "pstore").iterdir()))


def cache_key(boots: int) -> str:
    """A hash of the fixtures and of the code that writes archives."""
    h = hashlib.sha256(str(boots).encode())
    src = ROOT / "src" / "memconsole"
    files = []
    for part in ARCHIVE_CODE:
        path = src / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for crash in crashes():
        files += [*sorted((crash / "pstore").iterdir()), crash / "mtimes.json"]
    for f in files:
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def build(dest: Path, boots: int) -> float:
    """Collect *boots* boots into *dest*/archive; return the seconds it took."""
    sys.path.insert(0, str(ROOT / "src"))
    from memconsole.cli import main

    archive, pstore = dest / "archive", dest / "pstore"
    pstore.mkdir(parents=True)
    lab = crashes()
    quiet = io.StringIO()
    t0 = time.perf_counter()
    n = 0
    while not (archive / "boots").is_dir() or \
            sum(1 for _ in (archive / "boots").iterdir()) < boots:
        crash = lab[n % len(lab)]
        mtimes: dict[str, int] = json.loads((crash / "mtimes.json").read_text())
        first = min(mtimes.values())
        for name, ns in mtimes.items():
            target = pstore / name
            data = relabel((crash / "pstore" / name).read_bytes(), n)
            assert data is not None
            target.write_bytes(data)
            t = T0_NS + n * 3600 * 10**9 + (ns - first)
            os.utime(target, ns=(t, t))
        with contextlib.redirect_stderr(quiet):
            rc = main(["collect", "--pstore", str(pstore), "--archive", str(archive),
                       "--journal", "no"])
        if rc != 0 or any(pstore.iterdir()):
            raise SystemExit(f"collect of boot {n} ({crash}): exit {rc}: {quiet.getvalue()}")
        n += 1
    return time.perf_counter() - t0


def cached(cache: Path, boots: int) -> tuple[Path, Path, str]:
    """(archive, empty pstore, how it was got) for *boots* boots, built if missing."""
    dest = cache / f"memconsole-bench-archive-{boots}-{cache_key(boots)}"
    how = "reused from an earlier run"
    if not (dest / ".built").exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"building {dest} ({boots} boots)...", file=sys.stderr)
        secs = build(tmp, boots)
        (tmp / ".built").write_text(f"{secs:.1f}\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
        how = f"built by this run in {secs:.1f} s"
    return dest / "archive", dest / "pstore", how


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--boots", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--cache", type=Path, default=Path("/tmp"))
    ap.add_argument("--memconsole", help="an installed console script (default: this tree)")
    args = ap.parse_args(argv)
    archive, empty, how = cached(args.cache, args.boots)
    boot_dirs = [p for p in (archive / "boots").iterdir() if p.is_dir()]
    records = sum(1 for b in boot_dirs for p in b.iterdir() if p.name.startswith("dmesg"))
    size = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())
    env = None
    if args.memconsole:
        python = str(Path(args.memconsole).parent / "python3")
        tool = [args.memconsole]
    else:
        python = sys.executable
        tool = [python, "-m", "memconsole"]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    where = ["--pstore", str(empty), "--archive", str(archive)]
    commands: dict[str, Callable[[], list[str]]] = {
        "python3 -c pass": lambda: [python, "-c", "pass"],
        "memconsole show": lambda: [*tool, "show", *where],
        "memconsole list": lambda: [*tool, "list", *where],
        "memconsole list --by-signature": lambda: [*tool, "list", "--by-signature", *where],
    }
    load0 = load()
    times = round_robin(commands, args.runs, env=env)
    load1 = load()
    unit = median([s.wall for s in times["python3 -c pass"]])
    unit_cpu = median([s.cpu for s in times["python3 -c pass"]])
    print(f"archive: {len(boot_dirs)} boots, {records} dmesg records, {size / 1e6:.1f} MB "
          f"({how}); {args.runs} runs each, round robin; {os.cpu_count()} CPUs; load "
          f"average {load0} before, {load1} after\n")
    rows = []
    for name, samples in times.items():
        wall = [s.wall for s in samples]
        q0, q3 = quartiles(wall)
        med, cpu = median(wall), median([s.cpu for s in samples])
        rows.append([f"`{name}`", f"{med * 1e3:.1f}", f"{q0 * 1e3:.1f}-{q3 * 1e3:.1f}",
                     f"{med / unit:.2f}", f"{cpu * 1e3:.1f}", f"{cpu / unit_cpu:.2f}"])
    print(table(["command", "wall median ms", "wall quartiles ms", "x `-c pass` (wall)",
                 "CPU median ms", "x `-c pass` (CPU)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
