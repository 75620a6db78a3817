"""The records :mod:`memconsole.oops` returns (re-exported there; import them from there).

Immutable dataclasses with a docstring per field.  Kernel text is decoded
for the API with ``backslashreplace``: bytes that are not UTF-8 stay
visible as ``\\xNN``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Frame", "Kind", "Report", "SourceLine"]


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
    LOCKDEP = "lockdep"
    MEMORY_LEAK = "memory-leak"
    KMSAN = "kmsan"
    KCSAN = "kcsan"
    KFENCE = "kfence"


@dataclass(frozen=True)
class SourceLine:
    """A source position a frame's address maps to (filled by :mod:`memconsole.symbolize`)."""

    function: str
    """The function at that position (an inlined callee for all but the last entry)."""
    file: str
    """Source file as recorded in the debug info (``??`` when unknown)."""
    line: int | None
    """Line number, ``None`` when unknown."""
    inlined: bool
    """True when *function* was inlined into the next entry's function."""

    def label(self) -> str:
        """``crashy_null (crashy.c:76)``."""
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{self.function} ({where}){' [inline]' if self.inlined else ''}"


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
    printed); empty for ``Report.rip`` and ``Report.lr``, which are not part of a trace."""
    source: tuple[SourceLine, ...] = ()
    """Where the address is in the source, innermost inlined function first;
    empty until :func:`memconsole.symbolize.symbolize` fills it."""

    def label(self) -> str:
        """The function as a person reads it: ``crashy_null [crashy]``."""
        return f"{self.function} [{self.module}]" if self.module else self.function


@dataclass(frozen=True)
class Report:
    """One kernel crash report found in a log."""

    kind: Kind
    """What failed."""
    headline: str
    """The title with the culprit's module, e.g. ``BUG: unable to handle kernel NULL
    pointer dereference in crashy_null [crashy]``."""
    time: float | None
    """Seconds since boot from the printk time stamp of the report's first line."""
    kernel_release: str | None
    """``uname -r`` of the crashed kernel, from the ``CPU: ... Comm:`` line."""
    cpu: int | None
    """CPU the report was printed for; for lockups the CPU that was stuck."""
    pid: int | None
    """PID of the task concerned (the blocked task for hung tasks)."""
    comm: str | None
    """Command name of that task."""
    tainted: str
    """Taint letters such as ``OE``; empty when not tainted or not printed."""
    location: str | None
    """``file:line`` of a BUG, WARNING or UBSAN report."""
    rip: Frame | None
    """The faulting function from x86 ``RIP:`` / arm64 ``pc :`` / arm ``PC is at``."""
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
    line: int = 0
    """1-based line number of the report's first line in the input (0: unknown)."""
    uid: int | None = None
    """The task's UID from the 6.11+ ``CPU: N UID: N PID:`` line."""
    kernel_build: str | None = None
    """What follows the release on the ``CPU:`` line: ``#1 SMP PREEMPT_DYNAMIC Debian
    6.12.117-1~deb12u1``, ``#47 PREEMPT(lazy)``."""
    hardware: str | None = None
    """The ``Hardware name:`` line (DMI or device tree)."""
    taint_flags: tuple[str, ...] = ()
    """Names of the taint letters (:func:`memconsole.taint.taint_names`)."""
    fault_address: int | None = None
    """The address a fault was about: x86 ``address: ...``, arm ``at virtual address``,
    a GPF's non-canonical address, a KASAN access; ``None`` if not printed."""
    fault_info: tuple[str, ...] = ()
    """x86 ``#PF: ...`` lines and arm64 ``ESR = ...`` lines, as printed."""
    error_code: int | None = None
    """Hardware error code: x86 ``#PF: error_code(0x...)`` or the die() header's code,
    arm64 ESR."""
    lr: Frame | None = None
    """The link register's function, arm64 ``lr :`` / arm ``LR is at``."""
    registers: tuple[tuple[str, str], ...] = ()
    """The kernel-mode register dump before the call trace, name and value as printed
    (``("RSP", "0018:ffffd0b4805e3bc8")``, ``("x29", "ffff...")``)."""
    code: str | None = None
    """The ``Code:`` line of the kernel-mode register dump (bytes, ``<..>``/``(..)``
    marking the faulting instruction), or its "Unable to access opcode bytes" text."""
    module_flags: tuple[tuple[str, str], ...] = ()
    """Modules printed with taint/state flags: ``(("crashy", "OE+"),)``."""
    workqueue: str | None = None
    """The ``Workqueue:`` line: queue name and work function, e.g.
    ``events crashy_work_fn [crashy]``."""
    kernel_offset: int | None = None
    """KASLR offset from ``Kernel Offset: 0x... from 0xffffffff81000000``."""
    duration: float | None = None
    """Seconds stuck (soft lockup) or blocked (hung task), as printed."""
    access: str | None = None
    """A KASAN report's access line: ``Read of size 8 at addr ... by task insmod/86``."""

    title: str = ""
    """One line naming the bug the way syzkaller does, stable across kernels, KASLR,
    compilers and reboots: the family's phrase, then ``in`` and the culprit
    (``BUG: unable to handle kernel NULL pointer dereference in crashy_null``); the
    phrase alone when no culprit was found."""
    culprit: Frame | None = None
    """The first frame of the report that is not reporting, sanitizer, locking,
    scheduling, allocation or copy machinery (docs/oops.md), chosen by the report
    family's rule; ``None`` when the report holds no usable frame."""
    culprit_name: str | None = None
    """The culprit as the title names it: no compiler clone suffix, no system call
    wrapper prefix (``__x64_sys_rmdir`` -> ``sys_rmdir``, syzkaller's rule), and the
    buckets of stalls and hangs (``smp_call_function``, ``synchronize_rcu``)."""
    corrupted: bool = False
    """True when the report is cut off, interleaved with another one, or lacks the
    part that names its culprit: its title is then less certain."""
    corrupted_reason: str | None = None
    """Why the report is corrupted (``no frames``, ``garbled title``, ...)."""
    family: str = ""
    """The report family (the row of the family table in docs/oops.md), e.g. ``null``."""
    caller: str | None = None
    """The printk caller id of the report's lines (``T164``, ``C0``; CONFIG_PRINTK_CALLER),
    ``None`` when none was printed.  Lines of other callers are not part of the report."""
    signature: str = ""
    """Stable 16-hex-digit identity of the bug (see :mod:`memconsole.oops.signature`)."""
    signature_basis: str = ""
    """The text the signature is the hash of, e.g.
    ``null-pointer|crashy_null [crashy]|crashy_init [crashy]|do_one_initcall|do_init_module``."""
