"""Report assembly for :mod:`memconsole.oops`: the line parser.

:class:`LineParser` is fed one log line at a time (``feed``) and keeps the
reports it finished.  Each line goes through named steps, in order; the first
that takes it wins:

1. :meth:`LineParser._panic_line`: ``Kernel panic - not syncing:`` (kernel/panic.c
   panic()) joins the open report it is the consequence of, or is a report;
2. :meth:`LineParser._start_line`: a report family's start line
   (:data:`memconsole.oops._families.FAMILIES`), folded into the open report
   when it is part of it (:data:`_FOLDS`), else starting a report;
3. :meth:`LineParser._die_line`: a die() header (``Oops: 0000 [#1]``) joins the
   report that died, or starts one;
4. :meth:`LineParser._announcer`: ``cut here``, a ``====`` banner or a list
   corruption message announces the report that follows;
5. :meth:`LineParser._report_line`: any other line goes to the open report of
   its printk context.

Reports are kept per printk context (:attr:`memconsole.oops._patterns.Line.context`):
with caller ids (``[T123]``, ``[C1]``, CONFIG_PRINTK_CALLER) two tasks' interleaved
reports are assembled apart, and another task's lines never end a trace; without
them a line without a time stamp in a time-stamped report is someone else's
(user space writing to the console) and is skipped.

The parser is resumable: :mod:`memconsole.oops._scan` feeds it only the lines
around report start lines of a multi-GB log, with their true line numbers and
byte offsets, and gets the same reports as feeding every line (see
:meth:`LineParser.busy` for why that is exact).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from memconsole.oops import _families as _fam
from memconsole.oops import _patterns as _p
from memconsole.oops._draft import (
    MAX_GAP,
    MAX_LINES,
    STANDALONE_KIND,
    Draft,
    frame,
    printable,
    text,
)
from memconsole.oops._families import Family
from memconsole.oops._model import Kind

__all__ = ["MAX_GAP", "MAX_LINES", "PENDING_LINES", "LineParser", "_Builder", "frame",
           "printable", "text"]

#: A "cut here" line, "====" banner or list corruption message belongs to a
#: start line at most this many lines after it.
PENDING_LINES = 4
# At most this many reports are assembled at once (one per printk context).
_MAX_OPEN = 16

_Builder = Draft  # the name memconsole.oops._scan knows

# Families a BUG() report's die header belongs to (x86 BUG() is ud2: "invalid opcode").
_BUG_FAMILIES = frozenset({"kernel-bug", "list-bug", "usercopy"})
# Start lines that never begin a report inside another one (syzkaller's
# reportStartIgnores): a die header of its own, or a message printed in a loop.
_NEVER_INSIDE = frozenset({"invalid-opcode", "double-fault", "netdev-wait"})
# Start lines that are someone else's message when they come in the middle of a
# report's call trace without caller ids to tell them apart.
_NOT_IN_TRACE = frozenset({"oom"})
# The first byte of an announcing line: "----[ cut here ]", "====", "list_del corruption".
_ANNOUNCER_LEADS = frozenset((b"-", b"=", b"l"))
# What a list corruption message announces (lib/list_debug.c CHECK_DATA_CORRUPTION()).
_LIST_ANNOUNCED = {"kernel-bug": _fam.LIST_BUG, "list-bug": _fam.LIST_BUG,
                   "invalid-opcode": _fam.LIST_BUG, "warning": _fam.LIST_WARNING,
                   "w-list": _fam.LIST_WARNING}
_MEMLEAK = _fam.by_id("memory-leak")


def _fold_bug_die(cur: Draft, new: Family, groups: dict[str, bytes]) -> bool:
    """x86 BUG() traps with ud2: ``invalid opcode: 0000 [#1]`` follows ``kernel BUG at``
    (lib/bug.c report_bug(), arch/x86/kernel/traps.c handle_bug())."""
    return cur.family.id in _BUG_FAMILIES and new.id == "invalid-opcode"


def _fold_watchdog_warning(cur: Draft, new: Family, groups: dict[str, bytes]) -> bool:
    """3.x: ``WARNING: at kernel/watchdog.c`` then ``Watchdog detected hard LOCKUP``
    (kernel/watchdog.c watchdog_overflow_callback() used WARN())."""
    if cur.family.id == "warning" and new.id == "hard-lockup":
        cur.refamily(new, groups)
        return True
    return False


def _fold_leak(cur: Draft, new: Family, groups: dict[str, bytes]) -> bool:
    """syzkaller's executor prints ``BUG: memory leak`` before the first kmemleak object."""
    if cur.family.id == "memleak-syz" and new is _MEMLEAK and not cur.announced_leak:
        cur.refamily(new, groups)
        cur.announced_leak = True
        return True
    return False


# Start lines that are part of the open report of their context, checked in its
# header phase: (rule, kernel source in its docstring).
_FOLDS: tuple[Callable[[Draft, Family, dict[str, bytes]], bool], ...] = (
    _fold_bug_die, _fold_watchdog_warning, _fold_leak)


class LineParser:
    """The report state machine over a log, one line at a time.

    Feed lines in order with their 0-based line number and byte offsets;
    lines may be skipped where :meth:`busy` is false and the skipped lines
    contain no :data:`memconsole.oops._patterns.NEEDLES` (they would not
    change anything), provided the :data:`PENDING_LINES` lines before each
    fed needle line are fed too.
    """

    def __init__(self) -> None:
        self.done: list[Draft] = []
        self._starts: list[tuple[int, int]] = []  # (start, seq) of done, for ordering
        self._seq = 0
        self.open: dict[bytes | None, Draft] = {}
        # A "cut here" line or "====" banner per context: (idx, start, time).
        self.pending: dict[bytes | None, tuple[int, int, float | None]] = {}
        # A list corruption message per context: (idx, start, time, what).
        self.pending_list: dict[bytes | None, tuple[int, int, float | None, bytes]] = {}
        # "INFO: task <comm" whose comm held a newline: (idx, start, stamp, comm part, ctx).
        self.hung: tuple[int, int, tuple[bytes, bytes] | None, bytes, bytes | None] | None = None
        # End offset of the last finished report per context: the next one starts after it.
        self.floor: dict[bytes | None, int] = {}
        # With caller ids: the report a new one began inside, per context; it keeps
        # reading its task's lines (for its culprit) until the new one closes.
        self.shadows: dict[bytes, Draft] = {}

    # -- state ---------------------------------------------------------------

    def busy(self, idx: int) -> bool:
        """Whether line *idx* (the next line) may change the state even when it
        holds no needle.  When false, every line up to the next needle line's
        :data:`PENDING_LINES` predecessors can be skipped: an idle parser
        ignores lines without needles, except as announcers (pending lines),
        and a report whose gap has run out is closed by whatever line comes
        next (a blank line after it changes nothing a report keeps)."""
        for d in self.open.values():
            if d.open(idx):
                return True
        return self.hung is not None and idx == self.hung[0] + 1

    def _slot(self, ctx: bytes | None) -> bytes | None:
        """The key of the open report a line of context *ctx* belongs to."""
        if ctx == b"" and ctx not in self.open and None in self.open:
            return None  # a report without stamps, a line with one
        return ctx

    def _route(self, line: _p.Line) -> Draft | None:
        ctx = line.context
        d = self.open.get(ctx)
        if d is not None:
            return d
        if ctx == b"" and None in self.open:
            return self.open[None]  # a report without stamps, a line with one
        if ctx is not None and ctx[:1] == b"C":
            # lib/nmi_backtrace.c: after "Sending NMI from CPU" every CPU prints its stack.
            for other in self.open.values():
                if other.nmi_backtraces:
                    return other
        return None

    def _close(self, key: bytes | None, *, shadow: bool = False) -> None:
        d = self.open.pop(key, None)
        if key is not None and key != b"":
            if shadow and d is not None:
                self.shadows[key] = d
            else:
                self.shadows.pop(key, None)
        if d is None:
            return
        self.floor[key] = max(self.floor.get(key, 0), d.end)
        at = bisect.bisect_right(self._starts, (d.start, self._seq))
        self._starts.insert(at, (d.start, self._seq))
        self.done.insert(at, d)
        self._seq += 1

    def _expire(self, idx: int) -> None:
        for d in self.open.values():
            if not d.open(idx):
                break
        else:
            return  # the usual case: every open report goes on
        for key in [k for k, d in self.open.items() if not d.open(idx)]:
            self._close(key)

    def _begin(self, key: bytes | None, d: Draft) -> None:
        self._close(key, shadow=True)
        if len(self.open) >= _MAX_OPEN:
            self._close(min(self.open, key=lambda k: self.open[k].last_idx))
        self.open[key] = d

    def _start(self, family: Family, groups: dict[str, bytes], idx: int, s: int, e: int,
               line: _p.Line, key: bytes | None) -> Draft:
        """Start the report *family* begins.  An announcing line ("cut here", a list
        corruption message) at most PENDING_LINES before starts it instead,
        unless the report before took lines after it (reports never overlap)."""
        floor = self.floor.get(key, 0)
        begin, begin_idx, time = s, idx, line.time
        cut = self.pending.pop(key, None)
        if cut is not None and idx - cut[0] <= PENDING_LINES and cut[1] >= floor:
            begin, begin_idx, time = cut[1], cut[0], cut[2]
        pl = self.pending_list.pop(key, None)
        announced = _LIST_ANNOUNCED.get(family.id)
        if pl is not None and announced is not None and idx - pl[0] <= PENDING_LINES and (
                pl[1] >= floor):
            if pl[1] < begin:
                begin, begin_idx, time = pl[1], pl[0], pl[2]
            d = Draft(announced, {**groups, "what": pl[3]}, idx, begin, e, time, begin_idx,
                      line.body.lstrip(b" \t"), line.context)
        else:
            d = Draft(family, groups, idx, begin, e, time, begin_idx, line.body.lstrip(b" \t"),
                      line.context)
        self._begin(key, d)
        return d

    # -- the steps -------------------------------------------------------------

    def _panic_line(self, idx: int, s: int, e: int, line: _p.Line) -> bool:
        """kernel/panic.c panic(): ``Kernel panic - not syncing: REASON``.  It joins the
        open report it is the consequence of (:func:`memconsole.oops._patterns.panic_category`);
        otherwise it is a report of its own (a panic family, or the bare panic)."""
        body = line.body
        if b"Kernel panic" not in body:
            return False
        m = _p.PANIC.match(body)
        if not m:
            return False
        reason = printable(text(m.group("reason")).strip())
        cat = _p.panic_category(reason)
        for d in sorted(self.open.values(), key=lambda d: d.first_idx, reverse=True):
            if d.panic_reason is None and d.explains(cat):
                d.panic_reason = reason
                d.touch(idx, e)
                d.keep(body)
                return True
        stripped = body.lstrip(b" \t")
        family, groups = _fam.STANDALONE_PANIC, {}
        for f in _fam.PANIC_FAMILIES:
            pm = f.pattern.match(stripped) if f.needle in stripped else None
            if pm:
                family = f
                groups = {k: v for k, v in pm.groupdict().items() if v is not None}
                break
        key = self._slot(line.context)
        d = Draft(family, groups, idx, s, e, line.time, idx, stripped, line.context)
        if family is _fam.STANDALONE_PANIC:
            d.kind = STANDALONE_KIND.get(cat, Kind.PANIC)
        d.standalone = True
        d.panic_reason = reason
        self._begin(key, d)
        return True

    def _start_line(self, idx: int, s: int, e: int, line: _p.Line) -> bool:
        """A family's start line (:data:`memconsole.oops._families.FAMILIES`), also the
        hung task line whose comm held a newline (kernel/hung_task.c prints it with
        ``%s``), folded into the open report where :data:`_FOLDS` says so."""
        body = line.body
        text_ = body.lstrip(b" \t")
        hit = _fam.match(text_) if _p.START_HINT.search(text_, 0, 400) else None
        if hit is None and b"[#" in text_:
            glued = _p.GLUED_DIE.search(text_, 1)
            if glued:  # 4.x kasan_init_64.c printed its hint without a newline
                text_ = text_[glued.start():]
                hit = _fam.match(text_)
        hung = self.hung
        head_idx = idx
        if hit is None and hung is not None and idx == hung[0] + 1:
            t = _p.HUNG_TAIL.match(text_)
            if t:
                hit = (_fam.by_id("hung"), {"comm": hung[3] + b"\n" + t.group("comm"),
                                            "pid": t.group("pid"), "secs": t.group("secs")})
                s, head_idx = hung[1], hung[0]
                line = _p.Line(b"INFO: task " + hit[1]["comm"] + b":" + t.group("pid")
                               + b" blocked for more than " + t.group("secs") + b" seconds",
                               hung[2], line.caller, line.prefixed)
        self.hung = None
        if hit is None:
            if b"INFO: task " in body:
                h = _p.HUNG_HEAD.match(text_)
                if h:
                    self.hung = (idx, s, line.stamp, h.group("comm"), line.context)
            return False
        family, groups = hit
        key = self._slot(line.context)
        cur = self.open.get(key)
        if cur is not None and (family.id in _NEVER_INSIDE or (
                family.id in _NOT_IN_TRACE and cur.trace == 1)):
            cur.feed(body, idx, e)
            self._take_die(cur, body)
            return True
        if cur is not None and cur.header_phase(idx):
            for fold in _FOLDS:
                if fold(cur, family, groups):
                    cur.touch(idx, e)
                    cur.keep(body)
                    self._take_die(cur, body)
                    return True
        d = self._start(family, groups, idx, s, e, line, key)
        if d.start == s:
            d.start_idx = head_idx
        die = _p.die_header(body)
        if die is not None:
            d.oops_count, d.die_error = die.number, die.error
        return True

    @staticmethod
    def _take_die(d: Draft, body: bytes) -> None:
        die = _p.die_header(body)
        if die is not None:
            if d.oops_count is None:
                d.oops_count = die.number
            if d.die_error is None:
                d.die_error = die.error

    def _die_line(self, idx: int, s: int, e: int, line: _p.Line) -> bool:
        """arch/*/kernel/traps.c, dumpstack.c die(): ``Oops: 0000 [#1]``, ``Internal error:
        Oops: 96000005 [#1]``, riscv ``Oops [#1]``, s390 ``Oops: 0004 ilc:2 [#1]``: part of the
        report that died, else a report whose start line is missing (a cut log)."""
        die = _p.die_header(line.body)
        if die is None:
            return False
        key = self._slot(line.context)
        cur = self.open.get(key)
        if cur is not None and cur.dies() and cur.header_phase(idx):
            self._take_die(cur, line.body)
            cur.touch(idx, e)
            cur.keep(line.body)
            return True
        what = die.what.decode("ascii", "replace")
        groups = {"what": die.what}
        if die.internal:
            groups["internal"] = b"1"
        d = self._start(_fam.DIE, groups, idx, s, e, line, key)
        if what.endswith("BUG"):
            d.kind = _fam.by_id("kernel-bug").kind
            d.groups.setdefault("loc", b"?")
        elif "undefined instruction" in what:
            d.kind = _fam.by_id("invalid-opcode").kind
        d.oops_count, d.die_error = die.number, die.error
        return True

    def _announcer(self, idx: int, s: int, e: int, line: _p.Line) -> bool:
        """``------------[ cut here ]------------`` (include/asm-generic/bug.h CUT_HERE),
        a ``====`` banner (KASAN, UBSAN, KCSAN, KFENCE, KMSAN) or a list corruption
        message (lib/list_debug.c) announces the report after it."""
        body = line.body
        key = self._slot(line.context)
        lead = body.lstrip()[:1]
        if lead in (b"-", b"=") and (_p.CUT_HERE.match(body) or _p.BANNER.match(body)):
            self.pending[key] = (idx, s, line.time)
            return True
        what = _p.list_announcement(body.lstrip(b" \t")) if lead == b"l" else None
        if what is None:
            return False
        cur = self.open.get(key)
        if cur is not None and cur.header_phase(idx) and cur.family in (_fam.LIST_WARNING,
                                                                          _fam.LIST_BUG):
            cur.groups["what"] = what  # 2.6/3.x: "WARNING: at lib/list_debug.c" first
            cur.touch(idx, e)
            cur.keep(body)
            return True
        self.pending_list[key] = (idx, s, line.time, what)
        return True

    def _report_line(self, idx: int, s: int, e: int, line: _p.Line) -> bool:
        """Any other line: part of the open report of its context, if any; for the
        other open reports, a line of someone else."""
        d = self._route(line)
        if len(self.open) > 1 or d is None:
            for other in self.open.values():
                if other is not d:
                    other.foreign += 1
        if d is not None:
            d.feed(line.body, idx, e)
            if d.ctx is not None and d.ctx in self.shadows:
                self.shadows[d.ctx].keep_extra(line.body)
        return True

    # -- feeding -----------------------------------------------------------------

    def blank(self) -> None:
        """A blank line: it only ends a call trace or a module list."""
        for d in self.open.values():
            d.foreign += 1
            d.modules_open = False
            if d.trace == 1 and d.frames:
                d.trace = 2

    def feed(self, idx: int, s: int, e: int, raw: bytes) -> None:
        """Take line *idx*, bytes ``[s, e)`` of the input (*raw*, newline excluded)."""
        if not raw or raw.isspace():
            self.blank()
            return
        line = _p.strip_prefix(raw)
        if self.open:
            self._expire(idx)
        body = line.body
        # Panic lines, start lines and die headers all hold a needle (steps 1-3); a hung
        # task line whose comm held a newline continues on the next line.
        if (_p.START_HINT.search(body, 0, 400) or self.hung is not None) and (
                self._panic_line(idx, s, e, line) or self._start_line(idx, s, e, line)
                or self._die_line(idx, s, e, line)):
            return
        if body.lstrip(b" \t")[:1] in _ANNOUNCER_LEADS and self._announcer(idx, s, e, line):
            return
        if self.open:
            self._report_line(idx, s, e, line)

    def finish(self) -> list[Draft]:
        """Close the open reports; return every report, in order."""
        for key in list(self.open):
            self._close(key)
        self.shadows.clear()
        return self.done

    def take(self) -> list[Draft]:
        """Remove and return the reports finished so far that start before every
        open one (streaming use: reports come out in order)."""
        limit = min((d.start for d in (*self.open.values(), *self.shadows.values())),
                    default=None)
        n = len(self.done) if limit is None else bisect.bisect_left(self._starts, (limit, -1))
        out, self.done = self.done[:n], self.done[n:]
        self._starts = self._starts[n:]
        return out

