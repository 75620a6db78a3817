"""The culprit of a report and its title (private to :mod:`memconsole.oops`).

A report keeps the bodies of its own lines (its printk context's, prefixes
removed).  When it closes, its family's sources (:class:`~memconsole.oops._families.Src`)
read candidate frames from them in order, the machinery of
:mod:`memconsole.oops._machinery` and the family's own helpers are skipped, and
the family's pick rule chooses one: the culprit.  The title is the family's
phrase with the culprit, after syzkaller's replacements of everything that
changes between runs (addresses, numbers, line numbers, executor names).

Frame grammar (every pattern anchored or bounded): x86 ``[<pc>] ? func+0x1/0x2 [mod]``
and ``func+0x1/0x2``, arm ``[<pc>] (func) from [<pc>] (caller+0x1/0x2)``, powerpc
``[sp] [pc] func+0x1/0x2 (unreliable)``, s390 ``([<pc>] func+0x1/0x2)``.  Only frames
with an offset count (``func file.c:12 [inline]`` is where a function was inlined,
not a frame); ``?`` frames, powerpc ``(unreliable)`` frames and s390's
parenthesised first frame are the unwinder's guesses and never count.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from memconsole.oops import _machinery as _m
from memconsole.oops._families import Family, Pick, Src

__all__ = ["Candidate", "Choice", "choose", "clean_title", "frames_of", "has_text",
           "maybe_stack", "replace_dynamic", "stack_flags", "stack_missing"]


class Candidate(NamedTuple):
    """A frame a source yields."""

    name: str
    """The function as printed (``__list_del_entry_valid.cold``)."""
    module: str | None
    context: str
    """``TASK``, ``IRQ``, ``NMI``... from x86 context markers."""
    offset: int | None = None
    size: int | None = None
    raw: bool = False
    """Named by the kernel as the one that did it: not skipped as machinery (only by
    its family's own skips)."""


class Choice(NamedTuple):
    """The culprit chosen for a report."""

    culprit: Candidate | None
    title_name: str | None
    """The culprit as the title names it (normalised, syscall prefix stripped)."""
    callers: tuple[Candidate, ...]
    """The candidates after the culprit, in order (for the signature)."""
    corrupted_reason: str | None


_PC = rb"\[<?(?:0x)?[0-9a-f]{1,16}>?\]"
_NAME = rb"[A-Za-z_][\w.]{0,255}"


@functools.cache
def _re() -> dict[str, re.Pattern[bytes]]:
    return {
        "frame": re.compile(
            rb"[ \t]{0,16}(?P<paren>\()?(?:" + _PC + rb"[ \t]{1,8}){0,2}(?P<q>\?[ \t]{1,4})?"
            rb"(?P<f>" + _NAME + rb")\+0x(?P<off>[0-9a-f]{1,16})/0x(?P<size>[0-9a-f]{1,16})"
            rb"(?:[ \t]{1,4}\[(?P<mod>[\w-]{1,64})[^\]]{0,200}\])?(?P<rest>.{0,40})"),
        "arm": re.compile(
            rb"[ \t]{0,16}" + _PC + rb"[ \t]{1,8}\((?P<f>" + _NAME + rb")(?:\+0x[0-9a-f]{1,16}"
            rb"/0x[0-9a-f]{1,16})?(?: \[(?P<fmod>[\w-]{1,64})\])?\)[ \t]{1,8}from[ \t]{1,8}"
            + _PC + rb"[ \t]{1,8}\((?P<g>[A-Za-z_]\w{0,255})(?:\.[\w.]{1,64})?\+0x[0-9a-f]{1,16}"
            rb"/0x[0-9a-f]{1,16}(?:[^)\[]{0,300})?(?: ?\[(?P<gmod>[\w-]{1,64})\])?"),
        # scripts/decode_stacktrace.sh replaces "func+0x1/0x2" by "func (file.c:12)".
        "decoded": re.compile(rb"[ \t]{0,16}(?P<q>\?[ \t]{1,4})?(?P<f>" + _NAME + rb") \("
                              rb"[^()\s]{1,300}:\d{1,7}\)(?P<rest>.{0,20})"),
        # arch/arm/kernel/traps.c dump_backtrace_entry() since 5.16: "f from g+0x1/0x2".
        "arm_from": re.compile(rb"[ \t]{0,16}(?P<f>" + _NAME + rb")(?:\+0x[0-9a-f]{1,16}/0x"
                               rb"[0-9a-f]{1,16})? from (?P<g>[A-Za-z_]\w{0,255})(?:\.[\w.]{1,64})?"
                               rb"\+0x[0-9a-f]{1,16}/0x[0-9a-f]{1,16}"),
        "ctx": re.compile(rb"[ \t]{0,16}(?:<(?P<close>/?)"
                          rb"(?P<name>TASK|IRQ|NMI|SOFTIRQ|EOI|#[A-Z]{2})>"
                          rb"|(?P<eoe><<EOE>>|<EOE>))"),
        # syzkaller's stack starts (pkg/report/linux.go stackStartRes) and KMSAN's origin.
        "stack": re.compile(
            rb"Call [Tt]race|Allocated(?: by task \d{1,10})?:|Freed(?: by task \d{1,10})?:"
            rb"|(?:^|[^k])[ \t]backtrace(?: \(crc [0-9a-f]{0,16}\))?:|^backtrace(?: \(crc "
            rb"[0-9a-f]{0,16}\))?:|Backtrace:|Uninit was stored to memory at"
            rb"|Uninit was created at|Local variable .{0,300} created at"
            rb"|status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}"),
        # The faulting IP of a register dump: a function, or a bare address or "(null)"
        # (then there is no function, but the dump is this one: syzkaller's linuxRipFrame).
        "rip": re.compile(
            rb"[ \t]{0,16}(?:R?IP: (?:[0-9a-f]{4}:)?|EIP: (?:[0-9a-f]{4}:)?|EIP is at |pc : "
            rb"|PC is at |NIP \[[0-9a-f]{1,16}\] |NIP:? |epc ?: |Krnl PSW : [0-9a-f]{1,16} "
            rb"[0-9a-f]{1,16} \(|--- interrupt: [0-9a-f]{1,8} at )"
            rb"(?:(?:" + _PC + rb"[ \t]{1,8}){0,2}(?P<f>" + _NAME + rb")\+0x(?P<off>[0-9a-f]{1,16})"
            rb"(?:/0x(?P<size>[0-9a-f]{1,16}))?(?:[ \t]{1,4}\[(?P<mod>[\w-]{1,64})[^\]]{0,200}\])?"
            rb"|(?P<df>" + _NAME + rb") \([^()\s]{1,300}:\d{1,7}\)"
            rb"|(?:0x)?[0-9a-f]{1,16}(?:\s|$)|" + _PC + rb" {1,8}\[< *\(null\)>\] {1,8}\(null\)"
            rb"|\(null\))"),
        "user_rip": re.compile(rb"[ \t]{0,16}RIP: (?:0033|0023|002b|0073|e033|e02b):"),
        "at": re.compile(rb"at: (?:" + _PC + rb" {1,8})?(?P<f>" + _NAME + rb")[.+]"),
        "pc": re.compile(_PC + rb" {1,8}(?P<f>" + _NAME + rb")[.+]"),
        "last_fn": re.compile(rb"last function: (?P<f>[A-Za-z0-9_]{1,256})"),
        "caller_is": re.compile(rb"[ \t]{0,16}caller is (?P<f>" + _NAME + rb")[+ (]"),
        "which_became": re.compile(rb"which became .{0,300} at:"),
        "access": re.compile(rb"\b(?P<rw>Read|Write) (?:of size|at addr)"),
        "should_fail": re.compile(
            rb"(?:" + _PC + rb")? ?should_fail(?:slab)?(?:\.[a-z0-9.]+)?\+0x"),
    }


# The stack headers one by one (syzkaller checks the first occurrence of each).
_STACK_STARTS = (rb"Call [Tt]race", rb"Allocated:", rb"Allocated by task \d{1,10}:", rb"Freed:",
                 rb"Freed by task \d{1,10}:",
                 rb"(?:^|[^k])[ \t]backtrace(?: \(crc [0-9a-f]{0,16}\))?:|^backtrace:",
                 rb"Backtrace:", rb"Uninit was stored to memory at")
_RISCV_STACK = rb"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}"


@functools.cache
def _stack_res() -> tuple[tuple[re.Pattern[bytes], ...], re.Pattern[bytes], re.Pattern[bytes]]:
    frame = re.compile(rb" {0,16}(?:" + _PC + rb" ){0,2}[A-Za-z0-9_]{1,256}[.+]|"
                       rb" {0,16}" + _PC + rb" \([A-Za-z0-9_.]{1,256}\) from " + _PC + rb" \(")
    return tuple(re.compile(p) for p in _STACK_STARTS), re.compile(_RISCV_STACK), frame


# Words of which every stack header holds one (the cheap test before the regular
# expressions; most lines hold none).
_STACK_WORDS = (b"race", b"llocated", b"reed", b"acktrace", b"Uninit", b"badaddr",
                b"Local var")


def maybe_stack(body: bytes) -> bool:
    """False when *body* cannot be a stack header (most lines): it holds none of
    the words of the stack headers."""
    return any(w in body for w in _STACK_WORDS)


def stack_flags(bodies: Sequence[bytes]) -> list[bool]:
    """Which of *bodies* are stack headers (``Call Trace:``, ``Allocated by task``...),
    computed once per report and shared by :func:`choose` and :func:`stack_missing`:
    the words are looked for in the joined lines, the expression run on their lines."""
    flags = [False] * len(bodies)
    joined = b"\n".join(bodies)
    ends: list[int] | None = None  # where each line ends in *joined*, if one holds a newline
    plain: bool | None = None
    seen: set[int] = set()
    rx = _re()["stack"]
    for word in _STACK_WORDS:
        at = joined.find(word)
        while at >= 0:
            if plain is None:
                plain = joined.count(b"\n") == len(bodies) - 1
                if not plain:
                    ends = list(itertools.accumulate(len(b) + 1 for b in bodies))
            if ends is None:
                j = joined.count(b"\n", 0, at)
                nxt = joined.find(b"\n", at) + 1 or len(joined)
            else:
                j = bisect.bisect_right(ends, at)
                nxt = ends[j]
            if j not in seen:
                seen.add(j)
                flags[j] = rx.search(bodies[j], 0, 400) is not None
            at = joined.find(word, nxt)
    return flags


def has_text(bodies: Sequence[bytes], needle: bytes) -> bool:
    """Whether one of *bodies* holds *needle* (one search over the joined lines)."""
    return needle in b"\n".join(bodies)


def stack_missing(bodies: Sequence[bytes], stack: list[bool] | None = None) -> str | None:
    """Why a report that should hold a stack does not (syzkaller's isCorrupted):
    a stack header with fewer than 4 lines after it, or no frame in the 15 lines
    after it; no stack at all.  ``None`` when the stack is there.  *stack* is the
    :func:`stack_flags` of *bodies*."""
    starts, riscv, frame = _stack_res()
    found = False
    if stack is None or len(stack) != len(bodies):
        stack = stack_flags(bodies)
    candidates = [(i, bodies[i]) for i, f in enumerate(stack) if f]
    for pattern in (*starts, riscv):
        at = next((i for i, b in candidates if pattern.search(b)), None)
        if at is None:
            continue
        if len(bodies) - at < 4:
            return "call trace is missed"
        ok = False
        for b in bodies[at + 1:at + 16]:
            if maybe_stack(b) and (any(p.search(b) for p in starts) or riscv.search(b)):
                break
            if b"(stack is not available)" in b or frame.match(b):
                ok = True
                break
        if not ok and pattern is not riscv:
            return "no frames in a stack trace"
        found = found or ok
    return None if found else "no stack trace in report"


def frames_of(body: bytes, context: str = "TASK") -> list[Candidate]:
    """The reliable frames one line holds (two for arm's ``(f) from (g)``)."""
    rx = _re()
    if b"+0x" not in body:
        if b":" in body and b"(" in body:
            d = rx["decoded"].match(body)
            if d and d.group("q") is None and b"[inline]" not in d.group("rest"):
                return [Candidate(d.group("f").decode(), None, context)]
        return []
    m = rx["arm"].match(body)
    if m:
        out = [Candidate(m.group("f").decode(), _mod(m.group("fmod")), context),
               Candidate(m.group("g").decode(), _mod(m.group("gmod")), context)]
        return out
    if b" from " in body:
        m = rx["arm_from"].match(body)
        if m:
            return [Candidate(m.group("f").decode(), None, context),
                    Candidate(m.group("g").decode(), None, context)]
    m = rx["frame"].match(body)
    if m is None or m.group("q") is not None or m.group("paren") is not None:
        return []
    if b"(unreliable)" in m.group("rest"):
        return []
    return [Candidate(m.group("f").decode(), _mod(m.group("mod")), context,
                      int(m.group("off"), 16), int(m.group("size"), 16))]


def _mod(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


class _Lines:
    """The report's lines as the sources walk them (a cursor over the bodies)."""

    def __init__(self, bodies: Sequence[bytes], header: Candidate | None,
                 stack: list[bool] | None = None) -> None:
        self.bodies = bodies
        self.header = header
        self.pos = 1  # after the start line
        self.stack = stack if stack is not None and len(stack) == len(bodies) else (
            stack_flags(bodies))

    def is_stack(self, i: int) -> bool:
        return self.stack[i]

    def frames(self, lo: int) -> tuple[list[Candidate], int]:
        """Frames from line *lo* up to the next stack header; and where it stopped."""
        out: list[Candidate] = []
        ctx = "TASK"
        rx = _re()["ctx"]
        j = lo
        n = len(self.bodies)
        fail = _re()["should_fail"]
        stack = self.stack
        while j < n and not stack[j]:
            body = self.bodies[j]
            if b"should_fail" in body and fail.match(body):
                break  # a fault injection stack printed into this one (lib/fault-inject.c)
            for _ in range(4 if b"<" in body[:24] else 0):  # "  <NMI>  [<...>] f+0x1/0x2"
                m = rx.match(body)
                if not m:
                    break
                name = m.group("name")
                if m.group("eoe") or m.group("close") or name in (None, b"EOI"):
                    ctx = "TASK"
                else:
                    ctx = "EXCEPTION" if name.startswith(b"#") else name.decode()
                body = body[m.end():]
            out.extend(frames_of(body, ctx))
            j += 1
        return out, j

    def next_stack(self, lo: int) -> int:
        j = lo
        stack = self.stack
        while j < len(stack) and not stack[j]:
            j += 1
        return j

    def find(self, pattern: re.Pattern[bytes], lo: int) -> tuple[int, re.Match[bytes]] | None:
        for j in range(lo, len(self.bodies)):
            m = pattern.search(self.bodies[j])
            if m:
                return j, m
        return None

    def find_text(self, text: bytes, lo: int) -> int:
        for j in range(lo, len(self.bodies)):
            if text in self.bodies[j]:
                return j
        return len(self.bodies)


def _rip_at(lines: _Lines, lo: int) -> tuple[int, Candidate | None] | None:
    """The first kernel-mode register dump's IP at or after line *lo*: its line and its
    function (``None`` when it is a bare address)."""
    rx = _re()
    for j in range(lo, len(lines.bodies)):
        body = lines.bodies[j]
        if b"P" not in body[:24] and b"pc" not in body[:24] and b"--- int" not in body[:24] and (
                b"at " not in body[:24]):
            continue
        if rx["user_rip"].match(body):
            continue
        m = rx["rip"].match(body)
        if m:
            if m.group("df") is not None:
                return j, Candidate(m.group("df").decode(), None, "")
            if m.group("f") is None:
                return j, None
            size = m.group("size")
            return j, Candidate(m.group("f").decode(), _mod(m.group("mod")), "",
                                int(m.group("off"), 16), int(size, 16) if size else None)
    return None


def _source(src: Src, lines: _Lines) -> list[Candidate]:
    """Candidates from one source, advancing the cursor as syzkaller's stack formats do."""
    rx = _re()
    if src is Src.HEADER:
        return [lines.header] if lines.header is not None else []
    if src is Src.RIP:
        rip = _rip_at(lines, lines.pos)
        if rip is None:
            return []
        lines.pos = rip[0] + 1
        return [rip[1]] if rip[1] is not None else []
    if src in (Src.TRACE,):
        start = lines.next_stack(lines.pos)
        if start >= len(lines.bodies):
            return []
        out, lines.pos = lines.frames(start + 1)
        return out
    if src in (Src.FRAMES, Src.FRAMES_AFTER_RIP, Src.CHAIN):
        out, lines.pos = lines.frames(lines.pos)
        return out
    if src is Src.IRQ_RIP:
        return _irq_rip(lines)
    if src in (Src.AT, Src.AT_ACQUIRE, Src.AT_CHANGED, Src.AT_LEAVING, Src.AT_TAKES,
               Src.PC_LINE):
        anchor = {Src.AT_ACQUIRE: b"is trying to acquire", Src.AT_TAKES: b" takes",
                  Src.AT_CHANGED: b"just changed the state",
                  Src.AT_LEAVING: b"leaving the kernel with locks still held"}.get(src)
        lo = lines.find_text(anchor, lines.pos) if anchor else lines.pos
        hit = lines.find(rx["pc"] if src is Src.PC_LINE else rx["at"], lo)
        if hit is None:
            return []
        lines.pos = hit[0] + 1
        return [Candidate(hit[1].group("f").decode(), None, "")]
    if src is Src.WHICH_BECAME:
        hit = lines.find(rx["which_became"], lines.pos)
        return lines.frames(hit[0] + 1)[0] if hit else []
    if src is Src.PAGE_LAST_ALLOCATED:
        j = lines.find_text(b"page last allocated", lines.pos)
        return lines.frames(j + 1)[0] if j < len(lines.bodies) else []
    if src is Src.CALLER_IS:
        hit = lines.find(rx["caller_is"], lines.pos)
        return [Candidate(hit[1].group("f").decode(), None, "", raw=True)] if hit else []
    if src is Src.LAST_FUNCTION:
        hit = lines.find(rx["last_fn"], 0)
        return [Candidate(hit[1].group("f").decode(), None, "")] if hit else []
    raise AssertionError(src)


def _irq_rip(lines: _Lines) -> list[Candidate]:
    """RCU stall: from the first timer interrupt frame (x86 ``apic_timer_interrupt``,
    arm64 ``el1h_64_irq``, ``el1_irq`` before 5.12, arm ``Exception stack``), the RIP it
    interrupted and the frames after it (tree_stall.h prints the stalled CPU's stack from
    its timer tick)."""
    bodies = lines.bodies
    for j in range(lines.pos, len(bodies)):
        b = bodies[j]
        if (b"apic_timer_interrupt" in b or b"el1h_64_irq" in b or b"el1_irq+" in b
                or b"Exception stack" in b):
            for k in range(j, len(bodies)):
                if k > j and lines.is_stack(k):
                    break
                hit = _rip_at(lines, k)
                if hit is not None and hit[0] == k:
                    first = [hit[1]] if hit[1] is not None else []
                    return [*first, *lines.frames(k + 1)[0]]
            return lines.frames(j + 1)[0]
    return []


def _skipped(c: Candidate, family: Family) -> bool:
    if family.raw:
        return False
    name = _m.normalize_function(c.name)
    if not c.raw and _m.is_machinery(name):
        return True
    skip = family.skip_re
    return skip is not None and skip.search(name) is not None


def _pick(family: Family, kept: list[Candidate]) -> int | None:
    """Index in *kept* of the culprit."""
    if not kept:
        return None
    names = [_m.strip_syscall(_m.normalize_function(c.name)) for c in kept]
    if family.pick is Pick.FIRST:
        return 0
    if family.pick is Pick.STALL:
        for i, n in enumerate(names):
            if _m.is_stall_anchor(n):
                return i if "smp_call_function" in n else max(i - 1, 0)
        return None
    for i, n in enumerate(names):  # Pick.HUNG
        if any(anchor in n for anchor, _ in _m.HUNG_ANCHORS):
            return i
    for i, n in enumerate(names):
        if not _m.is_hung_skip(n):
            return i
    return None


def _title_name(family: Family, c: Candidate) -> str:
    name = _m.strip_syscall(_m.normalize_function(c.name))
    if family.pick is Pick.STALL and "smp_call_function" in name:
        return "smp_call_function"
    if family.pick is Pick.HUNG:
        for anchor, replacement in _m.HUNG_ANCHORS:
            if anchor in name:
                return replacement or name
    return name


def _candidates(family: Family, lines: _Lines, sources: tuple[Src, ...]) -> list[Candidate]:
    out: list[Candidate] = []
    for src in sources:
        out.extend(_source(src, lines))
        if src is Src.IRQ_RIP and out:
            break
    if family.id == "hard-lockup":  # the interrupted context, not the NMI watchdog's frames
        out = [c for c in out if c.context != "NMI"]
    return out


def _callers(family: Family, kept: list[Candidate], i: int, lines: _Lines) -> tuple[Candidate, ...]:
    """The culprit's callers: the candidates after it; for a culprit read from a
    register dump, the stack printed after it."""
    after = kept[i + 1:]
    if not after:
        after = [c for c in _source(Src.TRACE, lines) if not _skipped(c, family)]
    ctx = kept[i].context
    if ctx:
        # An interrupt's frames end where the interrupted context's begin: those are not
        # the culprit's callers.
        same = [c.context == ctx for c in after]
        after = after[:same.index(False)] if False in same else after
    if family.pick is Pick.STALL:
        # Past the dispatch frame the stack is the kernel's plumbing, not the bug.
        for j, c in enumerate(after):
            if _m.is_stall_anchor(_m.strip_syscall(_m.normalize_function(c.name))):
                return tuple(after[:j + 1])
    return tuple(after)


def choose(family: Family, bodies: Sequence[bytes], header: Candidate | None,
           stack: list[bool] | None = None) -> Choice:
    """The culprit of a report of *family* whose lines are *bodies* (the start line
    first); *header* is the function the start line names, if any; *stack* a
    :func:`stack_flags` of *bodies*."""
    if not family.sources:
        return Choice(None, None, (), None)
    if stack is None or len(stack) != len(bodies):
        stack = stack_flags(bodies)
    for sources in (family.sources, family.fallback):
        if not sources:
            continue
        lines = _Lines(bodies, header, stack)
        kept = [c for c in _candidates(family, lines, sources) if not _skipped(c, family)]
        i = _pick(family, kept)
        if i is not None:
            culprit = kept[i]
            reason = None
            if has_text(bodies, b"should_fail") and any(
                    b"should_fail" in b and _re()["should_fail"].match(b) for b in bodies):
                reason = "fault injection frames in the report"
            return Choice(culprit, _title_name(family, culprit),
                          _callers(family, kept, i, lines), reason)
    return Choice(None, None, (), "no frames")


# syzkaller's dynamicTitleReplacement (pkg/report/report.go): what changes between runs.
_DYNAMIC: tuple[tuple[str, str], ...] = (
    (r"syz-executor\.?[0-9]+(?:[/:][0-9]+)?", "syz-executor"),
    (r"syzkaller[0-9]+(?:[/:][0-9]+)?", "syzkaller"),
    (r"([^a-zA-Z0-9]|^)(?:0x)?[0-9a-f]{6,}", r"\1ADDR"),
    (r"([^a-zA-Z0-9]|^)(?:[0-9]{1,3}\.){3}[0-9]{1,3}", r"\1IP"),
    (r"(\.\w+)(?::[0-9]+)+", r"\1:LINE"),
    (r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", r"\1"),
    (r"CPU#[0-9]+", "CPU"),
    (r"(\W|^)(\d+)(?=\W|$)", r"\1NUM"),
    (r"\d{7,}", "NUM"),
)


@functools.cache
def _dynamic() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(p), r) for p, r in _DYNAMIC)


def replace_dynamic(text: str) -> str:
    """*text* with addresses, numbers, line numbers and executor names replaced."""
    for pattern, repl in _dynamic():
        text = pattern.sub(repl, text)
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_title(title: str) -> str:
    """syzkaller's sanitizeTitle: no control characters, single spaces, 120 characters."""
    return " ".join(_CONTROL.sub(" ", title).split())[:120]


def iter_accesses(bodies: Sequence[bytes]) -> Iterator[str]:
    """``Read``/``Write`` from a KASAN report's access lines, in order."""
    rx = _re()["access"]
    for b in bodies[1:40]:
        if b"Read" in b or b"Write" in b:
            m = rx.search(b)
            if m:
                yield m.group("rw").decode()
