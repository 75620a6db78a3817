"""Conformance of ``memconsole oops`` with syzkaller's report parser on its corpus.

    PYTHONPATH=src python3 bench/conformance.py CORPUS_DIR [--json] [--show-disagreements]
                                                [--pick first|primary]

CORPUS_DIR holds syzkaller's Linux report tests (``pkg/report/testdata/linux/report/``
of google/syzkaller): one file per log, a header block (``TITLE:``, ``ALT:``,
``TYPE:``, ``CORRUPTED:``, ...; lines starting with ``#`` are comments), a blank
line, the console log, and optionally a blank line, ``REPORT:`` and the report
syzkaller extracts (not part of the log).  A file without ``TITLE:`` holds no
crash.  Each log goes through memconsole's public parser
(:func:`memconsole.oops.parse_reports`, nothing private), and the first report
found is compared with syzkaller's expectations, as syzkaller's ``Parse()``
reports the first crash of a log (``--pick primary`` compares
:func:`memconsole.oops.primary_report` instead).  Printed:

* detection: logs with a ``TITLE`` in which memconsole finds a report;
* false positives: logs without ``TITLE`` in which it finds one;
* culprit agreement, over the titles that name a function (the text after
  their last ``" in "`` starts with a C identifier other than syzkaller's
  placeholder ``corrupted``): memconsole's culprit (``Report.culprit``, its
  ``function`` if it is a record, when the report has one; otherwise the
  function its headline names after its last ``" in "``) equals syzkaller's.
  Compiler clone suffixes (``.part.0``, ``.isra.3``, syzkaller's
  ``.part.NUM``) are removed on both sides; a KCSAN title naming two
  functions (``a / b``) agrees with either;
* exact title agreement: ``Report.title`` when the report has one, else its
  headline, equals ``TITLE`` (syzkaller's ``PHRASE in corrupted`` is also met
  by ``PHRASE`` on a report flagged corrupted: memconsole names no placeholder
  function);
* corrupted agreement: ``Report.corrupted`` (``False`` when absent) equals
  ``CORRUPTED: Y``, over the logs with a ``TITLE`` memconsole detects;
* with ``--show-disagreements``, every disagreement as (file, expected, got).

``--json`` prints one JSON object with the figures and the disagreements.
Exit status 0, or 2 for a usage error (no such directory, no test file in it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "src" / "memconsole").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

from memconsole import oops  # noqa: E402

__all__ = ["Case", "Figures", "Outcome", "expected_culprits", "got_culprit", "load", "main", "run"]

# Titles syzkaller gives to things that are not kernel text: its own executor's
# failures and a VM that rebooted without saying why.  Counted apart.
_NOT_KERNEL = ("SYZFAIL:", "SYZFATAL:", "go runtime error", "unexpected kernel reboot")
_IDENT = re.compile(r"[A-Za-z_][\w.$]*")
_CLONE = re.compile(r"(?:\.(?:cold|constprop|isra|part|llvm|lto_priv|clone|localalias)"
                    r"(?:\.(?:\d+|NUM))?)+$")
_FRAME_TAIL = re.compile(r"\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?$")
# A frame as a headline names it: "crashy_null [crashy]", "foo+0x1/0x2", "foo.cold".
_LABEL = re.compile(r"[A-Za-z_][\w.$]*(?:\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?)?(?: \[[\w-]+\])?")


@dataclass(frozen=True)
class Case:
    """One corpus file."""

    name: str
    """File name (a number)."""
    title: str | None
    """Expected ``TITLE``; ``None`` when the log holds no crash."""
    alts: tuple[str, ...]
    """``ALT`` titles (the same bug under other names)."""
    type: str | None
    """``TYPE`` (syzkaller's crash type), if given."""
    corrupted: bool
    """``CORRUPTED: Y``."""
    log: bytes
    """The console log."""


@dataclass
class Outcome:
    """What memconsole said about one case."""

    case: Case
    found: int
    title: str | None = None
    culprit: str | None = None
    corrupted: bool = False
    kind: str | None = None


@dataclass
class Figures:
    """Counts over the whole corpus."""

    files: int = 0
    titled: int = 0
    not_kernel: int = 0
    detected: int = 0
    detected_kernel: int = 0
    untitled: int = 0
    false_positives: int = 0
    culprit_cases: int = 0
    culprit_agree: int = 0
    title_agree: int = 0
    title_or_alt_agree: int = 0
    corrupted_cases: int = 0
    corrupted_agree: int = 0
    corrupted_expected: int = 0
    corrupted_flagged: int = 0
    seconds: float = 0.0
    disagreements: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)


def load(path: Path) -> Case:
    """Read one corpus file (the grammar of syzkaller's report_test.go)."""
    data = path.read_bytes().replace(b"\r", b"")
    lines = data.split(b"\n")
    headers: dict[str, list[str]] = {}
    i = 0
    while i < len(lines) and lines[i] != b"":
        text = lines[i].decode("utf-8", "replace")
        if not text.startswith("#") and ": " in text:
            key, _, value = text.partition(": ")
            headers.setdefault(key, []).append(value)
        i += 1
    body: list[bytes] = []
    prev_empty = False
    for ln in lines[i + 1:]:
        if prev_empty and ln == b"REPORT:":
            break
        body.append(ln)
        prev_empty = ln == b""
    log = b"\n".join(body)
    title = headers.get("TITLE", [None])[0]
    return Case(path.name, title or None, tuple(headers.get("ALT", ())),
                headers.get("TYPE", [None])[0], headers.get("CORRUPTED", ["N"])[0] == "Y", log)


def normalize(function: str) -> str:
    """A function name without compiler clone suffixes."""
    return _CLONE.sub("", function)


def expected_culprits(title: str) -> tuple[str, ...]:
    """The functions a syzkaller title blames (after its last ``" in "``), or ``()``."""
    if " in " not in title:
        return ()
    tail = title.rsplit(" in ", 1)[1]
    names = []
    for part in re.split(r"\s*/\s*", tail):
        m = _IDENT.match(part)
        if m is None:
            break
        names.append(normalize(m.group(0)))
    if not names or names[0] == "corrupted":
        return ()
    return tuple(names)


def _function_of(text: str) -> str | None:
    """``crashy_null [crashy]``, ``foo+0x1/0x2`` -> the bare function name."""
    token = text.strip().split(" ", 1)[0] if text.strip() else ""
    token = _FRAME_TAIL.sub("", token)
    m = _IDENT.fullmatch(token)
    return normalize(m.group(0)) if m else None


def got_culprit(report: oops.Report) -> str | None:
    """The function memconsole blames: ``Report.culprit_name`` (the culprit as the
    title names it) or ``Report.culprit`` when the model has one, else the function
    its headline names after the last ``" in "`` (when what
    follows is a frame label, not text such as ``in preemptible [00000000] code``)."""
    name = getattr(report, "culprit_name", None)
    if name:
        return _function_of(str(name))
    culprit = getattr(report, "culprit", None)
    if culprit is not None:
        function = getattr(culprit, "function", culprit)
        return _function_of(str(function)) if function else None
    headline = report.headline
    if " in " not in headline:
        return None
    if report.panic_reason and headline.endswith(report.panic_reason):
        return None  # "Fatal exception in interrupt" names no function
    tail = headline.rsplit(" in ", 1)[1]
    if not _LABEL.fullmatch(tail):
        return None  # "in preemptible [00000000] code: ...", "in use (1) [unmount ..."
    return _function_of(tail)


def _pick(log: bytes, how: str) -> tuple[int, oops.Report | None]:
    reports = oops.parse_reports(log)
    if how == "primary":
        return len(reports), oops.primary_report(log)
    return len(reports), reports[0] if reports else None


def _same_title(out: Outcome, title: str) -> bool:
    """Whether memconsole's title is *title*; syzkaller's placeholder culprit
    ``corrupted`` matches a title without culprit on a report flagged corrupted."""
    if out.title == title:
        return True
    bare = title.removesuffix(" in corrupted")
    return bare != title and out.corrupted and out.title == bare


def _disagree(fig: Figures, what: str, case: Case, expected: str, got: str) -> None:
    fig.disagreements.setdefault(what, []).append((case.name, expected, got))


def run(cases: Sequence[Case], how: str = "first") -> tuple[Figures, list[Outcome]]:
    """Parse every case; return the figures and the per-case outcomes."""
    fig = Figures(files=len(cases))
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()
    for case in cases:
        found, rep = _pick(case.log, how)
        out = Outcome(case, found)
        if rep is not None:
            title = getattr(rep, "title", None)
            out.title = str(title) if title else rep.headline
            out.culprit = got_culprit(rep)
            out.corrupted = bool(getattr(rep, "corrupted", False))
            out.kind = str(rep.kind.value)
        outcomes.append(out)
    fig.seconds = time.perf_counter() - t0
    for out in outcomes:
        case = out.case
        got_title = out.title if out.title is not None else "(no report)"
        if case.title is None:
            fig.untitled += 1
            if out.found:
                fig.false_positives += 1
                _disagree(fig, "false positive", case, "(no crash)", got_title)
            continue
        fig.titled += 1
        not_kernel = case.title.startswith(_NOT_KERNEL)
        fig.not_kernel += not_kernel
        if not out.found:
            _disagree(fig, "missed", case, case.title, "(no report)")
            continue
        fig.detected += 1
        fig.detected_kernel += not not_kernel
        fig.corrupted_cases += 1
        fig.corrupted_expected += case.corrupted
        fig.corrupted_flagged += out.corrupted
        if out.corrupted == case.corrupted:
            fig.corrupted_agree += 1
        else:
            _disagree(fig, "corrupted", case, f"{case.corrupted} ({case.title})",
                      f"{out.corrupted} ({got_title})")
        if _same_title(out, case.title):
            fig.title_agree += 1
        else:
            _disagree(fig, "title", case, case.title, got_title)
        if _same_title(out, case.title) or any(_same_title(out, alt) for alt in case.alts):
            fig.title_or_alt_agree += 1
    for out in outcomes:
        case = out.case
        if case.title is None:
            continue
        want = expected_culprits(case.title)
        if not want:
            continue
        fig.culprit_cases += 1
        got_title = out.title if out.title is not None else "(no report)"
        if out.culprit is not None and out.culprit in want:
            fig.culprit_agree += 1
        else:
            _disagree(fig, "culprit", case, f"{' / '.join(want)}  ({case.title})",
                      f"{out.culprit or '-'}  ({got_title})")
    return fig, outcomes


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100.0 * n / d:.1f}%)" if d else f"{n}/0"


def _summary(fig: Figures) -> list[tuple[str, str]]:
    kernel = fig.titled - fig.not_kernel
    return [
        ("files", str(fig.files)),
        ("detection (logs with a TITLE where a report is found)", _pct(fig.detected, fig.titled)),
        ("  of them kernel reports (not SYZFAIL/SYZFATAL/go runtime error/unexpected reboot)",
         _pct(fig.detected_kernel, kernel)),
        ("false positives (logs without TITLE where a report is found)",
         _pct(fig.false_positives, fig.untitled)),
        ("culprit agreement (titles naming a function)",
         _pct(fig.culprit_agree, fig.culprit_cases)),
        ("exact title agreement (detected logs)", _pct(fig.title_agree, fig.detected)),
        ("title equal to TITLE or an ALT (detected logs)",
         _pct(fig.title_or_alt_agree, fig.detected)),
        ("corrupted agreement (detected logs)", _pct(fig.corrupted_agree, fig.corrupted_cases)),
        ("  CORRUPTED: Y expected / flagged",
         f"{fig.corrupted_expected} / {fig.corrupted_flagged}"),
        ("parse time (s, all logs, in process)", f"{fig.seconds:.2f}"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, metavar="CORPUS_DIR")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--show-disagreements", action="store_true",
                    help="list every disagreement (file, expected, got)")
    ap.add_argument("--pick", choices=("first", "primary"), default="first",
                    help="which of memconsole's reports to compare (default: the first)")
    args = ap.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"conformance: {args.corpus}: not a directory", file=sys.stderr)
        return 2
    paths = sorted((p for p in args.corpus.iterdir() if p.name.isdigit() and p.is_file()),
                   key=lambda p: int(p.name))
    if not paths:
        print(f"conformance: {args.corpus}: no test files (named by number)", file=sys.stderr)
        return 2
    fig, _ = run([load(p) for p in paths], args.pick)
    if args.json:
        out: dict[str, object] = {k: v for k, v in vars(fig).items() if k != "disagreements"}
        out["pick"] = args.pick
        out["disagreements"] = {k: [list(t) for t in v] for k, v in fig.disagreements.items()}
        print(json.dumps(out, indent=1))
        return 0
    width = max(len(k) for k, _ in _summary(fig))
    print(f"corpus: {args.corpus} (report compared: {args.pick})")
    for key, value in _summary(fig):
        print(f"{key:<{width}}  {value}")
    if args.show_disagreements:
        for what in ("missed", "false positive", "culprit", "corrupted", "title"):
            rows = fig.disagreements.get(what, [])
            print(f"\n## {what} ({len(rows)})")
            for name, expected, got in rows:
                print(f"{name}\texpected: {expected}\n\tgot:      {got}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(0)
