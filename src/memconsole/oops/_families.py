"""Report families: the line a report starts with, its title and where its culprit is
(private to :mod:`memconsole.oops`).

:data:`FAMILIES` is ranked: the first family whose start pattern matches a line
(at the start of its body, after prefixes and indentation) wins, so specific
spellings come before generic ones.  Each row names the kernel function that
prints its start line.  Titles follow syzkaller's (google/syzkaller
pkg/report/linux.go), the reference for naming kernel crashes: a phrase, then
``in`` and the culprit (:mod:`memconsole.oops._culprit`).  A title field
``{c}`` is the culprit; other fields are named groups of the start pattern, or
``{access}`` (``Read``/``Write`` of a KASAN report) and ``{c2}`` (KCSAN's second
function).  Where no culprit is found the title is the phrase alone and the
report is flagged corrupted.

Every start pattern is anchored, bounded and needs the literal :attr:`Family.needle`
(tested first, it is cheap).  Every needle contains one of
:data:`memconsole.oops._patterns.NEEDLES`, which is what lets the scanner skip
lines without one.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from memconsole.oops._model import Kind

__all__ = ["DIE", "FAMILIES", "LIST_BUG", "LIST_WARNING", "PANIC_FAMILIES", "STACKLESS",
           "STANDALONE_PANIC",
           "Family", "Pick", "Src", "by_id", "match"]


class Src(enum.Enum):
    """Where culprit candidates are read, in a report's lines (:mod:`memconsole.oops._culprit`)."""

    HEADER = "header"
    """The function the start line names (``BUG: KASAN: ... in FUNC``)."""
    RIP = "rip"
    """The faulting IP of the first kernel-mode register dump (x86 ``RIP:``, ``IP:``,
    ``EIP:``; arm64 ``pc :``; arm ``PC is at``; powerpc ``NIP``; riscv ``epc :``; s390
    ``Krnl PSW``)."""
    FRAMES_AFTER_RIP = "frames-after-rip"
    """The frames printed after that RIP line up to the next stack header."""
    TRACE = "trace"
    """The frames of the next stack section (``Call Trace:``, ``Allocated by task``...)."""
    FRAMES = "frames"
    """Frames right after the start line, up to the next stack header (KMSAN, KFENCE)."""
    IRQ_RIP = "irq-rip"
    """RCU stall: the RIP and frames of the context the timer interrupt interrupted."""
    AT = "at"
    """The next lockdep ``at: [<pc>] FUNC+0x..`` line."""
    AT_ACQUIRE = "at-after-acquire"
    """The first ``at:`` after ``is trying to acquire``."""
    AT_TAKES = "at-after-takes"
    """The first ``at:`` after ``takes`` (4.x ``inconsistent lock state``)."""
    AT_CHANGED = "at-after-changed"
    """The first ``at:`` after ``just changed the state of lock``."""
    AT_LEAVING = "at-after-leaving"
    """The first ``at:`` after ``leaving the kernel with locks still held``."""
    PC_LINE = "pc-line"
    """The first ``[<pc>] FUNC+0x..`` after the start (held lock freed, locks held)."""
    CHAIN = "chain"
    """The frames of lockdep's dependency chain after the two ``at:`` lines."""
    WHICH_BECAME = "which-became"
    """The frames after lockdep's ``which became ... at:``."""
    PAGE_LAST_ALLOCATED = "page-last-allocated"
    """The frames after page_owner's ``page last allocated via order ...``."""
    LAST_FUNCTION = "last-function"
    """``last function: FUNC`` of a workqueue leaked lock report."""
    CALLER_IS = "caller-is"
    """``caller is FUNC+0x..`` of check_preemption_disabled(): the function that used
    the per-CPU value, machinery or not."""


class Pick(enum.Enum):
    """How the culprit is chosen among the candidates that are not machinery."""

    FIRST = "first"
    """The first one."""
    STALL = "stall"
    """The one above the first dispatch frame (syzkaller's stall rule)."""
    HUNG = "hung"
    """syzkaller's hung task rule: a lock or RCU bucket, else the first non-waiting frame."""


_TRACE = (Src.TRACE,)
_RIP_TRACE = (Src.RIP, Src.TRACE)
_WARN = (Src.RIP, Src.FRAMES_AFTER_RIP)
# When neither the register dump nor the stack name one, a WARNING's own line does
# ("at file:line func"): the WARN site (lib/bug.c, kernel/panic.c __warn()).
_WARN_FALLBACK = (Src.TRACE, Src.HEADER)


@dataclass(frozen=True)
class Family:
    """One kind of report start line (a row of :data:`FAMILIES`)."""

    id: str
    kind: Kind
    needle: bytes
    """A literal the start line contains (checked before the pattern)."""
    start: bytes
    """Pattern matched (``re.match``) on the line body without indentation."""
    title: str
    """Title template (``{c}`` the culprit, ``{name}`` a group of *start*)."""
    kernel: str
    """The kernel function that prints the start line."""
    sources: tuple[Src, ...] = ()
    fallback: tuple[Src, ...] = ()
    """Sources tried when *sources* give no culprit."""
    skip: tuple[str, ...] = ()
    """Family helpers never blamed (regular expressions, searched in the name)."""
    pick: Pick = Pick.FIRST
    corrupt: str | None = None
    """Why every report of this family is corrupted (a piece of another report)."""
    raw: bool = False
    """The culprit is the source's first function as printed, machinery or not
    (lockdep's ``at:`` lines name the lock's taker, which is the point)."""
    dies: bool = False
    """The report goes through die(): a ``Fatal exception`` panic is its consequence."""
    warns: bool = False
    """The report ends in check_panic_on_warn(): a ``panic_on_warn set`` panic follows."""

    @functools.cached_property
    def pattern(self) -> re.Pattern[bytes]:
        """The compiled start pattern (compiled when first needed)."""
        return re.compile(self.start)

    @functools.cached_property
    def skip_re(self) -> re.Pattern[str] | None:
        """The compiled family skips, ``None`` when there are none."""
        return re.compile("|".join(self.skip)) if self.skip else None


# 4.10 and older bracket lockdep headers: "[ INFO: possible circular locking dependency ]".
_L = rb"(?:\[ )?"
# A symbol, not a bare hexadecimal address.
_FUNC = rb"(?P<hf>(?![0-9a-f]+\b)[A-Za-z_][\w.]{0,255})"
_OOPS = rb"(?:Oops: )?"  # 6.10+ x86 __die_header() prefixes die() strings with "Oops: "
_KASAN_SKIP = ("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_")
_URB = ("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
        "usb_control_msg")

F = Family
FAMILIES: tuple[Family, ...] = (
    # -- sanitizers ---------------------------------------------------------------------------
    F("kasan-free", Kind.KASAN, b"KAS",
      rb"BUG: KAS[Aa][Nn]: (?:double-free or invalid-free|double-free|invalid-free) in " + _FUNC,
      "KASAN: invalid-free in {c}", "mm/kasan/report.c kasan_report_invalid_free()",
      (Src.HEADER, Src.TRACE), skip=("slab_", "kfree", "vunmap", "vfree"), warns=True),
    F("kasan", Kind.KASAN, b"KAS",
      rb"BUG: KAS[Aa][Nn]: (?P<bug>[a-z-]{1,64}) in " + _FUNC,
      "KASAN: {bug} {access} in {c}",
      "mm/kasan/report.c print_error_description() ('BUG: KASan:' 4.0-4.3)",
      (Src.HEADER, Src.TRACE), skip=_KASAN_SKIP, warns=True),
    F("kasan-addr", Kind.KASAN, b"KAS",
      rb"BUG: KAS[Aa][Nn]: (?P<bug>[a-z-]{1,64}) (?:on|at) addr",
      "KASAN: {bug} {access} in {c}", "mm/kasan/report.c before 4.12 ('... at addr ADDR')",
      _TRACE, skip=_KASAN_SKIP, warns=True),
    F("kmsan", Kind.KMSAN, b"KMSAN",
      rb"BUG: KMSAN: (?P<bug>[a-z-]{1,64}) in " + _FUNC,
      "KMSAN: {bug} in {c}", "mm/kmsan/report.c kmsan_report()",
      (Src.FRAMES,), skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                           "^(?:crypto|cipher|drbg|rng)_", *_URB), warns=True),
    F("kcsan", Kind.KCSAN, b"KCSAN",
      rb"BUG: KCSAN: (?P<bug>[a-z: -]{1,64}?) in " + _FUNC
      + rb"(?: / (?P<hf2>[A-Za-z_][\w.]{0,255}))?",
      "KCSAN: {bug} in {c}{c2}", "kernel/kcsan/report.c print_report()",
      (Src.HEADER,), warns=True),
    F("kfence", Kind.KFENCE, b"KFENCE",
      rb"BUG: KFENCE: (?P<bug>use-after-free|out-of-bounds|invalid free|invalid|memory corruption)"
      rb"(?: (?P<rw>read|write))? in " + _FUNC,
      "KFENCE: {bug}{rw} in {c}", "mm/kfence/report.c kfence_report_error()",
      (Src.HEADER, Src.FRAMES), warns=True),
    F("ubsan-old", Kind.UBSAN, b"UBSAN", rb"UBSAN: Undefined behaviour in (?P<loc>\S{1,300})",
      "UBSAN: undefined-behaviour in {c}", "lib/ubsan.c ubsan_prologue() before 5.9",
      _TRACE, skip=("ubsan", "overflow"), warns=True),
    F("ubsan", Kind.UBSAN, b"UBSAN", rb"UBSAN: (?P<bug>[a-z-]{1,64}) in (?P<loc>\S{1,300})",
      "UBSAN: {bug} in {c}", "lib/ubsan.c ubsan_prologue()",
      _TRACE, skip=("ubsan", "overflow"), warns=True),
    # -- faults -------------------------------------------------------------------------------
    F("null", Kind.NULL_POINTER, b"BUG: ",
      rb"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer "
      rb"dereference|Kernel NULL pointer dereference)(?:,? (?:at|address:|on \w{1,8} at) ?"
      rb"(?P<addr>\S{1,20}))?",
      "BUG: unable to handle kernel NULL pointer dereference in {c}",
      "arch/x86/mm/fault.c show_fault_oops() ('kernel NULL pointer dereference, address:' "
      "5.1+), arch/powerpc/mm/fault.c __bad_page_fault()", _RIP_TRACE, dies=True),
    F("paging", Kind.PAGE_FAULT, b"BUG: ",
      rb"BUG: (?:unable to handle kernel paging request|unable to handle page fault for "
      rb"address|Unable to handle kernel data access|unable to handle kernel\b)"
      rb"(?:(?:,? (?:at|address:|on \w{1,8} at) ?|: ?)(?P<addr>\S{1,20}))?",
      "BUG: unable to handle kernel paging request in {c}",
      "arch/x86/mm/fault.c show_fault_oops() ('page fault for address:' 5.1+), "
      "arch/powerpc/mm/fault.c", _RIP_TRACE, dies=True),
    F("arm-null", Kind.NULL_POINTER, b"Unable to handle",
      rb"(?:CPU \d{1,5} )?Unable to handle kernel NULL pointer dereference at virtual address "
      rb"(?P<addr>[0-9a-fx]{1,18})",
      "BUG: unable to handle kernel NULL pointer dereference in {c}",
      "arch/arm64/mm/fault.c die_kernel_fault(), arch/arm/mm/fault.c __do_kernel_fault(), "
      "arch/riscv/mm/fault.c", _RIP_TRACE, dies=True),
    F("arm-fault", Kind.PAGE_FAULT, b"Unable to handle",
      rb"(?:CPU \d{1,5} )?Unable to handle kernel (?P<what>paging request|access to user memory"
      rb"|[\w -]{1,60}?)(?: without uaccess routines)? at virtual address "
      rb"(?P<addr>[0-9a-fx]{1,18})",
      "BUG: unable to handle kernel {what} in {c}",
      "arch/arm64/mm/fault.c die_kernel_fault(), arch/arm/mm/fault.c __do_kernel_fault()",
      _RIP_TRACE, dies=True),
    F("s390-fault", Kind.PAGE_FAULT, b"Unable to handle",
      rb"Unable to handle kernel (?:pointer dereference|paging request) in virtual "
      rb"(?:kernel|user) address space",
      "BUG: unable to handle kernel paging request in {c}",
      "arch/s390/mm/fault.c do_no_context()", _RIP_TRACE, dies=True),
    F("gpf", Kind.GENERAL_PROTECTION, b"general protection fault",
      _OOPS + rb"(?:segment-related )?general protection fault(?P<rest>.{0,200})",
      "general protection fault in {c}", "arch/x86/kernel/traps.c exc_general_protection()",
      _RIP_TRACE, dies=True),
    F("stack-segment", Kind.GENERAL_PROTECTION, b"stack segment",
      _OOPS + rb"stack segment: [0-9a-f]{4}",
      "stack segment fault in {c}", "arch/x86/kernel/traps.c DO_ERROR(X86_TRAP_SS)",
      _RIP_TRACE, dies=True),
    F("divide", Kind.DIVIDE_ERROR, b"error",
      _OOPS + rb"divide(?: |_)error: [0-9a-f]{4}",
      "divide error in {c}",
      "arch/x86/kernel/traps.c exc_divide_error() ('divide_error' in 5.8-5.9)",
      (Src.RIP,), _TRACE, dies=True),
    F("invalid-opcode", Kind.INVALID_OPCODE, b"invalid opcode",
      _OOPS + rb"invalid opcode: [0-9a-f]{4}",
      "invalid opcode in {c}", "arch/x86/kernel/traps.c exc_invalid_op()",
      (Src.RIP,), _TRACE, dies=True),
    F("int3", Kind.BUG, b"int3", _OOPS + rb"int3: [0-9a-f]{4}",
      "int3 in {c}", "arch/x86/kernel/traps.c exc_int3()", _RIP_TRACE, dies=True),
    F("double-fault", Kind.PANIC, b"PANIC: double fault", rb"PANIC: double fault",
      "PANIC: double fault in {c}", "arch/x86/kernel/traps.c exc_double_fault()",
      (Src.RIP,), _TRACE, dies=True),
    F("unhandled-fault", Kind.PAGE_FAULT, b"Unhandled fault", rb"Unhandled fault: ",
      "Unhandled fault in {c}", "arch/arm/mm/fault.c do_DataAbort()", _RIP_TRACE, dies=True),
    F("alignment", Kind.BUG, b"Alignment trap", rb"Alignment trap: ",
      "Alignment trap in {c}", "arch/arm/mm/alignment.c do_alignment()", _RIP_TRACE,
      dies=True),
    # -- BUG() ------------------------------------------------------------------------------
    F("usercopy", Kind.BUG, b"BUG", rb"[Kk]ernel BUG at mm/usercopy\.c",
      "BUG: bad usercopy in {c}", "mm/usercopy.c usercopy_abort() -> BUG()",
      _TRACE, skip=("usercopy", "__check"), dies=True),
    F("list-bug", Kind.LIST_CORRUPTION, b"BUG",
      rb"[Kk]ernel BUG at (?P<loc>\S{0,200}lib/list_debug\.c:\d{1,7})",
      "BUG: corrupted list in {c}", "lib/list_debug.c (CONFIG_BUG_ON_DATA_CORRUPTION)",
      _TRACE, dies=True),
    F("kernel-bug", Kind.BUG, b"BUG", rb"[Kk]ernel BUG at (?P<loc>[^!\s]{1,300})",
      "kernel BUG in {c}", "lib/bug.c report_bug(); 'Kernel BUG at %pB [verbose debug info "
      "unavailable]'", _RIP_TRACE, skip=("^skb_",), dies=True),
    # -- BUG: ... ---------------------------------------------------------------------------
    F("spinlock", Kind.BUG, b"BUG: ",
      rb"BUG: (?P<lk>spinlock|rwlock) (?P<what>lockup suspected|already unlocked|recursion"
      rb"|cpu recursion|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
      "BUG: {lk} {what} in {c}",
      "kernel/locking/spinlock_debug.c spin_bug(), rwlock_bug()",
      _TRACE, skip=("spin_", "_lock", "_unlock")),
    F("soft-lockup", Kind.SOFT_LOCKUP, b"soft lockup",
      rb"(?:NMI )?(?:watchdog: )?BUG: soft lockup - CPU#(?P<cpu>\d{1,5}) stuck for "
      rb"(?P<secs>\d{1,10})s! \[(?P<comm>.{0,64}):(?P<pid>\d{1,10})\]",
      "BUG: soft lockup in {c}", "kernel/watchdog.c watchdog_timer_fn() ('NMI watchdog: ' "
      "prefix 4.0-4.12, 'watchdog: ' 4.13+)", _RIP_TRACE, pick=Pick.STALL),
    F("sched-atomic", Kind.SCHEDULING_WHILE_ATOMIC, b"scheduling while atomic",
      rb"BUG: scheduling while atomic: (?:(?P<comm>.{1,64})/(?P<pid>\d{1,10})/0x[0-9a-f]{1,8}"
      rb"|(?P<comm2>.{1,64})/0x[0-9a-f]{1,8}/(?P<pid2>\d{1,10}))",
      "BUG: scheduling while atomic in {c}",
      "kernel/sched/core.c __schedule_bug() (2.6.2x: comm/preempt_count/pid)",
      _TRACE, skip=("schedule",)),
    F("sleeping", Kind.BUG, b"BUG: ",
      rb"BUG: sleeping function called from invalid context at (?P<loc>\S{1,300})",
      "BUG: sleeping function called from invalid context in {c}",
      "kernel/sched/core.c __might_resched() (___might_sleep() before 5.16)", _TRACE),
    F("preemptible", Kind.BUG, b"BUG: ",
      rb"BUG: using (?P<fn>[a-z_]{1,40})\(\) in preemptible",
      "BUG: using {fn}() in preemptible code in {c}",
      "lib/smp_processor_id.c check_preemption_disabled()",
      (Src.CALLER_IS,), _TRACE, skip=("dump_stack", "preemption", "preempt", "debug_",
                                      "processor_id", "this_cpu")),
    F("wq-leak", Kind.BUG, b"BUG: ", rb"BUG: workqueue leaked lock or atomic",
      "BUG: workqueue leaked lock or atomic in {c}", "kernel/workqueue.c process_one_work()",
      (Src.LAST_FUNCTION,)),
    F("wq-lockup", Kind.BUG, b"BUG: ", rb"BUG: workqueue lockup",
      "BUG: workqueue lockup", "kernel/workqueue.c wq_watchdog_timer_fn()"),
    F("memleak-syz", Kind.MEMORY_LEAK, b"BUG: memory leak", rb"BUG: memory leak\s{0,4}$",
      "memory leak in {c}", "syzkaller's executor, before it prints /sys/kernel/debug/kmemleak",
      (Src.TRACE,), skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object",
                          "idr_get", "list_lru_init", "kasprintf", "kvasprintf", "pcpu_create",
                          "strdup", "strndup", "memdup")),
    F("memory-leak", Kind.MEMORY_LEAK, b"unreferenced object",
      rb"unreferenced object(?: 0x[0-9a-f]{1,16} \(size \d{1,12}\))?",
      "memory leak in {c}",
      "mm/kmemleak.c print_unreferenced() (kmemleak.verbose=1 or /sys/kernel/debug/kmemleak)",
      (Src.TRACE,), skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object",
                          "idr_get", "list_lru_init", "kasprintf", "kvasprintf", "pcpu_create",
                          "strdup", "strndup", "memdup")),
    F("stack-guard", Kind.STACK_CORRUPTION, b"stack guard page",
      rb"BUG: (?:\w{1,20} )?stack guard page was hit at",
      "BUG: stack guard page was hit in {c}",
      "arch/x86/kernel/traps.c handle_stack_overflow()", _RIP_TRACE, pick=Pick.STALL,
      dies=True),
    F("bad-page", Kind.BUG, b"BUG: ", rb"BUG: Bad page (?P<what>state|cache)",
      "BUG: Bad page {what} in {c}", "mm/page_alloc.c bad_page()",
      (Src.PAGE_LAST_ALLOCATED,),
      skip=("(?:free|put|get|update|release)_page", "free_unref", "^_*folio",
            "truncate_inode_pages", "page_frag_free", "alloc", "vmap", "page_owner")),
    F("bad-page-map", Kind.BUG, b"BUG: ", rb"BUG: Bad page map",
      "BUG: Bad page map", "mm/memory.c print_bad_pte()"),
    F("bad-rss", Kind.BUG, b"BUG: ", rb"BUG: Bad rss-counter state",
      "BUG: Bad rss-counter state", "kernel/fork.c check_mm()"),
    F("dentry", Kind.BUG, b"BUG: ",
      rb"BUG: Dentry .{0,300}? still in use \(\d{1,10}\) \[(?P<op>unmount) of",
      "BUG: Dentry still in use in {op}", "fs/dcache.c umount_check()"),
    F("slub", Kind.BUG, b"BUG ",
      rb"BUG (?P<cache>[\w.:-]{1,64}) \((?:Not tainted|Tainted: [^)]{0,64})\): (?!kasan:)"
      rb"(?P<what>.{1,200})",
      "BUG: {what}", "mm/slub.c slab_bug()", _TRACE),
    # -- lockdep ------------------------------------------------------------------------------
    F("invalid-wait", Kind.LOCKDEP, b"BUG: ", _L + rb"BUG: Invalid wait context",
      "WARNING: locking bug in {c}",
      "kernel/locking/lockdep.c print_lock_invalid_wait_context()",
      _TRACE, skip=("lock_sock", "release_sock")),
    F("held-freed", Kind.LOCKDEP, b"BUG: held lock freed",
      _L + rb"(?P<lvl>BUG): held lock freed!", "{lvl}: held lock freed in {c}",
      "kernel/locking/lockdep.c print_freed_lock_bug()", (Src.PC_LINE,), raw=True),
    F("held-freed-w", Kind.LOCKDEP, b"WARNING: held lock freed",
      _L + rb"(?P<lvl>WARNING): held lock freed!", "{lvl}: held lock freed in {c}",
      "kernel/locking/lockdep.c print_freed_lock_bug() (WARNING: since 4.15)", (Src.AT,),
      raw=True),
    F("locks-held", Kind.LOCKDEP, b"still has locks held",
      _L + rb"(?P<lvl>BUG): .{0,100}still has locks held!",
      "{lvl}: still has locks held in {c}", "kernel/locking/lockdep.c print_held_locks_bug()",
      (Src.PC_LINE,), raw=True),
    F("locks-held-w", Kind.LOCKDEP, b"still has locks held",
      _L + rb"(?P<lvl>WARNING): .{0,100}still has locks held!",
      "{lvl}: still has locks held in {c}", "kernel/locking/lockdep.c print_held_locks_bug()",
      (Src.AT,), raw=True),
    F("lock-user", Kind.LOCKDEP, b"lock held when returning",
      _L + rb"(?P<lvl>BUG|WARNING): lock held when returning to user space",
      "{lvl}: lock held when returning to user space in {c}",
      "kernel/locking/lockdep.c lockdep_sys_exit()", (Src.AT_LEAVING,), raw=True),
    F("unlock-balance", Kind.LOCKDEP, b"bad unlock balance",
      _L + rb"(?P<lvl>BUG|WARNING): bad unlock balance detected!",
      "{lvl}: bad unlock balance in {c}",
      "kernel/locking/lockdep.c print_unlock_imbalance_bug()", (Src.PC_LINE, Src.TRACE)),
    # 4.10 and older: "[ INFO: ... ]" headers; the culprit is the lock's taker as printed.
    F("circular-old", Kind.LOCKDEP, b"[ INFO: possible circular",
      rb"\[ INFO: possible circular locking dependency detected \]",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_circular_bug_header()",
      (Src.AT_ACQUIRE,), raw=True),
    F("irq-inversion-old", Kind.LOCKDEP, b"[ INFO: possible irq lock inversion",
      rb"\[ INFO: possible irq lock inversion dependency detected \]",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_irq_inversion_bug()",
      (Src.AT_CHANGED,), raw=True),
    F("safe-unsafe-old", Kind.LOCKDEP, b"unsafe lock order",
      rb"\[ INFO: [\w-]{1,20}-safe -> [\w-]{1,20}-unsafe lock order detected \]",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_bad_irq_dependency()",
      (Src.AT_ACQUIRE,), raw=True),
    F("recursive-old", Kind.LOCKDEP, b"[ INFO: possible recursive locking",
      rb"\[ INFO: possible recursive locking detected \]",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_deadlock_bug()",
      (Src.AT_ACQUIRE,), raw=True),
    F("inconsistent-old", Kind.LOCKDEP, b"[ INFO: inconsistent lock state",
      rb"\[ INFO: inconsistent lock state \]",
      "inconsistent lock state in {c}", "kernel/locking/lockdep.c print_usage_bug()",
      (Src.AT_TAKES,), raw=True),
    F("circular", Kind.LOCKDEP, b"possible circular locking",
      _L + rb"(?:WARNING|INFO): possible circular locking dependency detected",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_circular_bug_header()",
      (Src.AT, Src.AT, Src.CHAIN),
      skip=("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue")),
    F("irq-inversion", Kind.LOCKDEP, b"irq lock inversion",
      _L + rb"(?:WARNING|INFO): possible irq lock inversion dependency detected",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_irq_inversion_bug()",
      (Src.AT_CHANGED,), raw=True),
    F("safe-unsafe", Kind.LOCKDEP, b"unsafe lock order",
      _L + rb"(?:WARNING|INFO): [\w-]{1,20}-safe -> [\w-]{1,20}-unsafe lock order detected",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_bad_irq_dependency()",
      (Src.WHICH_BECAME,)),
    F("recursive", Kind.LOCKDEP, b"possible recursive locking",
      _L + rb"(?:WARNING|INFO): possible recursive locking detected",
      "possible deadlock in {c}", "kernel/locking/lockdep.c print_deadlock_bug()",
      (Src.AT_ACQUIRE,), raw=True),
    F("inconsistent", Kind.LOCKDEP, b"inconsistent lock state",
      _L + rb"(?:WARNING|INFO): inconsistent lock state",
      "inconsistent lock state in {c}", "kernel/locking/lockdep.c print_usage_bug()", _TRACE),
    F("rcu-usage", Kind.LOCKDEP, b"suspicious RCU usage",
      _L + rb"(?P<lvl>WARNING|INFO): suspicious RCU usage",
      "{lvl}: suspicious RCU usage in {c}", "kernel/locking/lockdep.c lockdep_rcu_suspicious()",
      _TRACE, skip=("rcu", "kmem", "slab")),
    F("nonstatic", Kind.LOCKDEP, b"non-static key", rb"INFO: trying to register non-static key",
      "INFO: trying to register non-static key in {c}",
      "kernel/locking/lockdep.c assign_lock_key()", _TRACE, skip=("stack", "lock", "IRQ")),
    F("nested", Kind.LOCKDEP, b"Nested lock", rb"WARNING: Nested lock was not taken",
      "WARNING: nested lock was not taken in {c}",
      "kernel/locking/lockdep.c print_lock_nested_lock_not_held()", _WARN, _WARN_FALLBACK),
    F("stack-entries", Kind.LOCKDEP, b"MAX_STACK_TRACE_ENTRIES",
      rb"BUG: MAX_STACK_TRACE_ENTRIES too low!", "BUG: MAX_STACK_TRACE_ENTRIES too low!",
      "kernel/locking/lockdep.c save_trace()"),
    # -- stalls, hangs, lockups ---------------------------------------------------------------
    F("rcu-stall", Kind.RCU_STALL, b"INFO: ",
      rb"(?:rcu: )?INFO: (?P<flavor>rcu_\w{1,32}|rcu) (?P<what>self-detected stall on CPU"
      rb"|detected (?:expedited )?stalls? on (?:CPUs?(?:/tasks)?|tasks))",
      "INFO: rcu detected stall in {c}",
      "kernel/rcu/tree_stall.h print_cpu_stall(), print_other_cpu_stall(); tree_exp.h; "
      "tasks.h", (Src.IRQ_RIP,), skip=("apic_timer_interrupt", "rcu"),
      pick=Pick.STALL),
    F("hung", Kind.HUNG_TASK, b"INFO: task ",
      rb"INFO: task (?P<comm>.{0,64}):(?P<pid>\d{1,10}) blocked (?:in I/O wait )?for more "
      rb"than (?P<secs>\d{1,10}) seconds",
      "INFO: task hung in {c}", "kernel/hung_task.c check_hung_task()", _TRACE,
      pick=Pick.HUNG),
    F("cant-die", Kind.HUNG_TASK, b"INFO: task ",
      rb"INFO: task (?P<comm>.{0,64}):(?P<pid>\d{1,10}) can't die for more than "
      rb"(?P<secs>\d{1,10}) seconds",
      "INFO: task can't die in {c}",
      "kernel/hung_task.c, a patch syzbot's kernels carried", _TRACE, skip=("schedule",)),
    F("hard-lockup", Kind.HARD_LOCKUP, b"hard LOCKUP",
      rb"(?:NMI watchdog: |watchdog: )?Watchdog detected hard LOCKUP on cpu (?P<cpu>\d{1,5})",
      "hard lockup in {c}",
      "kernel/watchdog.c watchdog_hardlockup_check() (6.7+), kernel/watchdog_hld.c before",
      _RIP_TRACE),
    # -- WARNING: subsystem phrases by file (before the generic WARNING) ----------------------
    F("w-odebug", Kind.WARNING, b"lib/debugobjects.c",
      rb"WARNING: .{0,200}lib/debugobjects\.c.{0,200} (?:debug_print|debug_check|at)",
      "WARNING: ODEBUG bug in {c}", "lib/debugobjects.c debug_print_object()",
      _WARN, _WARN_FALLBACK,
      skip=("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree",
            "__free_", "debug_check", "kobject_"), warns=True),
    F("w-usercopy", Kind.WARNING, b"mm/usercopy.c",
      rb"WARNING: .{0,200}mm/usercopy\.c.{0,200} (?:usercopy_warn|at)",
      "WARNING: bad usercopy in {c}", "mm/usercopy.c usercopy_warn()", _WARN, _WARN_FALLBACK,
      skip=("usercopy", "__check"), warns=True),
    F("w-kobject", Kind.WARNING, b"lib/kobject.c",
      rb"WARNING: .{0,200}lib/kobject\.c.{0,200} (?:kobject_|at)",
      "WARNING: kobject bug in {c}", "lib/kobject.c", _WARN, _WARN_FALLBACK, skip=("kobject_",),
      warns=True),
    F("w-proc", Kind.WARNING, b"fs/proc/generic.c",
      rb"WARNING: .{0,200}fs/proc/generic\.c.{0,200} (?:proc_register|at)",
      "WARNING: proc registration bug in {c}", "fs/proc/generic.c proc_register()",
      _WARN, _WARN_FALLBACK, skip=("proc_",), warns=True),
    F("w-refcount", Kind.WARNING, b"lib/refcount.c",
      rb"WARNING: .{0,200}lib/refcount\.c.{0,200} (?:refcount_|at)",
      "WARNING: refcount bug in {c}", "lib/refcount.c refcount_warn_saturate()",
      _WARN, _WARN_FALLBACK, skip=("refcount", "kobject_"), warns=True),
    F("w-locking", Kind.LOCKDEP, b"kernel/locking/lockdep.c",
      rb"WARNING: .{0,200}kernel/locking/lockdep\.c.{0,200}lock_",
      "WARNING: locking bug in {c}", "kernel/locking/lockdep.c DEBUG_LOCKS_WARN_ON()",
      _WARN, _WARN_FALLBACK, skip=("lock_sock", "release_sock"), warns=True),
    F("w-kmalloc", Kind.WARNING, b"mm/",
      rb"WARNING: .{0,200}mm/.{0,100}\.c.{0,200} k?.?malloc",
      "WARNING: kmalloc bug in {c}", "mm/slab_common.c, mm/page_alloc.c",
      _WARN, _WARN_FALLBACK, skip=("kmalloc", "krealloc", "slab", "kmem"), warns=True),
    F("w-vmalloc", Kind.WARNING, b"mm/vmalloc.c",
      rb"WARNING: .{0,200}mm/vmalloc\.c.{0,200}__vmalloc_node",
      "WARNING: zero-size vmalloc in {c}", "mm/vmalloc.c __vmalloc_node_range()",
      _WARN, _WARN_FALLBACK, warns=True),
    F("w-urb", Kind.WARNING, b"usb_submit_urb", rb"WARNING: .{0,300} usb_submit_urb",
      "WARNING in {c}/usb_submit_urb", "drivers/usb/core/urb.c usb_submit_urb()",
      _WARN, _WARN_FALLBACK, skip=_URB, warns=True),
    F("w-unwind-regs", Kind.WARNING, b"WARNING: kernel stack regs",
      rb"WARNING: kernel stack regs at [0-9a-f]{1,16} in \S{1,100} has bad '(?P<reg>\w{1,8})' "
      rb"value",
      "WARNING: kernel stack regs has bad '{reg}' value", "arch/x86/kernel/unwind_frame.c"),
    F("w-unwind-fp", Kind.WARNING, b"WARNING: kernel stack frame pointer",
      rb"WARNING: kernel stack frame pointer at [0-9a-f]{1,16} in \S{1,100} has bad value",
      "WARNING: kernel stack frame pointer has bad value", "arch/x86/kernel/unwind_frame.c"),
    F("w-unwind", Kind.WARNING, b"WARNING: kernel stack",
      rb"WARNING: kernel stack (?:regs|frame pointer) at .{1,40} in \S{1,100} has bad "
      rb"(?:'\w{1,8}' )?value", "WARNING: kernel stack regs has bad value",
      "arch/x86/kernel/unwind_frame.c (addresses hashed: '(ptrval)')"),
    F("w-list", Kind.LIST_CORRUPTION, b"lib/list_debug.c",
      rb"WARNING: (?:CPU: (?P<cpu>\d{1,5}) PID: (?P<pid>\d{1,10}) at |at )?"
      rb"(?P<loc>\S{0,200}lib/list_debug\.c:\d{1,7})(?: (?P<func>\S{1,300}))?",
      "WARNING: corrupted list in {c}", "lib/list_debug.c (WARN without "
      "CONFIG_BUG_ON_DATA_CORRUPTION)", _WARN, _WARN_FALLBACK, warns=True),
    F("warning", Kind.WARNING, b"WARNING: ",
      rb"WARNING: (?:(?P<loc3>\S{1,300}:\d{1,7}) at (?P<func3>[^\s,]{1,300}), CPU#(?P<cpu>\d{1,5})"
      rb": (?P<comm>.{0,64})/(?P<pid>\d{1,10})"
      rb"|CPU: (?P<cpu2>\d{1,5}) PID: (?P<pid2>-?\d{1,10}) at (?P<loc>\S{1,300}?:\d{1,7})"
      rb"(?: (?P<func>.{1,300}))?"
      rb"|at (?P<loc2>\S{1,300}?:\d{1,7})(?: (?P<func2>.{1,300}))?)",
      "WARNING in {c}",
      "kernel/panic.c __warn(): 'WARNING: %s:%d at %pS, CPU#%d: %s/%d' 6.19+, 'WARNING: CPU: "
      "%d PID: %d at %s:%d %pS' 3.10+, 'WARNING: at %s:%d %pS()' before",
      _WARN, _WARN_FALLBACK, warns=True),
    # -- other kernels' words ----------------------------------------------------------------
    F("netdev-wait", Kind.BUG, b"unregister_netdevice",
      rb"unregister_netdevice: waiting for (?P<dev>\S{1,64}) to become free",
      "unregister_netdevice: waiting for DEV to become free",
      "net/core/dev.c netdev_wait_allrefs_any()"),
    F("vfs-busy", Kind.BUG, b"VFS: Busy inodes", rb"VFS: Busy inodes after unmount",
      "VFS: Busy inodes after unmount (use-after-free)",
      "fs/super.c generic_shutdown_super()"),
    F("vfs-close", Kind.BUG, b"VFS: Close", rb"VFS: Close: file count is 0",
      "VFS: Close: file count is zero (use-after-free)", "fs/open.c filp_close()"),
    F("stack-corrupted", Kind.STACK_CORRUPTION, b"Kernel stack",
      rb"Kernel stack is corrupted in:? ?" + _FUNC,
      "stack is corrupted in {c}", "kernel/panic.c __stack_chk_fail()", (Src.HEADER,)),
    F("slub-info", Kind.BUG, b"INFO: ",
      rb"INFO: (?P<what>Freed|Allocated) in " + _FUNC
      + rb"(?:\+0x[0-9a-f]{1,16}/0x[0-9a-f]{1,16})?(?P<tail>.{0,200})",
      "INFO: {what} in {c}{tail}", "mm/slub.c print_track() (part of a SLUB or old KASAN report)",
      (Src.HEADER,), raw=True, corrupt="a piece of a SLUB report"),
    F("info-empty", Kind.UNKNOWN, b"INFO:", rb"INFO:\s{0,8}$", "INFO: corrupted",
      "a report's first line cut after its first word", corrupt="first line cut"),
    F("bug-empty", Kind.BUG, b"BUG:", rb"BUG:\s{0,8}$", "BUG: corrupted",
      "a report's first line cut after its first word", corrupt="first line cut"),
    F("warning-empty", Kind.WARNING, b"WARNING:", rb"WARNING:\s{0,8}$", "WARNING: corrupted",
      "a report's first line cut after its first word", corrupt="first line cut"),
    F("oom", Kind.OOM, b"oom-killer", rb"(?P<comm>.{1,64}?) invoked oom-killer:",
      "out of memory: {comm} invoked the OOM killer", "mm/oom_kill.c dump_header()"),
    F("bug", Kind.BUG, b"BUG: ", rb"BUG: (?P<what>.{1,300})", "BUG: {what}",
      "everything else the kernel calls a BUG"),
)

#: The kernel panics that are reports of their own (matched on a ``Kernel panic - not
#: syncing:`` line no report explains); else :data:`STANDALONE_PANIC`.
PANIC_FAMILIES: tuple[Family, ...] = (
    F("stackprot", Kind.STACK_CORRUPTION, b"stack-protector",
      rb"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: " + _FUNC,
      "kernel panic: stack is corrupted in {c}", "kernel/panic.c __stack_chk_fail()",
      (Src.HEADER,)),
    F("stackprot-addr", Kind.STACK_CORRUPTION, b"stack-protector",
      rb"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
      rb"[0-9a-f]{1,16}",
      "kernel panic: stack is corrupted in {c}", "kernel/panic.c __stack_chk_fail()",
      _TRACE, skip=("stack_chk",)),
    F("stack-end", Kind.STACK_CORRUPTION, b"corrupted stack end",
      rb"Kernel panic - not syncing: corrupted stack end detected inside scheduler",
      "kernel panic: corrupted stack end in {c}", "kernel/sched/core.c schedule_debug()",
      _TRACE, skip=("schedule", "retint_kernel"), pick=Pick.STALL),
    F("stack-overflow", Kind.STACK_CORRUPTION, b"kernel stack overflow",
      rb"Kernel panic - not syncing: kernel stack overflow",
      "kernel stack overflow in {c}",
      "arch/arm64/kernel/traps.c handle_bad_stack(); x86 4.x 'kernel stack overflow "
      "(double-fault)'", _TRACE, skip=("bad_stack",), pick=Pick.STALL),
)

#: A ``Kernel panic - not syncing: REASON`` no report explains.  Its culprit is the
#: first ordinary frame of its trace (not used in the title, which names the reason).
STANDALONE_PANIC = F("panic", Kind.PANIC, b"Kernel panic", rb"Kernel panic - not syncing",
                     "kernel panic: {reason}", "kernel/panic.c panic()", _TRACE)
#: A die() header (``Oops: 0000 [#1]``, ``Internal error: Oops: 96000005 [#1]``) without a
#: start line before it.
DIE = F("die", Kind.UNKNOWN, b"[#", rb"", "{what} in {c}",
        "arch/x86/kernel/dumpstack.c __die_header(), arch/arm64/kernel/traps.c __die(), "
        "arch/arm/kernel/traps.c __die(), arch/riscv/kernel/traps.c die(), "
        "arch/s390/kernel/dumpstack.c die()", _RIP_TRACE, dies=True)
#: The BUG() and WARN() that report a list corruption (after ``list_del corruption``).
LIST_BUG = next(f for f in FAMILIES if f.id == "list-bug")
LIST_WARNING = next(f for f in FAMILIES if f.id == "w-list")

#: Families whose reports carry no stack of their own (syzkaller's noStackTrace): a
#: report of any other family without a stack, or with a stack header and no frame
#: after it, is corrupted.
STACKLESS = frozenset({
    "kmsan", "kcsan", "kfence", "wq-leak", "wq-lockup", "bad-rss", "lock-user", "w-unwind",
    "w-unwind-regs", "w-unwind-fp", "netdev-wait", "vfs-busy", "vfs-close", "stackprot", "oom",
    "stack-entries",
})

# Lines that hold a family's words but are notices, not reports (syzkaller's
# suppressions, kernel notices that say WARNING or INFO).
_NOT_START = re.compile(
    rb"ODEBUG:|INFO: lockdep is turned off|INFO: Stall ended|INFO: NMI handler|took too long"
    rb"|WARNING: [Tt]he mand mount option|WARNING: workqueue cpumask|WARNING: See https"
    rb"|WARNING: Unprivileged eBPF|WARNING: kernel not compiled with")


def by_id(family_id: str) -> Family:
    """The family called *family_id* (tests and docs)."""
    for f in (*FAMILIES, *PANIC_FAMILIES, STANDALONE_PANIC, DIE):
        if f.id == family_id:
            return f
    raise KeyError(family_id)


def match(text: bytes) -> tuple[Family, dict[str, bytes]] | None:
    """The family whose start line *text* (a line body without indentation) is,
    with the named groups that matched; ``None`` when it starts no report."""
    for family in FAMILIES:
        if family.needle in text:
            m = family.pattern.match(text)
            if m:
                if _NOT_START.search(text, 0, 200):
                    return None
                return family, {k: v for k, v in m.groupdict().items() if v is not None}
    return None
