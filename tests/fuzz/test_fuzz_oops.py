"""Fuzzing the crash-report parser (:mod:`memconsole.oops`) on arbitrary bytes.

One check, :func:`check`, runs every entry point on one input:

* ``oops.parse_reports`` and ``oops.primary_report`` (bytes in memory), and
  for each report ``oops.describe``, ``oops.to_json`` as a JSON Lines line
  and the sentence through ``render.escape`` (no control character left);
* the stream scanner on the same bytes, in blocks of a size taken from the
  input: it must find the same reports (a differential oracle);
* the bytes gzip-compressed, whole and cut or damaged at a place taken
  from the input, through the gzip reader ``memconsole oops`` uses: only
  gzip's own errors (``zlib.error``, ``EOFError``, ``gzip.BadGzipFile``), and
  only after the reports of what was inflated.

Nothing may raise but :class:`memconsole.errors.ParseError`; time is bounded
by the Hypothesis deadline and libFuzzer's ``-timeout``, memory by
tracemalloc in :func:`test_hostile_seeds_bounded` and libFuzzer's ``-rss_limit_mb``.
Seeds: every real kernel log and record under tests/fixtures (reports, lab,
symbols, cli) and hostile floods (``[#`` without newlines, report starts on
every line, one very long line, NULs, terminal controls).

In the normal suite: Hypothesis on arbitrary bytes and on mutated seeds, and
a short coverage-guided run (atheris, when it imports).  A longer run::

    mkdir -p /tmp/oops-corpus
    .venv/bin/python tests/fuzz/test_fuzz_oops.py -max_total_time=3600 \\
        -max_len=8192 -rss_limit_mb=2048 -timeout=30 /tmp/oops-corpus

(the seeds are added as a second corpus directory, cut to ``-max_len``; each
input runs the in-memory parse and one of the other checks; a crash is
written to ``crash-*`` in the current directory and lands here as a
reproducer in :data:`FOUND`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, cast

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
FIXTURES = HERE.parent / "fixtures"

if __name__ == "__main__":  # the coverage-guided run: instrument before importing
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    sys.path[:0] = [str(SRC), str(HERE.parent)]  # memconsole, and tests/strategies.py
    with atheris.instrument_imports(include=["memconsole"]):
        from memconsole import oops, render
        from memconsole.errors import ParseError
        from memconsole.oops import _scan
else:
    from memconsole import oops, render
    from memconsole.errors import ParseError
    from memconsole.oops import _scan

# Any control character but tab and newline, DEL, a C1 control (UTF-8).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_GZIP_ERRORS = (zlib.error, EOFError, gzip.BadGzipFile)


class _Read1:
    """A gzip file read one inflate step at a time (as ``memconsole oops`` reads it)."""

    def __init__(self, gz: gzip.GzipFile) -> None:
        self.gz = gz

    def read(self, size: int) -> bytes:
        return self.gz.read1(size)


def _check_report(report: oops.Report) -> None:
    sentence = oops.describe(report)
    assert isinstance(sentence, str) and sentence
    assert _CONTROL.search(render.escape(sentence)) is None
    line = render.json_line(oops.to_json(report, "fuzz"))
    assert line.isascii() and json.loads(line)["kind"] == report.kind.value


def check(data: bytes, *, quick: bool = False) -> None:
    """Every entry point of the report parser on *data*; raises on a finding.
    *quick* (the coverage-guided run) runs the in-memory parse and one of the
    other checks, chosen by the input."""
    try:
        reports = oops.parse_reports(data)
    except ParseError:
        return
    assert all(isinstance(r, oops.Report) for r in reports)
    for r in reports:
        _check_report(r)
        assert 0 <= r.start <= r.end <= len(data)
        assert r.line == data.count(b"\n", 0, r.start) + 1
    which = (data[-1] if data else 0) % 4 if quick else None
    block = 1 + (data[0] * 31 + len(data)) % 5000 if data else 1
    if which in (None, 0):
        try:
            primary = oops.primary_report(data)
        except ParseError:
            return
        assert (primary is None) == (not reports)
        assert _CONTROL.search(render.escape(data, layout=True)) is None
    if which in (None, 1):
        # The stream scanner finds the same reports, whatever the block size.
        assert list(_scan.scan_stream(io.BytesIO(data), block=block)) == reports
    packed = gzip.compress(data, 1)
    if which in (None, 2):
        gz = gzip.GzipFile(fileobj=io.BytesIO(packed))
        assert list(_scan.scan_stream(cast(BinaryIO, _Read1(gz)), block=block)) == reports
    if which in (None, 3):
        # Cut or damaged at a place the input gives: only gzip's own errors.
        cut = len(packed) * (data[-1] if data else 0) // 256
        damaged = bytearray(packed[:cut] + packed[cut + 8:])
        if len(damaged) > 20 and data:
            damaged[10 + data[0] % (len(damaged) - 20)] ^= 0x5A
        got: list[oops.Report] = []
        gz = gzip.GzipFile(fileobj=io.BytesIO(bytes(damaged)))
        with contextlib.suppress(*_GZIP_ERRORS):
            got.extend(_scan.scan_stream(cast(BinaryIO, _Read1(gz)), block=block))
        for r in got:
            _check_report(r)


def _quick(data: bytes) -> None:
    check(data, quick=True)


# --------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------

def seed_paths() -> list[Path]:
    """Every real kernel log and record among the fixtures."""
    return sorted([*(FIXTURES / "reports").glob("*.txt"),
                   *(FIXTURES / "lab").glob("*/*/pstore/*"),
                   *(FIXTURES / "symbols").glob("*/pstore/*"),
                   *(HERE.parent / "cli" / "fixtures").glob("*/*/pstore/*")])


def hostile_seeds() -> list[bytes]:
    """Floods and shapes that broke or slowed scanners and parsers."""
    real = (FIXTURES / "lab" / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes()
    return [
        b"[#" * 30000,
        b"#" * 30000 + b"[#",
        (b"[#" * 40 + b"\n") * 500,
        b"BUG: a\n" * 500,
        b"Oops: 0000 [#1] SMP\n" * 300,
        b"Kernel panic - not syncing: x\n" * 300,
        b"------------[ cut here ]------------\n" * 300,
        b"INFO: task a" * 2000,
        b"x" * 70000 + b"\n" + real,
        real.replace(b"\n", b"\r\n"),
        real.replace(b"\n", b"\x00"),
        real.replace(b"crashy_null", b"\x1bc\x1b[31m\xc2\x9b\xff"),
        real[: len(real) // 2] * 3,
        b"<4>[ 0.1] " * 5000,
        b"Call Trace:\n" + b" <IRQ>\n" * 2000,
        b"[#99999999999999999999999]\n" * 10,
    ]


SEEDS: list[bytes] = [p.read_bytes() for p in seed_paths()] + hostile_seeds()

#: Inputs the fuzzers found that once failed :func:`check` (reproducers).
FOUND: list[bytes] = []


def test_seeds() -> None:
    assert len(SEEDS) >= 100
    for data in SEEDS + FOUND:
        check(data)


def test_hostile_seeds_bounded() -> None:
    # Within a memory bound (a report flood parsed in memory keeps its
    # reports: the bound grows with the input, here by 1 KiB a byte).
    for data in hostile_seeds():
        tracemalloc.start()
        try:
            check(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < (16 << 20) + 1024 * len(data), (data[:60], peak)


# --------------------------------------------------------------------------
# Hypothesis: arbitrary bytes and mutated seeds
# --------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from strategies import mutated  # noqa: E402

_SETTINGS = settings(max_examples=150, deadline=timedelta(seconds=20),
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


_Mutation = Callable[[bytes], bytes]


@_SETTINGS
@given(mutated(SEEDS[: len(SEEDS) - len(hostile_seeds())]))
def test_mutated_seeds(data: bytes) -> None:
    check(data)


# --------------------------------------------------------------------------
# Coverage-guided (atheris)
# --------------------------------------------------------------------------

def _write_seeds(directory: Path) -> None:
    for n, data in enumerate(SEEDS + FOUND):
        (directory / f"seed-{n:03d}").write_bytes(data)


def test_atheris_short_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "-runs=100000", "-max_total_time=10",
         "-max_len=8192", "-rss_limit_mb=2048", "-timeout=60", f"-artifact_prefix={tmp_path}/",
         str(corpus)], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done is not None and int(done.group(1)) >= len(SEEDS), proc.stderr[-2000:]


def _main() -> None:
    seeds = Path(tempfile.mkdtemp(prefix="oops-seeds-"))
    _write_seeds(seeds)
    atheris.Setup([*sys.argv, str(seeds)], _quick)
    atheris.Fuzz()


if __name__ == "__main__":
    _main()
