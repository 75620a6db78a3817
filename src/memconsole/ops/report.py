"""The crash report page: one self-contained HTML file (``memconsole report
--html FILE``) a person opens in a browser, with no network fetch: the
styles are inline, there is no script, no image, no font or link to load.

* a timeline of the boots memconsole knows of and how each ended:
  ``clean`` (the ring recorder was stopped at shutdown), ``panic``, ``oops``
  (a crash report without a panic), ``hang or reset`` (the ring's console
  just stops) or ``unknown`` (pstore records without a recognisable report);
* the crashes grouped by signature (the same bug), with counts;
* one section per crash: its title, culprit, the call trace (with source
  lines when :func:`symbolise` had symbols for it), and the console lines
  before the report.

:func:`timeline` and :func:`page` are pure: events and ring logs in, text
out.  Every piece of kernel or file text goes through
:func:`memconsole.render.escape` (no control characters, ``\\xNN`` for bytes
that are not UTF-8) and then HTML escaping.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from memconsole import oops
from memconsole.history import CrashEvent, RingLog
from memconsole.oops import symbolize as _symbolize
from memconsole.render import dmesg_text, escape

__all__ = ["CONSOLE_LINES", "ENDINGS", "OPEN_BOOTS", "OPEN_CRASHES", "BootRow", "ending", "page",
           "symbolise", "timeline"]

#: How a boot ended, in the page's order of severity.
ENDINGS = ("clean", "panic", "oops", "hang or reset", "unknown")
#: Boots listed open in the boots table, newest first; older ones are in a
#: closed <details> below it.
OPEN_BOOTS = 50
#: Crash sections shown open, newest first; older ones are in a closed
#: <details> below them.
OPEN_CRASHES = 50
#: Console lines shown before each report.
CONSOLE_LINES = 30
_COLOURS = {"clean": "#2e7d32", "panic": "#c62828", "oops": "#ef6c00",
            "hang or reset": "#6a1b9a", "unknown": "#616161"}


@dataclass(frozen=True)
class BootRow:
    """One boot on the timeline.

    Attributes:
        boot: the archive boot id, or the kernel's boot id for a boot known
            only from its ring.
        time_ns: when it ended (its crash, or its ring's last record).
        ending: one of :data:`ENDINGS`.
        events: indexes of its crash events in the page's event list.
        what: one line: the headline of its last crash, or how its console
            ended.
    """

    boot: str
    time_ns: int
    ending: str
    events: tuple[int, ...]
    what: str


def ending(event: CrashEvent) -> str:
    """How the boot of *event* ended, as the timeline says it."""
    if event.ring_only:
        return "hang or reset"
    if event.panicked:
        return "panic"
    if event.report is not None:
        return "oops"
    return "unknown"


def timeline(events: Sequence[CrashEvent], rings: Iterable[RingLog] = ()) -> list[BootRow]:
    """The boots of *events*, and the cleanly stopped boots of *rings* that
    have no event, oldest first (pure)."""
    by_boot: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        by_boot.setdefault(e.boot, []).append(i)
    rows = []
    for boot, idx in by_boot.items():
        last = events[idx[-1]]
        rows.append(BootRow(boot, last.time_ns, ending(last), tuple(idx), last.headline))
    known = {e.ring.ring_boot for e in events if e.ring is not None}
    seen: set[str] = set()
    for log in rings:
        if log.stopped and log.ring_boot not in known and log.ring_boot not in seen:
            seen.add(log.ring_boot)
            rows.append(BootRow(log.ring_boot, log.last_ns, "clean", (), log.ended()))
    rows.sort(key=lambda r: r.time_ns)
    return rows


def symbolise(events: Sequence[CrashEvent], paths: Sequence[Path]
              ) -> tuple[list[CrashEvent], list[str]]:
    """*events* with source lines added to their reports from the symbols
    at *paths* (vmlinux, .ko, a module tree, a debug root: as ``oops
    --symbols``), and the notes on frames that could not be symbolised."""
    if not paths:
        return list(events), []
    tables: dict[str | None, _symbolize.Symbols] = {}
    notes: list[str] = []
    out = []
    try:
        for e in events:
            if e.report is None:
                out.append(e)
                continue
            rel = e.report.kernel_release
            if rel not in tables:
                tables[rel] = _symbolize.find_symbols(paths, rel)
            report, more = _symbolize.symbolize(e.report, tables[rel])
            notes += [n for n in more if n not in notes]
            out.append(replace(e, report=report))
    finally:
        for table in tables.values():
            table.close()
    return out, notes


def _t(data: bytes | str) -> str:
    """Kernel or file text, escaped for a terminal, then for HTML."""
    return html.escape(escape(data, layout=True), quote=True)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _frame(f: oops.Frame) -> str:
    s = f.label()
    if f.offset is not None:
        s = f"{f.function}+{f.offset:#x}" + (f"/{f.size:#x}" if f.size is not None else "") \
            + (f" [{f.module}]" if f.module else "")
    if not f.reliable:
        s = "? " + s
    if f.context not in ("", "TASK"):
        s += f" <{f.context}>"
    lines = [f'<li><code>{_t(s)}</code>']
    if f.source:
        lines.append('<ul class="src">' + "".join(
            f"<li><code>{_t(src.label())}</code></li>" for src in f.source) + "</ul>")
    return "".join(lines) + "</li>"


def _console_before(e: CrashEvent) -> bytes:
    """The last :data:`CONSOLE_LINES` console lines before the report (the
    ring's last ones for a hang), without syslog level prefixes."""
    log = e.log
    before = log[:e.report.start] if e.report is not None else log
    text = dmesg_text(before) if not e.ring_only else before
    lines = text.rstrip(b"\n").split(b"\n")
    return b"\n".join(lines[-CONSOLE_LINES:]) if text.strip() else b""


def _event(i: int, e: CrashEvent, row: BootRow | None) -> str:
    r = e.report
    title = (r.title or r.headline) if r is not None else e.headline
    culprit = "-"
    if r is not None and r.culprit is not None:
        culprit = r.culprit.label()
    elif r is not None and r.culprit_name:
        culprit = r.culprit_name
    facts = [("ending", row.ending if row else ending(e)), ("kind", e.kind), ("boot", e.boot),
             ("time", _when(e.time_ns)), ("culprit", culprit), ("headline", e.headline)]
    if r is not None:
        facts += [("task", f"{r.comm or '?'} (pid {r.pid if r.pid is not None else '?'})"),
                  ("kernel", r.kernel_release or "?"), ("tainted", r.tainted or "no"),
                  ("signature", r.signature or "-")]
    facts.append(("records", " ".join(x.name for x in e.records)
                  + (f" {e.ring.name}" if e.ring else "")))
    out = [f'<section class="crash" id="crash-{i}">',
           f'<h3><span class="badge" style="background:{_COLOURS[facts[0][1]]}">'
           f"{_t(facts[0][1])}</span> {_t(title)}</h3>",
           '<dl class="facts">' + "".join(f"<dt>{_t(k)}</dt><dd>{_t(v)}</dd>" for k, v in facts)
           + "</dl>"]
    if r is not None and (r.rip is not None or r.call_trace):
        symbolised = any(f.source for f in (*r.call_trace, *([r.rip] if r.rip else [])))
        out.append(f'<h4>Call trace{" (symbolised)" if symbolised else ""}</h4>'
                   '<ol class="trace">'
                   + (_frame(r.rip).replace("<li>", '<li class="rip">RIP ', 1) if r.rip else "")
                   + "".join(_frame(f) for f in r.call_trace) + "</ol>")
    console = _console_before(e)
    label = "Console before the report" if r is not None else "Console at its end"
    out.append(f'<h4>{label}</h4><pre class="console">{_t(console) or "(nothing)"}</pre>')
    out.append("</section>")
    return "\n".join(out)


def _svg(rows: Sequence[BootRow]) -> str:
    """One mark per boot, oldest left, in boot order (evenly spaced: a
    fleet machine's boots can be minutes or months apart)."""
    if not rows:
        return ""
    step = 980 / max(len(rows) - 1, 1)
    width = max(min(step * 0.8, 12.0), 0.6)
    marks = []
    for n, row in enumerate(rows):
        x = 10 + step * n if len(rows) > 1 else 500
        marks.append(f'<rect x="{x - width / 2:.2f}" y="8" width="{width:.2f}" height="34" '
                     f'fill="{_COLOURS[row.ending]}"><title>{_t(row.boot)} '
                     f"{_t(_when(row.time_ns))}: {_t(row.ending)}</title></rect>")
    return ('<svg class="strip" viewBox="0 0 1000 60" role="img" aria-label="boots, oldest '
            'first">' + "".join(marks)
            + f'<text x="10" y="56" font-size="10">{_t(_when(rows[0].time_ns))}</text>'
            f'<text x="990" y="56" font-size="10" text-anchor="end">'
            f"{_t(_when(rows[-1].time_ns))}</text></svg>")


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f5f5f5}
.badge{color:#fff;border-radius:.3em;padding:0 .4em;font-size:.8em;white-space:nowrap}
.strip{width:100%;height:60px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em}dt{color:#666}dd{margin:0}
pre.console{background:#111;color:#ddd;padding:.6em;overflow-x:auto;font-size:12px}
ol.trace{font-size:13px}ul.src{list-style:none;padding-left:1.5em;color:#555}
section.crash{content-visibility:auto;contain-intrinsic-size:auto 50em;
border-left:4px solid #ddd;padding-left:1em;margin:1.5em 0}
.legend span{margin-right:1em}
"""


def _boot_row(row: BootRow) -> str:
    what = _t(row.what)
    if row.events:
        what = f'<a href="#crash-{row.events[-1]}">{what}</a>'
    return (f'<tr class="boot" data-ending="{_t(row.ending)}"><td>'
            f"{_t(_when(row.time_ns))}</td><td><code>{_t(row.boot)}</code></td>"
            f'<td><span class="badge" style="background:{_COLOURS[row.ending]}">'
            f"{_t(row.ending)}</span></td><td>{what}</td></tr>")


def page(events: Sequence[CrashEvent], rings: Iterable[RingLog] = (),
         generated_ns: int = 0, host: str = "") -> str:
    """The whole page (pure): *events* oldest first, *rings* the ring logs
    whose cleanly stopped boots join the timeline."""
    rows = timeline(events, rings)
    row_of = {i: row for row in rows for i in row.events}
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        key = e.report.signature if e.report is not None and e.report.signature \
            else f"{e.kind}|{e.headline}"
        groups.setdefault(key, []).append(i)
    counts = {k: sum(1 for r in rows if r.ending == k) for k in ENDINGS}
    head = (f"{len(rows)} boot{'s' * (len(rows) != 1)}, {len(events)} crash "
            f"event{'s' * (len(events) != 1)}, {len(groups)} distinct "
            f"bug{'s' * (len(groups) != 1)}")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>memconsole crash report{(' - ' + _t(host)) if host else ''}</title>",
           f"<style>{_STYLE}</style></head><body>",
           f"<h1>Crash report{(' of ' + _t(host)) if host else ''}</h1>",
           f'<p id="summary">{_t(head)}'
           + (f"; generated {_t(_when(generated_ns))}" if generated_ns else "") + ".</p>",
           '<h2 id="timeline">Boots and how they ended</h2>', _svg(rows),
           '<p class="legend">' + "".join(
               f'<span><span class="badge" style="background:{_COLOURS[k]}">{_t(k)}</span> '
               f"{counts[k]}</span>" for k in ENDINGS) + "</p>",
           ]
    head_row = ("<thead><tr><th>ended</th><th>boot</th><th>how</th><th>what</th>"
                "</tr></thead>")
    newest = list(reversed(rows))
    out.append(f'<table id="boots">{head_row}<tbody>')
    out += [_boot_row(row) for row in newest[:OPEN_BOOTS]]
    out.append("</tbody></table>")
    if len(newest) > OPEN_BOOTS:
        # A closed <details> is not laid out until it is opened: a page of
        # thousands of boots renders as fast as one of fifty.
        out.append(f'<details id="older"><summary>{len(newest) - OPEN_BOOTS} older '
                   f'boot{"s" * (len(newest) - OPEN_BOOTS != 1)}</summary>'
                   f'<table id="older-boots">{head_row}<tbody>')
        out += [_boot_row(row) for row in newest[OPEN_BOOTS:]]
        out.append("</tbody></table></details>")
    out += ['<h2 id="bugs">Crashes by signature</h2>',
            '<table id="signatures"><thead><tr><th>count</th><th>signature</th><th>kind</th>'
            "<th>title</th><th>last</th></tr></thead><tbody>"]
    for key, idx in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0])):
        last = events[idx[-1]]
        r = last.report
        sig = r.signature if r is not None and r.signature else "-"
        title = (r.title or r.headline) if r is not None else last.headline
        del key
        out.append(f'<tr class="bug"><td class="count">{len(idx)}</td><td><code>{_t(sig)}'
                   f"</code></td><td>{_t(last.kind)}</td><td>"
                   f'<a href="#crash-{idx[-1]}">{_t(title)}</a></td>'
                   f"<td>{_t(_when(last.time_ns))}</td></tr>")
    out += ["</tbody></table>", '<h2 id="crashes">Crashes</h2>']
    latest = list(reversed(list(enumerate(events))))
    out += [_event(i, e, row_of.get(i)) for i, e in latest[:OPEN_CRASHES]]
    if len(latest) > OPEN_CRASHES:
        # Closed: not styled or laid out until opened (a link to a crash in
        # it opens it).
        more = len(latest) - OPEN_CRASHES
        out.append(f'<details id="older-crashes"><summary>{more} older '
                   f'crash{"es" * (more != 1)}</summary>')
        out += [_event(i, e, row_of.get(i)) for i, e in latest[OPEN_CRASHES:]]
        out.append("</details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
