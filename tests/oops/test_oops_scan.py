"""The big-log scanner (memconsole._logscan) against the line-by-line parse.

The scanner feeds the report parser only the lines around needle hits; its
results must equal feeding every line.  Checked on every real fixture, on
logs built from real lines in random order, in streams cut into blocks of
every awkward size, and on arbitrary bytes.
"""

from __future__ import annotations

import gzip
import io
import random
import time
from pathlib import Path

import pytest

from memconsole import oops
from memconsole.oops import _patterns as _oops_patterns
from memconsole.oops import _scan as _logscan

FIXTURES = Path(__file__).parent.parent / "fixtures"
PATHS = sorted([*(FIXTURES / "reports").glob("*.txt"), *(FIXTURES / "lab").glob("*/*/pstore/*"),
                *(FIXTURES / "symbols").glob("*/pstore/*")])
LINES = sorted({line for p in PATHS for line in p.read_bytes().splitlines()})


def _full(text: bytes) -> list[oops.Report]:
    return [b.report() for b in _logscan.parse_all_lines(text)]


def _fast(text: bytes) -> list[oops.Report]:
    return [b.report() for b in _logscan.parse_builders(text)]


def _stream(text: bytes, block: int) -> list[oops.Report]:
    return list(_logscan.scan_stream(io.BytesIO(text), block=block))


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "/".join(p.parts[-3:]))
def test_fixture_same_as_every_line(path: Path) -> None:
    text = path.read_bytes()
    assert _fast(text) == _full(text)
    assert oops.parse_reports(text) == _full(text)


def test_all_fixtures_in_one_stream_any_block_size() -> None:
    text = b"".join(p.read_bytes() for p in PATHS)
    full = _full(text)
    assert len(full) >= 80
    for block in (1, 7, 100, 4096, 65536, 1 << 20):
        assert _stream(text, block) == full, block
    # line numbers and offsets are those of the whole input
    for r in full:
        assert text.count(b"\n", 0, r.start) + 1 == r.line
        assert r.start == 0 or text[r.start - 1:r.start] == b"\n"


def test_report_found_with_many_unrelated_lines_around() -> None:
    report = (FIXTURES / "lab" / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes()
    filler = b"".join(b"Jan 12 19:08:41 host kernel: [%6d.000000] eth0: link up %d\n" % (i, i)
                      for i in range(20000))
    text = filler + report + filler + report.replace(b"crashy_null", b"crashy_nul2")
    full = _full(text)
    assert [r.headline for r in full if r.kind is oops.Kind.NULL_POINTER] == [
        "BUG: unable to handle kernel NULL pointer dereference in crashy_null [crashy]",
        "BUG: unable to handle kernel NULL pointer dereference in crashy_nul2 [crashy]"]
    assert _stream(text, 1 << 16) == full
    assert full[0].line == 20000 + report[:full[0].start - len(filler)].count(b"\n") + 1


def test_needles_cover_every_marker() -> None:
    # Every report-starting line of every fixture holds a needle.
    for path in PATHS:
        text = path.read_bytes()
        for r in _full(text):
            first = text[r.start:text.find(b"\n", r.start)]
            rest = text[r.start:r.end]
            assert _oops_patterns.NEEDLE_RE.search(rest), (path, first)
    hits = _logscan.find_hits(b"xx BUG: a\nWARNING\nINFO: x\n[#1]\noom-killer\nLOCKUP\n"
                              b"Unable to handle\nUBSAN\nKernel panic\nKernel stack\n")
    assert len(hits) == 10


def test_dense_anchor_bytes_fall_back_to_regex() -> None:
    # A UFW-style log is full of "U", "N", "K": the regex path must agree.
    noise = b"[UFW BLOCK] IN=eth0 OUT= MAC=00 SRC=1 DST=2 LEN=40 TOS=0x00 PROTO=TCP URGP=0 K-N\n"
    report = (FIXTURES / "lab" / "6.1" / "warn" / "pstore" / "dmesg-ramoops-0").read_bytes()
    text = noise * 3000 + report + noise * 3000
    assert _fast(text) == _full(text)
    assert _logscan.find_hits(noise * 1000) == []


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from strategies import kernel_log  # noqa: E402


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_log(LINES, separators=(b"\n", b"\n\n", b"\r\n", b"\n" * 45)),
       st.integers(1, 5000))
def test_shuffled_real_lines_same_as_every_line(text: bytes, block: int) -> None:
    full = _full(text)
    assert _fast(text) == full
    assert _stream(text, block) == full


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(1, 512))
def test_arbitrary_bytes_never_raise(data: bytes, block: int) -> None:
    full = _full(data)
    assert _fast(data) == full
    assert _stream(data, block) == full


def test_gzip_stream() -> None:
    text = b"".join(p.read_bytes() for p in PATHS[:20])
    with gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(text))) as gz:
        assert list(_logscan.scan_stream(gz, block=4096)) == _full(text)  # type: ignore[arg-type]


def _best(fn: object, text: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(text)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("kind", ["quiet", "dense"])
def test_scan_time_linear(kind: str) -> None:
    rng = random.Random(7)
    if kind == "quiet":  # a normal log with a few reports
        normal = [line for line in LINES if not _oops_patterns.NEEDLE_RE.search(line)]
        body = [rng.choice(normal) for _ in range(40000)]
        for i in range(0, len(body), 5000):
            body[i] = b"BUG: kernel NULL pointer dereference, address: 0000000000000000"
    else:  # nothing but report lines
        body = [rng.choice(LINES) for _ in range(40000)]
    large = b"\n".join(body)[: 2 << 20]
    small = large[: len(large) // 4]
    t_small, t_large = _best(_fast, small), _best(_fast, large)
    assert t_large < 8 * t_small + 0.05, (t_small, t_large)


@pytest.mark.parametrize(("workers", "chunk"), [(1, 1), (1, 333), (1, 65536), (2, 2000),
                                               (2, 65536)])
def test_scan_file_same_as_every_line(tmp_path: Path, workers: int, chunk: int) -> None:
    # The needle search split in chunks (and processes), the parse in this one.
    text = b"".join(p.read_bytes() for p in PATHS[::3]) + b"no newline at the end: BUG: x"
    path = tmp_path / "kern.log"
    path.write_bytes(text)
    seen: list[int] = []
    got = list(_logscan.scan_file(str(path), seen.append, workers=workers, chunk=chunk))
    assert got == _full(text)
    assert seen[-1] == len(text) and seen == sorted(seen)
    path.write_bytes(b"")
    assert list(_logscan.scan_file(str(path))) == []
