"""Fuzzing the ramoops region decoder and detection.

One harness, :func:`one_input`, takes arbitrary bytes: the first
:data:`OPTS` bytes choose what to call and with which options (detection
then decoding, the geometry from module parameters, a raw geometry, the
headerless scan, decompression), the rest is the memory image.  Whatever
the bytes, the result must be records or a :class:`ParseError` /
:class:`ConfigError`: any other exception is a finding, and so is a hang
(libFuzzer ``-timeout``) or memory beyond ``-rss_limit_mb``.

Seeds are the real regions the VM lab captured (tests/fixtures/ramoops,
cut to 64 KiB) and hostile memory: ``DBGC`` floods at many
strides, zone headers claiming huge sizes and starts, headers whose ECC
parity is right around garbage, ftrace signature floods, ``====`` floods
and broken deflate streams.

In the normal test suite: the seeds, a short Hypothesis run mutating them,
and, when atheris is installed, a few seconds of coverage-guided fuzzing.
The long run (atheris, ``pip install atheris``)::

    PYTHONPATH=src python tests/fuzz/test_fuzz_ramoops.py CORPUS_DIR \\
        -max_total_time=3600 -timeout=20 -rss_limit_mb=2048 -max_len=65536

CORPUS_DIR is seeded on first use; findings are written as
``crash-*``/``timeout-*``/``oom-*`` files and each becomes a case in
:data:`FINDINGS` below.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
if __name__ == "__main__":  # the atheris harness: memconsole's code instrumented
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # and tests/strategies.py
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports(include=["memconsole"]):
        import memconsole.pstore.compress
        import memconsole.ramoops  # noqa: F401

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from memconsole import ramoops  # noqa: E402
from memconsole.errors import ConfigError, ParseError  # noqa: E402
from memconsole.pstore import compress  # noqa: E402
from strategies import mutated  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "ramoops"
#: Option bytes in front of the image.
OPTS = 8
#: Longest input (libFuzzer ``-max_len``): seeds are cut to it.
MAX_LEN = 65536
_SIG = ramoops.PERSISTENT_RAM_SIG
_MODES = 6


def _size(b: int, image: int) -> int | None:
    """An option size from one byte: absent, a power of two, or odd."""
    if b < 16:
        return None
    if b < 200:
        return 1 << (b % 24)
    return (b * 977) % (image + 1) if image else b


def one_input(data: bytes) -> None:
    """The harness: records or ParseError/ConfigError, nothing else."""
    if len(data) < OPTS:
        data = data + bytes(OPTS - len(data))
    o, image = data[:OPTS], data[OPTS:]
    mode = o[0] % _MODES
    try:
        if mode == 0:
            det = ramoops.detect(image, start=o[1] * 16)
            view = memoryview(image)[det.offset:det.offset + det.geometry.mem_size]
            out = ramoops.decode(view, det.geometry, scan=bool(o[2] & 1))
            _check(out.records)
        elif mode == 1:
            res = ramoops.resolve_geometry(
                image, offset=None if o[1] < 128 else o[1] * 64,
                mem_size=_size(o[2], len(image)), record_size=_size(o[3], len(image)),
                console_size=_size(o[4], len(image)), ftrace_size=_size(o[5], len(image)),
                pmsg_size=_size(o[6], len(image)),
                ecc=None if o[7] < 64 else o[7] - 100,
                ftrace_cpus=None if o[7] & 3 else 1 + o[7] * 8,
                order=(None, ramoops.ZoneOrder.V6_1, ramoops.ZoneOrder.V6_2)[o[1] % 3])
            view = memoryview(image)[res.offset:res.offset + res.geometry.mem_size]
            _check(ramoops.decode(view, res.geometry, scan=bool(o[2] & 1)).records)
        elif mode == 2:
            geom = ramoops.Geometry(
                # Up to twice the image: zones past its end are reported, not read.
                mem_size=(int.from_bytes(o[1:3], "little") * 97) % (2 * len(image) + 65536),
                record_size=int.from_bytes(o[3:5], "little") % 70000,
                console_size=(1 << (o[5] % 18)) if o[5] & 1 else 0,
                ftrace_size=(1 << (o[6] % 18)) if o[6] & 1 else 0,
                pmsg_size=(1 << (o[5] % 16)) if o[5] & 2 else 0,
                ecc_size=o[7] % 140, ftrace_cpus=1 + o[6] % 70,
                order=ramoops.ZoneOrder.V6_1 if o[4] & 1 else ramoops.ZoneOrder.V6_2,
                align_even=bool(o[4] & 2))
            _check(ramoops.decode(image, geom, scan=bool(o[2] & 1)).records)
        elif mode == 3:
            _check(ramoops.scan_headerless(image, start=o[1], max_out=1 + o[2] * 4096))
        elif mode == 4:
            ramoops.parse_dmesg_header(image)
            res2 = compress.decompress(image, 1 + int.from_bytes(o[1:4], "little") % (1 << 22))
            assert res2.data is None or len(res2.data) <= (1 << 22)
            inf = compress.inflate(image, 1 + o[2] * 1000, (-15, 15, 31)[o[3] % 3],
                                   max_in=None if o[4] & 1 else o[5])
            assert len(inf.data) <= 1 + o[2] * 1000 and 0 <= inf.used <= len(image)
        else:
            ecc = ramoops.detect_ecc(memoryview(image), [(o[1] * 64, 4096), (0, len(image))])
            assert 0 <= ecc < 128
    except (ParseError, ConfigError):
        pass


def _check(records: tuple[ramoops.Record, ...]) -> None:
    for r in records:
        assert isinstance(r.payload, bytes) and isinstance(r.name, str)
        assert "/" not in r.name and r.name not in ("", ".", "..")


# -- seeds ----------------------------------------------------------------------------


def _header(sig: int, start: int, size: int) -> bytes:
    return struct.pack("<Iii", sig & 0xFFFFFFFF, start, size)


def _flood(n: int, stride: int, hdr: bytes) -> bytes:
    buf = bytearray(n)
    for p in range(0, n - len(hdr), stride):
        buf[p:p + len(hdr)] = hdr
    return bytes(buf)


def _hostile() -> list[bytes]:
    from memconsole.ramoops import _rs

    out = [b"DBGC" * 4096, b"====" * 4096, b"====1.1-C\n" * 2000, b"====1.1-D\n" * 2000]
    for stride in (12, 16, 64, 256, 1024, 4096, 6000):
        out.append(_flood(64 << 10, stride, _header(_SIG, 0, 0)))
    for start, size in ((0, 0x7FFFFFFF), (-1, -1), (0x7FFFFFFF, 0x7FFFFFFF), (100, 50),
                        (0, 1 << 20), (4000, 4084)):
        out.append(_flood(64 << 10, 4096, _header(_SIG, start, size)))
    ftrace = _SIG ^ 0x060C75
    out.append(_flood(64 << 10, 64, _header(ftrace, 0, 0)))
    out.append(_flood(32 << 10, 4096, _header(_SIG, 0, 0)) +
               _flood(16 << 10, 512, _header(ftrace, 0, 0)))
    # Headers whose ECC parity is right, around garbage data.
    for ecc in (16, 32, 64, 127):
        zone = bytearray(os.urandom(4096))
        zone[:12] = _header(_SIG, 10, 3000)
        zone[4096 - ecc:] = _rs.codec(ecc).encode(bytes(zone[:12]))
        out.append(bytes(zone) * 8)
    # A compressed dmesg header followed by a deflate stream cut short.
    text = b"Panic#1 Part1\n" + b"<6>[ 1.000000] line\n" * 400
    c = zlib.compressobj(6, zlib.DEFLATED, -12)
    stream = c.compress(text) + c.flush()
    body = b"====1700000000.000001-C\n" + stream
    zone = bytearray(8192)
    zone[:12] = _header(_SIG, len(body), len(body))
    zone[12:12 + len(body)] = body
    out.append(bytes(zone) * 4)
    out.append(bytes(zone[:12 + len(body) // 2]) * 4)
    return out


def _real() -> list[bytes]:
    """Each captured region cut to 64 KiB: its first dmesg zones (where the
    records are) and its last 16 KiB (console, pmsg, ftrace)."""
    out = []
    for d in sorted(p for p in FIXTURES.iterdir() if (p / "region.bin.gz").exists()):
        region = gzip.decompress((d / "region.bin.gz").read_bytes())
        out.append(region[:48 << 10] + region[-(16 << 10):])
    return out


def seeds() -> list[bytes]:
    """The real regions under three modes, the hostile ones under one each
    (round robin); the fuzzer mutates the option bytes from there."""
    real = [bytes([m]) + bytes(OPTS - 1) + img for img in _real() for m in (0, 1, 2)]
    hostile = [bytes([i % _MODES]) + bytes(OPTS - 1) + img[:MAX_LEN - OPTS]
               for i, img in enumerate(_hostile())]
    return real + hostile


def write_corpus(directory: Path, limit: int | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.iterdir()):
        chosen = seeds()
        if limit is not None:
            chosen = chosen[::max(1, len(chosen) // limit)][:limit]
        for i, s in enumerate(chosen):
            (directory / f"seed-{i:04d}").write_bytes(s)


# -- findings: every input that once crashed, hung or ran out of memory ------------------

#: (what it was, input): inputs the fuzzer flagged, rebuilt by hand from
#: the artifact so the case reads as what it is.
FINDINGS: list[tuple[str, bytes]] = [
    # libFuzzer slow unit (0.6 s under load): a zone whose last bytes XOR to
    # its header's XOR passes the ECC prefilter for every size 1..127, and
    # each size built a Reed-Solomon codec (10 ms of generator polynomial).
    # Generators are now formed once for all sizes.
    ("ecc prefilter passes every size",
     bytes([5]) + bytes(OPTS - 1) + b"DBGC" + bytes(4096 - 5) + b"\x02"),
]


@pytest.mark.parametrize("what, data", FINDINGS, ids=[w for w, _ in FINDINGS])
def test_findings_stay_fixed(what: str, data: bytes) -> None:
    t = time.perf_counter()
    one_input(data)
    assert time.perf_counter() - t < 20


# -- the short runs in the normal suite -------------------------------------------------


def test_seeds() -> None:
    for s in seeds():
        t = time.perf_counter()
        one_input(s)
        assert time.perf_counter() - t < 20


_TOKENS = [b"DBGC", b"====", _header(_SIG, 0, 0), _header(_SIG ^ 0x060C75, 0, 64),
           _header(_SIG, 0x7FFFFFFF, 0x7FFFFFFF)]


@st.composite
def with_options(draw: st.DrawFn) -> bytes:
    """Decoder options, then a real region mutated (hostile headers among the tokens)."""
    options = draw(st.binary(min_size=OPTS, max_size=OPTS))
    return options + draw(mutated(_SEEDS, tokens=_TOKENS, min_ops=0, max_ops=8))


_SEEDS = [s[OPTS:] for s in seeds()[2::3]]


@settings(max_examples=60, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(with_options())
def test_mutated_seeds(data: bytes) -> None:
    t = time.perf_counter()
    one_input(data)
    assert time.perf_counter() - t < 20


def test_coverage_guided_short_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"
    write_corpus(corpus, limit=8)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run(
        [sys.executable, __file__, str(corpus), "-max_total_time=8", "-timeout=20",
         "-rss_limit_mb=2048", f"-max_len={MAX_LEN}", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Done" in res.stderr or "DONE" in res.stderr, res.stderr[-2000:]


def main() -> None:
    args = list(sys.argv)
    corpus = next((a for a in args[1:] if not a.startswith("-")), None)
    if corpus is not None:
        write_corpus(Path(corpus))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
