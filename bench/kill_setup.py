"""Kill ``memconsole setup`` and ``memconsole setup --undo`` at random moments
and at every file operation, then run the command again to completion, and
check that the scratch root ends byte for byte where an uninterrupted run
leaves it (docs/reliability.md, "Fault injection at scale").

    PYTHONPATH=src python3 bench/kill_setup.py [--kills 2000] [--seed 1] [--dir DIR]
                                               [--each-step] [--json]

Never on the real /: every root is a fresh directory below the work
directory (a new one under /tmp by default), and the harness and the
wrapper each refuse a root that is ``/`` or outside it.

Two layouts of a scratch root are used, with fixed modification times on
every file and directory: *minimal* (the test suite's scratch root:
Debian's /etc/default/grub, /etc/modprobe.d/local.conf, another writer's
/etc/memconsole.conf of mode 0640, /boot and /lib/modules linked to the
machine's, no /var) and *debian* (also /etc/default/grub.d,
/etc/modules-load.d/modules.conf, /etc/systemd/system with enabled units,
/etc/default/memconsole of another writer, /var/lib).  The command is
``setup --root R --iomem <512 MiB QEMU map> --ring 1M --units``, which
writes the most files without DKMS (six through the transaction, the
manifest, two units and their links); with ``--root`` setup never runs
update-grub.

Each command runs as ``python -c WRAPPER``: the wrapper adds an audit hook
(:func:`sys.addaudithook`) that counts the file operations below the root
(an open for writing, rename/replace, unlink, mkdir, rmdir, chmod, chown,
utime, symlink), writes one byte per operation to a pipe (and, with
``KILL_SETUP_LOG=FILE``, a line naming it to FILE), and with
``KILL_SETUP_AT=N`` SIGKILLs its own process just before operation N.  The
reference runs give each command's count of operations.

Scenarios, per round:

* ``setup``: a fresh copy of the layout; ``setup`` killed 1-3 times in a
  row (each run on what the last one left), then ``setup`` to completion.
  The tree must equal what one uninterrupted setup left: every path, file
  content, mode, symbolic link target, and the manifest's content (but for
  its ``written`` time), and the modification time of every file setup
  does not write;
* ``undo``: a copy of the installed reference; ``setup --undo`` killed 1-3
  times, then ``--undo`` to completion.  The tree must equal the layout
  exactly, modification times of files and directories included;
* ``setup-then-undo``: ``setup`` killed 1-3 times, then ``--undo`` to
  completion: the layout again, exactly.

A kill is, in turn: before a random operation (1 to the reference count
+ 2), at a random time after the first operation (up to 1.2 times the
reference's work time), or at a random time from the start (up to 1.1
times the reference's wall time).  After every kill, every regular file
and link at a final path must be what it was before the first run or what
the completed command leaves (never half-written, never a third content);
the only other names allowed are temporary names (``.NAME.memconsole-new``,
``.NAME.tmpPID.HEX``, ``.NAME.tmpPID``).  ``--each-step`` also runs one
round per operation of each scenario and layout (a single kill just
before it).

Counted: *kills*; *hits*, kills that found the command running; *in its
work*, hits after its first file operation; *mid-transaction*, kills that
left a tree equal neither to the start nor to the end state; and the
failures, by class, all of which must be zero.  Exit status 0 when there
is no failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The memconsole that runs (another tree's src, e.g. an earlier commit's).
SRC = Path(os.environ.get("KILL_SETUP_SRC", ROOT / "src"))
IOMEM = ROOT / "tests" / "fixtures" / "setup" / "iomem" / "qemu-seabios-512M-6.12.txt"
MANIFEST = "var/lib/memconsole/setup.json"
LAYOUTS = ("minimal", "debian")
INVALID = b"<invalid>"
# A setup killed before its manifest is committed (creating the manifest's
# directory, writing the manifest) leaves that directory (empty, mode 0700,
# as collect makes it) without a manifest to say so; an undo killed after
# removing the manifest leaves it, or the time of its parent: the one
# leftover the harness tolerates, counted.
MANIFEST_DIRS = {"var", "var/lib", "var/lib/memconsole"}
SCENARIOS = ("setup", "undo", "setup-then-undo")
_T0 = 1_600_000_000_000_000_000  # the layouts' modification times (ns)
# write_durably's temporary (".NAME.tmpPID.HEX"), the transaction's staged
# file (".NAME.memconsole-new", and its own temporary) and the units'
# temporary symbolic link (".NAME.tmpPID").
_TEMP = re.compile(r"^\..+(?:\.memconsole-new(?:\.tmp\d+\.[0-9a-f]{8})?"
                   r"|\.tmp\d+(?:\.[0-9a-f]{8})?)$")

WRAPPER = r"""
import os, signal, sys
root = os.environ["KILL_SETUP_ROOT"]
if os.path.realpath(root) in ("/", "") or not os.path.isabs(root):
    sys.exit("kill_setup: refusing root " + repr(root))
kill_at = int(os.environ.get("KILL_SETUP_AT", "0"))
fd = int(os.environ.get("KILL_SETUP_FD", "-1"))
log = os.environ.get("KILL_SETUP_LOG")
log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log else -1
count = 0
MUTATE = {"os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.chmod", "os.chown",
          "os.utime", "os.symlink", "os.link", "os.truncate"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def inside(arg):
    if isinstance(arg, os.PathLike):
        arg = os.fspath(arg)
    if isinstance(arg, bytes):
        arg = os.fsdecode(arg)
    return isinstance(arg, str) and (arg == root or arg.startswith(root + "/"))

def hook(event, args):
    global count
    if event == "open":
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        writes = ((isinstance(flags, int) and flags & WRITE_FLAGS)
                  or (isinstance(mode, str) and any(c in mode for c in "wax+")))
        if not writes or not inside(args[0]):
            return
    elif event not in MUTATE or not any(inside(a) for a in args[:2]):
        return
    count += 1
    if log_fd >= 0:
        where = next((a for a in args[:2] if inside(a)), "")
        os.write(log_fd, f"{count} {event} {os.fspath(where)}\n".encode())
    if count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    if fd >= 0:
        os.write(fd, b".")

sys.addaudithook(hook)
import runpy
sys.argv = ["memconsole", *sys.argv[1:]]
runpy.run_module("memconsole", run_name="__main__", alter_sys=True)
"""


@dataclass
class Figures:
    """What a run did and found.  The failure counts must all be zero."""

    rounds: int = 0
    step_rounds: int = 0
    kills: int = 0
    hits: int = 0
    in_work: int = 0
    mid_transaction: int = 0
    by_scenario: dict[str, int] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    manifest_dir_left: int = 0   # tolerated, counted (MANIFEST_DIRS)
    # failures
    half_written: int = 0
    stray_files: int = 0
    bad_exits: int = 0
    differs: int = 0
    mtimes_differ: int = 0
    leftovers: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return (self.half_written + self.stray_files + self.bad_exits + self.differs
                + self.mtimes_differ + self.leftovers)


# kind ("f", "d", "l"), content or link target, mode, mtime_ns
Entry = tuple[str, bytes | None, int, int]
Tree = dict[str, Entry]


def _safe_root(root: Path, work: Path) -> Path:
    """*root*, refused when it is / or not strictly below *work*."""
    real, base = root.resolve(), work.resolve()
    if real == Path("/") or base == Path("/") or base not in real.parents:
        raise SystemExit(f"kill_setup: refusing root {root} (work directory {work})")
    return real


def _normal_manifest(data: bytes) -> bytes:
    """What the manifest says about the files: its version, plan and files
    (not its ``written`` time, nor the plan's reasons, nor the directories
    and their times, which a run after a killed one may record differently:
    the undo that follows every completed setup checks those); b"<invalid>"
    when it is not a manifest (half-written)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return INVALID
    if not isinstance(doc, dict) or not {"version", "plan", "files"} <= set(doc):
        return INVALID
    plan = doc["plan"]
    if isinstance(plan, dict):
        # A run after a committed manifest says "kept the range the previous
        # setup chose" among its reasons: the same plan, another sentence.
        plan = {k: v for k, v in plan.items() if k != "reasons"}
    return json.dumps({"version": doc["version"], "plan": plan, "files": doc["files"]},
                      sort_keys=True).encode()


def snapshot(root: Path) -> Tree:
    """Every path below *root* (links not followed)."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("l", os.readlink(p).encode(), st.st_mode, 0)
            elif p.is_dir():
                out[rel] = ("d", None, st.st_mode, st.st_mtime_ns)
            else:
                data = p.read_bytes()
                if rel == MANIFEST:
                    data = _normal_manifest(data)
                out[rel] = ("f", data, st.st_mode, st.st_mtime_ns)
    st = root.stat()
    out["."] = ("d", None, st.st_mode, st.st_mtime_ns)
    return out


def _fix_times(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, ns=(_T0, _T0), follow_symlinks=False)
    os.utime(root, ns=(_T0, _T0))


def make_layout(root: Path, layout: str) -> None:
    """A scratch root of *layout* (module docstring)."""
    etc = root / "etc"
    (etc / "default").mkdir(parents=True)
    (etc / "modprobe.d").mkdir()
    (root / "lib").mkdir()
    debian = Path("/usr/share/grub/default/grub")
    grub = debian.read_bytes() if debian.exists() else b'GRUB_CMDLINE_LINUX=""\n'
    (etc / "default" / "grub").write_bytes(grub)
    (etc / "modprobe.d" / "local.conf").write_text("options snd_hda_intel power_save=1\n")
    conf = etc / "memconsole.conf"
    conf.write_text("# memconsole configuration\n# archive = /var/lib/memconsole\n")
    os.chmod(conf, 0o640)
    os.symlink("/boot", root / "boot")
    os.symlink("/lib/modules", root / "lib" / "modules")
    if layout == "debian":
        (etc / "default" / "grub.d").mkdir()
        (etc / "modules-load.d").mkdir()
        (etc / "modules-load.d" / "modules.conf").write_text(
            "# /etc/modules: kernel modules to load at boot time.\n")
        system = etc / "systemd" / "system"
        for wants in ("multi-user.target.wants", "sysinit.target.wants"):
            (system / wants).mkdir(parents=True)
        os.symlink("/lib/systemd/system/cron.service",
                   system / "multi-user.target.wants" / "cron.service")
        os.symlink("/lib/systemd/system/systemd-timesyncd.service",
                   system / "sysinit.target.wants" / "systemd-timesyncd.service")
        (etc / "default" / "memconsole").write_text("# another writer\nOTHER=1\n")
        (root / "var" / "lib").mkdir(parents=True)
    _fix_times(root)


@dataclass
class Run:
    """One command's run: exit status (negative: the signal), file
    operations started, whether it was running when the kill came."""

    rc: int
    operations: int
    hit: bool
    stderr: str = ""


def _argv(root: Path, undo: bool) -> list[str]:
    argv = ["setup", "--root", str(root)]
    return argv + (["--undo"] if undo else ["--iomem", str(IOMEM), "--ring", "1M", "--units"])


def run_command(root: Path, undo: bool, *, kill_at: int = 0, kill_after: float | None = None,
                from_work: bool = False) -> Run:
    """Run setup (or --undo) on *root*: killed just before file operation
    *kill_at*, or *kill_after* seconds after the start (*from_work*: after
    its first file operation), or to its end."""
    rfd, wfd = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1",
           "KILL_SETUP_ROOT": str(root), "KILL_SETUP_AT": str(kill_at),
           "KILL_SETUP_FD": str(wfd)}
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *_argv(root, undo)], env=env,
                            pass_fds=(wfd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(wfd)
    got = 0
    hit = False
    try:
        if kill_after is not None:
            start = time.monotonic()
            if from_work:
                ready, _, _ = select.select([rfd], [], [], 60)
                if ready:
                    chunk = os.read(rfd, 1)
                    got += len(chunk)
                    start = time.monotonic()
            delay = kill_after - (time.monotonic() - start)
            if delay > 0:
                time.sleep(delay)
            if proc.poll() is None:
                hit = True
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
        while chunk := os.read(rfd, 65536):
            got += len(chunk)
    finally:
        os.close(rfd)
    if kill_at and proc.returncode == -signal.SIGKILL:
        hit = True
    return Run(proc.returncode, got, hit, err.decode(errors="replace"))


@dataclass
class Reference:
    """A layout's states and each command's uninterrupted figures."""

    layout: str
    template: Path       # the layout
    installed: Path      # the layout after one uninterrupted setup
    before: Tree
    after: Tree
    setup_ops: int
    undo_ops: int
    setup_s: float
    undo_s: float
    setup_work_s: float
    undo_work_s: float


def _copy(src: Path, dst: Path, work: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return _safe_root(dst, work)


def _timed(root: Path, undo: bool) -> tuple[Run, float, float]:
    """A complete run, its wall time and its time from the first file
    operation to the exit."""
    t0 = time.monotonic()
    rfd, wfd = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1",
           "KILL_SETUP_ROOT": str(root), "KILL_SETUP_FD": str(wfd)}
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *_argv(root, undo)], env=env,
                            pass_fds=(wfd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(wfd)
    first = None
    got = 0
    while chunk := os.read(rfd, 65536):
        if first is None:
            first = time.monotonic()
        got += len(chunk)
    os.close(rfd)
    _, err = proc.communicate(timeout=300)
    end = time.monotonic()
    return (Run(proc.returncode, got, False, err.decode(errors="replace")), end - t0,
            end - (first or end))


def reference(work: Path, layout: str, runs: int = 3) -> Reference:
    """Build *layout*, run setup and --undo on copies of it uninterrupted
    (*runs* times each: the median times), and check the undo's result."""
    template = work / f"ref-{layout}"
    template.mkdir()
    template = _safe_root(template, work)
    make_layout(template, layout)
    before = snapshot(template)
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    ops = {False: 0, True: 0}
    installed = work / f"ref-{layout}-installed"
    for n in range(runs):
        root = _copy(template, work / f"cal-{layout}-{n}", work)
        run, wall, busy = _timed(root, False)
        if run.rc != 0:
            raise SystemExit(f"kill_setup: reference setup failed ({run.rc}): {run.stderr}")
        times[False].append((wall, busy))
        ops[False] = run.operations
        if n == 0:
            shutil.copytree(root, installed, symlinks=True)
        run, wall, busy = _timed(root, True)
        if run.rc != 0:
            raise SystemExit(f"kill_setup: reference undo failed ({run.rc}): {run.stderr}")
        times[True].append((wall, busy))
        ops[True] = run.operations
        if snapshot(root) != before:
            raise SystemExit(f"kill_setup: an uninterrupted setup and --undo of the {layout} "
                             "layout do not give it back: " + str(_diff(before, snapshot(root))))
        shutil.rmtree(root)
    installed = _safe_root(installed, work)
    med = {k: (sorted(t[0] for t in v)[len(v) // 2], sorted(t[1] for t in v)[len(v) // 2])
           for k, v in times.items()}
    return Reference(layout, template, installed, before, snapshot(installed), ops[False],
                     ops[True], med[False][0], med[True][0], med[False][1], med[True][1])


def _diff(want: Tree, got: Tree) -> list[str]:
    out = []
    for rel in sorted(set(want) | set(got)):
        if want.get(rel) != got.get(rel):
            out.append(f"{rel}: {_short(want.get(rel))} != {_short(got.get(rel))}")
    return out


def _short(e: Entry | None) -> str:
    if e is None:
        return "absent"
    kind, data, mode, mtime = e
    body = "" if data is None else f" {len(data)}B {data[:24]!r}"
    return f"{kind} {mode:o} t{mtime}{body}"


def check_after_kill(got: Tree, start: Tree, end: Tree, fig: Figures, where: str) -> None:
    """Every final path holds its content before setup (*start*) or after
    it (*end*); other names are temporary ones."""
    for rel, (kind, data, _, _) in got.items():
        if kind == "d":
            continue
        allowed = [e for e in (start.get(rel), end.get(rel)) if e is not None]
        if any(e[0] == kind and e[1] == data for e in allowed):
            continue
        if rel == MANIFEST and data != INVALID:
            continue  # a manifest a rerun wrote (its plan and files checked at the end)
        if not allowed:
            if _TEMP.match(Path(rel).name):
                continue
            fig.stray_files += 1
            fig.notes.append(f"{where}: stray {rel}: {_short(got[rel])}")
        else:
            fig.half_written += 1
            fig.notes.append(f"{where}: {rel} is neither its old nor its new content: "
                             f"{_short(got[rel])}")


def _only_manifest_dir(got: Tree, want: Tree) -> bool:
    """*got* is *want* but for an empty manifest directory (and the
    directories created for it) and the modification times of its parents."""
    extra = set(got) - set(want)
    if not extra <= MANIFEST_DIRS or set(want) - set(got) or got == want:
        return False
    if any(got[r][0] != "d" for r in extra):
        return False
    parents = {".", *MANIFEST_DIRS}
    return all(got[r] == want[r] or (r in parents and got[r][:3] == want[r][:3])
               for r in want)


def check_final(got: Tree, want: Tree, fig: Figures, where: str, exact_times: bool,
                untouched: set[str]) -> None:
    """*got* is *want*: paths, kinds, contents, modes; modification times
    of every path (*exact_times*) or of the *untouched* files."""
    if exact_times and _only_manifest_dir(got, want):
        fig.manifest_dir_left += 1
        fig.notes.append(f"{where}: tolerated: the manifest's directory was left")
        return
    extra = sorted(set(got) - set(want))
    temps = [r for r in extra if _TEMP.match(Path(r).name)]
    if temps:
        fig.leftovers += len(temps)
        fig.notes.append(f"{where}: temporary files left: {temps}")
    content = [r for r in set(got) | set(want) if r not in temps
               and (got.get(r) or ("",))[:3] != (want.get(r) or ("",))[:3]]
    if content:
        fig.differs += 1
        fig.notes.append(f"{where}: differs: " + "; ".join(_diff(
            {r: want[r] for r in content if r in want}, {r: got[r] for r in content if r in got})
            [:4]))
    times = [r for r in set(got) & set(want) if r not in content and got[r][3] != want[r][3]
             and (exact_times or r in untouched)]
    if times:
        fig.mtimes_differ += 1
        fig.notes.append(f"{where}: modification times differ: {sorted(times)[:6]}")


def _kill_plan(rng: random.Random, ops: int, wall: float, busy: float
               ) -> tuple[int, float | None, bool]:
    way = rng.randrange(3)
    if way == 0:
        return rng.randint(1, ops + 2), None, False
    if way == 1:
        return 0, rng.uniform(0, max(busy, 0.01) * 1.2), True
    return 0, rng.uniform(0, wall * 1.1), False


def one_round(work: Path, n: int, ref: Reference, scenario: str, fig: Figures,
              rng: random.Random | None, step: int = 0) -> None:
    """One round (module docstring); *step* > 0: one kill just before that
    file operation instead of 1-3 random kills."""
    undo_first = scenario == "undo"
    src = ref.installed if undo_first else ref.template
    root = _copy(src, work / f"r{n}", work)
    start, end = (ref.after, ref.before) if undo_first else (ref.before, ref.after)
    want = ref.after if scenario == "setup" else ref.before
    where = f"round {n} ({ref.layout}, {scenario}{f', step {step}' if step else ''})"
    fig.rounds += 1
    fig.step_rounds += bool(step)
    fig.by_scenario[scenario] = fig.by_scenario.get(scenario, 0) + 1
    kills = 1 if step else (rng.randint(1, 3) if rng else 1)
    for k in range(kills):
        # setup-then-undo: the first kill hits setup, any later one the undo.
        undo = undo_first or (scenario == "setup-then-undo" and k > 0)
        if scenario == "setup-then-undo" and k > 0:
            start, end = ref.after, ref.before
        ops = ref.undo_ops if undo else ref.setup_ops
        if step:
            plan: tuple[int, float | None, bool] = (step, None, False)
        else:
            assert rng is not None
            plan = _kill_plan(rng, ops, ref.undo_s if undo else ref.setup_s,
                              ref.undo_work_s if undo else ref.setup_work_s)
        run = run_command(root, undo, kill_at=plan[0], kill_after=plan[1], from_work=plan[2])
        fig.kills += 1
        if run.rc not in (0, -signal.SIGKILL):
            fig.bad_exits += 1
            fig.notes.append(f"{where}: killed run exited {run.rc}: {run.stderr.strip()}")
        if run.hit and run.rc == -signal.SIGKILL:
            fig.hits += 1
            fig.in_work += run.operations > 0
        got = snapshot(root)
        check_after_kill(got, ref.before, ref.after, fig, where)
        if run.operations > 0 and _content(got) not in (_content(start), _content(end)):
            fig.mid_transaction += 1
    undo = scenario != "setup"
    done = run_command(root, undo)
    if done.rc != 0:
        fig.bad_exits += 1
        fig.notes.append(f"{where}: the completing run exited {done.rc}: {done.stderr.strip()}")
    untouched = {r for r, e in ref.after.items()
                 if e[0] == "f" and ref.before.get(r) == e}
    failures = fig.failures
    check_final(snapshot(root), want, fig, where, exact_times=undo, untouched=untouched)
    if fig.failures > failures:
        shutil.copytree(root, work / f"failed-{n}", symlinks=True)
    if not undo:
        # What the completed setup recorded must take it all back.
        done = run_command(root, True)
        if done.rc != 0:
            fig.bad_exits += 1
            fig.notes.append(f"{where}: the undo after it exited {done.rc}: "
                             f"{done.stderr.strip()}")
        check_final(snapshot(root), ref.before, fig, f"{where}, undone", exact_times=True,
                    untouched=set())
    shutil.rmtree(root)


def _content(tree: Tree) -> dict[str, tuple[str, bytes | None, int]]:
    return {r: e[:3] for r, e in tree.items() if e[0] != "d"}


def run(kills: int, seed: int, work: Path, each_step: bool = False,
        steps: int = 0, deadline: float | None = None, runs: int = 3) -> Figures:
    """Spend at least *kills* SIGKILLs on random rounds (stopping early at
    *deadline*, a ``time.monotonic()`` value); with *each_step* first one
    round per file operation of each scenario and layout, or with *steps*
    that many step rounds sampled from them.  *runs*: uninterrupted runs
    per command and layout for the reference times."""
    _safe_root(work / "x", work)
    rng = random.Random(seed)
    fig = Figures()
    t0 = time.monotonic()
    refs = [reference(work, layout, runs) for layout in LAYOUTS]
    for ref in refs:
        fig.operations[f"{ref.layout} setup"] = ref.setup_ops
        fig.operations[f"{ref.layout} undo"] = ref.undo_ops
    n = 0
    points = [(ref, scenario, s) for ref in refs for scenario in SCENARIOS
              for s in range(1, (ref.undo_ops if scenario == "undo" else ref.setup_ops) + 1)]
    if steps and not each_step:
        points = sorted(rng.sample(points, min(steps, len(points))),
                        key=lambda p: (p[0].layout, p[1], p[2]))
    if each_step or steps:
        for ref, scenario, s in points:
            if deadline is not None and time.monotonic() > deadline:
                fig.notes.append("deadline reached during the step rounds")
                break
            one_round(work, n, ref, scenario, fig, None, step=s)
            n += 1
    first = fig.kills
    while fig.kills - first < kills:
        if deadline is not None and time.monotonic() > deadline:
            fig.notes.append(f"deadline reached after {fig.kills - first} random kills")
            break
        one_round(work, n, rng.choice(refs), rng.choice(SCENARIOS), fig, rng)
        n += 1
    fig.seconds = round(time.monotonic() - t0, 1)
    return fig


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=2000, help="random kills (at least)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, help="work directory (default: a new one in /tmp)")
    ap.add_argument("--each-step", action="store_true",
                    help="first one round per file operation of each scenario and layout")
    ap.add_argument("--until", metavar="HH:MM",
                    help="start no round after this UTC time (figures say what ran)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="kill-setup-"))
    work.mkdir(parents=True, exist_ok=True)
    deadline = None
    if args.until:
        hh, mm = (int(x) for x in args.until.split(":"))
        now = time.gmtime()
        left = (hh * 60 + mm) * 60 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
        deadline = time.monotonic() + left
    load = os.getloadavg()
    fig = run(args.kills, args.seed, work, args.each_step, deadline=deadline)
    if args.json:
        print(json.dumps({**asdict(fig), "failures": fig.failures, "load_at_start": load},
                         indent=1))
    else:
        print(f"kills {fig.kills} (hit a running command {fig.hits}, of which in its work "
              f"{fig.in_work}, mid-transaction {fig.mid_transaction}) over {fig.rounds} "
              f"rounds ({fig.step_rounds} at one file operation; {fig.by_scenario}), "
              f"file operations {fig.operations}, {fig.seconds} s, load {load[0]:.1f}")
        print(f"half-written {fig.half_written}, stray files {fig.stray_files}, bad exits "
              f"{fig.bad_exits}, trees that differ {fig.differs}, modification times that "
              f"differ {fig.mtimes_differ}, temporary files left {fig.leftovers}")
        for note in fig.notes[:20]:
            print(f"  {note}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if fig.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
