"""Crash signatures: a stable identity for "the same bug".

A signature is the first 16 hex digits of the SHA-256 of its *basis*, a
short text built only from names:

    <kind>|<function [module]>|<caller>|<caller's caller>|<...>

* the kind (``null-pointer``, ``warning``, ...);
* the faulting function (x86 ``RIP``, arm64 ``pc``) followed by the
  reliable call trace frames, at most :data:`DEPTH` functions in all;
* frames marked ``?`` by the unwinder, raw addresses and the machinery that
  reports a failure rather than causes it are skipped: ``dump_stack*``,
  ``panic``, ``__warn``, ``report_bug``, ``handle_bug``, ``exc_*``,
  ``asm_exc_*``, page fault handlers, the watchdog timer and NMI frames of
  lockup reports, KASAN/UBSAN reporting, the scheduler frames a hung task
  sleeps in, the list checkers of a list corruption, the allocator frames
  of an OOM;
* compiler suffixes that change from build to build are removed
  (``.cold``, ``.constprop.0``, ``.isra.0``, ``.part.0``, ``.llvm.123``);
* offsets, sizes, addresses, PIDs, CPUs, times and line numbers are never
  used, so the signature survives reboots, KASLR, rebuilds and minor
  versions; a different kind or culprit gives a different signature.

A report without any usable frame (a bare panic line, a truncated report)
falls back to its headline with every number replaced by ``N``, plus the
work function of its ``Workqueue:`` line if it has one; two different bugs
whose reports were both cut before any frame can share such a signature.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memconsole.oops._model import Frame, Report

__all__ = ["DEPTH", "basis", "normalize_function", "signature"]

#: How many functions (culprit plus callers) go into the basis.
DEPTH = 4

# Reporting machinery: never the cause.  Anchored at the start of the name.
_MACHINERY = re.compile(
    r"(?:dump_stack|show_stack|show_trace|dump_backtrace|__show_regs|show_regs|__warn"
    r"|warn_slowpath|warn_on_|report_bug|handle_bug|exc_|asm_exc_|do_trap|do_error_trap"
    r"|do_invalid_op|invalid_op|do_divide_error|divide_error|general_protection"
    r"|do_general_protection|panic$|vpanic|nmi_panic|check_panic_on_warn|__stack_chk_fail"
    r"|__die|die$|oops_end|page_fault_oops|kernelmode_fixup_or_oops|__bad_area"
    r"|bad_area|do_user_addr_fault|do_kern_addr_fault|handle_page_fault|no_context"
    r"|__do_page_fault|do_page_fault|page_fault$|async_page_fault|spurious_kernel_fault"
    r"|bug_handler|brk_handler|call_break_hook|early_brk64|el1_|el1h_|el0_|do_mem_abort"
    r"|__do_kernel_fault|do_translation_fault|die_kernel_fault|do_bad_area|arm64_notify_die"
    r"|bug_brk_handler|do_undefinstr|__schedule_bug|schedule_debug"
    # lockup watchdogs, the timer interrupt they run in, NMI backtraces
    r"|watchdog|__hrtimer_run_queues|hrtimer_interrupt|hrtimer_run_queues"
    r"|__sysvec_|sysvec_|asm_sysvec_|apic_timer_interrupt|smp_apic_timer_interrupt"
    r"|local_apic_timer_interrupt|tick_sched|tick_nohz_handler|update_process_times"
    r"|rcu_sched_clock_irq|rcu_pending|rcu_check_callbacks|print_cpu_stall|rcu_dump_cpu_stacks"
    r"|print_other_cpu_stall|check_cpu_stall|dump_cpu_task|sched_show_task|nmi_cpu_backtrace"
    r"|nmi_trigger_cpumask_backtrace|arch_trigger_cpumask_backtrace|trigger_.*backtrace"
    r"|__perf_event_overflow|perf_event_overflow|perf_event_nmi_handler|handle_pmi_common"
    r"|intel_pmu_handle_irq|amd_pmu_handle_irq|x86_pmu_handle_irq|nmi_handle|default_do_nmi"
    r"|do_nmi|end_repeat_nmi|irq_exit|__irq_exit_rcu|irq_exit_rcu|hung_task|check_hung"
    r"|khungtaskd|__handle_irq_event_percpu|gic_handle_irq|handle_domain_irq|arch_timer_handler"
    # sanitizers
    r"|kasan_|__kasan_|__asan_|print_report|print_address_description|check_memory_region"
    r"|ubsan_|__ubsan_|kmsan_report|__msan_)"
)
# Where a hung or atomic-sleeping task waits: scheduler and sleeping-lock internals.
_SLEEPERS = re.compile(
    r"(?:__?schedule|schedule|preempt_schedule|__?cond_resched|_+might_(?:sleep|resched|fault)"
    r"|might_fault|__switch_to|__?mutex_lock|mutex_lock|__?down|down|rt_mutex|rt_spin"
    r"|rwsem_down|__rwsem|wait_for_|__wait_for_|do_wait_for_common|msleep|usleep|io_schedule"
    r"|bit_wait|__wait_on_bit|out_of_line_wait_on_bit|wait_on_page|folio_wait|__folio_lock"
    r"|__lock_page|schedule_timeout|schedule_preempt_disabled|percpu_rwsem_wait)"
)
# The list checkers a list corruption is reported by.
_LIST_CHECKERS = re.compile(r"(?:__list_(?:add|del)|list_(?:add|del)|__list_del_entry)")
# The allocator path an OOM report is printed from.
_OOM_PATH = re.compile(
    r"(?:dump_header|oom_kill_process|out_of_memory|pagefault_out_of_memory|__?alloc_pages"
    r"|alloc_pages|__folio_alloc|folio_alloc|__get_free_pages|get_page_from_freelist"
    r"|__alloc_pages_slowpath|__alloc_pages_may_oom|__alloc_pages_nodemask|mem_cgroup_out_of_memory"
    r"|try_charge|obj_cgroup_charge|mem_cgroup_oom|__mem_cgroup_charge|charge_memcg)"
)
# gcc/clang clone suffixes: .cold, .constprop.0, .isra.0, .part.0, .llvm.1234, ...
_SUFFIX = re.compile(r"(?:\.(?:cold|constprop|isra|part|llvm|lto_priv|clone|localalias)"
                     r"(?:\.\d+)?)+$")
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+")


def normalize_function(name: str) -> str:
    """A function name without build-dependent decoration:
    ``__list_del_entry_valid.cold.12`` -> ``__list_del_entry_valid``."""
    name = name.removeprefix("__pfx_")
    return _SUFFIX.sub("", name)


def _skipped(frame: Frame, kind: str, is_rip: bool) -> bool:
    name = normalize_function(frame.function)
    if not name or name.startswith("0x") or not frame.reliable:
        return True
    if _MACHINERY.match(name):
        return True
    if kind == "hard-lockup" and frame.context == "NMI":
        return True
    if kind in ("hung-task", "scheduling-while-atomic") and _SLEEPERS.match(name):
        return True
    if kind == "list-corruption" and _LIST_CHECKERS.match(name):
        return True
    return kind == "oom" and _OOM_PATH.match(name) is not None


def _functions(report: Report) -> list[str]:
    kind = report.kind.value
    frames: Iterable[tuple[Frame, bool]] = (
        ([(report.rip, True)] if report.rip is not None else [])
        + [(f, False) for f in report.call_trace])
    out: list[str] = []
    for frame, is_rip in frames:
        if _skipped(frame, kind, is_rip):
            continue
        name = normalize_function(frame.function)
        label = f"{name} [{frame.module}]" if frame.module else name
        if out and out[-1] == label:
            continue  # arm64 prints the faulting function as the first frame too
        out.append(label)
        if len(out) >= DEPTH:
            break
    return out


def basis(report: Report) -> str:
    """The human-readable text the signature of *report* hashes."""
    kind = report.kind.value
    functions = _functions(report)
    parts = [kind, *functions]
    if kind == "panic" or not functions:
        what = report.panic_reason if kind == "panic" and report.panic_reason else report.headline
        parts.append(_NUMBER.sub("N", what).strip())
    if not functions and report.workqueue:
        # "events crashy_work_fn [crashy]": the work function is stable, the pool is not.
        parts.append("work " + report.workqueue.split(" ", 1)[-1])
    return "|".join(parts)


def signature(report: Report) -> str:
    """16 hex digits identifying the bug *report* is about."""
    return hashlib.sha256(basis(report).encode("utf-8", "backslashreplace")).hexdigest()[:16]
