"""One report being assembled (private to :mod:`memconsole.oops`).

A :class:`Draft` is opened by the line parser (:mod:`memconsole.oops._builder`) at a
report's start line and fed the report's later lines: it reads header and register
fields (:class:`memconsole.oops._fields.FieldsMixin`), collects the first call trace,
and keeps the bodies of its lines for the culprit rules
(:mod:`memconsole.oops._culprit`), which run once, when :meth:`Draft.report` builds
the immutable :class:`memconsole.oops.Report`.
"""

from __future__ import annotations

import functools
import re

from memconsole.oops import _culprit as _c
from memconsole.oops import _families as _fam
from memconsole.oops import _fields as _f
from memconsole.oops import _machinery as _m
from memconsole.oops import _patterns as _p
from memconsole.oops import signature as _sig
from memconsole.oops._families import Family
from memconsole.oops._model import Frame, Kind, Report
from memconsole.oops.taint import taint_names

__all__ = ["MAX_GAP", "MAX_LINES", "STANDALONE_KIND", "Draft", "frame", "printable", "text"]

_MAX_FRAMES = 64
_MAX_FAULT_INFO = 8
_MAX_REGISTERS = 80
# The lines kept for the culprit rules (each cut to _MAX_BODY bytes).
_MAX_BODIES = 1500
_MAX_BODY = 600
# A report stays open while report-like lines keep coming; this many
# unrelated lines in a row (or this many lines in total) close it.
MAX_GAP = 40
MAX_LINES = 4000
# After the kernel's end marker a report needs fewer: only a panic line (a needle,
# found anyway) and "Kernel Offset:" can follow.
_TRAILER_GAP = 4
# A die() header or secondary marker is absorbed this many lines into a report.
_HEADER_LINES = 40
# Reports whose culprit is from a stack: lines that mean another report was
# printed into this one (syzkaller's infoMessagesWithStack) end what the culprit
# rules read when there are no caller ids to tell the two apart.
_FOREIGN_STACKS = (b"vmalloc: allocation failure:", b"FAULT_INJECTION: forcing a failure",
                   b"FAULT_FLAG_ALLOW_RETRY missing")
_STAMP_IN_TITLE = re.compile(rb"\[ {0,12}\d{1,10}\.\d{1,9}\]")
# Control characters other than a tab in a start line: a garbled title.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f]")

# Panic categories (memconsole.oops._patterns.panic_category) the report of a kind explains.
_EXPLAINS = {"softlockup": Kind.SOFT_LOCKUP, "hungtask": Kind.HUNG_TASK,
             "hardlockup": Kind.HARD_LOCKUP, "oom": Kind.OOM, "rcu": Kind.RCU_STALL,
             "kmsan": Kind.KMSAN, "atomic": Kind.SCHEDULING_WHILE_ATOMIC}
# A panic no report explains still names the kind its reason implies.
STANDALONE_KIND = {"oom": Kind.OOM, "stack": Kind.STACK_CORRUPTION,
                    "hardlockup": Kind.HARD_LOCKUP, "softlockup": Kind.SOFT_LOCKUP,
                    "hungtask": Kind.HUNG_TASK, "rcu": Kind.RCU_STALL}
# Panics that are the consequence of a report: alone, that report is missing.
_CONSEQUENCES = frozenset({"fatal", "warn", "softlockup", "hungtask", "hardlockup", "rcu",
                           "kmsan", "atomic"})


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


class Draft(_f.FieldsMixin):
    """A report being assembled, line by line (mutable, private)."""

    def __init__(self, family: Family, groups: dict[str, bytes], idx: int, start: int, end: int,
                 time: float | None, start_idx: int, body: bytes, ctx: bytes | None) -> None:
        super().__init__()
        self.family = family
        self.kind = family.kind
        self.first_idx = idx
        self.start_idx = start_idx
        self.last_idx = idx
        self.start = start
        self.end = end
        self.time = time
        self.ctx = ctx
        """The printk context the report's lines come from: the caller id, ``b""`` for
        lines with a time stamp or syslog prefix, ``None`` for bare lines."""
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
        self.ended = False  # an end marker was seen
        self.gap = 0  # lines of the report's context since the last one it took
        self.foreign = 0  # lines of other contexts since then
        self.nmi_backtraces = False  # "Sending NMI from CPU": other CPUs' lines belong here
        self.bodies: list[bytes] = [body[:_MAX_BODY]]
        self.cut_at: int | None = None  # index in bodies where another stack was printed
        self.announced_leak = False
        # Lines of this report's task after another report started in it (caller ids).
        self.extra: list[bytes] = []
        self._cut: bool | None = None
        self._stack: list[bool] | None = None  # stack header flags of bodies
        self.apply(groups)

    # -- state ---------------------------------------------------------------

    def open(self, idx: int) -> bool:
        """Whether line *idx* can still belong to this report: fewer than MAX_GAP
        lines of its own context since the last one it took (or 8 times as many
        lines of other contexts), at most MAX_LINES lines in all."""
        gap = _TRAILER_GAP if self.ended else MAX_GAP
        return (self.gap <= gap and self.foreign <= 8 * gap
                and idx - self.first_idx <= MAX_LINES)

    def header_phase(self, idx: int) -> bool:
        return (self.trace == 0 and self.panic_reason is None and not self.standalone
                and idx - self.first_idx <= _HEADER_LINES)

    def touch(self, idx: int, end: int) -> None:
        self.last_idx = idx
        self.end = max(self.end, end)
        self.gap = self.foreign = 0

    def dies(self) -> bool:
        return self.family.dies

    def explains(self, category: str) -> bool:
        """Whether a panic of *category* is the consequence of this report."""
        if self.standalone:
            return False
        if category == "fatal":
            return self.oops_count is not None or self.dies()
        if category == "init":
            return (self.oops_count is not None or self.dies()) and self.pid == 1
        if category == "warn":
            return self.family.warns
        return _EXPLAINS.get(category) is self.kind

    def refamily(self, family: Family, groups: dict[str, bytes]) -> None:
        """Become a report of *family* (a line of the header said what it really is)."""
        self.family = family
        self.kind = family.kind
        self.apply(groups)

    def keep_extra(self, body: bytes) -> None:
        """Keep a line of this report's task printed inside a later report."""
        if len(self.extra) < _MAX_BODIES:
            self.extra.append(body[:_MAX_BODY])

    def keep(self, body: bytes) -> None:
        """Keep a line of the report for the culprit rules."""
        if len(self.bodies) < _MAX_BODIES:
            if (self.cut_at is None and (b"FAULT" in body or b"vmalloc:" in body)
                    and self.ctx in (None, b"") and any(s in body for s in _FOREIGN_STACKS)):
                self.cut_at = len(self.bodies)
            self.bodies.append(body[:_MAX_BODY])

    # -- fields ----------------------------------------------------------------

    def apply(self, g: dict[str, bytes]) -> None:
        """Take the fields a start line carries."""
        g = _merge_groups(g)
        self.groups.update(g)
        if "cpu" in g:
            self.cpu = int(g["cpu"])
        if "pid" in g:
            self.pid = int(g["pid"])
        if "comm" in g:
            self.comm = text(g["comm"].strip() if self.kind is Kind.OOM else g["comm"])
        if "loc" in g and re.search(rb":\d", g["loc"]):
            self.location = text(g["loc"])
        if "secs" in g and self.kind in (Kind.SOFT_LOCKUP, Kind.HUNG_TASK):
            self.duration = float(int(g["secs"]))
        if "addr" in g and self.fault_address is None:
            self.fault_address = _f.hex_int(g["addr"])
        if "rest" in g and self.kind is Kind.GENERAL_PROTECTION:
            self.gpf_address(g["rest"])
        if self.kind is Kind.HUNG_TASK and "pid" in g:
            self.blocked_task = f"{self.comm}:{self.pid}"

    def feed(self, body: bytes, idx: int, end: int) -> None:
        """Take what a non-start line of the report says."""
        self.keep(body)
        if b"Sending NMI from CPU" in body:
            self.nmi_backtraces = True
        hit = self.fields(body, self.trace == 0, self.kind)
        hit = self._trace_line(body) or hit
        if hit or _p.related(body) or _p.is_frame(body):
            self.touch(idx, end)
        else:
            self.gap += 1
        if b"---[ end" in body and _p.END_MARKER.match(body):
            self.ended = True
            self.trace = 2

    def _trace_line(self, body: bytes) -> bool:
        """Collect call trace frames; return whether the line was trace material."""
        if self.trace == 2:
            return False
        if self.trace == 0:
            if _p.TRACE_HEADER.match(body):
                self.trace = 1
                return True
            m = _p.ARM_FROM.match(body) or (
                _p.ARM_FROM_SYM.match(body) if b" from " in body else None)
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
        arm = (_p.ARM_FROM.match(s) if b"[<" in s[:12] else
               _p.ARM_FROM_SYM.match(s) if b" from " in s else None)
        if arm is None:
            m = _p.PLAIN_FRAME.match(s)
            if m:  # the usual "  ? func+0x1a/0x70 [mod]": what parse_frame() would make of it
                if len(self.frames) < _MAX_FRAMES:
                    func, off, size, mod = m.group("func", "off", "size", "mod")
                    self.frames.append(Frame(
                        func.decode("ascii"), int(off, 16), int(size, 16),
                        mod.decode("ascii") if mod is not None else None,
                        m.group("q") is None, self.context))
                self.trace_misses = 0
                return True
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

    def _choice(self) -> _c.Choice:
        family = self.family
        bodies = self.bodies if self.cut_at is None else self.bodies[:self.cut_at]
        hf = self.groups.get("hf")
        header: _c.Candidate | None = None
        if hf is not None:
            at = self.bodies[0].find(hf)
            raw = _p.parse_frame(self.bodies[0][at:], bare=False) if at >= 0 else None
            header = _c.Candidate(text(hf), text(raw.module) if raw and raw.module else None, "")
        elif "func" in self.groups:
            raw = _p.parse_frame(self.groups["func"].removesuffix(b"()"), bare=False)
            if raw is not None and not raw.inline:
                header = _c.Candidate(text(raw.function),
                                      text(raw.module) if raw.module else None, "")
        if self.standalone and self.panic_reason is not None and family.id == "panic":
            if _p.panic_category(self.panic_reason) in _CONSEQUENCES:
                # The panic's own stack is the reporter's (oops_end(), khungtaskd...).
                return _c.Choice(None, None, (), None)
            from_panic = _c.choose(family, bodies, None)
            return from_panic._replace(corrupted_reason=None)
        if header is not None and self._kasan_cut():
            return _c.Choice(header, _m.normalize_function(header.name), (), None)
        self._stack = _c.stack_flags(self.bodies)
        choice = _c.choose(family, bodies, header,
                           self._stack if bodies is self.bodies else None)
        if choice.culprit is None and self.extra:
            # Lines of the same task printed after another report began in the middle
            # of this one (caller ids tell them apart): syzkaller reads them too.
            choice = _c.choose(family, [*bodies, *self.extra], header)
        return choice

    def _fields(self, choice: _c.Choice) -> dict[str, str]:
        wanted = _template_fields(self.family.title)
        g = {k: printable(text(v)) for k, v in self.groups.items()}
        out = {k: _c.replace_dynamic(v) for k, v in g.items() if k in wanted}
        out["c"] = choice.title_name or ""
        hf2 = self.groups.get("hf2")
        out["c2"] = f" / {_m.normalize_function(text(hf2))}" if hf2 else ""
        out["rw"] = f" {g['rw']}" if g.get("rw") else ""
        out["access"] = (next(_c.iter_accesses(self.bodies), "") if "{access}" in self.family.title
                         else "")
        out["lvl"] = g.get("lvl", "BUG")
        out["tail"] = _c.replace_dynamic(g["tail"]) if "tail" in g else ""
        if self.family is _fam.DIE:
            what = g.get("what", "Oops")
            out["what"] = ("kernel BUG" if what.endswith("BUG") else
                           "Internal error" if self.groups.get("internal") else "Oops")
        if self.family is _fam.STANDALONE_PANIC:
            out["reason"] = _c.replace_dynamic(printable(_panic_phrase(self.panic_reason or "")))
        return out

    def _kasan_cut(self) -> bool:
        """A KASAN report without its access line (syzkaller titles it from its first
        line alone, as corrupted)."""
        if self._cut is None:
            self._cut = self.family.id in ("kasan", "kasan-addr") and not any(
                _c.iter_accesses(self.bodies))
        return self._cut

    def _title(self, choice: _c.Choice) -> str:
        template = self.family.title
        fields = self._fields(choice)
        if self._kasan_cut():
            rest = self.bodies[0].split(b"KAS", 1)[-1].partition(b": ")[2]
            return _c.clean_title("KASAN: " + _c.replace_dynamic(printable(text(rest))))
        if self.kind is Kind.OOM and self.standalone:
            reason = printable(self.panic_reason or "")
            detail = re.sub(r"^Out of memory(?::| and)? ?", "", reason)
            return _c.clean_title(f"out of memory: {detail}" if detail else "out of memory")
        if choice.title_name is None:
            template = template.replace(" in {c}", "").replace("{c}", "")
        try:
            title = template.format_map(_Fields(fields))
        except (ValueError, IndexError):
            title = template
        return _c.clean_title(title)

    def _corrupted(self, choice: _c.Choice) -> str | None:
        if self.family.corrupt is not None:
            return self.family.corrupt
        if self.standalone and self.panic_reason is not None:
            cat = _p.panic_category(self.panic_reason)
            if cat in _CONSEQUENCES:
                return "the report this panic follows is missing"
            return (None if self.family.id in _fam.STACKLESS
                    else _c.stack_missing(self.bodies, self._stack))
        if choice.corrupted_reason is not None:
            return choice.corrupted_reason
        start = self.bodies[0]
        if _STAMP_IN_TITLE.search(start, 4) or _CONTROL.search(start):
            return "garbled title"
        if self.family.id == "paging" and start.rstrip().endswith(b"unable to handle kernel"):
            return "the rest of the first line is missing"
        if self._kasan_cut():
            return "no access line"
        if self.family.id not in _fam.STACKLESS and not self.standalone:
            return _c.stack_missing(self.bodies, self._stack)
        return None

    def _signature(self, choice: _c.Choice, headline: str) -> str:
        functions: list[str] = []
        if choice.culprit is not None:
            chain = [choice.culprit, *choice.callers]
            first = _m.normalize_function(choice.culprit.name)
            for i, cand in enumerate(chain):
                name = _sig.syscall_name(_m.normalize_function(cand.name))
                if i and (_m.is_machinery(name, entry=True) or name == first):
                    continue
                label = f"{name} [{cand.module}]" if cand.module else name
                if not functions or functions[-1] != label:
                    functions.append(label)
        else:
            # No culprit (a cut report): the faulting function and the stack as they are,
            # without the reporting machinery, still tell two cut reports apart.
            for f in ([self.rip] if self.rip else []) + self.frames:
                name = _sig.syscall_name(_m.normalize_function(f.function))
                if (not name or name.startswith("0x") or not f.reliable
                        or _m.category(name) in _REPORTING
                        or (self.kind is Kind.HARD_LOCKUP and f.context == "NMI")):
                    continue
                label = f"{name} [{f.module}]" if f.module else name
                if not functions or functions[-1] != label:
                    functions.append(label)
        return _sig.basis(self.kind.value, functions[:_sig.DEPTH], headline=headline,
                          panic_reason=self.panic_reason, workqueue=self.workqueue)

    def report(self) -> Report:
        choice = self._choice()
        title = self._title(choice)
        culprit = choice.culprit
        culprit_frame = (Frame(culprit.name, culprit.offset, culprit.size, culprit.module, True,
                               culprit.context) if culprit is not None else None)
        headline = title
        if culprit is not None and culprit.module and choice.title_name and title.endswith(
                choice.title_name):
            headline = f"{title} [{culprit.module}]"
        reason = self._corrupted(choice)
        basis = self._signature(choice, headline)
        tainted = self.tainted or ""
        return Report(
            kind=self.kind,
            headline=headline,
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
            title=title,
            culprit=culprit_frame,
            culprit_name=choice.title_name,
            corrupted=reason is not None,
            corrupted_reason=reason,
            family=self.family.id,
            caller=text(self.ctx) if self.ctx else None,
            signature=_sig.digest(basis),
            signature_basis=basis,
        )


@functools.cache
def _template_fields(template: str) -> frozenset[str]:
    return frozenset(re.findall(r"{(\w+)}", template))


# Panic reasons whose title keeps only their phrase (what follows changes every time).
_PANIC_PHRASES = ("Attempted to kill init!", "Fatal exception", "panic_on_warn set",
                  "hung_task: blocked tasks", "Couldn't open N_TTY ldisc")


def _panic_phrase(reason: str) -> str:
    """The stable part of a panic reason, as syzkaller titles it."""
    for phrase in _PANIC_PHRASES:
        at = reason.find(phrase)
        if at >= 0 and at <= 20:
            return reason[:at + len(phrase)]
    return reason


_REPORTING = frozenset({_m.Category.REPORTING, _m.Category.SANITIZER, _m.Category.INTERRUPT,
                        _m.Category.ENTRY, _m.Category.THUNK})


class _Fields(dict[str, str]):
    """Title fields; a field the start line did not fill is empty."""

    def __missing__(self, key: str) -> str:
        return ""


# The "warning" family's alternatives name their groups apart (one name per group).
_ALIASES = {"loc2": "loc", "loc3": "loc", "func2": "func", "func3": "func", "cpu2": "cpu",
            "pid2": "pid", "comm2": "comm"}


def _merge_groups(g: dict[str, bytes]) -> dict[str, bytes]:
    if not any(k in _ALIASES for k in g):
        return g
    return {_ALIASES.get(k, k): v for k, v in g.items()}
