"""Find and explain kernel crash reports in a kernel log.

The input is kernel log text as ``bytes``: a pstore ``dmesg-*`` record, a
console record, ``dmesg`` output, ``/var/log/kern.log`` or ``journalctl -k``.
:func:`parse_reports` returns every report in it (oopses, BUGs, WARNINGs,
lockups, hung tasks, RCU stalls, sanitizer reports, OOM, panics) as immutable
:class:`Report` records; :func:`primary_report` picks the one that explains
how the log ended, and :func:`describe` turns it into one sentence.

The parser works line by line in one pass; every per-line step is bounded
(see :mod:`memconsole._oops_patterns`), so any input, including arbitrary
bytes, is parsed in time linear in its size and never raises.

Kernel sources mirrored (per message, in ``_oops_patterns``): lib/bug.c
report_bug(), kernel/panic.c __warn() and panic(), arch/x86/mm/fault.c
show_fault_oops(), arch/x86/kernel/dumpstack.c __die_header() and
show_trace_log_lvl(), arch/arm64/mm/fault.c die_kernel_fault(),
kernel/watchdog.c, kernel/hung_task.c, kernel/rcu/tree_stall.h,
mm/kasan/report.c, lib/ubsan.c, mm/oom_kill.c, lib/list_debug.c,
kernel/sched/core.c, lib/dump_stack.c and kernel/printk/printk.c.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

from memconsole import _oops_patterns as _p

__all__ = [
    "Frame",
    "Kind",
    "Report",
    "describe",
    "parse_reports",
    "primary_report",
]


class Kind(str, enum.Enum):
    """What kind of failure a report describes."""

    NULL_POINTER = "null-pointer"
    PAGE_FAULT = "page-fault"
    GENERAL_PROTECTION = "general-protection"
    DIVIDE_ERROR = "divide-error"
    INVALID_OPCODE = "invalid-opcode"
    BUG = "bug"
    WARNING = "warning"
    SOFT_LOCKUP = "soft-lockup"
    HARD_LOCKUP = "hard-lockup"
    HUNG_TASK = "hung-task"
    RCU_STALL = "rcu-stall"
    KASAN = "kasan"
    UBSAN = "ubsan"
    OOM = "oom"
    LIST_CORRUPTION = "list-corruption"
    STACK_CORRUPTION = "stack-corruption"
    SCHEDULING_WHILE_ATOMIC = "scheduling-while-atomic"
    PANIC = "panic"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Frame:
    """One function in a call trace, or the faulting function (``rip``)."""

    function: str
    """Symbol name as printed (``crashy_null``, ``__list_del_entry_valid.cold``),
    or the raw address (``0xffffffc00818ff8c``) when the kernel printed no symbol."""
    offset: int | None
    """Offset into the function (``+0x11``), ``None`` if not printed."""
    size: int | None
    """Size of the function (``/0x20``), ``None`` if not printed."""
    module: str | None
    """Module the function lives in (``[crashy]``), ``None`` for the kernel image."""
    reliable: bool
    """False for frames the unwinder marked ``?`` (stale return addresses)."""
    context: str
    """Stack the frame was found on: ``TASK``, ``IRQ``, ``NMI``, ``SOFTIRQ`` or
    ``EXCEPTION`` (from the x86 ``<IRQ>``... markers; ``TASK`` when none were
    printed); empty for ``Report.rip``, which is not part of a trace."""

    def label(self) -> str:
        """The function as a person reads it: ``crashy_null [crashy]``."""
        return f"{self.function} [{self.module}]" if self.module else self.function


@dataclass(frozen=True)
class Report:
    """One kernel crash report found in a log."""

    kind: Kind
    """What failed."""
    headline: str
    """One line for a person, e.g. ``NULL pointer dereference in crashy_null [crashy]``."""
    time: float | None
    """Seconds since boot from the printk time stamp of the report's first line."""
    kernel_release: str | None
    """``uname -r`` of the crashed kernel, from the ``CPU: ... Comm:`` line."""
    cpu: int | None
    """CPU the report was printed for."""
    pid: int | None
    """PID of the task concerned (the blocked task for hung tasks)."""
    comm: str | None
    """Command name of that task."""
    tainted: str
    """Taint letters such as ``OE``; empty when not tainted or not printed."""
    location: str | None
    """``file:line`` of a BUG, WARNING or UBSAN report."""
    rip: Frame | None
    """The faulting function from x86 ``RIP:`` / arm ``pc :`` / ``PC is at``."""
    call_trace: tuple[Frame, ...]
    """The first call trace of the report (at most 64 frames)."""
    modules: tuple[str, ...]
    """Names from ``Modules linked in:``."""
    panic_reason: str | None
    """Text after ``Kernel panic - not syncing: `` when this report led to a panic."""
    blocked_task: str | None
    """``comm:pid`` of the task a hung-task report is about."""
    start: int
    """Byte offset of the report's first line in the input."""
    end: int
    """Byte offset just past the report's last line (``text[start:end]``)."""
    oops_count: int | None = None
    """The ``N`` of ``[#N]`` when the report went through die() (an oops)."""


# --------------------------------------------------------------------------
# Kinds that die(): "Fatal exception" panics are explained by these.
_DIE_KINDS = frozenset({
    "null-pointer", "page-fault", "general-protection", "divide-error",
    "invalid-opcode", "list-corruption", "unknown",
})
# panic_on_warn: kernel/panic.c check_panic_on_warn() is called by __warn(),
# KASAN's end_report() and UBSAN's ubsan_epilogue().
_WARN_KINDS = frozenset({"warning", "kasan", "ubsan", "list-corruption"})

_MAX_FRAMES = 64
_MAX_MODULES = 1024
# A report stays open while report-like lines keep coming; this many
# unrelated lines in a row (or this many lines in total) close it.
_MAX_GAP = 40
_MAX_LINES = 4000
# A die() header or secondary marker is absorbed this many lines into a report.
_HEADER_LINES = 40
# A "cut here" line or "====" banner belongs to a marker this close after it.
_PENDING_LINES = 4


def _text(raw: bytes) -> str:
    """Decode kernel text for the API; undecodable bytes stay visible as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def _printable(s: str) -> str:
    """Escape control characters (a comm may hold a newline)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in s)


def _frame(raw: _p.RawFrame, context: str) -> Frame:
    return Frame(_text(raw.function), raw.offset, raw.size,
                 _text(raw.module) if raw.module is not None else None, raw.reliable, context)


class _Builder:
    """A report being assembled, line by line (mutable, private)."""

    def __init__(self, kind: str, name: str, idx: int, start: int, end: int,
                 time: float | None) -> None:
        self.kind = kind
        self.name = name
        self.first_idx = idx
        self.last_idx = idx
        self.start = start
        self.end = end
        self.time = time
        self.standalone = False  # a panic line with no report before it
        self.groups: dict[str, bytes] = {}
        self.release: str | None = None
        self.cpu: int | None = None
        self.pid: int | None = None
        self.comm: str | None = None
        self.tainted: str | None = None
        self.location: str | None = None
        self.rip: Frame | None = None
        self.rip_rank = 0
        self.frames: list[Frame] = []
        self.trace = 0  # 0 not seen, 1 inside, 2 done
        self.trace_misses = 0
        self.context = "TASK"
        self.modules: list[str] | None = None
        self.modules_open = False
        self.panic_reason: str | None = None
        self.blocked_task: str | None = None
        self.oops_count: int | None = None
        self.caller: bytes | None = None

    # -- state ---------------------------------------------------------------

    def open(self, idx: int) -> bool:
        """Whether line *idx* can still belong to this report."""
        return idx - self.last_idx <= _MAX_GAP and idx - self.first_idx <= _MAX_LINES

    def header_phase(self, idx: int) -> bool:
        return (self.trace == 0 and self.panic_reason is None and not self.standalone
                and idx - self.first_idx <= _HEADER_LINES)

    def touch(self, idx: int, end: int) -> None:
        self.last_idx = idx
        self.end = max(self.end, end)

    def dies(self) -> bool:
        return self.kind in _DIE_KINDS or self.name == "kernel BUG"

    def explains(self, category: str) -> bool:
        """Whether a panic of *category* is the consequence of this report."""
        if self.standalone:
            return False
        if category == "fatal":
            return self.oops_count is not None or self.dies()
        if category == "init":
            return (self.oops_count is not None or self.dies()) and self.pid == 1
        if category == "warn":
            return self.kind in _WARN_KINDS
        wanted = {"softlockup": "soft-lockup", "hungtask": "hung-task", "hardlockup": "hard-lockup",
                  "oom": "oom", "rcu": "rcu-stall"}.get(category)
        return wanted is not None and self.kind == wanted

    # -- markers -------------------------------------------------------------

    def apply(self, mk: _p.Marker) -> None:
        """Take the fields a start marker carries."""
        g = mk.groups
        self.groups.update(g)
        if "cpu" in g:
            self.cpu = int(g["cpu"])
        if "pid" in g:
            self.pid = int(g["pid"])
        if "comm" in g and mk.kind != "oom":
            self.comm = _text(g["comm"])
        elif "comm" in g:
            self.comm = _text(g["comm"].strip())
        if "loc" in g and re.search(rb":\d", g["loc"]):
            self.location = _text(g["loc"])
        if mk.kind == "hung-task" and "pid" in g:
            self.blocked_task = f"{self.comm}:{self.pid}"

    def absorb(self, mk: _p.Marker, idx: int) -> bool:
        """Fold a marker printed as part of this report's header into it."""
        if not self.header_phase(idx):
            return False
        k = mk.kind
        if self.kind == "list-corruption" and (
                k in ("invalid-opcode", "warning") or mk.name == "kernel BUG"):
            if self.location is None and "loc" in mk.groups:
                self.apply(mk)
            for key in ("cpu", "pid"):
                if key in mk.groups and getattr(self, key) is None:
                    setattr(self, key, int(mk.groups[key]))
            return True
        if self.name == "kernel BUG" and k == "invalid-opcode":
            return True
        if k == "list-corruption" and self.name in ("kernel BUG", "WARNING"):
            # 2.6/3.x: "WARNING: at lib/list_debug.c:53" then "list_del corruption..."
            self.kind, self.name = k, mk.name
            self.groups["what"] = mk.groups["what"]
            return True
        if k == "hard-lockup" and self.kind == "warning":
            # 3.x: "WARNING: at kernel/watchdog.c" then "Watchdog detected hard LOCKUP"
            self.kind, self.name = k, mk.name
            self.cpu = int(mk.groups["cpu"])
            return True
        return False

    # -- ordinary lines ------------------------------------------------------

    def feed(self, body: bytes, idx: int, end: int, caller: bytes | None) -> None:
        """Take what a non-marker line of the report says."""
        if self.trace == 1 and caller is not None and self.caller not in (None, caller):
            return  # another task's message printed into the middle of our trace
        hit = self._fields(body)
        hit = self._trace_line(body) or hit
        if hit or _p.related(body):
            self.touch(idx, end)

    def _set_rip(self, rest: bytes, rank: int) -> None:
        if rank <= self.rip_rank:
            return
        raw = _p.parse_frame(rest, bare=True)
        if raw is None or raw.inline:
            return
        self.rip = _frame(raw, "")
        self.rip_rank = rank

    def _fields(self, body: bytes) -> bool:
        m = _p.CPU_LINE.match(body) or _p.PID_LINE.match(body)
        if m:
            d = m.groupdict()
            pid = int(d["pid"])
            # The CPU of another task (khungtaskd printing a hung-task panic) is not ours.
            if self.cpu is None and d.get("cpu") is not None and self.pid in (None, pid):
                self.cpu = int(d["cpu"])
            self._take_task(pid, d["comm"])
            self._take_taint(m.group("taint"), m.group("rest"))
            return True
        m = _p.ARM_CPU_LINE.match(body)
        if m:
            if self.cpu is None:
                self.cpu = int(m.group("cpu"))
            self._take_taint(m.group("taint"), m.group("rest"))
            return True
        m = _p.TAINT_LINE.match(body)
        if m:
            verbose = _p.TAINT_VERBOSE.findall(m.group("rest"))
            if verbose:
                if self.tainted is None:
                    self.tainted = "".join(_text(v) for v in verbose if v != b"G")
            else:
                self._take_taint(m.group("taint"), m.group("rest"))
            return True
        m = _p.PROCESS_LINE.match(body)
        if m:
            self._take_task(int(m.group("pid")), m.group("comm"))
            return True
        m = _p.MODULES.match(body)
        if m:
            if self.modules is None:
                self.modules = []
                self.modules_open = self._take_modules(m.group("rest"), first=True)
            return True
        if self.modules_open:
            if body[:1] in (b" ", b"\t") and self.modules is not None:
                self.modules_open = self._take_modules(body, first=False)
                if self.modules_open:
                    return True
            self.modules_open = False
        m = _p.RIP_LINE.match(body)
        if m:
            if m.group("cs") not in _p.USER_CS:
                self._set_rip(m.group("rest"), 2)
            return True
        m = _p.PC_IS_AT.match(body)
        if m:
            self._set_rip(m.group("rest"), 3)
            return True
        m = _p.IP_LINE.match(body) or _p.EIP_AT.match(body) or _p.PC_LINE.match(body)
        if m:
            self._set_rip(m.group("rest"), 2)
            m2 = _p.EFLAGS_CPU.match(body)
            if m2 and self.cpu is None:
                self.cpu = int(m2.group("cpu"))
            return True
        return False

    def _take_task(self, pid: int, comm: bytes) -> None:
        """Fill pid and comm unless a marker named another task already."""
        if self.pid is None:
            self.pid = pid
            self.comm = _text(comm)
        elif self.comm is None and self.pid == pid:
            self.comm = _text(comm)

    def _take_taint(self, taint: bytes, rest: bytes) -> None:
        letters, release = _p.parse_taint(taint, rest)
        if self.tainted is None:
            self.tainted = letters
        if self.release is None and release:
            self.release = release

    def _take_modules(self, rest: bytes, *, first: bool) -> bool:
        """Add module names; return whether a continuation line may follow."""
        assert self.modules is not None
        tokens = rest.split()
        names: list[str] = []
        for tok in tokens:
            if tok.startswith(b"["):  # "[last unloaded: foo]"
                break
            if _p.MODULE_TOKEN.fullmatch(tok) and not _p.HEXWORD.fullmatch(tok):
                names.append(_text(tok.split(b"(", 1)[0]))
            elif not first:
                return False  # not a module list continuation after all
        room = _MAX_MODULES - len(self.modules)
        self.modules.extend(names[:max(room, 0)])
        return bool(tokens) and not rest.rstrip().endswith(b"]")

    def _trace_line(self, body: bytes) -> bool:
        """Collect call trace frames; return whether the line was trace material."""
        if self.trace == 2:
            return False
        if self.trace == 0:
            if _p.TRACE_HEADER.match(body):
                self.trace = 1
                return True
            m = _p.ARM_FROM.match(body)
            if not m:
                return False
            self.trace = 1  # arm unwind_backtrace() output without a header
        s = body
        marked = False
        for _ in range(4):
            m = _p.CONTEXT_MARK.match(s)
            if not m:
                break
            marked = True
            name = m.group("name")
            if name is None or m.group("close") or name == b"EOI":
                self.context = "TASK"
            elif name.startswith(b"#"):
                self.context = "EXCEPTION"
            else:
                self.context = _text(name)
            s = s[m.end():]
        if marked and not s.strip():
            return True
        arm = _p.ARM_FROM.match(s)
        raw = (_p.RawFrame(arm.group("func"), None, None, arm.group("mod"), True, False)
               if arm else _p.parse_frame(s, bare=True))
        if raw is not None:
            if len(self.frames) < _MAX_FRAMES:
                self.frames.append(_frame(raw, self.context))
            self.trace_misses = 0
            return True
        if _p.TRACE_HEADER.match(s):
            if self.frames:
                self.trace = 2
            return True
        if _p.in_trace_filler(s):
            return True
        if self.frames or not s.strip() or self.trace_misses >= 4:
            self.trace = 2
        else:
            self.trace_misses += 1
        return False

    # -- result --------------------------------------------------------------

    def where(self) -> str | None:
        """The function to name in the headline."""
        if self.kind in ("list-corruption", "scheduling-while-atomic"):
            for f in self.frames:
                if f.reliable and not _p.PLUMBING.match(f.function) and not (
                        self.kind == "scheduling-while-atomic" and _p.SLEEPERS.match(f.function)):
                    return f.label()
        culprit_only = self.kind == "list-corruption"  # never name the list checker
        if self.rip is not None and not (culprit_only and _p.PLUMBING.match(self.rip.function)):
            return self.rip.label()
        if self.kind == "hard-lockup":
            # The watchdog's own frames run in NMI context; the culprit is what it interrupted.
            for f in self.frames:
                if f.reliable and f.context != "NMI":
                    return f.label()
            return None
        func = self.groups.get("func") or self.groups.get("where")
        if func:
            raw = _p.parse_frame(func.removesuffix(b"()"), bare=True)
            if raw is not None and not (culprit_only and _p.PLUMBING.match(_text(raw.function))):
                return _frame(raw, "").label()
        return None

    def headline(self) -> str:
        g = {k: _printable(_text(v)) for k, v in self.groups.items()}
        where = self.where()
        at = f" in {where}" if where else ""
        kind = self.kind
        if self.standalone:
            reason = _printable(self.panic_reason or "")
            if kind == "oom":
                detail = re.sub(r"^Out of memory(?::| and)? ?", "", reason)
                return f"out of memory: {detail}" if detail else "out of memory"
            if kind == "stack-corruption":
                m = re.search(r"corrupted in:? ?(\S+(?: \[[\w-]+\])?)", reason)
                raw = _p.parse_frame(m.group(1).encode(), bare=True) if m else None
                return (f"stack corruption in {_frame(raw, '').label()}" if raw is not None
                        else f"stack corruption ({reason})")
            if kind == "hung-task":
                return "hung tasks detected (hung_task: blocked tasks)"
            if kind != "panic":
                return f"{reason}{at}"
            return f"kernel panic: {reason}"
        if kind == "null-pointer":
            addr = f" at {g['addr']}" if g.get("addr") else ""
            return f"NULL pointer dereference{at or addr}"
        if kind == "page-fault":
            what = g.get("what", "page fault")
            what = "page fault" if what == "paging request" else f"kernel {what}"
            addr = f" at address {g['addr']}" if g.get("addr") else ""
            return f"{what}{addr}{at}"
        if kind == "general-protection":
            return f"general protection fault{at}"
        if kind == "divide-error":
            return f"divide error{at}"
        if kind == "invalid-opcode":
            return f"invalid opcode{at}"
        if kind == "bug":
            if self.name == "kernel BUG":
                return f"kernel BUG at {g.get('loc', '?')}{at}"
            return f"BUG: {g.get('what', '')}"[:200]
        if kind == "warning":
            if self.name == "lockdep":
                return f"WARNING: {g.get('what', '')}"
            return f"WARNING at {self.location or g.get('loc', '?')}{at}"
        if kind == "soft-lockup":
            return f"soft lockup on CPU#{g.get('cpu', '?')} for {g.get('secs', '?')}s{at}"
        if kind == "hard-lockup":
            return f"hard lockup on CPU {self.cpu if self.cpu is not None else '?'}{at}"
        if kind == "hung-task":
            comm = _printable(self.comm or "?")
            return f"task {comm}:{self.pid} blocked for more than {g.get('secs', '?')} seconds"
        if kind == "rcu-stall":
            return f"RCU stall: {g.get('flavor', 'rcu')} {g.get('what', 'stall')}{at}"
        if kind == "kasan":
            raw = _p.parse_frame(self.groups.get("where", b""), bare=True)
            target = _frame(raw, "").label() if raw is not None else g.get("where", "?")
            return f"KASAN: {g.get('what', '?')} in {target}"
        if kind == "ubsan":
            return f"UBSAN: {g.get('what', '?')} in {g.get('loc', '?')}"
        if kind == "oom":
            return f"out of memory: {_printable(self.comm or '?')} invoked the OOM killer"
        if kind == "list-corruption":
            return f"{g.get('what', 'list corruption')}{at}"
        if kind == "stack-corruption":
            if "what" in g:
                return g["what"]
            raw = _p.parse_frame(self.groups.get("where", b""), bare=True)
            return f"stack corruption in {_frame(raw, '').label()}" if raw else "stack corruption"
        if kind == "scheduling-while-atomic":
            return f"scheduling while atomic{at}"
        what = g.get("what", "kernel oops")
        return f"{what}{at}"

    def report(self) -> Report:
        return Report(
            kind=Kind(self.kind),
            headline=self.headline(),
            time=self.time,
            kernel_release=self.release,
            cpu=self.cpu,
            pid=self.pid,
            comm=self.comm,
            tainted=self.tainted or "",
            location=self.location,
            rip=self.rip,
            call_trace=tuple(self.frames),
            modules=tuple(self.modules or ()),
            panic_reason=self.panic_reason,
            blocked_task=self.blocked_task,
            start=self.start,
            end=self.end,
            oops_count=self.oops_count,
        )


def _lines(text: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield (start, end, line) for each line; *end* excludes the newline."""
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find(b"\n", pos)
        stop = n if nl < 0 else nl
        yield pos, stop, text[pos:min(stop, pos + _p.MAX_LINE)]
        pos = stop + 1


def _parse(text: bytes) -> list[_Builder]:
    """One pass over *text*; returns the finished reports in order."""
    done: list[_Builder] = []
    cur: _Builder | None = None
    pending: tuple[int, int, float | None] | None = None  # cut here / banner
    hung: tuple[int, int, float | None, bytes] | None = None  # "INFO: task <comm\n"

    def start(kind: str, name: str, idx: int, s: int, e: int, line: _p.Line) -> _Builder:
        # A "cut here" line starts the report it announces, unless the report
        # before took lines after it (reports never overlap).
        floor = done[-1].end if done else 0
        if pending is not None and idx - pending[0] <= _PENDING_LINES and pending[1] >= floor:
            b = _Builder(kind, name, idx, pending[1], e, pending[2])
        else:
            b = _Builder(kind, name, idx, s, e, line.time)
        b.caller = line.caller
        return b

    for idx, (s, e, raw) in enumerate(_lines(text)):
        if not raw.strip():  # fast path: a blank line only ends a call trace
            if cur is not None:
                cur.modules_open = False
                if cur.trace == 1 and cur.frames:
                    cur.trace = 2
            continue
        line = _p.strip_prefix(raw)
        body = line.body
        if cur is not None and not cur.open(idx):
            done.append(cur)
            cur = None

        if b"Kernel panic" in body:
            m = _p.PANIC.match(body)
            if m:
                reason = _printable(_text(m.group("reason")).strip())
                cat = _p.panic_category(reason)
                if cur is not None and cur.panic_reason is None and cur.explains(cat):
                    cur.panic_reason = reason
                    cur.touch(idx, e)
                    continue
                if cur is not None:
                    done.append(cur)
                cur = _Builder(_p.STANDALONE_KIND.get(cat, "panic"), "panic", idx, s, e, line.time)
                cur.caller = line.caller
                cur.standalone = True
                cur.panic_reason = reason
                continue

        mk = _p.marker(body)
        if mk is None and hung is not None and idx == hung[0] + 1:
            t = _p.HUNG_TAIL.match(body)
            if t:
                groups = {"comm": hung[3] + b"\n" + t.group("comm"), "pid": t.group("pid"),
                          "secs": t.group("secs")}
                mk = _p.Marker("hung-task", "hung task", groups)
                s, line = hung[1], _p.Line(body, hung[2], line.caller)
        hung = None
        if mk is None:
            h = _p.HUNG_HEAD.match(body.lstrip())
            if h:
                hung = (idx, s, line.time, h.group("comm"))
        if mk is not None:
            if cur is not None and cur.absorb(mk, idx):
                cur.touch(idx, e)
                continue
            if cur is not None:
                done.append(cur)
            cur = start(mk.kind, mk.name, idx, s, e, line)
            cur.apply(mk)
            d = _p.die_header(body)
            if d is not None:
                cur.oops_count = d.number
            pending = None
            continue

        d = _p.die_header(body)
        if d is not None:
            if cur is not None and cur.dies() and cur.header_phase(idx):
                if cur.oops_count is None:
                    cur.oops_count = d.number
                cur.touch(idx, e)
                continue
            if cur is not None:
                done.append(cur)
            what = d.what.decode("ascii", "replace")
            kind = ("bug" if what.endswith("BUG") else
                    "invalid-opcode" if "undefined instruction" in what else "unknown")
            cur = start(kind, "die", idx, s, e, line)
            cur.groups["what"] = d.what
            if kind == "bug":
                cur.name = "kernel BUG"
                cur.groups["loc"] = b"?"
            cur.oops_count = d.number
            pending = None
            continue

        if _p.CUT_HERE.match(body) or _p.BANNER.match(body):
            pending = (idx, s, line.time)
            continue
        if cur is not None:
            cur.feed(body, idx, e, line.caller)
    if cur is not None:
        done.append(cur)
    return done


def parse_reports(text: bytes) -> list[Report]:
    """Return every crash report in the kernel log *text*, in order.

    *text* may carry syslog ``<N>`` levels, printk time stamps and caller
    ids, or syslog/journal prefixes.  A ``Kernel panic - not syncing`` line
    that follows the report that caused it sets that report's
    ``panic_reason``; a panic with no such report is a report of its own.
    Never raises.
    """
    return [b.report() for b in _parse(text)]


def primary_report(text: bytes) -> Report | None:
    """Return the report that explains how the log *text* ended, or ``None``.

    With a ``Kernel panic - not syncing: REASON`` line, that is the report the
    panic was the consequence of: the last oops before a ``Fatal exception``,
    the last WARNING (or KASAN/UBSAN report) before ``panic_on_warn set``, the
    soft lockup, hung task, hard lockup, RCU stall or OOM report before the
    matching watchdog panic; for any other reason (``sysrq triggered crash``,
    a driver's own panic) the panic itself.  The result always carries the
    ``panic_reason``.  Without a panic line it is the last report.
    """
    built = _parse(text)
    for i, b in enumerate(built):
        if b.panic_reason is None:
            continue
        if b.standalone:
            cat = _p.panic_category(b.panic_reason)
            for j in range(i - 1, -1, -1):
                if built[j].explains(cat):
                    return dataclasses.replace(built[j].report(), panic_reason=b.panic_reason)
        return b.report()
    return built[-1].report() if built else None


def describe(report: Report) -> str:
    """Say what happened in one sentence, e.g. ``kernel panic: NULL pointer
    dereference in crashy_null [crashy], task insmod (pid 86), kernel tainted OE``."""
    text = report.headline
    if report.panic_reason is not None and not text.startswith("kernel panic"):
        text = f"kernel panic: {text}"
    if report.comm is not None and not (report.kind is Kind.HUNG_TASK and report.blocked_task):
        text += f", task {_printable(report.comm)}"
        if report.pid is not None:
            text += f" (pid {report.pid})"
    elif report.pid is not None and report.blocked_task is None:
        text += f", pid {report.pid}"
    if report.tainted:
        text += f", kernel tainted {report.tainted}"
    return text
