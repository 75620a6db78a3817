"""Report assembly for :mod:`memconsole.oops`: a line-by-line state machine.

:class:`LineParser` is fed one log line at a time (``feed``) and keeps the
reports it finished.  It is resumable: :mod:`memconsole._logscan` feeds it
only the lines around report start markers of a multi-GB log, with their
true line numbers and byte offsets, and gets the same reports as feeding
every line (see :meth:`LineParser.busy` for why that is exact).
"""

from __future__ import annotations

import re

from memconsole.oops import _fields as _f
from memconsole.oops import _patterns as _p
from memconsole.oops._model import Frame, Kind, Report
from memconsole.oops.taint import taint_names

__all__ = ["LineParser", "frame", "printable", "text"]

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
_MAX_REGISTERS = 80
_MAX_FAULT_INFO = 8
# A report stays open while report-like lines keep coming; this many
# unrelated lines in a row (or this many lines in total) close it.
MAX_GAP = 40
MAX_LINES = 4000
# A die() header or secondary marker is absorbed this many lines into a report.
_HEADER_LINES = 40
#: A "cut here" line, "====" banner or list corruption message belongs to a
#: marker at most this many lines after it.
PENDING_LINES = 4


def text(raw: bytes) -> str:
    """Decode kernel text for the API; undecodable bytes stay visible as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def printable(s: str) -> str:
    """Escape control characters (a comm may hold a newline)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in s)


def frame(raw: _p.RawFrame, context: str) -> Frame:
    """A public :class:`Frame` from a parsed one."""
    return Frame(text(raw.function), raw.offset, raw.size,
                 text(raw.module) if raw.module is not None else None, raw.reliable, context)


class _Builder(_f.FieldsMixin):
    """A report being assembled, line by line (mutable, private)."""

    def __init__(self, kind: str, name: str, idx: int, start: int, end: int,
                 time: float | None, start_idx: int) -> None:
        super().__init__()
        self.kind = kind
        self.name = name
        self.first_idx = idx
        self.start_idx = start_idx
        self.last_idx = idx
        self.start = start
        self.end = end
        self.time = time
        self.standalone = False  # a panic line with no report before it
        self.groups: dict[str, bytes] = {}
        self.location: str | None = None
        self.trace = 0  # 0 not seen, 1 inside, 2 done
        self.trace_misses = 0
        self.context = "TASK"
        self.frames: list[Frame] = []
        self.panic_reason: str | None = None
        self.blocked_task: str | None = None
        self.oops_count: int | None = None
        self.caller: bytes | None = None

    # -- state ---------------------------------------------------------------

    def open(self, idx: int) -> bool:
        """Whether line *idx* can still belong to this report."""
        return idx - self.last_idx <= MAX_GAP and idx - self.first_idx <= MAX_LINES

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
            self.comm = text(g["comm"])
        elif "comm" in g:
            self.comm = text(g["comm"].strip())
        if "loc" in g and re.search(rb":\d", g["loc"]):
            self.location = text(g["loc"])
        if "secs" in g and mk.kind in ("soft-lockup", "hung-task"):
            self.duration = float(int(g["secs"]))
        if "addr" in g and self.fault_address is None:
            self.fault_address = _f.hex_int(g["addr"])
        if "rest" in g and mk.kind == "general-protection":
            self.gpf_address(g["rest"])
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
        hit = self.fields(body, self.trace == 0, self.kind)
        hit = self._trace_line(body) or hit
        if hit or _p.related(body):
            self.touch(idx, end)

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
        for _ in range(4 if b"<" in body[:40] else 0):
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
                self.context = text(name)
            s = s[m.end():]
        if marked and not s.strip():
            return True
        arm = _p.ARM_FROM.match(s) if b"[<" in s[:12] else None
        raw = (_p.RawFrame(arm.group("func"), None, None, arm.group("mod"), True, False)
               if arm else _p.parse_frame(s, bare=True))
        if raw is not None:
            if len(self.frames) < _MAX_FRAMES:
                self.frames.append(frame(raw, self.context))
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
            if raw is not None and not (culprit_only and _p.PLUMBING.match(text(raw.function))):
                return frame(raw, "").label()
        return None

    def headline(self) -> str:
        g = {k: printable(text(v)) for k, v in self.groups.items()}
        where = self.where()
        at = f" in {where}" if where else ""
        kind = self.kind
        if self.standalone:
            reason = printable(self.panic_reason or "")
            if kind == "oom":
                detail = re.sub(r"^Out of memory(?::| and)? ?", "", reason)
                return f"out of memory: {detail}" if detail else "out of memory"
            if kind == "stack-corruption":
                m = re.search(r"corrupted in:? ?(\S+(?: \[[\w-]+\])?)", reason)
                raw = _p.parse_frame(m.group(1).encode(), bare=True) if m else None
                return (f"stack corruption in {frame(raw, '').label()}" if raw is not None
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
            comm = printable(self.comm or "?")
            return f"task {comm}:{self.pid} blocked for more than {g.get('secs', '?')} seconds"
        if kind == "rcu-stall":
            return f"RCU stall: {g.get('flavor', 'rcu')} {g.get('what', 'stall')}{at}"
        if kind == "kasan":
            raw = _p.parse_frame(self.groups.get("where", b""), bare=True)
            target = frame(raw, "").label() if raw is not None else g.get("where", "?")
            return f"KASAN: {g.get('what', '?')} in {target}"
        if kind == "ubsan":
            return f"UBSAN: {g.get('what', '?')} in {g.get('loc', '?')}"
        if kind == "oom":
            return f"out of memory: {printable(self.comm or '?')} invoked the OOM killer"
        if kind == "list-corruption":
            return f"{g.get('what', 'list corruption')}{at}"
        if kind == "stack-corruption":
            if "what" in g:
                return g["what"]
            raw = _p.parse_frame(self.groups.get("where", b""), bare=True)
            return f"stack corruption in {frame(raw, '').label()}" if raw else "stack corruption"
        if kind == "scheduling-while-atomic":
            return f"scheduling while atomic{at}"
        what = g.get("what", "kernel oops")
        return f"{what}{at}"

    def report(self) -> Report:
        tainted = self.tainted or ""
        return Report(
            kind=Kind(self.kind),
            headline=self.headline(),
            time=self.time,
            kernel_release=self.release,
            cpu=self.cpu,
            pid=self.pid,
            comm=self.comm,
            tainted=tainted,
            location=self.location,
            rip=self.rip,
            call_trace=tuple(self.frames),
            modules=tuple(self.modules or ()),
            panic_reason=self.panic_reason,
            blocked_task=self.blocked_task,
            start=self.start,
            end=self.end,
            oops_count=self.oops_count,
            line=self.start_idx + 1,
            uid=self.uid,
            kernel_build=self.build,
            hardware=self.hardware,
            taint_flags=taint_names(tainted),
            fault_address=self.fault_address,
            fault_info=tuple(self.fault_info[:_MAX_FAULT_INFO]),
            error_code=self.error_code if self.error_code is not None else self.die_error,
            lr=self.lr,
            registers=tuple(self.registers.items())[:_MAX_REGISTERS],
            code=self.code,
            module_flags=tuple(self.module_flags),
            workqueue=self.workqueue,
            kernel_offset=self.kernel_offset,
            duration=self.duration,
            access=self.access,
        )


class LineParser:
    """The report state machine over a log, one line at a time.

    Feed lines in order with their 0-based line number and byte offsets;
    lines may be skipped where :meth:`busy` is false and the skipped lines
    contain no :data:`memconsole._oops_patterns.NEEDLES` (they would not
    change anything), provided the :data:`PENDING_LINES` lines before each
    fed needle line are fed too.
    """

    def __init__(self) -> None:
        self.done: list[_Builder] = []
        self.cur: _Builder | None = None
        # A "cut here" line or "====" banner: (idx, start, time).
        self.pending: tuple[int, int, float | None] | None = None
        # A list corruption message: (idx, start, time, marker).
        self.pending_list: tuple[int, int, float | None, _p.Marker] | None = None
        # "INFO: task <comm" whose comm held a newline: (idx, start, stamp, comm part).
        self.hung: tuple[int, int, tuple[bytes, bytes] | None, bytes] | None = None
        # End offset of the last finished report: the next one starts at or after it.
        self.floor = 0

    def busy(self, idx: int) -> bool:
        """Whether line *idx* (the next line) may change the state even when it
        holds no needle.  When false, every line up to the next needle line's
        :data:`PENDING_LINES` predecessors can be skipped: an idle parser
        ignores lines without needles, except as announcers (pending lines),
        and a report whose gap has run out is closed by whatever line comes
        next (a blank line after it changes nothing a report keeps)."""
        cur = self.cur
        if cur is not None and idx - cur.last_idx <= MAX_GAP and idx - cur.first_idx <= MAX_LINES:
            return True
        return self.hung is not None and idx == self.hung[0] + 1

    def _close(self) -> None:
        if self.cur is not None:
            self.done.append(self.cur)
            self.floor = self.cur.end
            self.cur = None

    def _start(self, mk: _p.Marker, idx: int, s: int, e: int, line: _p.Line) -> _Builder:
        """Start the report *mk* begins.  An announcing line ("cut here", a list
        corruption message) at most PENDING_LINES before starts it instead,
        unless the report before took lines after it (reports never overlap)."""
        floor = self.floor
        begin, begin_idx, time = s, idx, line.time
        cut = self.pending
        if cut is not None and idx - cut[0] <= PENDING_LINES and cut[1] >= floor:
            begin, begin_idx, time = cut[1], cut[0], cut[2]
        b: _Builder | None = None
        pl = self.pending_list
        if pl is not None and idx - pl[0] <= PENDING_LINES and pl[1] >= floor:
            # The list message announces this report if the report can take it in.
            lb = _Builder(pl[3].kind, pl[3].name, idx, *((pl[1], e, pl[2], pl[0]) if pl[1] < begin
                                                          else (begin, e, time, begin_idx)))
            lb.apply(pl[3])
            if lb.absorb(mk, idx):
                b = lb
        if b is None:
            b = _Builder(mk.kind, mk.name, idx, begin, e, time, begin_idx)
            b.apply(mk)
        b.caller = line.caller
        self.pending = self.pending_list = None
        return b

    def blank(self) -> None:
        """A blank line: it only ends a call trace or a module list."""
        cur = self.cur
        if cur is not None:
            cur.modules_open = False
            if cur.trace == 1 and cur.frames:
                cur.trace = 2

    def feed(self, idx: int, s: int, e: int, raw: bytes) -> None:
        """Take line *idx*, bytes ``[s, e)`` of the input (*raw*, newline excluded)."""
        if not raw.strip():
            self.blank()
            return
        line = _p.strip_prefix(raw)
        body = line.body
        cur = self.cur
        if cur is not None and not cur.open(idx):
            self._close()
            cur = None

        if b"Kernel panic" in body:
            m = _p.PANIC.match(body)
            if m:
                reason = printable(text(m.group("reason")).strip())
                cat = _p.panic_category(reason)
                if cur is not None and cur.panic_reason is None and cur.explains(cat):
                    cur.panic_reason = reason
                    cur.touch(idx, e)
                    return
                self._close()
                b = _Builder(_p.STANDALONE_KIND.get(cat, "panic"), "panic", idx, s, e, line.time,
                             idx)
                b.caller = line.caller
                b.standalone = True
                b.panic_reason = reason
                self.cur = b
                return

        mk = _p.marker(body)
        hung = self.hung
        head_idx = idx
        if mk is None and hung is not None and idx == hung[0] + 1:
            t = _p.HUNG_TAIL.match(body)
            if t:
                groups = {"comm": hung[3] + b"\n" + t.group("comm"), "pid": t.group("pid"),
                          "secs": t.group("secs")}
                mk = _p.Marker("hung-task", "hung task", groups)
                s, line, head_idx = hung[1], _p.Line(body, hung[2], line.caller), hung[0]
        self.hung = None
        if mk is None and b"INFO: task " in body:
            h = _p.HUNG_HEAD.match(body.lstrip())
            if h:
                self.hung = (idx, s, line.stamp, h.group("comm"))
        if mk is not None:
            if cur is not None and cur.absorb(mk, idx):
                cur.touch(idx, e)
                d = _p.die_header(body)
                if d is not None and cur.oops_count is None:
                    cur.oops_count, cur.die_error = d.number, d.error
                return
            if mk.kind == "list-corruption":
                # Printed just before the BUG()/WARN() that reports it
                # (lib/list_debug.c CHECK_DATA_CORRUPTION): announces that report.
                self.pending_list = (idx, s, line.time, mk)
                return
            self._close()
            b = self._start(mk, idx, s, e, line)
            if b.start == s:
                b.start_idx = head_idx
            d = _p.die_header(body)
            if d is not None:
                b.oops_count = d.number
                b.die_error = d.error
            self.cur = b
            return

        d = _p.die_header(body)
        if d is not None:
            if cur is not None and cur.dies() and cur.header_phase(idx):
                if cur.oops_count is None:
                    cur.oops_count = d.number
                if cur.die_error is None:
                    cur.die_error = d.error
                cur.touch(idx, e)
                return
            self._close()
            what = d.what.decode("ascii", "replace")
            kind = ("bug" if what.endswith("BUG") else
                    "invalid-opcode" if "undefined instruction" in what else "unknown")
            name = "kernel BUG" if kind == "bug" else "die"
            b = self._start(_p.Marker(kind, name, {}), idx, s, e, line)
            if b.kind == kind:
                b.groups["what"] = d.what
                if kind == "bug":
                    b.groups["loc"] = b"?"
            b.oops_count = d.number
            b.die_error = d.error
            self.cur = b
            return

        if body.lstrip()[:1] in (b"-", b"=") and (_p.CUT_HERE.match(body) or _p.BANNER.match(body)):
            self.pending = (idx, s, line.time)
            return
        if cur is not None:
            cur.feed(body, idx, e, line.caller)

    def finish(self) -> list[_Builder]:
        """Close the open report; return every report, in order."""
        self._close()
        return self.done

    def take(self) -> list[_Builder]:
        """Remove and return the reports finished so far (streaming use)."""
        out, self.done = self.done, []
        return out
