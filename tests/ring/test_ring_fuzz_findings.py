"""Inputs the fuzz harnesses (tests/fuzz/test_fuzz_ring.py) found that
broke the ring's parsers, each with the class of input it stands for.  The
crash inputs are kept byte for byte as libFuzzer wrote them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXTURES
from memconsole.cli import main
from memconsole.ring import Ring, parse_ring
from memconsole.ring._kmsg import Batch, LineParser, SeqTracker
from memconsole.ring.format import encode_header, encode_record
from memconsole.ring.recorder import parse_kmsg
from memconsole.ring.regions import buffer_region, open_region

CRASHES = FIXTURES / "ring" / "fuzz"

# kmsg target, atheris 3.0.0, about 8,000 executions into a 300 s run
# (crash-4d1a826e08d06edcdcba9cd98e7a954f5dd6fdf9): a kmsg-format line whose
# sequence number has 90 digits became a gap record of more than 2^64
# records; Ring.append_gap raised OverflowError (int.to_bytes), so
# ``record --source FILE`` died with a traceback.
KMSG_CRASH_4D1A826E = (CRASHES / "kmsg-crash-4d1a826e").read_bytes()


def _through_a_ring(data: bytes) -> list[bytes]:
    parser, batch = LineParser("auto"), Batch()
    seqs = SeqTracker(None)
    parser.feed(data, batch, seqs, 1 << 60, final=True)
    ring = Ring.attach(buffer_region(bytearray(1 << 16)), boot=b"\x01" * 16)
    batch.write(ring)
    texts = [r.text for b in parse_ring(bytes(ring.region.buf)).boots for r in b.records]
    ring.close()
    return texts


def test_kmsg_crash_4d1a826e() -> None:
    assert KMSG_CRASH_4D1A826E.startswith(b"6," + b"6" * 87 + b"1,2,-;i\n")
    assert parse_kmsg(KMSG_CRASH_4D1A826E) is None
    texts = _through_a_ring(KMSG_CRASH_4D1A826E)
    assert texts[0] == KMSG_CRASH_4D1A826E.split(b"\n")[0]   # kept, as text


@pytest.mark.parametrize("line, kmsg", [
    (b"9999,1,1,-;pri of 4 digits", True),
    (b"65536,1,1,-;pri past u16", False),
    (b"6,9999999999999999999,1,-;seq of 19 digits", True),
    (b"6,18446744073709551615,1,-;seq 2^64-1", False),
    (b"6,1,999999999999999,-;usec of 15 digits", True),
    (b"6,1,9223372036854775807,-;usec past the ring's signed ns", False),
])
def test_kmsg_numbers_must_fit_a_ring_record(line: bytes, kmsg: bool,
                                             tmp_path: Path) -> None:
    """The class: a kmsg prefix whose numbers do not fit a ring record's
    fields (pri u16, seq below 2^64-1, ns signed 64-bit) is not taken for
    a kernel record; the line is kept as text, never an exception."""
    assert (parse_kmsg(line + b"\n") is not None) == kmsg
    texts = _through_a_ring(line + b"\n")
    assert texts[-1] == (line.split(b";", 1)[1] if kmsg else line)
    stream = tmp_path / "stream"
    stream.write_bytes(b"6,0,0,-;first\n" + line + b"\n")
    assert main(["record", "--ring", str(tmp_path / "ring"), "--source", str(stream)]) == 0


# ring target, about 4,200 executions into a 300 s run
# (crash-ea74119d8a54656bb8ad6b23fe501e3da564b1dc): a valid ring holding a
# record with seq 2^64-1 (CRC valid: written by anything that read the
# header's nonce, or a corruption that the CRC let through); the writer
# attached, continued at seq 2^64 and struct.pack raised "argument out of
# range" on the next append.
RING_CRASH_EA74119D = (CRASHES / "ring-crash-ea74119d").read_bytes()


def _harness_region(data: bytes) -> bytearray:
    """The region the ring target built from *data* (tests/fuzz)."""
    import sys

    sys.path.insert(0, str(FIXTURES.parent / "fuzz"))
    try:
        from test_fuzz_ring import Provider, _hostile_ring
    finally:
        sys.path.pop(0)
    p = Provider(data)
    assert p.uint(1) % 3 == 2     # the hostile-records mode
    return _hostile_ring(p)


def test_ring_crash_ea74119d() -> None:
    region = buffer_region(_harness_region(RING_CRASH_EA74119D))
    top = max(r.seq for b in parse_ring(bytes(region.buf)).boots for r in b.records)
    assert top > (1 << 64) - (1 << 32)
    ring = Ring.attach(region, boot=b"\xab" * 16)
    assert ring.reset_reason and "sequence numbers are used up" in ring.reset_reason
    assert ring.append(b"after attach") == 1
    ring.close()


@pytest.mark.parametrize("seq", [(1 << 64) - 1, (1 << 64) - 2, (1 << 64) - (1 << 32) + 1])
def test_exhausted_sequence_numbers_start_a_new_ring(seq: int, tmp_path: Path) -> None:
    """The class: a ring whose highest seq leaves no room for the next
    records is formatted anew (memory and files alike: its records cannot
    be continued in order), never a struct error."""
    path = tmp_path / "ring"
    raw = bytearray(8192)
    raw[0:64] = raw[64:128] = encode_header(8192, 99, 1)
    rec = encode_record(99, seq, b"\x02" * 16, 1, b"forged")
    raw[128:128 + len(rec)] = rec
    path.write_bytes(bytes(raw))
    assert parse_ring(bytes(raw)).boots[0].records[0].seq == seq
    source = tmp_path / "src"
    source.write_bytes(b"a line\n")
    assert main(["record", "--ring", str(path), "--source", str(source)]) == 0
    (boot,) = parse_ring(path.read_bytes()).boots
    assert [r.seq for r in boot.records] == [1, 2, 3]
    with open_region(str(path)) as region:   # readers are unaffected
        assert region.size == 8192


def test_ring_below_the_limit_continues() -> None:
    seq = (1 << 64) - (1 << 32)
    raw = bytearray(8192)
    raw[0:64] = raw[64:128] = encode_header(8192, 5, 1)
    rec = encode_record(5, seq, b"\x02" * 16, 1, b"high but legal")
    raw[128:128 + len(rec)] = rec
    ring = Ring.attach(buffer_region(raw), boot=b"\x03" * 16)
    assert ring.reset_reason is None and ring.append(b"next") == seq + 1
    ring.close()
