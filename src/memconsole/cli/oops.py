"""``memconsole oops PATH...``: find and explain every kernel crash report.

PATH may be a pstore directory, a directory of decoded records
(``memconsole decode --out``), the memconsole archive or one of its boot
directories, a single record, any kernel log (dmesg output, kern.log,
``journalctl -k``, a serial capture; gzip-compressed too; any size) or ``-``
for standard input.  Text output: one paragraph per report; ``--json``: JSON
Lines, one object per report (docs/oops.md).  ``--symbols`` adds source lines
(:mod:`memconsole.symbolize`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import os
import stat
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from memconsole import oops
from memconsole.cli._output import Progress, warn
from memconsole.cli.exitcodes import EXIT_DATA_MISSING, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from memconsole.oops import Report, symbolize
from memconsole.oops import _scan as _logscan
from memconsole.pstore import PstoreRecord, decode_record, parse_name, read_pstore_dir
from memconsole.render import escape, write_jsonl, write_text

__all__ = ["register", "run"]

_LOG_TYPES = ("dmesg", "console")


def register(sub: Any) -> None:
    """Add the ``oops`` command."""
    p = sub.add_parser(
        "oops", help="find and explain every kernel crash report in logs or records",
        description="Find every kernel crash report (oops, BUG, WARNING, lockup, hung task, "
        "RCU stall, KASAN/UBSAN, OOM, panic) in each PATH: a pstore directory, decoded "
        "records, the memconsole archive, a single record, or any kernel log (dmesg, "
        "kern.log, journalctl -k, serial capture, .gz, any size; - for stdin).  Prints one "
        "paragraph per report, or JSON Lines with --json.  Exit status 4 when no report "
        "was found, 3 when some PATH could not be read.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="where to look")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout, one per report")
    p.add_argument("--symbols", action="append", type=Path, default=[], metavar="PATH",
                   help="vmlinux with debug info, System.map, a module tree or .ko, or a "
                   "debug root such as /usr/lib/debug: add source lines (repeatable)")
    p.set_defaults(func=run)


def _warn(message: str) -> None:
    warn("oops", message)


class _Damaged(Exception):
    """A compressed log whose data broke off: what came before was scanned."""


def _reason(exc: OSError) -> str:
    """Why an OSError happened, for a user: the strerror, never just a path."""
    return exc.strerror or str(exc) or type(exc).__name__


def _scan_file(path: Path) -> Iterator[Report]:
    with path.open("rb") as raw:
        st = os.fstat(raw.fileno())
        magic = raw.read(2)
        raw.seek(0)
        if magic != b"\x1f\x8b" and stat.S_ISREG(st.st_mode):
            progress = Progress("oops", str(path), st.st_size)
            try:
                yield from _logscan.scan_file(str(path), progress)
            finally:
                progress.close()
            return
        stream: BinaryIO = raw
        if magic == b"\x1f\x8b":
            stream = _Read1(gzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[assignment]
        progress = Progress("oops", str(path), st.st_size)
        try:
            yield from _logscan.scan_stream(stream, lambda _n: progress(raw.tell()))
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            # A corrupt or truncated member: what was inflated before it has
            # been scanned and its reports are out.
            if str(exc).startswith(("CRC check failed", "Incorrect length")):
                # Found only at the member's end: the damage was inflated.
                raise _Damaged(f"gzip data fails its integrity check ({exc}); the "
                               "reports found in it may hold damaged text") from exc
            what = "truncated" if isinstance(exc, EOFError) else "corrupt"
            raise _Damaged(f"{what} gzip data near byte {raw.tell()} of {st.st_size} "
                           f"({exc}); reports before it are listed") from exc
        finally:
            progress.close()


class _Read1:
    """A gzip file read one inflate step at a time, so that the data before a
    corrupt spot reaches the scanner before the error does (``read(n)`` keeps
    inflating until it has *n* bytes and loses them all on an error)."""

    def __init__(self, gz: gzip.GzipFile) -> None:
        self.gz = gz

    def read(self, size: int) -> bytes:
        return self.gz.read1(size)


def _dumps(records: list[PstoreRecord]) -> list[list[PstoreRecord]]:
    """Group dmesg records into dumps (parts of one ``pstore_dump()`` call, highest
    part first: fs/pstore/platform.c writes part 1 as the newest chunk)."""
    ordered = sorted(records, key=lambda r: (r.mtime_ns, -(r.header.part if r.header else 0)))
    dumps: list[list[PstoreRecord]] = []
    for rec in ordered:
        last = dumps[-1][-1] if dumps else None
        if (last is not None and rec.header is not None and last.header is not None
                and rec.header.reason == last.header.reason
                and rec.header.count == last.header.count
                and rec.kind.backend == last.kind.backend
                and rec.header.part < last.header.part
                and rec.mtime_ns - last.mtime_ns <= 2 * 10**9):
            dumps[-1].append(rec)
        else:
            dumps.append([rec])
    return dumps


def _locate(report: Report, parts: list[PstoreRecord]) -> tuple[Report, str]:
    """Map a report found in the joined text of *parts* to its record and line."""
    off = 0
    for rec in parts:
        body = rec.body
        if report.start < off + len(body) or rec is parts[-1]:
            rel = max(report.start - off, 0)
            head = len(rec.text) - len(body)
            line = body.count(b"\n", 0, rel) + 1 + (1 if rec.header is not None else 0)
            moved = dataclasses.replace(report, line=line, start=head + rel,
                                        end=head + rel + report.end - report.start)
            return moved, rec.source or rec.name
        off += len(body)
    return report, parts[0].source or parts[0].name


def _scan_records(directory: Path) -> tuple[list[tuple[Report, str]], list[str]]:
    records, failures = read_pstore_dir(directory)
    problems = [f"{f.path}: {f.reason}" for f in failures]
    for rec in records:
        if rec.problem:
            problems.append(f"{rec.source}: {rec.problem}")
    groups = _dumps([r for r in records if r.kind.type == "dmesg"])
    groups += [[r] for r in records if r.kind.type == "console"]
    found: list[tuple[Report, str]] = []
    seen: dict[tuple[object, ...], int] = {}
    for parts in groups:
        text = b"".join(r.body for r in parts)
        for report in oops.parse_reports(text):
            moved, where = _locate(report, parts)
            # The same report in an Oops dump and the Panic dump after it: keep
            # the later one (it knows the panic that followed).
            key = (report.kind, report.headline, report.time, report.pid)
            if report.time is not None and key in seen:
                found[seen[key]] = (moved, where)
                continue
            seen[key] = len(found)
            found.append((moved, where))
    return found, problems


def _is_record_dir(path: Path) -> bool:
    try:
        return any(parse_name(e.name) is not None for e in os.scandir(path) if e.is_file())
    except OSError:
        return False


_Found = Iterable[tuple[Report, str]]


def _collect(path_arg: str) -> tuple[list[tuple[str, _Found]], list[str]]:
    """What to scan under one PATH argument: (name, reports found, lazily for
    logs) per file or record directory, and the problems of records read."""
    if path_arg == "-":
        stream = sys.stdin.buffer
        return [("-", ((r, "-") for r in _logscan.scan_stream(stream)))], []
    path = Path(path_arg)
    if path.is_dir():
        dirs: list[Path] = []
        if (path / "boots").is_dir():
            dirs = sorted(p for p in (path / "boots").iterdir() if p.is_dir())
        elif _is_record_dir(path):
            dirs = [path]
        if dirs:
            out: list[tuple[Report, str]] = []
            problems: list[str] = []
            for d in dirs:
                found, bad = _scan_records(d)
                out += found
                problems += bad
            return [(path_arg, out)], problems
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return [(str(f), _file_reports(f)) for f in files], []
    name = parse_name(path.name)
    if name is not None and name.type in _LOG_TYPES:
        st = path.stat()
        rec = decode_record(path.name, path.read_bytes(), st.st_mtime_ns, str(path))
        found = [_locate(r, [rec]) for r in oops.parse_reports(rec.body)]
        return [(path_arg, found)], [f"{path}: {rec.problem}"] if rec.problem else []
    path.stat()  # the reason it cannot be read, now (the scan is lazy)
    return [(path_arg, _file_reports(path))], []


def _file_reports(path: Path) -> Iterator[tuple[Report, str]]:
    return ((r, str(path)) for r in _scan_file(path))


def _text(report: Report, where: str) -> str:
    """The paragraph of *report*: every name and kernel string in it passes
    through :func:`escape` as one line."""
    lines = [f"{escape(where)}:{report.line}: {escape(oops.describe(report))}",
             f"    signature {report.signature}  ({escape(report.signature_basis)})"]
    facts = []
    if report.kernel_release:
        facts.append(f"kernel {report.kernel_release}")
    if report.hardware:
        facts.append(report.hardware)
    if report.cpu is not None:
        facts.append(f"CPU {report.cpu}")
    if report.time is not None:
        facts.append(f"{report.time:.6f} s after boot")
    if facts:
        lines.append(f"    {escape('; '.join(facts))}")
    if report.taint_flags:
        lines.append(f"    tainted: {escape(', '.join(report.taint_flags))}")
    if report.fault_address is not None or report.fault_info or report.access:
        details = [report.access or "", *report.fault_info]
        if report.fault_address is not None and not report.access:
            details.insert(0, f"address 0x{report.fault_address:x}")
        lines.append(f"    fault: {escape('; '.join(d for d in details if d))}")
    for label, frame in (("at", report.rip), ("lr", report.lr)):
        if frame is not None:
            lines += _frame_lines(frame, f"    {label} ")
    if report.call_trace:
        lines.append("    call trace:")
        for f in report.call_trace:
            lines += _frame_lines(f, "      ")
    return "".join(line + "\n" for line in lines) + "\n"


def _frame_lines(f: oops.Frame, indent: str) -> list[str]:
    s = f.function
    if f.offset is not None:
        s += f"+0x{f.offset:x}" + (f"/0x{f.size:x}" if f.size is not None else "")
    if f.module:
        s += f" [{f.module}]"
    if f.context and not f.reliable:
        s = "? " + s
    if f.context not in ("", "TASK"):
        s += f" <{f.context}>"
    return [indent + escape(s)] + [f"          {escape(src.label())}" for src in f.source]


def run(args: argparse.Namespace) -> int:
    """Run the command; see :func:`register`."""
    count = 0
    failed = partial = 0  # PATHs that could not be read at all, or in part
    tables: dict[str | None, symbolize.Symbols] = {}
    noted: set[str] = set()
    try:
        for path_arg in args.paths:
            try:
                units, problems = _collect(path_arg)
            except OSError as exc:
                failed += 1
                _warn(f"{escape(path_arg)}: cannot read: {escape(_reason(exc))}")
                continue
            for problem in problems:
                _warn(f"{escape(problem)}, skipping")
            bad = 0
            for name, found in units:
                try:
                    for report, where in found:
                        if args.symbols:
                            rel = report.kernel_release
                            if rel not in tables:
                                tables[rel] = symbolize.find_symbols(args.symbols, rel)
                            report, notes = symbolize.symbolize(report, tables[rel])
                            for note in notes:
                                if note not in noted:
                                    noted.add(note)
                                    _warn(escape(note))
                        count += 1
                        if args.json:
                            write_jsonl([oops.to_json(report, where)])
                        else:
                            write_text(_text(report, where), layout=True)
                except OSError as exc:
                    bad += 1
                    _warn(f"{escape(name)}: cannot read: {escape(_reason(exc))}")
                except _Damaged as exc:
                    bad += 1
                    _warn(f"{escape(name)}: {escape(str(exc))}")
            if bad:
                partial += 1
    finally:
        for table in tables.values():
            table.close()
    sys.stdout.flush()
    if failed == len(args.paths) and not count:
        return EXIT_ERROR
    if failed or partial:
        return EXIT_PARTIAL
    if not count:
        _warn("no crash report found")
        return EXIT_DATA_MISSING
    return EXIT_OK
