"""Fuzz the pstore record reader: the name grammar, ``decode_record``
(headers, ECC notices, ``.enc.z`` inflation), ``read_pstore_dir`` on files
and names written to a real directory, and the grouping into boots.
Arbitrary names and bytes give records (or a ParseError), never another
exception, never a hang.

Seeded from the real captures in tests/fixtures/lab (every record, with
its name).  In the test suite: a few seconds of coverage-guided fuzzing
with atheris when it is installed, and a Hypothesis run of the same
function either way.  A long run (docs/reliability.md has its figures)::

    mkdir -p /tmp/pstore-corpus
    PYTHONPATH=src python tests/fuzz/test_fuzz_pstore.py -seed_corpus \\
        /tmp/pstore-corpus
    PYTHONPATH=src python tests/fuzz/test_fuzz_pstore.py -max_total_time=600 \\
        -timeout=10 -rss_limit_mb=1024 /tmp/pstore-corpus

The input is ``MODE NAMELEN NAME CONTENT``: MODE picks what is exercised
(0 name and decode, 1 header and ECC parsers, 2 a directory read, 3
grouping of several records).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import libfuzzer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "lab"
_DIR = Path(tempfile.mkdtemp(prefix="fuzz-pstore-"))
atexit.register(shutil.rmtree, _DIR, True)


def seeds() -> list[bytes]:
    """Every real record of the lab fixtures, as fuzz inputs of each mode."""
    out = []
    for f in sorted(FIXTURES.glob("*/*/pstore/*")):
        name = f.name.encode()
        for mode in range(4):
            out.append(bytes([mode, len(name)]) + name + f.read_bytes())
    return out


def _name(raw: bytes) -> bytes:
    """A file name made of *raw*: no slash or NUL, not . or .., non-empty."""
    name = raw.replace(b"/", b"_").replace(b"\0", b"_")[:200] or b"x"
    # Not "." or "..", not the subdirectory _directory() makes, not the
    # systemd-pstore file read_pstore_dir() leaves out on purpose.
    return name + b"_" if name in (b".", b"..", b"sub", b"dmesg.txt") else name


def one_input(data: bytes) -> None:
    """Run the reader on one fuzz input; raise only on a real defect."""
    from memconsole import pstore
    from memconsole.errors import ParseError
    from memconsole.pstore.boots import assign_boots, group_boots

    if len(data) < 2:
        return
    mode, nlen = data[0] % 4, data[1]
    name_b, raw = _name(data[2:2 + nlen]), data[2 + nlen:]
    name = os.fsdecode(name_b)
    try:
        if mode == 0:
            kind = pstore.parse_name(name)
            if kind is not None:
                assert name.startswith(f"{kind.type}-") and kind.id >= 0
            rec = pstore.decode_record(name, raw, 1_700_000_000 * 10**9)
            assert rec.raw == raw
            if not rec.kind.compressed:
                assert raw.startswith(rec.text)
            if rec.header is not None:
                assert rec.text.startswith(
                    f"{rec.header.reason}#{rec.header.count} Part{rec.header.part}".encode())
            assert isinstance(rec.body, bytes)
        elif mode == 1:
            header = pstore.parse_dump_header(raw)
            if header is not None:
                assert header.count >= 0 and header.part >= 0
            payload, fixed, bad = pstore.split_ecc_trailer(raw)
            assert raw.startswith(payload) and (fixed is None) == (bad is None)
            pstore.decode_record(name + ".enc.z", zlib.compress(raw)[:max(1, len(raw) // 2)], 0)
        elif mode == 2:
            _directory(name_b, raw)
        else:
            chunks = raw.split(b"\n\n")[:16]
            recs = [pstore.decode_record(f"dmesg-ramoops-{i}", c, (i * 7919 % 13) * 10**9)
                    for i, c in enumerate(chunks)]
            boots = group_boots(recs)
            assert sorted(id(r) for b in boots for r in b.records) == sorted(map(id, recs))
            half = len(recs) // 2
            placed = assign_boots(recs[half:], {"20260101T000000Z": recs[:half]})
            assert sorted(id(r) for _, r in placed) == sorted(map(id, recs[half:]))
    except ParseError:
        pass


def _directory(name: bytes, raw: bytes) -> None:
    """Write *raw* under *name* (top level and one level down, and a
    symlink and a FIFO beside it) and read the directory back."""
    from memconsole import pstore

    d = _DIR / "p"
    if d.exists():
        shutil.rmtree(d)
    (d / "sub").mkdir(parents=True)
    dfd = os.fsencode(d)
    for where in (dfd, dfd + b"/sub"):
        with open(where + b"/" + name, "wb") as f:
            f.write(raw)
    os.symlink(b"/etc/passwd", dfd + b"/link-" + name[:100])
    os.mkfifo(dfd + b"/fifo-" + name[:100])
    cap = max(len(raw) - 1, 0) if raw and raw[0] & 1 else 1 << 20
    records, failures = pstore.read_pstore_dir(d, cap)
    kinds = sorted(f.kind.value for f in failures)
    if len(raw) > cap:
        assert records == [] and kinds == ["not-regular", "not-regular", "too-large",
                                           "too-large"], kinds
    else:
        assert [r.raw for r in records] == [raw, raw] and kinds == ["not-regular"] * 2, kinds
        assert all(r.file_id is not None for r in records)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
@example(b"\x00\x10dmesg-ramoops-0.enc.z" + b"\x78\x9c" + b"\xff" * 64)
@example(b"\x02\x05......" + b"Panic#1 Part1\n")
def test_any_input_gives_records(data: bytes) -> None:
    one_input(data)


def test_fixture_seeds_give_records() -> None:
    for seed in seeds():
        one_input(seed)


def test_coverage_guided_fuzzing_finds_nothing(tmp_path: Path) -> None:
    """A few seconds of atheris (coverage-guided, libFuzzer) from the seeds."""
    libfuzzer.short_run(__file__, seeds(), tmp_path)


if __name__ == "__main__":
    libfuzzer.main(seeds, one_input, ["memconsole.pstore", "memconsole.pstore.boots"])
