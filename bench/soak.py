"""Crash-loop soak: N crash/warm-reset cycles in the VM lab, ``memconsole
collect`` at every boot, then the archive checked against what was crashed.

    flock /tmp/memconsole-vm.lock env PYTHONPATH=src nice -n 10 \\
        .venv/bin/python bench/soak.py --cycles 200 --kernel 6.1 --kernel 6.12 \\
        --seed 1 --chain 9 --jobs 2 --json bench/results/soak/run.json --out /tmp/soak

    # the short version the test suite runs (tests/lab/test_vm_soak.py)
    .venv/bin/python -m pytest -q tests/lab/test_vm_soak.py

Configurations: every ``--kernel`` x ramoops ECC off/on x memconsole's ring
recorder off/on.  The cycles are spread evenly over them; each
configuration gets its own seeded deck of crash kinds (every kind of
``memconsole.lab.CRASH_ACTIONS`` once, shuffled, then again), so a
configuration with 16 cycles or more sees every kind: the twelve panics of
the crash drills, and four ends without a panic (``reset``: sysrq b;
``lockup``: a soft lockup that only reports; ``hardlockup``: interrupts
off; ``reboot``: ``reboot -f``), the two lockups reset from outside through
the QEMU monitor as a hardware watchdog would.

A configuration's cycles run as chains of ``--chain`` crashes, each chain
ONE QEMU process (guest RAM survives QEMU's warm reset as DRAM does), two
CPUs (the recorder must run beside a locked-up CPU).  Every boot of a chain:

1. its start time noted (``date``), then ``memconsole collect --archive
   $OUT/archive [--ring SPEC] --json``: the archive lives in the drill's
   shared directory, so it persists across boots and the host reads it
   afterwards;
2. with the ring: ``memconsole record --ring mem:0x7200000:1M`` started
   (memmap-reserved range) and waited for;
3. a marker in the kernel log (``memconsole-soak: boot N crashes by
   KIND``), then the crash.

The boot after the last crash collects once more.  Then, on the host, the
archive's crash events (``memconsole.history.crash_history``, what ``list``
shows) are assigned to cycles by the marker their log carries (else by
time: an event belongs to the boot it falls in) and checked: a panic must be one event of the kind,
task and panic reason the crash drills expect (tests/lab/test_vm_drill.py),
with the ring attached when the recorder ran; an end without a panic must
be one ring-only "hang or reset" event when the recorder ran (a soft
lockup's naming the lockup report), and none without it (nothing in RAM
can tell).  Counted per configuration: records recovered, classified
correctly, *duplicates* (a second event for one cycle, a record or ring
boot indexed twice), *losses* (a cycle whose expected record is not in the
archive after collect), *spurious* events (an event where no record was
expected), records left in pstore after the last collect, and the wall
time per cycle.  A crash whose chain ended before a boot could collect it
is counted as *not collected*, with the lab's error.

Prints one Markdown table row per configuration and a total; ``--json``
writes the whole run (every cycle) and is rewritten after every chain, so
an interrupted run keeps what it did.  Exit status 0 when every figure is
clean, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole.archive import Archive  # noqa: E402
from memconsole.errors import LabError, MemconsoleError  # noqa: E402
from memconsole.history import CrashEvent, crash_history  # noqa: E402
from memconsole.lab import (  # noqa: E402
    CRASH_ACTIONS,
    PANIC_EVENTS,
    Drill,
    Lab,
    Ramoops,
    pick_kernel,
)

#: A panic kind -> what its event must be (memconsole.lab.PANIC_EVENTS).
PANICS = PANIC_EVENTS
#: Ends without a panic: no dump, only the ring can tell (a hang or reset).
NO_PANIC = ("reset", "lockup", "hardlockup", "reboot")
KINDS = tuple(sorted((*PANICS, *NO_PANIC)))

RING = "mem:0x7200000:1M"
RING_CMDLINE = "memmap=1M$0x7200000"
MARK = "memconsole-soak: boot"
#: What the guest prints once a soft lockup without a panic has been
#: reported (and recorded): the host then resets it.
RESET_MARK = "memconsole-soak: lockup reported, reset me"
#: crashcon's last line before its CPU goes silent: the host resets on it.
HANG = "crashy: hardlockup: spinning with interrupts off"
_MARK_RE = re.compile(rb"memconsole-soak: boot (\d+) crashes by ([a-z]+)")


@dataclass(frozen=True)
class Config:
    """One configuration of the soak.

    Attributes:
        kernel: a kernel release or prefix (``6.1``, ``6.12``).
        ecc: ramoops ECC (16 bytes per block) on.
        ring: memconsole's ring recorder runs every boot.
    """

    kernel: str
    ecc: bool
    ring: bool

    @property
    def name(self) -> str:
        """Label for tables and directories."""
        return (f"{self.kernel} ECC {'on' if self.ecc else 'off'}, "
                f"ring {'on' if self.ring else 'off'}")

    @property
    def slug(self) -> str:
        """A directory name."""
        return re.sub(r"[^a-zA-Z0-9.]+", "-", self.name).strip("-")


@dataclass(frozen=True)
class Chain:
    """Crashes run in one QEMU process.

    Attributes:
        config: the configuration.
        number: the chain's number in the run (directory name).
        kinds: the crash of each crashing boot, in order.
    """

    config: Config
    number: int
    kinds: tuple[str, ...]


@dataclass
class CycleResult:
    """One crash and what the archive holds for it.

    Attributes:
        boot: the crashing boot's number in its chain (1 is the first).
        kind: the crash kind.
        expected: a record should come back (a panic, or the ring ran).
        collected: a later boot ran collect.
        events: crash events assigned to this cycle.
        recovered: the expected record is in the archive.
        classified: the event says what the drills expect for the kind.
        duplicates: events beyond the first.
        marker: the event's log carries this cycle's marker.
        why: what was wrong, if anything.
        event: the first event's ``list --json`` object.
    """

    boot: int
    kind: str
    expected: bool
    collected: bool
    events: int = 0
    recovered: bool = False
    classified: bool = False
    duplicates: int = 0
    marker: bool = False
    why: str = ""
    event: dict[str, object] | None = None


@dataclass
class ChainResult:
    """What one chain did.

    Attributes:
        config: the configuration's name.
        number: the chain's number.
        workdir: its directory (boot files, serial log, archive).
        kinds: the crashes asked for.
        seconds: wall time of the QEMU process (boots, crashes, collects).
        error: the lab's error if the chain ended early ("" if not).
        cycles: one per crash that reached its trigger.
        spurious: events no cycle expected (their ``list --json`` objects).
        indexed_twice: records (SHA-256) or ring boots indexed twice.
        left_in_pstore: files in pstore after the last collect.
        collect_status: exit status of every collect, by boot.
    """

    config: str
    number: int
    workdir: str
    kinds: list[str]
    seconds: float
    error: str
    cycles: list[CycleResult] = field(default_factory=list)
    spurious: list[dict[str, object]] = field(default_factory=list)
    indexed_twice: list[str] = field(default_factory=list)
    left_in_pstore: list[str] = field(default_factory=list)
    collect_status: dict[int, str] = field(default_factory=dict)


def configs(kernels: Sequence[str], ecc: Sequence[bool] = (False, True),
            ring: Sequence[bool] = (False, True)) -> list[Config]:
    """Every kernel x ECC x ring combination, in that order."""
    return [Config(k, e, r) for k in kernels for e in ecc for r in ring]


def plan(cycles: int, cfgs: Sequence[Config], seed: int, chain: int,
         kinds: Sequence[str] = KINDS) -> list[Chain]:
    """Spread *cycles* over *cfgs* (the first ones get one more when it does
    not divide), deal each configuration its kinds from its own seeded deck
    (every kind once, shuffled, then again), and cut them into chains of at
    most *chain* crashes; chains of different configurations alternate, so
    a run cut short has touched every configuration."""
    if cycles < 1 or chain < 1 or not cfgs:
        raise ValueError("need at least one cycle, one configuration and chains of >= 1")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown crash kinds {unknown} (known: {', '.join(KINDS)})")
    per: list[list[tuple[str, ...]]] = []
    for i, cfg in enumerate(cfgs):
        n = cycles // len(cfgs) + (i < cycles % len(cfgs))
        rng = random.Random(f"{seed}:{cfg.name}")
        deck: list[str] = []
        while len(deck) < n:
            batch = list(kinds)
            rng.shuffle(batch)
            deck += batch
        deck = deck[:n]
        pieces = -(-n // chain) if n else 0
        size = -(-n // pieces) if pieces else 0
        per.append([tuple(deck[j:j + size]) for j in range(0, n, size)] if n else [])
    out: list[Chain] = []
    for round_ in range(max(len(p) for p in per)):
        for cfg, pieces_ in zip(cfgs, per, strict=True):
            if round_ < len(pieces_):
                out.append(Chain(cfg, len(out) + 1, pieces_[round_]))
    return out


def _guest_script(chain: Chain, python: str) -> tuple[str, str]:
    """(each_boot, stage2) shell for *chain*'s drill."""
    ring = chain.config.ring
    cases = "\n".join(f"        {n}) kind={k} ;;" for n, k in enumerate(chain.kinds, 1))
    collect = (f'mc collect --archive "$OUT/archive"{" --ring " + RING if ring else ""} '
               '--json > "$OUT/collect.$boot.jsonl" 2> "$OUT/collect.$boot.err"\n'
               '    echo $? > "$OUT/collect.$boot.rc"\n'
               '    ls -A /sys/fs/pstore > "$OUT/pstore.$boot.ls" 2>&1\n')
    recorder = ""
    if ring:
        recorder = f"""
    {python} -m memconsole record --ring {RING} > "$OUT/rec.$boot.log" 2>&1 &
    n=0
    until grep -q "recording /dev/kmsg" "$OUT/rec.$boot.log"; do
        n=$((n + 1)); [ $n -gt 900 ] && break; sleep 0.2
    done
"""
    each_boot = f"""
    date +%s%N > "$OUT/start.$boot"
    case $boot in
{cases}
    esac
    {collect}{recorder}
    echo "{MARK} $boot crashes by $kind" > /dev/kmsg
    if [ "$kind" = lockup ]; then
        (
            n=0
            until dmesg | grep -q "soft lockup - CPU"; do
                n=$((n + 1)); [ $n -gt 600 ] && break; sleep 0.5
            done
            sleep 2
            echo "{RESET_MARK}"
        ) &
    fi
    {"sleep 1" if ring else ":"}
    sync
"""
    stage2 = f"""
    date +%s%N > "$OUT/start.$boot"
    {collect}
"""
    return each_boot, stage2


def drill_for(chain: Chain, timeout_per_boot: float = 150.0) -> Drill:
    """The lab drill that runs *chain*."""
    each_boot, stage2 = _guest_script(chain, shlex.quote(sys.executable))
    return Drill(pick_kernel(chain.config.kernel), action=chain.kinds[0],
                 then=chain.kinds[1:],
                 ramoops=Ramoops(ecc=1 if chain.config.ecc else None),
                 each_boot=each_boot, stage2=stage2, smp=2,
                 extra_cmdline=(RING_CMDLINE,) if chain.config.ring else (),
                 monitor_reset_on=(HANG, RESET_MARK),
                 timeout=timeout_per_boot * (len(chain.kinds) + 1))


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _indexed_twice(archive: Path) -> list[str]:
    """Records (by SHA-256) and ring boots (by kernel boot id) that appear in
    more than one index entry of the archive."""
    seen: dict[str, int] = {}
    for index in sorted(archive.glob("boots/*/records.json")):
        for entry in json.loads(index.read_text()):
            key = f"record {entry['sha256']}"
            seen[key] = seen.get(key, 0) + 1
    for index in sorted(archive.glob("boots/*/ring.json")):
        for entry in json.loads(index.read_text()):
            key = f"ring boot {entry['ring_boot']}"
            seen[key] = seen.get(key, 0) + 1
    return sorted(k for k, n in seen.items() if n > 1)


def _event_text(event: CrashEvent) -> bytes:
    text = b"".join(d.text for d in event.dumps) or event.log
    if event.ring is not None:
        text += event.ring.text
    return text


def _judge(cycle: CycleResult, event: CrashEvent, ring: bool) -> tuple[bool, bool, str]:
    """(recovered, classified correctly, why not) for the one event of a
    cycle that expected a record."""
    obj = event.to_json()
    if cycle.kind in PANICS:
        kind, comm, reason = PANICS[cycle.kind]
        if not event.dumps:
            return False, False, f"no pstore dump, only {obj['records']}"
        if ring and event.ring is None:
            return True, False, "the ring boot is not attached to the panic"
        problems = []
        if obj["kind"] != kind:
            problems.append(f"kind {obj['kind']!r}, expected {kind!r}")
        if not str(obj["comm"] or "").startswith(comm):
            problems.append(f"task {obj['comm']!r}, expected {comm!r}")
        got = str(obj["panic_reason"] or "")
        if (reason is None and "panic_on_warn set" not in got) or (
                reason is not None and not got.startswith(reason)):
            problems.append(f"panic reason {got!r}")
        return True, not problems, "; ".join(problems)
    # An end without a panic, known from the ring only.
    if not event.ring_only:
        return True, False, f"expected a ring-only event, got records {obj['records']}"
    headline = str(obj["headline"])
    if not headline.startswith("hang or reset: console ended at "):
        return True, False, f"headline {headline!r}"
    if cycle.kind == "lockup" and "last kernel report: BUG: soft lockup" not in headline:
        return True, False, f"the lockup report is not named: {headline!r}"
    return True, True, ""


def analyse(chain: Chain, workdir: Path, seconds: float, error: str) -> ChainResult:
    """Check the archive *chain* left in *workdir* against its crashes."""
    out = workdir / "out"
    result = ChainResult(chain.config.name, chain.number, str(workdir), list(chain.kinds),
                         round(seconds, 1), error)
    starts: dict[int, int] = {}
    for n in range(1, len(chain.kinds) + 2):
        t = _text(out / f"start.{n}").strip()
        if t.isdigit():
            starts[n] = int(t)
        rc = _text(out / f"collect.{n}.rc").strip()
        if rc:
            result.collect_status[n] = rc
    last = len(chain.kinds) + 1
    final_ls = out / f"pstore.{max(result.collect_status, default=last)}.ls"
    result.left_in_pstore = _text(final_ls).split()
    archive = out / "archive"
    events: list[CrashEvent] = []
    if archive.is_dir():
        events = list(crash_history(Archive(archive), []).events)
        result.indexed_twice = _indexed_twice(archive)
    serial = _text(workdir / "serial.log")
    crashed = [n for n in range(1, len(chain.kinds) + 1)
               if f"{MARK} {n} crashes by {chain.kinds[n - 1]}" in serial]
    by_cycle: dict[int, list[CrashEvent]] = {n: [] for n in crashed}
    for event in events:
        # The cycle whose marker the event's log carries; else the boot it
        # falls in by time (from one boot's start to the next's).
        marked = {int(m[1]) for m in _MARK_RE.finditer(_event_text(event))} & set(crashed)
        if len(marked) == 1:
            owner: int | None = marked.pop()
        else:
            owner = max((n for n in crashed if n in starts and starts[n] <= event.time_ns),
                        default=None)
            if owner is not None and owner + 1 in starts and \
                    event.time_ns >= starts[owner + 1]:
                owner = None
        if owner is None:
            result.spurious.append(event.to_json())
            continue
        by_cycle[owner].append(event)
    for n in crashed:
        kind = chain.kinds[n - 1]
        expected = kind in PANICS or chain.config.ring
        collected = any(b > n for b in result.collect_status)
        cycle = CycleResult(n, kind, expected, collected, events=len(by_cycle[n]))
        found = by_cycle[n]
        if not expected:
            result.spurious += [e.to_json() for e in found]
        elif found:
            cycle.event = found[0].to_json()
            cycle.duplicates = len(found) - 1
            cycle.marker = f"{MARK} {n} crashes by {kind}".encode() in _event_text(found[0])
            cycle.recovered, cycle.classified, cycle.why = _judge(
                cycle, found[0], chain.config.ring)
            if cycle.duplicates:
                cycle.why = "; ".join(filter(None, (cycle.why, f"{len(found)} events")))
        else:
            cycle.why = "no event in the archive" if collected else \
                "no boot collected after the crash"
        result.cycles.append(cycle)
    return result


@dataclass
class Figures:
    """A configuration's (or the run's) counts.

    Attributes:
        cycles: crashes that reached their trigger.
        expected: of those, crashes that should leave a record.
        recovered: expected records found in the archive.
        classified: recovered events classified as the drills expect.
        duplicates: second events for one cycle plus records or ring boots
            indexed twice.
        losses: expected records not in the archive after collect.
        not_collected: crashes no later boot could collect (the chain ended).
        spurious: events where no record was expected.
        left_in_pstore: files in pstore after the last collect.
        seconds: wall time of the chains.
        chains: QEMU processes.
        errors: chains that ended early.
    """

    cycles: int = 0
    expected: int = 0
    recovered: int = 0
    classified: int = 0
    duplicates: int = 0
    losses: int = 0
    not_collected: int = 0
    spurious: int = 0
    left_in_pstore: int = 0
    seconds: float = 0.0
    chains: int = 0
    errors: int = 0

    def add(self, chain: ChainResult) -> None:
        """Count *chain* in."""
        self.chains += 1
        self.errors += bool(chain.error)
        self.seconds += chain.seconds
        self.spurious += len(chain.spurious)
        self.left_in_pstore += len(chain.left_in_pstore)
        self.duplicates += len(chain.indexed_twice)
        for c in chain.cycles:
            self.cycles += 1
            if not c.expected:
                continue
            if not c.collected:
                self.not_collected += 1
                continue
            self.expected += 1
            self.recovered += c.recovered
            self.classified += c.classified
            self.duplicates += c.duplicates
            self.losses += not c.recovered

    @property
    def clean(self) -> bool:
        """No duplicate, loss, spurious event, leftover or misclassification,
        and every crash collected."""
        return (self.duplicates == self.losses == self.spurious == self.left_in_pstore
                == self.not_collected == 0 and self.classified == self.recovered
                and self.cycles > 0)

    def row(self, name: str) -> str:
        """One Markdown table row."""
        per = f"{self.seconds / self.cycles:.1f}" if self.cycles else "-"
        return (f"| {name} | {self.cycles} | {self.recovered}/{self.expected} | "
                f"{self.classified}/{self.recovered} | {self.duplicates} | {self.losses} | "
                f"{self.not_collected} | {self.spurious} | {self.left_in_pstore} | {per} |")


HEADER = ("| configuration | cycles | records recovered | classified correctly | "
          "duplicates | losses | not collected | spurious | left in pstore | s/cycle |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def run_chain(lab: Lab, chain: Chain, work: Path) -> ChainResult:
    """Run one chain and analyse its archive."""
    workdir = work / f"chain-{chain.number:03d}-{chain.config.slug}"
    start = time.monotonic()
    error = ""
    try:
        lab.run(drill_for(chain), workdir)
    except LabError as exc:
        error = str(exc) + (f"\n{exc.serial_tail}" if exc.serial_tail else "")
    return analyse(chain, workdir, time.monotonic() - start, error)


def run(chains: Sequence[Chain], work: Path, jobs: int = 1, lab: Lab | None = None,
        stop_after: float | None = None,
        done: Callable[[ChainResult], None] | None = None) -> list[ChainResult]:
    """Run *chains* (*jobs* QEMU processes at a time), no new chain after
    *stop_after* seconds; call *done* after each; return the results in
    chain order."""
    lab = lab or Lab()
    # Build the artefacts once, before the chains race for them.
    for kernel in sorted({c.config.kernel for c in chains}):
        lab.crashy(pick_kernel(kernel))
        lab.initramfs(pick_kernel(kernel))
    start = time.monotonic()
    results: dict[int, ChainResult] = {}
    lock = threading.Lock()

    def one(chain: Chain) -> None:
        if stop_after is not None and time.monotonic() - start > stop_after:
            return
        r = run_chain(lab, chain, work)
        with lock:
            results[chain.number] = r
            if done is not None:
                done(r)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for f in [pool.submit(one, c) for c in chains]:
            f.result()
    return [results[c.number] for c in chains if c.number in results]


def figures(results: Sequence[ChainResult]) -> dict[str, Figures]:
    """Per configuration (in order of first appearance), then ``total``."""
    out: dict[str, Figures] = {}
    total = Figures()
    for r in results:
        out.setdefault(r.config, Figures()).add(r)
        total.add(r)
    out["total"] = total
    return out


def _machine() -> dict[str, object]:
    def git(*args: str) -> str:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                           check=False)
        return p.stdout.strip()
    return {"nproc": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def report(paths: Sequence[Path]) -> int:
    """Print the table of the runs saved in *paths* (``--json`` files), their
    figures added per configuration; 0 when the runs are clean together."""
    merged: dict[str, Figures] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            for name, fields in doc["figures"].items():
                fig = Figures(**fields)
                into = merged.setdefault(name, Figures())
                for key, value in asdict(fig).items():
                    setattr(into, key, getattr(into, key) + value)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"soak: {path}: not a soak run ({exc})", file=sys.stderr)
            return 1
    total = merged.pop("total", Figures())
    print(HEADER)
    for name, fig in merged.items():
        print(fig.row(name))
    print(total.row("**total**"))
    return 0 if total.clean and total.errors == 0 else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=16, help="crashes in all (default 16)")
    ap.add_argument("--kernel", action="append",
                    help="kernel release or prefix, repeatable (default: 6.1 and 6.12)")
    ap.add_argument("--ecc", choices=("both", "on", "off"), default="both")
    ap.add_argument("--ring", choices=("both", "on", "off"), default="both")
    ap.add_argument("--kind", action="append", choices=KINDS,
                    help="crash kinds to deal from, repeatable (default: all)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the crash mix")
    ap.add_argument("--chain", type=int, default=13, help="crashes per QEMU process")
    ap.add_argument("--jobs", type=int, default=1, help="QEMU processes at a time")
    ap.add_argument("--stop-after", type=float, metavar="SECONDS",
                    help="start no new chain after this many seconds")
    ap.add_argument("--first-chain", type=int, default=1, metavar="N",
                    help="skip the plan's chains before N (the rest of a run cut short)")
    ap.add_argument("--out", type=Path, help="keep the chains' directories here")
    ap.add_argument("--json", type=Path, help="write the run here (rewritten per chain)")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="run nothing: print the table of these runs' --json files together "
                         "(a run and the rest of it, --first-chain)")
    args = ap.parse_args(argv)
    if args.report:
        return report(args.report)
    both = {"both": (False, True), "on": (True,), "off": (False,)}
    missing = sorted(set(KINDS) ^ set(CRASH_ACTIONS))
    if missing:
        print(f"soak: crash kinds without an expectation here or in the lab: {missing}",
              file=sys.stderr)
        return 1
    try:
        cfgs = configs(args.kernel or ["6.1", "6.12"], both[args.ecc], both[args.ring])
        releases = {c.kernel: pick_kernel(c.kernel).release for c in cfgs}
        chains = plan(args.cycles, cfgs, args.seed, args.chain, args.kind or KINDS)
        chains = [c for c in chains if c.number >= args.first_chain]
    except (MemconsoleError, ValueError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    work = args.out or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "bench/soak.py " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    head = {"command": command, "kernels": releases, "started": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine_at_start": _machine(),
        "plan": [{"chain": c.number, "config": c.config.name, "kinds": list(c.kinds)}
                 for c in chains]}
    done: list[ChainResult] = []

    def save(r: ChainResult) -> None:
        done.append(r)
        figs = figures(done)
        print(f"soak: chain {r.number}/{len(chains)} ({r.config}): {figs['total'].cycles} "
              f"cycles so far, {r.seconds:.0f} s{'; ended early' if r.error else ''}",
              file=sys.stderr, flush=True)
        if args.json:
            doc = {**head, "machine_now": _machine(),
                   "figures": {k: asdict(v) for k, v in figs.items()},
                   "chains": [asdict(c) for c in sorted(done, key=lambda c: c.number)]}
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            tmp.replace(args.json)

    results = run(chains, work, args.jobs, Lab(), args.stop_after, save)
    figs = figures(results)
    print(HEADER)
    for name, f in figs.items():
        print(f.row(f"**{name}**" if name == "total" else name))
    for r in results:
        for c in r.cycles:
            if c.why:
                print(f"soak: chain {r.number} boot {c.boot} ({c.kind}): {c.why}",
                      file=sys.stderr)
        for e in r.spurious:
            print(f"soak: chain {r.number}: spurious event {e['headline']!r}", file=sys.stderr)
        if r.indexed_twice or r.left_in_pstore:
            print(f"soak: chain {r.number}: indexed twice {r.indexed_twice}, left in pstore "
                  f"{r.left_in_pstore}", file=sys.stderr)
        if r.error:
            print(f"soak: chain {r.number} ended early: {r.error.splitlines()[0]}",
                  file=sys.stderr)
    if len(results) < len(chains):
        print(f"soak: {len(chains) - len(results)} chains not started (--stop-after)",
              file=sys.stderr)
    print(f"soak: chain directories in {work}", file=sys.stderr)
    return 0 if figs["total"].clean and all(not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
