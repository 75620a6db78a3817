"""Find and explain kernel crash reports in a kernel log.

The input is kernel log text as ``bytes``: a pstore ``dmesg-*`` record, a
console record, ``dmesg`` output, ``/var/log/kern.log``, ``journalctl -k``,
a serial console capture.  :func:`parse_reports` returns every report in it
(oopses, BUGs, WARNINGs, lockups, hung tasks, RCU stalls, sanitizer reports,
OOM, panics) as immutable :class:`Report` records; :func:`primary_report`
picks the one that explains how the log ended, and :func:`describe` turns it
into one sentence.  Each report carries a :attr:`Report.signature`
(:mod:`memconsole.signature`).  Logs too big for memory, and gzip-compressed
ones, are read by :func:`memconsole._logscan.scan_stream`.

The parser works line by line in one pass (:mod:`memconsole._oops_builder`),
and only on the lines around report start markers (:mod:`memconsole._logscan`);
every per-line step is bounded (:mod:`memconsole._oops_patterns`), so any
input, including arbitrary bytes, is parsed in time linear in its size and
never raises.

Kernel sources mirrored (per message, in ``_oops_patterns`` and
``_oops_fields``): lib/bug.c report_bug(), kernel/panic.c __warn() and
panic(), arch/x86/mm/fault.c show_fault_oops(), arch/x86/kernel/dumpstack.c
__die_header() and show_trace_log_lvl(), arch/arm64/mm/fault.c
die_kernel_fault(), kernel/watchdog.c, kernel/hung_task.c,
kernel/rcu/tree_stall.h, mm/kasan/report.c, lib/ubsan.c, mm/oom_kill.c,
lib/list_debug.c, kernel/sched/core.c, lib/dump_stack.c and
kernel/printk/printk.c.
"""

from __future__ import annotations

import dataclasses

from memconsole.oops import _patterns as _p
from memconsole.oops import _scan as _logscan
from memconsole.oops._builder import printable
from memconsole.oops._model import Frame, Kind, Report, SourceLine

__all__ = [
    "Frame",
    "Kind",
    "Report",
    "SourceLine",
    "describe",
    "parse_reports",
    "primary_report",
    "to_json",
]


def parse_reports(text: bytes) -> list[Report]:
    """Return every crash report in the kernel log *text*, in order.

    *text* may carry syslog ``<N>`` levels, printk time stamps and caller
    ids, or syslog/journal prefixes.  A ``Kernel panic - not syncing`` line
    that follows the report that caused it sets that report's
    ``panic_reason``; a panic with no such report is a report of its own.
    Never raises.
    """
    return [b.report() for b in _logscan.parse_builders(text)]


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
    built = _logscan.parse_builders(text)
    for i, b in enumerate(built):
        if b.panic_reason is None:
            continue
        if b.standalone:
            cat = _p.panic_category(b.panic_reason)
            for j in range(i - 1, -1, -1):
                if built[j].explains(cat):
                    r = built[j].report()
                    return dataclasses.replace(
                        r, panic_reason=b.panic_reason,
                        kernel_offset=r.kernel_offset if r.kernel_offset is not None
                        else b.kernel_offset)
        return b.report()
    return built[-1].report() if built else None


def describe(report: Report) -> str:
    """Say what happened in one sentence, e.g. ``kernel panic: NULL pointer
    dereference in crashy_null [crashy], task insmod (pid 86), kernel tainted OE``."""
    text = report.headline
    if report.panic_reason is not None and not text.startswith("kernel panic"):
        text = f"kernel panic: {text}"
    if report.comm is not None and not (report.kind is Kind.HUNG_TASK and report.blocked_task):
        text += f", task {printable(report.comm)}"
        if report.pid is not None:
            text += f" (pid {report.pid})"
    elif report.pid is not None and report.blocked_task is None:
        text += f", pid {report.pid}"
    if report.tainted:
        text += f", kernel tainted {report.tainted}"
    return text


def _frame_json(f: Frame | None) -> dict[str, object] | None:
    if f is None:
        return None
    out: dict[str, object] = {"function": f.function, "offset": f.offset, "size": f.size,
                              "module": f.module}
    if f.context:
        out["reliable"] = f.reliable
        out["context"] = f.context
    if f.source:
        out["source"] = [{"function": s.function, "file": s.file, "line": s.line,
                          "inlined": s.inlined} for s in f.source]
    return out


def _hex(value: int | None) -> str | None:
    return None if value is None else f"0x{value:x}"


def to_json(report: Report, source_file: str | None = None) -> dict[str, object]:
    """The JSON object of *report* (``memconsole oops --json``, docs/oops.md).

    Addresses, offsets and error codes that are hardware values are ``"0x..."``
    strings; *source_file* names the file the report was found in.
    """
    return {
        "kind": report.kind.value,
        "headline": report.headline,
        "sentence": describe(report),
        "time": report.time,
        "kernel_release": report.kernel_release,
        "kernel_build": report.kernel_build,
        "hardware": report.hardware,
        "cpu": report.cpu,
        "pid": report.pid,
        "uid": report.uid,
        "comm": report.comm,
        "tainted": report.tainted,
        "taint_flags": list(report.taint_flags),
        "location": report.location,
        "fault_address": _hex(report.fault_address),
        "fault_info": list(report.fault_info),
        "error_code": _hex(report.error_code),
        "access": report.access,
        "rip": _frame_json(report.rip),
        "lr": _frame_json(report.lr),
        "call_trace": [_frame_json(f) for f in report.call_trace],
        "registers": dict(report.registers),
        "code": report.code,
        "modules": list(report.modules),
        "module_flags": dict(report.module_flags),
        "workqueue": report.workqueue,
        "kernel_offset": _hex(report.kernel_offset),
        "panic_reason": report.panic_reason,
        "blocked_task": report.blocked_task,
        "duration": report.duration,
        "oops_count": report.oops_count,
        "signature": report.signature,
        "signature_basis": report.signature_basis,
        "source": {"file": source_file, "line": report.line or None, "offset": report.start},
    }
