"""The big-log scanner on floods: memory stays bounded, results stay exact.

A log of ``[#`` (the die() counter's opening, a needle) without newlines
took 31 bytes of memory per input byte: the scanner carried the unfinished
line whole and listed every needle in it.  A flood of report-starting lines
kept every report of a 1 MiB block before handing any out.  Now a line is
kept only as far as the parser reads it, one hit is kept per line, dense
blocks are fed line by line without a hit list, and reports are handed out
every few hundred.  Each mechanism is forced here on small inputs (the
thresholds lowered) and checked against feeding every line, the reference.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from memconsole import oops
from memconsole.oops import _patterns
from memconsole.oops import _scan as _logscan

FIXTURES = Path(__file__).parent.parent / "fixtures"
REPORT = (FIXTURES / "lab" / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes()
WARN = (FIXTURES / "lab" / "6.1" / "warn" / "pstore" / "dmesg-ramoops-0").read_bytes()
SRC = Path(__file__).resolve().parent.parent.parent / "src"


def _full(text: bytes) -> list[oops.Report]:
    return [b.report() for b in _logscan.parse_all_lines(text)]


def _stream(text: bytes, block: int) -> list[oops.Report]:
    return list(_logscan.scan_stream(io.BytesIO(text), block=block))


def _file(tmp_path: Path, text: bytes, chunk: int, workers: int = 1) -> list[oops.Report]:
    path = tmp_path / "kern.log"
    path.write_bytes(text)
    return list(_logscan.scan_file(str(path), workers=workers, chunk=chunk))


ALONE = _full(REPORT)[-1]  # the report, where it is in its record


def _floods() -> list[bytes]:
    """Real reports among floods of needles, long lines and report starts."""
    long_head = b"BUG: kernel NULL pointer dereference, address: 0000000000000000" + b"[#" * 6000
    return [
        b"[#" * 7000 + b"\n" + REPORT,                  # one long line of needles, then a report
        REPORT + b"x" * 9000 + b"[#1]" + b"\n" + WARN,  # a needle past the head of a long line
        long_head + b"\n" + REPORT + long_head,  # a report opens a long line, no end newline
        (b"[#" * 40 + b"\n") * 300 + REPORT + (b"[#\n" * 500) + WARN,  # dense needle lines
        b"BUG: a\n" * 700 + REPORT + b"Oops: 0000 [#1] SMP\n" * 300,   # report floods
        (REPORT + b"\n") * 3,
    ]


@pytest.fixture
def low_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds lowered so that small inputs take every path."""
    monkeypatch.setattr(_logscan, "_LONG_LINE", _patterns.MAX_LINE)
    monkeypatch.setattr(_logscan, "_SPLIT_MIN", _patterns.MAX_LINE + 64)
    monkeypatch.setattr(_logscan, "_DENSE_MIN", 4)
    monkeypatch.setattr(_logscan, "_DENSE_BYTES", 1024)
    monkeypatch.setattr(_logscan, "_TAKE_AT", 3)


@pytest.mark.parametrize("n", range(len(_floods())))
def test_floods_same_as_every_line(n: int, tmp_path: Path, low_thresholds: None) -> None:
    text = _floods()[n]
    full = _full(text)
    assert full, "every flood holds a real report"
    assert [b.report() for b in _logscan.parse_builders(text)] == full
    for block in (1, 100, 4096, 5000, 1 << 16):
        assert _stream(text, block) == full, block
    for chunk in (1, 333, 5000, 1 << 16):
        assert _file(tmp_path, text, chunk) == full, chunk
    assert _file(tmp_path, text, 5000, workers=2) == full
    # Offsets and line numbers are those of the input, long lines included.
    for r in full:
        assert text.count(b"\n", 0, r.start) + 1 == r.line
        assert r.end == len(text) or text[r.end:r.end + 1] == b"\n"


def test_dense_everywhere_same_as_every_line(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    # Every block with a single needle line is fed line by line.
    monkeypatch.setattr(_logscan, "_DENSE_MIN", 0)
    monkeypatch.setattr(_logscan, "_DENSE_BYTES", 1 << 40)
    text = b"".join(p.read_bytes() for p in sorted((FIXTURES / "reports").glob("*.txt")))
    full = _full(text)
    assert len(full) >= 40
    assert [b.report() for b in _logscan.parse_builders(text)] == full
    assert _stream(text, 4096) == full
    assert _file(tmp_path, text, 1 << 14) == full


def test_one_hit_per_line() -> None:
    # The first needle of each line the expression finds, and the first "[#".
    assert _logscan.find_hits(b"[#[#[#\nBUG BUG [# WARNING\n\n[#") == [1, 8, 16, 28]
    flood = b"[#" * 100 + b"\n" + b"BUG\n" * 5
    assert _logscan.find_hits(flood) == [1, 202, 206, 210, 214, 218]
    assert _logscan._hits(flood, 0, len(flood), 5) is None  # dense: no list
    assert _logscan._hits(flood, 0, len(flood), 6) == _logscan.find_hits(flood)


def _peak(fn: object) -> int:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stream_memory_bounded_on_needle_floods() -> None:
    # 8 MiB of "[#" without a newline used 31 bytes per byte (250 MB).
    for flood in (b"[#" * (4 << 20) + b"\n" + REPORT, (b"[#" * 40 + b"\n") * 13_000 + REPORT):
        found: list[oops.Report] = []
        gz = gzip.compress(flood, 1)
        peak = _peak(lambda gz=gz, found=found: found.extend(
            _logscan.scan_stream(cast(BinaryIO, gzip.GzipFile(fileobj=io.BytesIO(gz))))))
        assert [r.kind for r in found] == [oops.Kind.NULL_POINTER]
        assert found[0].line == flood.count(b"\n", 0, len(flood) - len(REPORT)) + ALONE.line
        assert peak < 12 << 20, peak


def test_stream_memory_bounded_on_report_floods() -> None:
    # 3000 reports in one block were all kept until the block was done.
    flood = b"BUG: a\n" * 3000
    count = 0

    def scan() -> None:
        nonlocal count
        for _ in _logscan.scan_stream(io.BytesIO(flood)):
            count += 1
    peak = _peak(scan)
    assert count == 3000
    assert peak < 3 << 20, peak


def test_file_scan_memory_bounded(tmp_path: Path) -> None:
    # A plain file of needles without a newline was read whole by one task.
    path = tmp_path / "flood.log"
    path.write_bytes(b"[#" * (8 << 20) + b"\n" + REPORT)
    found: list[oops.Report] = []
    peak = _peak(lambda: found.extend(_logscan.scan_file(str(path), workers=1)))
    assert [r.kind for r in found] == [oops.Kind.NULL_POINTER]
    assert found[0].line == ALONE.line + 1 and found[0].start == (16 << 20) + 1 + ALONE.start
    assert peak < 40 << 20, peak


def test_oops_command_on_gzip_flood_peak_rss(tmp_path: Path) -> None:
    # The reported case: a small .gz of "[#" floods; peak RSS of the command.
    flood = tmp_path / "flood.gz"
    flood.write_bytes(gzip.compress(b"[#" * (12 << 20) + b"\n" + REPORT, 9))
    assert flood.stat().st_size < 300_000
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    # A small wrapper runs the command and reports its peak RSS: a child
    # started straight from this test process (vfork, then exec) inherits
    # the test process's own peak as its ru_maxrss.
    wrapper = ("import os, resource, subprocess, sys\n"
               "rc = subprocess.run(sys.argv[1:]).returncode\n"
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
               "os.write(2, f'peak {peak}\\n'.encode()); sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "memconsole",
                           "oops", "--json", str(flood)], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    peak = int(proc.stderr.decode().rsplit("peak ", 1)[1])
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["kind"] for o in objs] == ["null-pointer"]
    assert objs[0]["source"]["line"] == ALONE.line + 1
    assert objs[0]["source"]["offset"] == (24 << 20) + 1 + ALONE.start
    assert peak < 120 << 10, f"peak RSS {peak} KiB"
