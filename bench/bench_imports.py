"""Import time of the memconsole CLI, as a whole and per command, side by
side with a bare interpreter.

    python3 -m venv /tmp/bvenv && /tmp/bvenv/bin/pip install --no-deps .
    python3 bench/bench_imports.py --memconsole /tmp/bvenv/bin/memconsole [--runs 11]

An installed, non-editable memconsole (the interpreter beside --memconsole).

1. Wall clock, --runs times round robin: ``PYTHON -c pass`` and
   ``PYTHON -c "import memconsole.cli"``: medians and their ratio.
2. ``PYTHON -X importtime``, --runs times each: ``-c "import memconsole.cli"``
   and each command as a machine runs it, on real inputs (``--help``;
   ``collect`` of the 8 lab records of bench_startup.py into a new archive,
   ``--keep``; ``show`` and ``list`` of the archive they make; ``oops`` of the
   6.12 NULL-pointer lab record; ``decode`` of the 1 MiB 6.12 ramoops region of
   tests/fixtures/ramoops; ``record`` of a 1,000-record kmsg stream into a file
   ring).  The import time of a run is the sum of the self times of the
   modules it imports that ``-c pass`` does not (``-c pass`` imports the
   interpreter's own start-up modules, the unit); the table gives the median
   over the runs, the number of such modules (memconsole's among them), and
   the module with the largest cumulative time below the entry chain
   (``memconsole``, ``memconsole.__main__``, ``memconsole.cli``,
   ``memconsole.cli.main``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchlib import LAB, RECORDS, ROOT, fill, load, median, python_of, round_robin, table

REGION = ROOT / "tests" / "fixtures" / "ramoops" / "k612-null-defaults" / "region.bin.gz"
RECORD = LAB / "6.12" / "null" / "pstore" / "dmesg-ramoops-0"
#: The chain every command imports first (its cumulative time holds all the rest).
ENTRY = frozenset({"memconsole", "memconsole.__main__", "memconsole.cli", "memconsole.cli.main"})


def importtime(argv: list[str]) -> dict[str, tuple[int, int, int]]:
    """module -> (self us, cumulative us, depth) of one ``-X importtime`` run."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    if done.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: "
                         f"{done.stderr.decode(errors='replace')[-1500:]}")
    out: dict[str, tuple[int, int, int]] = {}
    for line in done.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|", 2)
        depth = (len(name) - len(name.lstrip(" "))) // 2
        out[name.strip()] = (int(self_us), int(cumulative), depth)
    return out


def kmsg_stream(path: Path, n: int) -> None:
    """*n* kmsg-format records (``pri,seq,usec,-;text``) of real lab kernel lines."""
    lines = []
    for rec in RECORDS:
        for line in rec.read_bytes().splitlines():
            if line.startswith(b"<") and b"] " in line:
                lines.append(line.split(b"] ", 1)[1])
    with path.open("wb") as f:
        for seq in range(n):
            f.write(b"6,%d,%d,-;%s\n" % (seq, seq * 1000, lines[seq % len(lines)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--memconsole", default=str(Path(sys.executable).parent / "memconsole"),
                    help="the installed console script (default: next to this interpreter)")
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args(argv)
    python = python_of(args.memconsole)
    if not os.access(python, os.X_OK):
        raise SystemExit(f"{python}: not found (install memconsole into a venv)")
    load0 = load()
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        base = Path(tmp)
        pstore, empty, archive = base / "pstore", base / "empty", base / "archive"
        fill(pstore)
        empty.mkdir()
        subprocess.run([args.memconsole, "collect", "--pstore", str(pstore), "--archive",
                        str(archive), "--keep"], check=True, capture_output=True)
        region = base / "region.bin"
        region.write_bytes(gzip.decompress(REGION.read_bytes()))
        stream = base / "kmsg.stream"
        kmsg_stream(stream, 1000)
        counter = iter(range(1 << 30))
        m = [python, "-m", "memconsole"]
        cmds: dict[str, Callable[[], list[str]]] = {
            "import memconsole.cli": lambda: [python, "-c", "import memconsole.cli"],
            "memconsole --help": lambda: [*m, "--help"],
            "memconsole collect (8 records, --keep)": lambda: [
                *m, "collect", "--pstore", str(pstore), "--archive",
                str(base / f"a{next(counter)}"), "--keep"],
            "memconsole show": lambda: [*m, "show", "--pstore", str(empty),
                                        "--archive", str(archive)],
            "memconsole list": lambda: [*m, "list", "--pstore", str(empty),
                                        "--archive", str(archive)],
            "memconsole oops RECORD": lambda: [*m, "oops", str(RECORD)],
            "memconsole decode REGION (1 MiB)": lambda: [*m, "decode", str(region)],
            "memconsole record (1000 records)": lambda: [
                *m, "record", "--ring", str(base / f"r{next(counter)}.ring"), "--ring-size",
                "64K", "--source", str(stream)],
        }
        wall = round_robin({"python3 -c pass": lambda: [python, "-c", "pass"],
                            "python3 -c \"import memconsole.cli\"":
                                lambda: [python, "-c", "import memconsole.cli"]}, args.runs)
        base_mods = set(importtime([python, "-c", "pass"]))
        rows = []
        for name, make in cmds.items():
            totals, counts, ours = [], [], []
            top: dict[str, int] = {}
            for _ in range(args.runs):
                mods = importtime(make())
                new = {k: v for k, v in mods.items() if k not in base_mods}
                totals.append(sum(v[0] for v in new.values()) / 1e3)
                counts.append(len(new))
                ours.append(sum(1 for k in new if k.split(".")[0] == "memconsole"))
                for k, v in new.items():
                    if k not in ENTRY:
                        top[k] = min(top.get(k, 1 << 60), v[1])
            big = max(top.items(), key=lambda kv: kv[1]) if top else ("-", 0)
            rows.append([f"`{name}`", f"{median(totals):.1f}", f"{min(totals):.1f}",
                         int(median(counts)), int(median(ours)),
                         f"`{big[0]}` {big[1] / 1e3:.1f}"])
    load1 = load()
    unit = median([s.wall for s in wall["python3 -c pass"]])
    print(f"{args.runs} runs each; {os.cpu_count()} CPUs; load average {load0} before, "
          f"{load1} after\n")
    wrows = []
    for name, samples in wall.items():
        med = median([s.wall for s in samples])
        cpu = median([s.cpu for s in samples])
        wrows.append([f"`{name}`", f"{med * 1e3:.1f}", f"{med / unit:.2f}",
                      f"{cpu * 1e3:.1f}"])
    print(table(["command", "wall median ms", "x `-c pass` (wall)", "CPU median ms"], wrows))
    print()
    print(table(["what", "import ms (median)", "import ms (best)", "modules beyond -c pass",
                 "of them memconsole's", "largest (cumulative ms, best run)"], rows, right=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
