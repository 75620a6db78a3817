"""Kill ``memconsole collect`` at random moments and check that no record is
ever lost, duplicated or split from its crash (docs/reliability.md).

    PYTHONPATH=src python3 bench/kill_collect.py [--kills 1000] [--seed 1] [--dir DIR]
                                                 [--full-disk-every 4] [--json]

Each round lays out the pstore records of 2 to 6 real crashes
(tests/fixtures/lab/<release>/<action>/pstore, with the mtimes the kernel
gave them; the later record of a two-record crash is moved 1 to 4 s later
in half the rounds, so that a crash's records fall into different seconds)
in one directory: the first crash flat, the others one level down as in
systemd-pstore's layout.  Then, until the round's kills are spent: start one
or two ``memconsole collect`` processes on it (same archive), wait a random
time, SIGKILL one or all of them, and check that every record is still in
pstore or in an archive index.  Then one clean ``collect`` and the checks:
every record exactly once in the indexes, nothing left in pstore, no
temporary file, no unindexed file in a boot directory, and the boot
directories exactly the boots an uninterrupted collect makes.  As root,
every --full-disk-every-th round archives into a small tmpfs (40-160 KiB,
so some copies fail for want of space), grown before the clean run.

Prints the figures: kills; kills that hit a running collect; of those, the
ones that hit it in its work (it had the archive's lock file open); mid-run
kills, i.e. kills in its work after which the cycle had changed the
archive or pstore (or left a temporary file) while records were still to
be archived or erased; and the failures, all of which must be zero.
Exit status 0 when there is no failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "lab"


@dataclass
class Figures:
    """What a run did and found.  The failure counts must all be zero."""

    rounds: int = 0
    kills: int = 0
    hits: int = 0
    in_work: int = 0
    mid_run: int = 0
    two_at_once: int = 0
    full_disk_rounds: int = 0
    records: int = 0
    busy_exits: int = 0
    seconds: float = 0.0
    # failures
    lost: int = 0
    duplicates: int = 0
    left_in_pstore: int = 0
    leftovers: int = 0
    unindexed: int = 0
    wrong_boots: int = 0
    bad_exits: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return (self.lost + self.duplicates + self.left_in_pstore + self.leftovers
                + self.unindexed + self.wrong_boots + self.bad_exits)


@dataclass(frozen=True)
class Original:
    path: Path
    sha256: str
    raw: bytes
    mtime_ns: int


def _crashes() -> list[Path]:
    return sorted(p.parent for p in FIXTURES.glob("*/*/mtimes.json"))


def lay_out(pstore: Path, crashes: list[Path], rng: random.Random, spread: bool
            ) -> list[Original]:
    """Copy the records of *crashes* into *pstore* (the first flat, the others in
    subdirectories) with their kernel mtimes; return them."""
    out = []
    for n, crash in enumerate(crashes):
        dest = pstore if n == 0 else pstore / f"{crash.parent.name}-{crash.name}"
        dest.mkdir(parents=True, exist_ok=True)
        mtimes = json.loads((crash / "mtimes.json").read_text())
        shift = 0
        for name, ns in sorted(mtimes.items(), key=lambda kv: kv[1]):
            raw = (crash / "pstore" / name).read_bytes()
            path = dest / name
            path.write_bytes(raw)
            ns += shift
            os.utime(path, ns=(ns, ns))
            if spread:
                shift += int(rng.uniform(1, 4) * 1e9)
            out.append(Original(path, hashlib.sha256(raw).hexdigest(), raw, ns))
    return out


def expected_boots(originals: list[Original]) -> dict[str, set[str]]:
    """Boot id -> hashes, as one uninterrupted collect groups them."""
    sys.path.insert(0, str(ROOT / "src"))
    from memconsole.pstore import decode_record
    from memconsole.pstore.boots import group_boots

    recs = [decode_record(o.path.name, o.raw, o.mtime_ns, str(o.path)) for o in originals]
    return {b.id: {hashlib.sha256(r.raw).hexdigest() for r in b.records}
            for b in group_boots(recs)}


def read_indexes(archive: Path) -> dict[str, list[dict[str, object]]]:
    out = {}
    for index in sorted(archive.glob("boots/*/records.json")):
        out[index.parent.name] = json.loads(index.read_text())
    return out


def _is_temp(name: str) -> bool:
    sys.path.insert(0, str(ROOT / "src"))
    from memconsole._common import is_temp_name

    return is_temp_name(name)


def state(originals: list[Original], archive: Path) -> tuple[int, int, int, list[str]]:
    """(records archived, records still in pstore, temp files, lost records)."""
    indexed = {str(e["sha256"]) for es in read_indexes(archive).values() for e in es}
    pending = sum(o.path.exists() for o in originals)
    lost = [str(o.path) for o in originals
            if o.sha256 not in indexed
            and not (o.path.exists() and o.path.read_bytes() == o.raw)]
    temps = sum(_is_temp(p.name) for p in archive.rglob("*"))
    return len(indexed & {o.sha256 for o in originals}), pending, temps, lost


def collect_cmd(pstore: Path, archive: Path) -> list[str]:
    return [sys.executable, "-m", "memconsole", "collect", "--pstore", str(pstore),
            "--archive", str(archive), "--wait", "30"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _has_open(proc: subprocess.Popen[bytes], path: Path) -> bool:
    """Whether *proc* has *path* open (the archive's lock file: it is past its
    start-up, in the work, or waiting for the other collect)."""
    want = str(path.resolve())
    try:
        fds = os.listdir(f"/proc/{proc.pid}/fd")
        return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == want for fd in fds)
    except OSError:
        return False


def _wait_working(proc: subprocess.Popen[bytes], lock: Path, timeout: float) -> None:
    """Return once *proc* has the archive's lock file open, or has exited, or
    after *timeout* s."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if _has_open(proc, lock):
            return
        time.sleep(0.002)


def calibrate(work: Path) -> tuple[float, float]:
    """Seconds a collect of a round takes in all, and from taking the lock to
    its exit (the work a kill should interrupt), on this machine now."""
    totals, works = [], []
    for n in range(3):
        p, a = work / f"cal-p{n}", work / f"cal-a{n}"
        lay_out(p, _crashes()[n:n + 3], random.Random(n), False)
        t0 = time.monotonic()
        proc = subprocess.Popen(collect_cmd(p, a), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _wait_working(proc, a / ".lock", 60)
        t1 = time.monotonic()
        proc.wait()
        totals.append(time.monotonic() - t0)
        works.append(time.monotonic() - t1)
        shutil.rmtree(p)
        shutil.rmtree(a)
    return sorted(totals)[1], sorted(works)[1]


def _mount_small(archive: Path, rng: random.Random) -> None:
    archive.mkdir()
    size = rng.choice([40, 64, 96, 128, 160])
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k,mode=0700", "kill-collect",
                    str(archive)], check=True)


def one_round(work: Path, n: int, kills: int, rng: random.Random, fig: Figures,
              timing: tuple[float, float], full_disk: bool) -> None:
    pstore, archive = work / f"p{n}", work / f"a{n}"
    crashes = rng.sample(_crashes(), rng.randint(2, 6))
    originals = lay_out(pstore, crashes, rng, spread=rng.random() < 0.5)
    expected = expected_boots(originals)
    fig.rounds += 1
    fig.records += len(originals)
    if full_disk:
        _mount_small(archive, rng)
        fig.full_disk_rounds += 1
    total, work_s = timing
    try:
        for _ in range(kills):
            two = rng.random() < 0.3
            before = state(originals, archive)
            procs = [subprocess.Popen(collect_cmd(pstore, archive), env=_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
            if two:
                time.sleep(rng.uniform(0, total / 4))
                procs.append(subprocess.Popen(collect_cmd(pstore, archive), env=_env(),
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
                fig.two_at_once += 1
            into_work = rng.random() < 0.6
            if into_work:
                # Into the work: once the (first) collect opened the lock file.
                _wait_working(procs[0], archive / ".lock", max(total * 3, 10))
                time.sleep(rng.uniform(0, max(work_s, 0.02)))
            else:
                time.sleep(rng.uniform(0, total * 1.1))
            victims = procs if rng.random() < 0.7 else [rng.choice(procs)]
            hit = in_work = False
            for proc in victims:
                if proc.poll() is None:
                    working = _has_open(proc, archive / ".lock")
                    proc.send_signal(signal.SIGKILL)
                    fig.hits += 1
                    fig.in_work += working
                    hit = True
                    in_work = in_work or working
                fig.kills += 1
            for proc in procs:
                rc = proc.wait(120)
                if rc == 75:
                    fig.busy_exits += 1
                elif rc not in (0, 3, 4, -signal.SIGKILL) and not (full_disk and rc == 1):
                    fig.bad_exits += 1
                    fig.notes.append(f"round {n}: collect exited {rc}")
            after = state(originals, archive)
            archived, pending, temps, lost = after
            if lost:
                fig.lost += len(lost)
                fig.notes.append(f"round {n}: lost {lost}")
            # Mid-run: the kill stopped a collect that had begun the round's work
            # (this cycle changed something, or left a temporary file) and the
            # round is not done (a record not archived, or archived not erased).
            distinct = len({o.sha256 for o in originals})
            partial = (archived or pending < len(originals)) and (archived < distinct or pending)
            if in_work and partial and (after != before or temps):
                fig.mid_run += 1
            if os.environ.get("KILL_DEBUG"):
                print(f"round {n}: into_work={into_work} two={two} hit={hit} "
                      f"{before[:3]} -> {after[:3]} of {len(originals)}", file=sys.stderr)
            if (not pending and archived == distinct) or (not hit and after == before):
                break  # a collect finished the round: no work left to interrupt
        if full_disk:
            subprocess.run(["mount", "-o", "remount,size=16m", str(archive)], check=True)
        done = subprocess.run(collect_cmd(pstore, archive), env=_env(), capture_output=True,
                              text=True, check=False)
        if done.returncode not in (0, 4):
            fig.bad_exits += 1
            fig.notes.append(f"round {n}: clean run exited {done.returncode}: {done.stderr}")
        verify(n, originals, archive, expected, fig)
    finally:
        if full_disk:
            subprocess.run(["umount", str(archive)], check=False)


def verify(n: int, originals: list[Original], archive: Path, expected: dict[str, set[str]],
           fig: Figures) -> None:
    indexes = read_indexes(archive)
    hashes = [str(e["sha256"]) for es in indexes.values() for e in es]
    want = {o.sha256 for o in originals}
    missing = want - set(hashes)
    if missing:
        fig.lost += len(missing)
        fig.notes.append(f"round {n}: {len(missing)} records in no index")
    dups = len(hashes) - len(set(hashes))
    if dups:
        fig.duplicates += dups
        fig.notes.append(f"round {n}: {dups} records indexed twice")
    left = [str(o.path) for o in originals if o.path.exists()]
    if left:
        fig.left_in_pstore += len(left)
        fig.notes.append(f"round {n}: left in pstore after the clean run: {left}")
    temps = [str(p) for p in archive.rglob("*") if _is_temp(p.name)]
    if temps:
        fig.leftovers += len(temps)
        fig.notes.append(f"round {n}: temporary files left: {temps}")
    for boot, entries in indexes.items():
        names = {str(e["name"]) for e in entries} | {"records.json"}
        extra = [f for f in os.listdir(archive / "boots" / boot) if f not in names]
        if extra:
            fig.unindexed += len(extra)
            fig.notes.append(f"round {n}: unindexed files in {boot}: {extra}")
    got = {boot: {str(e["sha256"]) for e in entries} for boot, entries in indexes.items()}
    if got != expected:
        fig.wrong_boots += 1
        fig.notes.append(f"round {n}: boot directories {sorted(got)} != {sorted(expected)}")


def run(kills: int, seed: int, work: Path, full_disk_every: int,
        per_round: tuple[int, int] = (4, 14)) -> Figures:
    """Spend *kills* SIGKILLs over rounds of *per_round* kills each."""
    rng = random.Random(seed)
    fig = Figures()
    t0 = time.monotonic()
    timing = calibrate(work)
    n = 0
    root = os.geteuid() == 0 and shutil.which("mount") is not None
    while fig.kills < kills:
        k = min(rng.randint(*per_round), kills - fig.kills)
        full = bool(root and full_disk_every and n % full_disk_every == full_disk_every - 1)
        one_round(work, n, k, rng, fig, timing, full)
        shutil.rmtree(work / f"p{n}", ignore_errors=True)
        shutil.rmtree(work / f"a{n}", ignore_errors=True)
        n += 1
    fig.seconds = round(time.monotonic() - t0, 1)
    return fig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, help="work directory (default: a new one in /tmp)")
    ap.add_argument("--full-disk-every", type=int, default=4, metavar="N",
                    help="as root, every Nth round archives into a small tmpfs (0: never)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="kill-collect-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    fig = run(args.kills, args.seed, work, args.full_disk_every)
    if args.json:
        print(json.dumps({**asdict(fig), "failures": fig.failures}, indent=1))
    else:
        print(f"kills {fig.kills} (hit a running collect {fig.hits}, of which in its work "
              f"{fig.in_work}, mid-run {fig.mid_run}; two collects at once "
              f"{fig.two_at_once}) over {fig.rounds} rounds "
              f"({fig.records} records, {fig.full_disk_rounds} full-disk rounds), "
              f"{fig.busy_exits} busy exits, {fig.seconds} s, load {load[0]:.1f}")
        print(f"lost {fig.lost}, duplicates {fig.duplicates}, left in pstore "
              f"{fig.left_in_pstore}, temporary files left {fig.leftovers}, unindexed files "
              f"{fig.unindexed}, wrong boot directories {fig.wrong_boots}, bad exits "
              f"{fig.bad_exits}")
        for note in fig.notes[:20]:
            print(f"  {note}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if fig.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
