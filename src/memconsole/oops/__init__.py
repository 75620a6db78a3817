"""Find and explain kernel crash reports in a kernel log.

The input is kernel log text as ``bytes``: a pstore ``dmesg-*`` record, a
console record, ``dmesg`` output, ``/var/log/kern.log``, ``journalctl -k``,
a serial console capture.  :func:`parse_reports` returns every report in it
(oopses, BUGs, WARNINGs, lockdep, lockups, hung tasks, RCU stalls, sanitizer
reports, memory leaks, OOM, panics) as immutable :class:`Report` records;
:func:`primary_report` picks the one that explains how the log ended, and
:func:`describe` turns it into one sentence.  Each report has a
:attr:`Report.title` and :attr:`Report.culprit` named the way syzkaller names
kernel crashes (docs/oops.md), and a :attr:`Report.signature`
(:mod:`memconsole.oops.signature`) built from the same culprit.  Logs too big
for memory, and gzip-compressed ones, are read by
:func:`memconsole.oops._scan.scan_stream`.

The parser works line by line in one pass (:mod:`memconsole.oops._builder`),
and only on the lines around report start lines (:mod:`memconsole.oops._scan`);
every per-line step is bounded (:mod:`memconsole.oops._patterns`), so any
input, including arbitrary bytes, is parsed in time linear in its size and
never raises.  Where each piece is:

* ``_families``: the report families (start line, title, culprit sources), each
  citing the kernel function that prints its start line;
* ``_machinery``: the one table of functions that are never the culprit;
* ``_culprit``: the culprit rules and the title's replacements;
* ``_patterns`` and ``_fields``: the line grammar (prefixes, frames, header and
  register lines), per message the kernel function that prints it;
* ``_draft`` (one report being assembled) and ``_builder`` (the line parser).
"""

from __future__ import annotations

import dataclasses

from memconsole.oops import _patterns as _p
from memconsole.oops import _scan as _logscan
from memconsole.oops._draft import printable
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
    """Say what happened in one sentence, e.g. ``kernel panic: BUG: unable to handle
    kernel NULL pointer dereference in crashy_null [crashy], task insmod (pid 86),
    kernel tainted OE``: the headline (the title with the culprit's module), then
    the task (the blocked one of a hung task) and the taint."""
    text = report.headline
    if report.panic_reason is not None and not text.startswith("kernel panic"):
        text = f"kernel panic: {text}"
    if report.comm is not None:
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
        "family": report.family,
        "title": report.title,
        "culprit": _frame_json(report.culprit),
        "corrupted": report.corrupted,
        "corrupted_reason": report.corrupted_reason,
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
        "caller": report.caller,
        "signature": report.signature,
        "signature_basis": report.signature_basis,
        "source": {"file": source_file, "line": report.line or None, "offset": report.start},
    }
