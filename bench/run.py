"""Run every benchmark of the project and write docs/benchmarks.md.

    nice -n 5 .venv/bin/python bench/run.py [--only NAME]... [--quick] [--out FILE]

Each benchmark is one of the scripts in bench/, run as a child process from the
repository root (PYTHONPATH=src, this interpreter), its Markdown output captured.
The document is bench/benchmarks.md.in with its directives replaced:

* ``@header``: date (UTC), commit, ``nproc``, CPU model, memory, kernel, Python
  (and numpy), how this script was run, and per benchmark its status, duration
  and the load average before and after it;
* ``@run NAME``: the exact command, the peer its figures are compared with,
  when it ran and under what load, its tables, and the verdicts against the
  project's targets, computed here from the tables (never written by hand);
  a benchmark that failed is shown as failed with the tail of its stderr.

The commit is taken when the run starts and again at its end, and both are shown
when they differ (the tree is shared).

The rest of the template (what each figure means, what was learnt, a short
history) is copied as it is.  Benchmarks start and end in the order of
:data:`BENCHES` (the one that boots VMs last, under ``flock`` on
/tmp/memconsole-vm.lock, waiting at most ``--vm-wait`` seconds for it), not in
the order of the document.

A full run (no ``--only``, no ``--quick``) writes docs/benchmarks.md; any other
run writes to stdout unless ``--out`` is given.  ``--quick`` uses smaller inputs
and fewer rounds and says in the document that its figures are not the published
ones.  Exit status: 0 when every benchmark run succeeded, 1 when one failed, 2 on
a usage error.  ``--list`` prints the names.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "bench" / "benchmarks.md.in"
DOC = ROOT / "docs" / "benchmarks.md"
VENV = Path("/tmp/memconsole-bench-venv")
VM_LOCK = "/tmp/memconsole-vm.lock"
CORPUS = ROOT.parent / "shared" / "corpora" / "syzkaller-linux-report"
STDERR_TAIL = 30
LOCK_TIMEOUT = 75  # flock -E: the exit status when the VM lock stayed held


# --- Markdown tables in a benchmark's output ----------------------------------------------


class Table(NamedTuple):
    """One Markdown table: its header cells and rows of cells."""

    header: list[str]
    rows: list[list[str]]


def tables(text: str) -> list[Table]:
    """Every Markdown table of *text*, in order."""
    out: list[Table] = []
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|") and line.rstrip().endswith("|"):
            block.append([c.strip() for c in line.strip()[1:-1].split("|")])
            continue
        if len(block) >= 2 and all(set(c) <= set("-: ") for c in block[1]):
            out.append(Table(block[0], block[2:]))
        block = []
    return out


def number(cell: str) -> float | None:
    """The first number of a cell (``448,370`` -> 448370.0, ``0.23x`` -> 0.23)."""
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?", cell)
    return float(m.group(0).replace(",", "")) if m else None


def cell(found: Sequence[Table], row: str, column: str, nth: int = 0) -> float | None:
    """The number in the column whose header contains *column* of the first row
    whose first cell contains *row* (the *nth* such row over all tables)."""
    seen = 0
    for t in found:
        cols = [i for i, h in enumerate(t.header) if column in h]
        if not cols:
            continue
        for r in t.rows:
            if r and row in r[0] and len(r) > cols[0]:
                if seen == nth:
                    return number(r[cols[0]])
                seen += 1
    return None


# --- verdicts -----------------------------------------------------------------------------


class Verdict(NamedTuple):
    """A target of the project and what this run measured against it."""

    target: str
    measured: float | None
    unit: str
    met: bool | None  # None: not measured in this run

    def render(self) -> str:
        """One table row."""
        if self.measured is None:
            got = "not measured"
        else:
            fmt = ",.0f" if abs(self.measured) >= 100 else ".2f"
            got = f"{self.measured:{fmt}}{self.unit}"
        word = {True: "**met**", False: "**not met**", None: "not measured"}[self.met]
        return f"| {self.target} | {got} | {word} |"


def at_least(target: str, value: float | None, floor: float, unit: str = "") -> Verdict:
    """Met when *value* >= *floor*."""
    return Verdict(target, value, unit, None if value is None else value >= floor)


def at_most(target: str, value: float | None, ceiling: float, unit: str = "") -> Verdict:
    """Met when *value* <= *ceiling*."""
    return Verdict(target, value, unit, None if value is None else value <= ceiling)


def _decode_verdicts(out: str) -> list[Verdict]:
    t = tables(out)
    rs = [float(m.group(1)) for m in re.finditer(r"vs reedsolo: (\d+)x best, \d+x median", out)]
    return [
        at_least("target: every decode row >= 20x `reedsolo` (best runs; the lowest "
                 "of the three)", min(rs) if rs else None, 20, "x"),
        at_least("target: `memconsole decode IMAGE` >= 50 MB/s (median run)",
                 _col(t, "memconsole decode IMAGE (", 4), 50, " MB/s"),
    ]


def _col(found: Sequence[Table], row: str, index: int) -> float | None:
    """The number in column *index* of the first row whose first cell contains *row*."""
    for t in found:
        for r in t.rows:
            if r and row in r[0] and len(r) > index:
                return number(r[index])
    return None


def _ring_verdicts(out: str) -> list[Verdict]:
    t = tables(out)
    m = re.search(r"RingHandler / FileHandler cost: ([\d.]+)x", out)
    return [
        at_least("recorder (`memconsole record`) >= 200,000 records/s",
                 cell(t, "`memconsole record", "records/s"), 200_000, " records/s"),
        at_least("API, batched (`Ring.extend`, file ring) >= 1,000,000 records/s",
                 cell(t, "`Ring.extend`, 100-byte records, batches of 1000, file", "records/s"),
                 1_000_000, " records/s"),
        at_most("logging: `RingHandler` <= 1.5x `FileHandler` per record",
                float(m.group(1)) if m else None, 1.5, "x"),
    ]


def _startup_verdicts(out: str) -> list[Verdict]:
    t = tables(out)
    return [
        at_most("issue 9: `memconsole show` <= 3x `python3 -c pass` (wall median)",
                cell(t, "`memconsole show`", "(wall)"), 3, "x"),
        at_most("issue 9: `memconsole collect` <= 1.5x `python3 -c pass` (wall median)",
                cell(t, "`memconsole collect", "(wall)"), 1.5, "x"),
        # The same targets for the floors: what the interpreter's own modules cost
        # before any memconsole code runs.
        at_most("floor of show: its standard library <= 3x `python3 -c pass` (wall median)",
                cell(t, "`floor: the standard library of show`", "(wall)"), 3, "x"),
        at_most("floor of collect: `import argparse` and one parser <= 1.5x "
                "`python3 -c pass` (wall median)",
                cell(t, "`floor: argparse`", "(wall)"), 1.5, "x"),
        at_most("floor of collect: a durable copy in os calls only <= 1.5x "
                "`python3 -c pass` (wall median)",
                cell(t, "`floor: durable copy, os only`", "(wall)"), 1.5, "x"),
    ]


def _oops_verdicts(out: str) -> list[Verdict]:
    sparse = dense = None
    for m in re.finditer(r"^### (\S+):", out, re.MULTILINE):
        kind = m.group(1)
        nxt = out.find("\n### ", m.end())
        section = tables(out[m.end():nxt if nxt >= 0 else len(out)])
        if kind == "sparse":
            sparse = cell(section, "`memconsole oops", "vs grep")
        elif kind == "dense":
            dense = cell(section, "`memconsole oops", "MB/s")
    return [
        at_least("issue 11: dense log, `memconsole oops --json` >= 50 MB/s (wall, best round)",
                 dense, 50, " MB/s"),
        at_least("issue 11: sparse kern.log, `memconsole oops --json` >= 0.5x "
                 "`grep -c -E` (wall, best round)", sparse, 0.5, "x"),
    ]


def _report_verdicts(out: str) -> list[Verdict]:
    t = tables(out)
    return [at_most("the report page renders in under 2 s (median render; 1,000 boots in "
                    "a full run)",
                    cell(t, "render (screenshot - start-up)", "median"), 2.0, " s")]


# --- the benchmarks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """One benchmark script and how run.py runs and judges it."""

    name: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    peer: str
    verdicts: Callable[[str], list[Verdict]] | None = None
    vm: bool = False
    fenced: bool = False
    timeout: float = 3600.0
    venv: bool = False  # needs the installed copy (VENV)
    env: dict[str, str] = field(default_factory=dict)


def _mc() -> str:
    return str(VENV / "bin" / "memconsole")


BENCHES: tuple[Bench, ...] = (
    Bench("startup", "bench_startup.py", ("--memconsole", _mc(), "--runs", "21"),
          ("--memconsole", _mc(), "--runs", "3"),
          "`python3 -c pass` (the same venv's interpreter), round robin",
          _startup_verdicts, venv=True),
    Bench("imports", "bench_imports.py", ("--memconsole", _mc(), "--runs", "11"),
          ("--memconsole", _mc(), "--runs", "2"),
          "`python3 -c pass` (wall clock; the modules it imports are the baseline of the "
          "import times)", venv=True),
    Bench("collect", "bench_collect_peers.py", ("--memconsole", _mc(), "--runs", "21"),
          ("--memconsole", _mc(), "--runs", "3"),
          "`python3 -c pass` and systemd-pstore (`/usr/lib/systemd/systemd-pstore DIR NEW`) "
          "on the same 8 records", venv=True),
    Bench("archive", "bench_archive.py",
          ("--memconsole", _mc(), "--boots", "1000", "--runs", "11"),
          ("--memconsole", _mc(), "--boots", "50", "--runs", "2"),
          "`python3 -c pass` (the same venv's interpreter), round robin", venv=True),
    Bench("decode", "bench_decode.py",
          ("--size", "64M", "--reedsolo-blocks", "2000", "--repeat", "3"),
          ("--size", "8M", "--reedsolo-blocks", "100", "--repeat", "1", "--hostile-size", "1M",
           "--pure-python-size", "2M"),
          "`cat IMAGE > /dev/null` (the I/O floor) and the pure-Python `reedsolo` package "
          "checking the same codewords", _decode_verdicts),
    Bench("oops", "bench_oops.py",
          ("--size", "256M", "--logs", "sparse,dense,back-to-back", "--rounds", "3"),
          ("--size", "16M", "--logs", "sparse,dense", "--rounds", "1"),
          "`cat FILE > /dev/null` (the I/O floor) and `LC_ALL=C grep -c -E HEADLINES FILE`",
          _oops_verdicts),
    Bench("memory", "bench_memory.py",
          ("--log-size", "1G", "--region", "64M", "--record-seconds", "5", "--rounds", "2"),
          ("--log-size", "16M", "--region", "8M", "--record-seconds", "1", "--rounds", "1"),
          "`python3 -c pass` and systemd-pstore (collect), `cat` (decode, oops, recorder), "
          "`grep -c -E` (oops)"),
    Bench("ring", "bench_ring.py", (),
          ("--records", "20000", "--api-records", "20000", "--log-records", "5000"),
          "`cat STREAM > FILE` (recorder), `logging.FileHandler` (logging)", _ring_verdicts),
    Bench("conformance", "conformance.py", (str(CORPUS),), (str(CORPUS),),
          "the titles syzkaller's own parser gives the same logs (the corpus' TITLE lines)",
          fenced=True),
    Bench("report", "bench_report.py", ("--boots", "1000", "--rounds", "5"),
          ("--boots", "50", "--rounds", "1"),
          "Chromium rendering a one-line page (its start-up and shutdown)", _report_verdicts),
    Bench("kmod", "bench_kmod.py", ("--count", "2000", "--repeat", "5"),
          ("--kernel", "6.12", "--count", "200", "--repeat", "1"),
          "no console at all, and the emulated serial console", vm=True, timeout=1200.0),
)
BY_NAME = {b.name: b for b in BENCHES}


# --- running ------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one benchmark run gave."""

    bench: Bench
    argv: list[str]
    start: float = 0.0
    end: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        """The benchmark ran and exited 0."""
        return self.returncode == 0


def _rel(path: str) -> str:
    """*path* relative to the repository when inside it (symlinks kept: a venv's
    interpreter stays the venv's)."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(ROOT))
    except ValueError:
        return path


def command(bench: Bench, quick: bool, python: str, vm_wait: int = 1800) -> list[str]:
    """The argv of *bench* (as run from the repository root); one that boots VMs
    waits up to *vm_wait* seconds for the VM lock."""
    argv = [python, f"bench/{bench.script}", *(bench.quick if quick else bench.args)]
    if bench.vm:
        argv = ["flock", "-E", str(LOCK_TIMEOUT), "-w", str(vm_wait), VM_LOCK, *argv]
    return argv


def shown(argv: Sequence[str]) -> str:
    """*argv* as a shell command line, with PYTHONPATH and repository-relative paths."""
    return "PYTHONPATH=src " + shlex.join(_rel(a) if a.startswith(str(ROOT)) else a
                                          for a in argv)


def prepare_venv(log: Callable[[str], None]) -> str:
    """Install this tree (non-editable, no dependencies) into VENV; return the
    command that did it ("" when it failed, with the reason logged)."""
    with tempfile.TemporaryDirectory(prefix="memconsole-bench-src-") as tmp:
        for part in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / part, Path(tmp) / part)
        shutil.copytree(ROOT / "src", Path(tmp) / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        shutil.rmtree(VENV, ignore_errors=True)
        steps = [["python3", "-m", "venv", str(VENV)],
                 [str(VENV / "bin" / "pip"), "install", "-q", "--no-deps", tmp]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode:
                log(f"{shlex.join(step)}: exit {done.returncode}: {done.stderr[-1000:]}")
                return ""
    return (f"python3 -m venv {VENV} && {VENV}/bin/pip install --no-deps COPY "
            "(COPY: pyproject.toml, README.md and src/ of this tree)")


def run_one(bench: Bench, quick: bool, python: str, log: Callable[[str], None],
            vm_wait: int = 1800) -> Result:
    """Run *bench* in its own process group, capturing its output; on timeout the
    whole group (QEMU guests included) is terminated."""
    res = Result(bench, command(bench, quick, python, vm_wait))
    res.load_before = os.getloadavg()
    res.start = time.time()
    log(f"run.py: {bench.name}: {shown(res.argv)}")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **bench.env)
    timeout = bench.timeout + (vm_wait if bench.vm else 0)
    try:
        proc = subprocess.Popen(res.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True)
    except OSError as exc:
        res.returncode, res.stderr = -1, f"run.py: cannot run it: {exc}"
    else:
        try:
            res.stdout, res.stderr = proc.communicate(timeout=timeout)
            res.returncode = proc.returncode
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            res.stdout, res.stderr = proc.communicate()
            res.returncode = -1
            res.stderr += f"\nrun.py: timed out after {timeout:.0f} s; process group stopped"
    res.end = time.time()
    res.load_after = os.getloadavg()
    if bench.vm and res.returncode == LOCK_TIMEOUT:
        res.note = f"**failed**: the VM lock stayed held for the {vm_wait} s it waited"
        res.stderr += (f"\nrun.py: {VM_LOCK} stayed held by other VM work for the {vm_wait} s "
                       "this benchmark waited; it did not start")
    log(f"run.py: {bench.name}: exit {res.returncode} after {res.end - res.start:.0f} s")
    return res


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to *proc*'s process group, SIGKILL 10 s later if it is still there."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the document -------------------------------------------------------------------------------


def _utc(t: float, fmt: str = "%H:%M:%S") -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime(fmt)


def _load(avg: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in avg)


def machine() -> list[tuple[str, str]]:
    """(what, value) rows describing this machine and interpreter."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    try:
        import numpy
        np = f"numpy {numpy.__version__}"
    except ImportError:
        np = "no numpy"
    return [("CPUs (`nproc`)", nproc or str(os.cpu_count())), ("CPU model", model),
            ("memory", mem), ("kernel", platform.release()),
            ("Python", f"{platform.python_version()} ({np})"),
            ("niceness of the run", str(os.nice(0)))]


def commit() -> str:
    """The commit of the tree, and whether src/ or bench/ differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout
    head = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "bench").rstrip()
    return head + (" (src/ or bench/ with uncommitted changes: "
                   + ", ".join(line[3:] for line in dirty.splitlines()) + ")" if dirty else "")


def header(results: Sequence[Result], quick: bool, argv: Sequence[str], started: float,
           venv_cmd: str, commits: tuple[str, str] = ("", "")) -> str:
    """The @header block."""
    out = []
    if quick:
        out += ["> **Quick run (`--quick`): smaller inputs and fewer rounds. These are not "
                "the published figures; run `bench/run.py` without `--quick` for those.**", ""]
    ended = max((r.end for r in results), default=started)
    first, last = commits if commits[0] else (commit(), "")
    tree = f"from commit {first}" + (f"; at its end the tree was at {last}"
                                       if last and last != first else "")
    out += [f"Generated by `{shlex.join(['bench/run.py', *argv])}` on "
            f"{_utc(started, '%Y-%m-%d')}, {_utc(started, '%H:%M')}-{_utc(ended, '%H:%M')} "
            f"UTC, {tree}.  Every figure below was measured in that run, "
            "each benchmark side by side with its peer; the verdicts against the "
            "project's targets are computed by bench/run.py from the measured figures.", ""]
    if venv_cmd:
        out += [f"The installed copy the start-up benchmarks run: `{venv_cmd}`.", ""]
    out += ["| machine | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine()]
    out += ["", "| benchmark | status | started (UTC) | seconds | load average before "
            "| load average after |", "|---|---|---|---:|---|---|"]
    for r in results:
        status = "ok" if r.ok else (r.note or f"**failed** (exit {r.returncode})")
        out.append(f"| [{r.bench.name}](#{_anchor(r.bench.name)}) | {status} | "
                   f"{_utc(r.start)} | {r.end - r.start:.0f} | {_load(r.load_before)} | "
                   f"{_load(r.load_after)} |")
    return "\n".join(out)


def _anchor(name: str) -> str:
    return f"run-{name}"


def section(res: Result | None, name: str, quick: bool, selected: bool) -> str:
    """The @run NAME block."""
    bench = BY_NAME[name]
    out = [f'<a id="{_anchor(name)}"></a>', ""]
    if res is None:
        out.append(f"Not run in this run ({'not selected by --only' if not selected else 'n/a'})"
                   f"; command: `{shown(command(bench, quick, '.venv/bin/python'))}`.")
        return "\n".join(out)
    out += ["Command (from the repository root):", "", f"    {shown(res.argv)}", "",
            f"Compared with: {bench.peer}.", "",
            f"Ran {_utc(res.start)}-{_utc(res.end)} UTC ({res.end - res.start:.0f} s), "
            f"load average {_load(res.load_before)} before, {_load(res.load_after)} after"
            + (" (**quick run: not the published figures**)" if quick else "") + ".", ""]
    if not res.ok:
        tail = "\n".join(res.stderr.rstrip().splitlines()[-STDERR_TAIL:]) or "(nothing)"
        out += [f"**Failed**: exit {res.returncode} after {res.end - res.start:.0f} s.  "
                "The last lines of its stderr:", "", "```", tail, "```"]
        return "\n".join(out)
    body = res.stdout.strip()
    out += ["```", body, "```"] if bench.fenced else [_spaced(body)]
    if bench.verdicts is not None:
        out += ["", "Against the targets (computed by bench/run.py from the figures above):",
                "", "| target | measured | verdict |", "|---|---:|---|",
                *(v.render() for v in bench.verdicts(res.stdout))]
    return "\n".join(out)


def _spaced(text: str) -> str:
    """*text* with a blank line before and after every Markdown table (a table
    glued to a line of prose is not a table to most renderers)."""
    lines: list[str] = []
    for line in text.splitlines():
        is_row = line.startswith("|")
        was_row = bool(lines) and lines[-1].startswith("|")
        if lines and lines[-1].strip() and line.strip() and is_row != was_row:
            lines.append("")
        lines.append(line)
    return "\n".join(lines)


def render(template: str, results: Sequence[Result], *, quick: bool, selected: set[str],
           argv: Sequence[str], started: float, venv_cmd: str = "",
           commits: tuple[str, str] = ("", "")) -> str:
    """The document: *template* with its directives replaced."""
    by_name = {r.bench.name: r for r in results}
    out = []
    for line in template.splitlines():
        if line.strip() == "@header":
            out.append(header(results, quick, argv, started, venv_cmd, commits))
        elif line.startswith("@run "):
            name = line.split()[1]
            out.append(section(by_name.get(name), name, quick, name in selected))
        else:
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def check_template(template: str) -> list[str]:
    """Problems of *template*: every benchmark once, only known names."""
    names = [line.split()[1] for line in template.splitlines() if line.startswith("@run ")]
    problems = [f"@run {n}: no such benchmark" for n in names if n not in BY_NAME]
    problems += [f"{b.name}: not in the template exactly once" for b in BENCHES
                 if names.count(b.name) != 1]
    if sum(1 for line in template.splitlines() if line.strip() == "@header") != 1:
        problems.append("@header: not exactly once")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME", choices=list(BY_NAME),
                    help="run only this benchmark (repeatable)")
    ap.add_argument("--quick", action="store_true",
                    help="smaller inputs and fewer rounds (not the published figures)")
    ap.add_argument("--out", type=Path,
                    help="where to write the document (default: docs/benchmarks.md for a full "
                         "run, stdout otherwise)")
    ap.add_argument("--template", type=Path, default=TEMPLATE)
    ap.add_argument("--list", action="store_true", help="print the benchmark names")
    ap.add_argument("--vm-wait", type=int, default=1800, metavar="SECONDS",
                    help="how long a benchmark that boots VMs waits for the VM lock "
                         "(default: 1800)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(b.name for b in BENCHES))
        return 0
    template = args.template.read_text()
    problems = check_template(template)
    if problems:
        print("run.py: " + "; ".join(problems), file=sys.stderr)
        return 2
    selected = set(args.only or BY_NAME)
    out = args.out or (DOC if not args.only and not args.quick else None)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.time()
    first = commit()
    todo = [b for b in BENCHES if b.name in selected]
    venv_cmd = prepare_venv(log) if any(b.venv for b in todo) else ""
    results = []
    for bench in todo:
        if bench.venv and not venv_cmd:
            res = Result(bench, command(bench, args.quick, sys.executable, args.vm_wait),
                         start=time.time(),
                         returncode=-1, stderr=f"run.py: could not install {VENV}")
            res.end, res.load_before, res.load_after = res.start, os.getloadavg(), os.getloadavg()
            results.append(res)
            continue
        results.append(run_one(bench, args.quick, _rel(sys.executable), log, args.vm_wait))
    doc = render(template, results, quick=args.quick, selected=selected,
                 argv=sys.argv[1:] if argv is None else argv, started=started,
                 venv_cmd=venv_cmd, commits=(first, commit()))
    if out is None:
        sys.stdout.write(doc)
    else:
        out.write_text(doc)
        log(f"run.py: wrote {out}")
    failed = [r.bench.name for r in results if not r.ok]
    if failed:
        log(f"run.py: failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
