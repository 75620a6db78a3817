"""Line grammar of Linux kernel crash reports (private to :mod:`memconsole.oops`).

Everything here works on one line of kernel log text, as ``bytes``, and never
on more: the parser in :mod:`memconsole.oops` walks the log line by line and
asks these helpers what a line is.  Each pattern names the kernel function
that prints the text it matches; kernel differences are handled by accepting
every known spelling, newest first.

Every regular expression is anchored, uses bounded repetition only and has no
nested quantifiers, so matching one line costs time linear in its length; the
parser additionally cuts lines to :data:`MAX_LINE` bytes before matching.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Private to memconsole.oops; listed for readers, not for star-imports.
__all__ = [
    "ARM_CPU_LINE", "ARM_FROM", "ARM_FROM_SYM", "BANNER", "CONTEXT_MARK", "CPU_LINE", "CUT_HERE",
    "EFLAGS_CPU", "EIP_AT", "END_MARKER", "GLUED_DIE", "HEXWORD", "HUNG_HEAD", "HUNG_TAIL",
    "IP_LINE", "MAX_LINE", "MODULES", "MODULE_TOKEN", "NEEDLES", "NEEDLE_RE", "NIP_LINE", "PANIC",
    "PC_IS_AT", "PC_LINE", "PID_LINE", "PLAIN_FRAME", "PROCESS_LINE", "PSW_LINE", "RIP_LINE",
    "START_HINT", "TAINT_LINE", "TAINT_VERBOSE", "TRACE_HEADER", "USER_CS", "Die", "Line",
    "RawFrame", "die_header", "in_trace_filler", "is_frame", "list_announcement", "panic_category",
    "parse_frame", "parse_taint", "related", "strip_prefix",
]

# printk records are at most 1024 bytes of text (PRINTKRB_RECORD_MAX /
# LOG_LINE_MAX in kernel/printk/printk.c); prefixes added by syslog or the
# journal come on top.  Longer "lines" are not kernel output and are only
# looked at up to this length.
MAX_LINE = 4096

# --------------------------------------------------------------------------
# Line prefixes
# --------------------------------------------------------------------------

# syslog / kern.log / journalctl short(-precise, -iso): "Jan 12 19:08:41 host kernel: ",
# "Apr 15 13:58:08.549417 host kernel: ", "2022-01-15T23:50:16.58+01:00 host kernel: ".
# Month names may be localised (non-ASCII), the host may be missing.
_SYSLOG = re.compile(
    rb"(?:[A-Za-z\x80-\xff]{3,12}\.? {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,9})?"
    rb"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:[+-]\d\d:?\d\d|Z)?)"
    rb" (?:[^\s\[]{1,64} )?kernel: ?"
)
# dmesg -T: "[Wed Dec 19 03:36:07 2018] "
_DMESG_T = re.compile(rb"\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\] ?")
# syslog level as /dev/kmsg and pstore's kmsg_dump_get_buffer(syslog=true) print it:
# "<4>" (fs/pstore/platform.c pstore_dump(), kernel/printk/printk.c info_print_prefix()).
_LEVEL = re.compile(rb"<(\d{1,3})>")
# kernel/printk/printk.c print_time(): "[%5lu.%06lu]".
_STAMP = re.compile(rb"\[ {0,12}(\d{1,10})\.(\d{1,9})\]")
# kernel/printk/printk.c print_caller() (CONFIG_PRINTK_CALLER): "[%6s]" of "T%u"/"C%u",
# printed right after the time stamp, with or without a space in between.
_CALLER = re.compile(rb" ?\[ {0,10}([TC]\d{1,10})\]")
# journalctl -o short-monotonic: "[   12.345678] host kernel: ".
_MONO_HOST = re.compile(rb"(?:[^\s\[]{1,64} )?kernel: ")


# Bytes no syslog or journal prefix starts with (its month name or year does not).
_NOT_SYSLOG = frozenset((b"", b" ", b"\t", b"[", b"<", b"-", b"=", b"#", b"?"))


class Line(NamedTuple):
    """One log line with its transport prefixes removed."""

    body: bytes
    """The kernel's own text (its indentation kept)."""
    stamp: tuple[bytes, bytes] | None
    """The printk time stamp's seconds and fraction digits, if there was one."""
    caller: bytes | None = None
    """The printk caller id (``T86``, ``C0``) when CONFIG_PRINTK_CALLER printed one."""
    prefixed: bool = False
    """A syslog, journal or ``dmesg -T`` prefix was removed."""

    @property
    def context(self) -> bytes | None:
        """The printk context the line comes from: its caller id; ``b""`` (the console)
        for a line with a time stamp or syslog prefix but no caller id; ``None`` for a
        bare line (user space writing to the console, or a log without prefixes)."""
        if self.caller is not None:
            return self.caller
        return b"" if self.stamp is not None or self.prefixed else None

    @property
    def time(self) -> float | None:
        """Seconds since boot (converted on demand: most lines never need it)."""
        if self.stamp is None:
            return None
        whole, frac = self.stamp
        return int(whole) + int(frac) / float(10 ** len(frac))


# kernel/printk/printk.c console_emit_next_record(): "** %lu printk messages dropped **".
_DROPPED = re.compile(rb"\*\* \d{1,12} printk messages dropped \*\* ?")
# A printk prefix in the middle of a line: the line's head is someone else's text
# (a login prompt on the serial console, a message cut short by another CPU's).
_SPLICE = re.compile(rb"\[ {0,12}\d{1,10}\.\d{6}\](?:\[ {0,10}[TC]\d{1,10}\])? ")


# The common forms in one expression: pstore and /dev/kmsg "<4>[   12.345678] ", dmesg
# "[   12.345678] ", with a caller id "[  T123]" after the stamp or after one space.
_FAST = re.compile(rb"(?:<\d{1,3}>)?\[ {0,12}(\d{1,10})\.(\d{1,9})\]"
                   rb"(?: ?\[ {0,10}([TC]\d{1,10})\])? ?")


_new_line = tuple.__new__  # Line(...) without the keyword handling of NamedTuple.__new__


def strip_prefix(raw: bytes) -> Line:
    """Remove syslog, level, time stamp and caller prefixes from *raw*.

    The kernel separates its time stamp (and caller id) from the message by
    exactly one space, so one space is removed after them and any further
    indentation, which is meaningful (call trace frames), is kept.  A time
    stamp in the middle of the line starts the line there: what comes before
    it is another writer's text spliced in (``syzkaller login: [  59.8][ T6792] BUG:``).
    """
    line = raw[:MAX_LINE] if len(raw) > MAX_LINE else raw
    if line[:1] in (b"<", b"["):
        m = _FAST.match(line)
        if m:
            pos = m.end()
            if (line.find(b"] ", pos + 9) < 0 and line.find(b"kernel: ", pos, pos + 74) < 0
                    and not line.startswith(b"**", pos)
                    and line.find(b" login: ", pos, pos + 80) < 0):
                rest = line[pos:]
                if rest[-1:] == b"\r":
                    rest = rest.rstrip(b"\r")
                whole, frac, cid = m.groups()
                return _new_line(Line, (rest, (whole, frac), cid, False))
    pos = 0
    prefixed = False
    if line[:1] in (b" ", b"\t"):
        # Pasted logs are often indented as a block; keep frame indentation.
        stripped = line.lstrip(b" \t")
        if (stripped[:1] in (b"[", b"<") and stripped[1:2].isdigit()) or stripped[:2] == b"[ ":
            pos = len(line) - len(stripped)
    if line[pos:pos + 1] not in _NOT_SYSLOG:
        m = _SYSLOG.match(line, pos)
        if m:
            pos = m.end()
            prefixed = True
    if line[pos:pos + 1] == b"[" and line[pos + 1:pos + 2].isalpha():
        m = _DMESG_T.match(line, pos)
        if m:
            pos = m.end()
            prefixed = True
    if line[pos:pos + 2] == b"**":
        m = _DROPPED.match(line, pos)
        if m:
            pos = m.end()
    if b" login: " in line[pos:pos + 80]:  # getty's prompt on the serial console
        at = line.find(b" login: ", pos, pos + 80)
        if b"\x1b" not in line[pos:at] and b"]" not in line[pos:at]:
            pos = at + 8
    if line[pos:pos + 1] == b"<":
        m = _LEVEL.match(line, pos)
        if m:
            pos = m.end()
    stamp: tuple[bytes, bytes] | None = None
    caller: bytes | None = None
    m = _STAMP.match(line, pos) if line[pos:pos + 1] == b"[" else None
    if m is None and b"] " in line[pos + 9:]:
        m2 = _SPLICE.search(line, pos + 1)
        if m2 and not NEEDLE_RE.search(line, pos, m2.start()):
            m = _STAMP.match(line, m2.start())
    if m:
        stamp = (m.group(1), m.group(2))
        pos = m.end()
        if line[pos:pos + 2] in (b"[ ", b" [") or line[pos:pos + 1] == b"[":
            m = _CALLER.match(line, pos)
            if m:
                caller = m.group(1)
                pos = m.end()
        if line[pos : pos + 1] == b" ":
            pos += 1
        if line.find(b"kernel: ", pos, pos + 74) >= 0:  # "host kernel: " (short-monotonic)
            m = _MONO_HOST.match(line, pos)
            if m:
                pos = m.end()
                prefixed = True
        if b"] " in line[pos + 9:]:
            m2 = _SPLICE.search(line, pos + 1)
            # A report's first line is kept even when another message was glued to it.
            if m2 and not NEEDLE_RE.search(line, pos, m2.start()):
                return strip_prefix(line[m2.start():])
    return Line(line[pos:].rstrip(b"\r"), stamp, caller, prefixed)


# --------------------------------------------------------------------------
# Report start lines: the families are in memconsole.oops._families
# --------------------------------------------------------------------------

#: Every line that can start a report holds one of these words (x86 die()
#: headers "general protection fault", "divide error", "invalid opcode" and
#: "Oops" all end in "[#N]").  A line without any cannot start a report,
#: which is what lets :mod:`memconsole.oops._scan` skip such lines of a big
#: log.  Each needle is listed with the byte the scanner looks for and its
#: position in the needle: the needle's rarest byte in kernel logs, never the
#: first letter of a month or weekday that syslog and ``dmesg -T`` prefixes
#: put on every line (hence "F" for INFO, not "N" of "Nov").  Every family's
#: own needle (:attr:`memconsole.oops._families.Family.needle`) holds one
#: (``tests/oops/test_families.py``).
NEEDLES: tuple[tuple[bytes, bytes, int], ...] = (
    (b"BUG", b"U", 1),
    (b"Unable to handle", b"U", 0),
    (b"Unhandled fault", b"U", 0),
    (b"UBSAN", b"U", 0),
    (b"LOCKUP", b"U", 4),
    (b"WARNING", b"W", 0),
    (b"INFO", b"F", 2),
    (b"Kernel panic", b"K", 0),
    (b"Kernel stack", b"K", 0),
    (b"oom-killer", b"-", 3),
    # mm/kmemleak.c: each leaked object starts a report; nothing else on its lines.
    (b"unreferenced object", b"j", 15),
    # net/core/dev.c netdev_wait_allrefs_any(): "unregister_netdevice: waiting for %s
    # to become free. Usage count = %d" (its own words are all common letters).
    (b"Usage count = ", b"U", 0),
    (b"VFS: Busy inodes", b"F", 1),
    (b"VFS: Close", b"F", 1),
    # arch/x86/kernel/traps.c exc_double_fault() (do_double_fault() before 5.8): 4.x
    # kernels print the registers without a die() header after it.
    (b"PANIC: double fault", b"I", 3),
    (b"[#", b"#", 1),
)
# Start lines without a needle of their own are always followed by a die() header
# ("[#") within PENDING_LINES lines: arm "Alignment trap:" in kernel mode
# (arch/arm/mm/alignment.c, then die("Oops - alignment")).
_NO_NEEDLE_STARTS = (b"Alignment trap:",)
NEEDLE_RE = re.compile(b"|".join(re.escape(n) for n, _, _ in NEEDLES))
#: What the line parser looks for before it tries the start-line steps: the needles and
#: the start lines that come just before a needle line.
START_HINT = re.compile(b"|".join(re.escape(n) for n in (*(n for n, _, _ in NEEDLES),
                                                          *_NO_NEEDLE_STARTS)))

# lib/list_debug.c __list_add_valid_or_report() / __list_del_entry_valid_or_report()
# (before 6.6: __list_add_valid(), __list_del_entry_valid()), CHECK_DATA_CORRUPTION():
# printed just before the BUG()/WARN() that reports it, or after "WARNING: at
# lib/list_debug.c" on 2.6/3.x.  Not a report start of its own: it announces one.
_LIST = re.compile(rb"(?P<what>list_(?:add|del) corruption|list_add double add)\b")


def list_announcement(text: bytes) -> bytes | None:
    """``list_del corruption`` when *text* (a body without indentation) is a list
    debugging message, else ``None``."""
    if text[:5] != b"list_":
        return None
    m = _LIST.match(text)
    return m.group("what") if m else None


# The first line of a hung-task report when the task's comm contained a newline:
# "INFO: task <comm part 1" / "<comm part 2>:18088 blocked for more than 143 seconds."
HUNG_HEAD = re.compile(rb"INFO: task (?P<comm>.{0,64})")
HUNG_TAIL = re.compile(
    rb"(?P<comm>.{0,64}):(?P<pid>\d{1,10}) blocked (?:in I/O wait )?for more than "
    rb"(?P<secs>\d{1,10}) seconds"
)

# arch/x86/kernel/dumpstack.c __die_header(): "%s: %04lx [#%d]" (6.10+ "Oops: %s: ...");
# arch/s390/kernel/dumpstack.c die(): "%s: %04x ilc:%d [#%d]";
# arch/arm64/kernel/traps.c __die() and arch/arm/kernel/traps.c __die():
# "Internal error: %s: %x [#%d]"; riscv "Oops [#%d]", MIPS "Oops[#%d]:".
_DIE = (
    re.compile(rb"(?:Oops: )?(?P<what>[A-Za-z][\w ,#-]{0,120}?)(?:: 0x[0-9a-f]{1,16})?: "
               rb"(?P<err>[0-9a-f]{1,4})(?: ilc:\d)? \[#(?P<n>\d{1,6})\]"),
    re.compile(rb"Internal error: (?P<what>.{0,80}?): ?(?P<err>[0-9a-f]{1,16}) "
               rb"\[#(?P<n>\d{1,6})\]"),
    re.compile(rb"(?P<what>Oops) ?\[#(?P<n>\d{1,6})\]"),
)


# A die() header glued to the end of another message (no newline between them):
# "kasan: GPF could be caused by NULL-ptr deref or user memory accessgeneral protection
# fault: 0000 [#1]".
GLUED_DIE = re.compile(rb"(?:general protection fault|stack segment|divide error|invalid opcode"
                       rb"|int3)[^\n]{0,200}?: [0-9a-f]{4} \[#")


class Die(NamedTuple):
    """A die() header: the line that gives an oops its number."""

    what: bytes
    """The die string, e.g. ``Oops``, ``invalid opcode``, ``Oops - BUG``."""
    internal: bool
    """arm/arm64 ``Internal error:`` form."""
    number: int
    """The oops counter in ``[#N]``."""
    error: int | None = None
    """The error code printed before it (x86 ``%04lx``, arm64 ESR), if any."""


def die_header(body: bytes) -> Die | None:
    """Return the die() header *body* is, or ``None``."""
    text = body.lstrip(b" \t")
    if b"[#" not in text[:260]:
        return None
    for i, pattern in enumerate(_DIE):
        m = pattern.match(text)
        if m:
            err = m.groupdict().get("err")
            return Die(m.group("what"), i == 1, int(m.group("n")), int(err, 16) if err else None)
    return None


# kernel/panic.c panic(): "Kernel panic - not syncing: %s".
PANIC = re.compile(rb"\s{0,8}Kernel panic - not syncing:? ?(?P<reason>.{0,900})")

# --------------------------------------------------------------------------
# Header lines
# --------------------------------------------------------------------------

# lib/dump_stack.c dump_stack_print_info(): "CPU: %d PID: %d Comm: %.20s %s%s %s %.*s"
# (6.11+ "CPU: %d UID: %u PID: ..."); "%s%s" is "Kdump: loaded " and print_tainted().
CPU_LINE = re.compile(
    rb"\s{0,8}CPU: (?P<cpu>\d{1,5}) (?:UID: (?P<uid>\d{1,10}) )?PID: (?P<pid>\d{1,10}) "
    rb"Comm: (?P<comm>.{0,64}?) "
    rb"(?:Kdump: loaded )?(?P<taint>Not tainted|Tainted: )(?P<rest>.{0,400})"
)
# 2.6/3.x x86 show_regs(): "Pid: %d, comm: %.20s %s %s %.*s".
PID_LINE = re.compile(
    rb"\s{0,8}Pid: (?P<pid>\d{1,10}), comm: (?P<comm>.{0,64}?) "
    rb"(?P<taint>Not tainted|Tainted: )(?P<rest>.{0,400})"
)
# 3.x arm __show_regs(): "CPU: %d    %s  (%s %.*s)".
ARM_CPU_LINE = re.compile(
    rb"\s{0,8}CPU: (?P<cpu>\d{1,5}) {1,8}(?P<taint>Not tainted|Tainted: )(?P<rest>.{0,400})"
)
# kernel/hung_task.c and lockdep print the taint on a line of its own; 6.11+
# print_tainted_verbose() adds "Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE".
TAINT_LINE = re.compile(rb"\s{0,8}(?P<taint>Not tainted|Tainted: )(?P<rest>.{0,400})")
TAINT_VERBOSE = re.compile(rb"\[([A-Z])\]=")
# arm/i386 show_regs(): "Process %.*s (pid: %d, stack limit = ...)".
PROCESS_LINE = re.compile(rb"\s{0,8}Process (?P<comm>.{1,64}?) \(pid: (?P<pid>\d{1,10})[,)]")
# i386 show_regs(): "EIP: 0060:[<...>] EFLAGS: 00213246 CPU: 1".
EFLAGS_CPU = re.compile(rb"\s{0,8}EIP: .{1,60} CPU: (?P<cpu>\d{1,5})")
# kernel/module/main.c print_modules(): "Modules linked in:" then " %s%s" per module.
MODULES = re.compile(rb"\s{0,8}Modules linked in:(?P<rest>.{0,2000})")
MODULE_TOKEN = re.compile(rb"[\w-]{1,64}(?:\([A-Z+\-]{1,12}\))?")

# x86 show_ip()/show_iret_regs(): "RIP: %04x:%pS"; 3.x "RIP: 0010:[<addr>]  [<addr>] %pS";
# 4.x oops_end() trailer "RIP: %pS RSP: ..."; old "IP: [<addr>] %pS".
RIP_LINE = re.compile(rb"\s{0,8}RIP: (?:(?P<cs>[0-9a-f]{4}):)?(?P<rest>.{1,600})")
IP_LINE = re.compile(rb"\s{0,8}(?:IP|EIP): (?:[0-9a-f]{4}:)?(?P<rest>(?:\[<|[A-Za-z_]).{1,600})")
# arch/powerpc/kernel/process.c show_regs(): "NIP [%016lx] %pS" (the "NIP:  ..." register
# line before it holds no symbol); arch/s390/kernel/dumpstack.c show_registers():
# "Krnl PSW : %px %px (%pSR)".
NIP_LINE = re.compile(rb"\s{0,8}NIP \[[0-9a-f]{1,16}\] (?P<rest>.{1,600})")
PSW_LINE = re.compile(rb"\s{0,8}Krnl PSW : [0-9a-f]{1,16} [0-9a-f]{1,16} \((?P<rest>[^)]{1,600})\)")
EIP_AT = re.compile(rb"\s{0,8}EIP is at (?P<rest>.{1,600})")
# arm/arm64 __show_regs(): "PC is at %pS" (before 4.15), "pc : %pS" (4.15+).
PC_IS_AT = re.compile(rb"\s{0,8}PC is at (?P<rest>.{1,600})")
PC_LINE = re.compile(rb"\s{0,8}(?:pc|epc) ?: (?P<rest>.{1,600})")
USER_CS = frozenset((b"0033", b"0023", b"002b", b"0073", b"e033", b"e02b"))

# arch/x86/kernel/dumpstack.c show_trace_log_lvl(): "Call Trace:"; arm64 "Call trace:";
# arm "Backtrace:".
TRACE_HEADER = re.compile(rb"\s{0,8}(?:Call Trace|Call trace|Backtrace):?\s{0,4}$")
CUT_HERE = re.compile(rb"\s{0,8}-{4,}\[ cut here \]-{4,}")
BANNER = re.compile(rb"\s{0,8}={16,}\s{0,4}$")
# kernel/panic.c print_oops_end_marker() "---[ end trace %016llx ]---" (after every oops
# and WARNING) and panic() "---[ end Kernel panic - not syncing: %s ]---".
END_MARKER = re.compile(rb"\s{0,8}---\[ end (?:trace [0-9a-f]{1,16}|Kernel panic)")

# Register and stack dump lines that may sit inside a call trace.
_IN_TRACE = re.compile(
    rb"\s{0,8}(?:(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d{1,2}|FS|GS|CS|DS|ES|CR\d|DR\d|PKRU|ORIG_RAX"
    rb"|EIP|EAX|EBX|ECX|EDX|ESI|EDI|EBP|ESP|Code|Exception stack)\b"
    rb"|r\d{1,2} ?:[0-9a-f]|[0-9a-f]{4}: |[0-9a-f]{8,16}(?: |$))"
)


def in_trace_filler(body: bytes) -> bool:
    """True for register/stack dump lines that may interrupt a call trace."""
    return bool(_IN_TRACE.match(body))


# Lines that belong to a report even though they carry none of its fields;
# they keep a report open (see memconsole.oops) and extend its end offset.
_RELATED = re.compile(
    rb"\s{0,8}(?:(?:RIP|RSP|RAX|RDX|RBP|R1[03]|FS|CS|CR2|DR[0-7]|PKRU|EIP|EAX|ESI|DS|Code|Stack"
    rb"|Hardware name|CPU|Pid|Process|Modules linked in|Workqueue|Tainted|Not tainted|pstate"
    rb"|pc|lr|sp"
    rb"|x\d{1,2}|Mem abort info|Data abort info|ESR|EC|SET|EA|FnV|FSC|ISV|CM|WnR|user pgtable"
    rb"|swapper pgtable|IP|PGD|P4D|#PF|Oops|Internal error|Kernel Offset|CPU features|Memory Limit"
    rb"|Call Trace|Call trace|Backtrace|task|PC is at|LR is at|psr|Flags|Control|irq event stamp"
    rb"|hardirqs last|softirqs last|Read of size|Write of size|The buggy address|Allocated by task"
    rb"|Freed by task|Memory state|epc|ra|status|note|Dumping ftrace|Rebooting in|SMP|Sending NMI"
    rb"|NMI backtrace|rcu|Task dump|index|KASAN|Showing busy|Preemption disabled|caller is|r\d{1,2}"
    rb"|ip|fp|pgd|Exception stack)\b"
    rb"|\"echo 0|\(detected by|\[<|---\[ end|Kernel panic|\*pde|\*pgd|\[[0-9a-f]{8,16}\] \*pgd"
    rb"|[0-9a-f]{4}: |[0-9a-f]{8,16}(?: |$))"
)


def related(body: bytes) -> bool:
    """True for lines that are part of a report's usual furniture."""
    return bool(_RELATED.match(body))


def is_frame(body: bytes) -> bool:
    """True for a call trace frame line (with an offset: ``func+0x1/0x2``)."""
    return (b"+0x" in body or b") from [<" in body) and (
        parse_frame(body) is not None or ARM_FROM.match(body) is not None)


# --------------------------------------------------------------------------
# Call trace frames
# --------------------------------------------------------------------------

# x86 "<IRQ>", "</IRQ>", "<TASK>", "<NMI>", "<SOFTIRQ>", "<#DF>", 3.x "<EOI>", "<<EOE>>".
CONTEXT_MARK = re.compile(
    rb"\s{0,8}(?:<(?P<close>/?)(?P<name>TASK|IRQ|NMI|SOFTIRQ|EOI|#[A-Z]{2})>|<<EOE>>|<EOE>)"
)
_ADDR = re.compile(rb"\[<[0-9a-fA-F]{1,16}>\]\s{0,4}")
# "%pS": symbol+0xoff/0xsize, then " [module]" or " [module buildid]".
_SYM = re.compile(
    rb"(?P<func>[A-Za-z_.$][\w.$]{0,255})\+0x(?P<off>[0-9a-f]{1,16})/0x(?P<size>[0-9a-f]{1,16})"
    rb"(?:\s{1,4}\[(?P<mod>[\w-]{1,64})[^\]]{0,200}\])?"
)
# The usual frame line, "  ? func+0x1a/0x70 [mod]", in one expression: the same as
# parse_frame() gives for a line that starts with neither "[<" nor ":" (a test checks).
PLAIN_FRAME = re.compile(rb"[ \t]*(?:(?P<q>\? ) *)?" + _SYM.pattern)
# scripts/decode_stacktrace.sh output without offsets: "func (file.c:123)"; syzbot's
# symbolised "func file.c:123 [inline]".
_DECODED = re.compile(rb"(?P<func>[A-Za-z_.$][\w.$]{0,255}) \((?:[^()\s]{1,300}:\d{1,7})")
_INLINE = re.compile(rb"(?P<func>[A-Za-z_.$][\w.$]{0,255}) [\w./+-]{1,300}:\d{1,7} \[inline\]")
# Unsymbolised addresses: "0xffffffc00818ff8c [netatop@0000+0x12000]".
_RAW = re.compile(
    rb"(?P<func>0x[0-9a-f]{1,16})(?:\s{1,4}\[(?P<mod>[\w-]{1,64})[^\]]{0,200}\])?\s{0,4}$"
)
# arm unwind_backtrace(): "[<pc>] (func) from [<lr>] (caller+0x../0x..)".
ARM_FROM = re.compile(
    rb"\s{0,8}\[<[0-9a-f]{1,16}>\] \((?P<func>[^\s()]{1,256})(?: \[(?P<mod>[\w-]{1,64})\])?\)"
    rb" from \[<"
)
# arm dump_backtrace_entry() since 5.16 (no addresses): " func from caller+0x10/0x14".
ARM_FROM_SYM = re.compile(
    rb"\s{0,8}(?P<func>[A-Za-z_.$][\w.$]{0,255})(?:\+0x[0-9a-f]{1,16}/0x[0-9a-f]{1,16})?"
    rb"(?: \[(?P<mod>[\w-]{1,64})\])? from [A-Za-z_.$][\w.$]{0,255}\+0x"
)
# 2.6.2x "IP: [<f88dec25>] :radeon:radeon_cp_init_ring_buffer+0x90/0x302"
_OLD_MODPREFIX = re.compile(rb":(?P<mod>[\w-]{1,64}):")


class RawFrame(NamedTuple):
    """One parsed frame before it becomes a :class:`memconsole.oops.Frame`."""

    function: bytes
    offset: int | None
    size: int | None
    module: bytes | None
    reliable: bool
    inline: bool


def parse_frame(text: bytes, *, bare: bool = False) -> RawFrame | None:
    """Parse one call trace frame (or the symbol part of a RIP/pc line).

    *bare* also accepts a lone raw address (``0xffff...``), which in a call
    trace is a frame but elsewhere could be anything.
    """
    s = text.strip(b" \t")
    m = _ADDR.match(s) if s[:2] == b"[<" else None
    while m:  # 3.x prints "[<addr>]  [<addr>] sym" on RIP lines
        s = s[m.end():]
        m = _ADDR.match(s)
    reliable = True
    if s[:2] == b"? ":
        reliable = False
        s = s[2:].lstrip(b" ")
    old_mod: bytes | None = None
    m = _OLD_MODPREFIX.match(s) if s[:1] == b":" else None
    if m:
        old_mod = m.group("mod")
        s = s[m.end():]
    m = _SYM.match(s)
    if m:
        return RawFrame(m.group("func"), int(m.group("off"), 16), int(m.group("size"), 16),
                        m.group("mod") or old_mod, reliable, False)
    m = _INLINE.match(s)
    if m:
        return RawFrame(m.group("func"), None, None, None, reliable, True)
    m = _DECODED.match(s)
    if m:
        return RawFrame(m.group("func"), None, None, None, reliable, False)
    if bare or not reliable:
        m = _RAW.match(s)
        if m:
            return RawFrame(m.group("func"), None, None, m.group("mod"), reliable, False)
    return None


# --------------------------------------------------------------------------
# Field grammar
# --------------------------------------------------------------------------

# A stack dump word, never a module name.
HEXWORD = re.compile(rb"[0-9a-f]{8,16}")


def parse_taint(taint: bytes, rest: bytes) -> tuple[str, str | None, str | None]:
    """Taint letters, kernel release and build string from what follows ``Tainted: ``.

    kernel/panic.c print_tainted() prints one column per flag, a space when
    unset, starting with ``P`` or ``G`` (proprietary module or not; ``G`` is no
    taint).  RHEL adds ``-`` columns.  The release follows the flags, then
    the first word of the version (``#1``) and what distributions and 6.13+
    (``PREEMPT(lazy)``) add, returned whitespace-collapsed as the build string.
    """
    letters: list[str] = []
    tokens = rest.split()
    start = 0
    if taint != b"Not tainted":
        while start < min(len(tokens), 64) and re.fullmatch(rb"[A-Z-]+", tokens[start]):
            letters.extend(chr(c) for c in tokens[start] if 65 <= c <= 90 and c != 71)  # not 'G'
            start += 1
    if start >= len(tokens):
        return "".join(letters), None, None
    release = tokens[start].lstrip(b"(").decode("utf-8", "backslashreplace")
    build = b" ".join(tokens[start + 1:start + 24]).decode("utf-8", "backslashreplace")
    return "".join(letters), release, build or None


def panic_category(reason: str) -> str:
    """Classify a panic reason by the report expected to explain it.

    Reasons: arch/x86/kernel/dumpstack.c oops_end() "Fatal exception" /
    "Fatal exception in interrupt" (arm64 die(): "Oops: Fatal exception");
    kernel/panic.c check_panic_on_warn() "[origin: ]panic_on_warn set ...";
    kernel/watchdog.c "softlockup: hung tasks" and "Hard LOCKUP";
    kernel/hung_task.c "hung_task: blocked tasks"; mm/oom_kill.c "Out of
    memory: ..." and "System is deadlocked on memory"; kernel/sched/core.c
    __schedule_bug() "scheduling while atomic" (panic_on_warn); kernel/rcu/tree_stall.h
    "RCU Stall"; kernel/exit.c "Attempted to kill init!"; kernel/panic.c
    __stack_chk_fail() and kernel/sched/core.c schedule_debug().
    """
    r = reason.strip()
    if re.match(r"(?:Oops: )?Fatal exception", r) or r.endswith(": Fatal exception"):
        return "fatal"
    if "panic_on_warn set" in r:
        return "warn"
    if "kmsan.panic set" in r:  # mm/kmsan/report.c kmsan_report()
        return "kmsan"
    if r.startswith("scheduling while atomic"):  # kernel/sched/core.c __schedule_bug()
        return "atomic"
    if r.startswith("softlockup: hung tasks"):
        return "softlockup"
    if r.startswith("hung_task: blocked tasks"):
        return "hungtask"
    if re.search(r"hard LOCKUP", r, re.IGNORECASE):
        return "hardlockup"
    if r.startswith(("Out of memory", "System is deadlocked on memory")):
        return "oom"
    if r.startswith("RCU Stall"):
        return "rcu"
    if r.startswith("Attempted to kill init"):
        return "init"
    if "Kernel stack is corrupted" in r or r.startswith("corrupted stack end detected"):
        return "stack"
    return "other"
