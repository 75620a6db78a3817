"""The ring format (docs/ring.md): writer, reader, wrap-around, boots,
headers, torn writes and corrupted memory."""

from __future__ import annotations

import logging
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memconsole.errors import RegionError, RingFormatError
from memconsole.ring import Gap, RecordType, Ring, RingRecord, parse_ring
from memconsole.ring import format as fmt
from memconsole.ring.handler import RingHandler, syslog_level
from memconsole.ring.regions import Region, buffer_region

BOOT_A, BOOT_B, BOOT_C = b"A" * 16, b"B" * 16, b"C" * 16


def new_ring(size: int = 1 << 16, boot: bytes = BOOT_A) -> tuple[bytearray, Ring]:
    buf = bytearray(size)
    return buf, Ring.attach(buffer_region(buf), boot=boot)


def texts(image_boot) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [r.text for r in image_boot.records]


# -- round trip ---------------------------------------------------------------


def test_append_and_read_back() -> None:
    buf, ring = new_ring()
    seqs = [ring.append(b"line %d" % i, pri=6, source_seq=i, mono_ns=i * 1000,
                        time_ns=10**18 + i) for i in range(100)]
    assert seqs == list(range(1, 101))
    image = parse_ring(bytes(buf))
    (boot,) = image.boots
    assert boot.boot == BOOT_A and boot.id == "41414141-4141-4141-4141-414141414141"
    assert texts(boot) == [b"line %d" % i for i in range(100)]
    rec = boot.records[7]
    assert (rec.seq, rec.level, rec.facility, rec.source_seq, rec.mono_ns, rec.time_ns) == \
        (8, 6, 0, 7, 7000, 10**18 + 7)
    assert image.corrupt == 0 and not boot.gaps and not boot.stopped


def test_writer_bytes_equal_reference_encoder() -> None:
    buf, ring = new_ring()
    ring.append(b"hello", pri=3, source_seq=5, mono_ns=7, time_ns=9, dictionary=b"K=V")
    ring.append_batch([(b"batched", 4, 0, 6, 8, 10)])
    nonce = ring.header.nonce
    first = fmt.encode_record(nonce, 1, BOOT_A, 1, b"hello\0K=V", pri=3,
                              flags=fmt.FLAG_DICT, source_seq=5, mono_ns=7, time_ns=9)
    second = fmt.encode_record(nonce, 2, BOOT_A, 1, b"batched", pri=4, source_seq=6,
                               mono_ns=8, time_ns=10)
    data = bytes(buf[fmt.DATA_OFFSET:])
    assert data[:len(first)] == first
    at = fmt.aligned(len(first))
    assert data[at:at + len(second)] == second
    (boot,) = parse_ring(bytes(buf)).boots
    assert boot.records[0].text == b"hello" and boot.records[0].dictionary == b"K=V"


def test_unknown_values_read_as_none() -> None:
    buf, ring = new_ring()
    ring.append_batch([(b"x", fmt.PRI_UNKNOWN, 0, fmt.SEQ_UNKNOWN, fmt.TIME_UNKNOWN,
                        fmt.TIME_UNKNOWN)])
    rec = parse_ring(bytes(buf)).boots[0].records[0]
    assert (rec.pri, rec.level, rec.source_seq, rec.mono_ns, rec.time_ns) == \
        (None, None, None, None, None)


def test_unknown_record_type_passes_through() -> None:
    buf, ring = new_ring()
    ring.append(b"from the future", rtype=77)
    rec = parse_ring(bytes(buf)).boots[0].records[0]
    assert rec.type == 77 and rec.type_name == "<unknown 77>"


def test_long_text_is_cut_and_flagged() -> None:
    buf, ring = new_ring(1 << 14)
    ring.append(b"x" * 100_000)
    rec = parse_ring(bytes(buf)).boots[0].records[0]
    assert rec.flags & fmt.FLAG_TRUNCATED
    assert len(rec.text) == fmt.max_record(ring.header.data_size) - fmt.REC_HEADER_SIZE


def test_extend_is_batched_append() -> None:
    buf, ring = new_ring()
    last = ring.extend([b"a", b"bb", b"ccc"], pri=14)
    assert last == 3
    (boot,) = parse_ring(bytes(buf)).boots
    assert texts(boot) == [b"a", b"bb", b"ccc"]
    assert {r.pri for r in boot.records} == {14}
    assert len({r.time_ns for r in boot.records}) == 1


# -- wrap-around and gaps -----------------------------------------------------


@pytest.mark.parametrize("batched", [False, True])
def test_wrap_keeps_newest_contiguous(batched: bool) -> None:
    rng = random.Random(1)
    buf, ring = new_ring(8192)
    written = [b"r%05d " % i + b"x" * rng.randrange(0, 300) for i in range(3000)]
    if batched:
        for i in range(0, len(written), 37):
            ring.extend(written[i:i + 37])
    else:
        for t in written:
            ring.append(t)
    image = parse_ring(bytes(buf))
    (boot,) = image.boots
    got = texts(boot)
    assert got == written[-len(got):]          # the newest, in order, none missing
    assert not boot.gaps and image.corrupt == 0
    used = sum(fmt.aligned(fmt.REC_HEADER_SIZE + len(t)) for t in got)
    assert used > ring.header.data_size - 2 * fmt.max_record(ring.header.data_size)


def test_gap_records_and_missing_seqs() -> None:
    buf, ring = new_ring()
    for i in range(10):
        ring.append(b"m%d" % i, source_seq=i)
    ring.append_gap(5, 10)
    for i in range(15, 20):
        ring.append(b"m%d" % i, source_seq=i)
    assert ring.last_source_seq() == 19
    image = parse_ring(bytes(buf))
    entries = image.boots[0].entries
    gaps = [e for e in entries if isinstance(e, Gap)]
    assert gaps == [Gap(5, "overrun", 10, 10)]
    # Destroy record seq 3's magic: a "missing" gap of one appears.
    victim = image.boots[0].records[2]
    assert victim.seq == 3
    at = fmt.DATA_OFFSET + victim.offset
    buf[at] ^= 0xFF
    image = parse_ring(bytes(buf))
    gaps = image.boots[0].gaps
    assert Gap(1, "missing", 2) in gaps and image.boots[0].missing == 6


def test_restart_gap_counts_as_recorded_source_seqs() -> None:
    buf = bytearray(1 << 16)
    ring = Ring.attach(buffer_region(buf), boot=BOOT_A)
    ring.append(b"a", source_seq=0)
    ring.append_gap(100, 1)
    again = Ring.attach(buffer_region(buf), boot=BOOT_A)
    assert again.last_source_seq() == 100 and again.last_seq == 2


# -- boots --------------------------------------------------------------------


def test_boots_told_apart_and_ordered() -> None:
    buf = bytearray(1 << 16)
    for boot, n in ((BOOT_A, 3), (BOOT_B, 2), (BOOT_C, 4)):
        ring = Ring.attach(buffer_region(buf), boot=boot)
        ring.append_note(RecordType.START, b"start")
        for i in range(n):
            ring.append(b"%s %d" % (boot[:1], i))
        if boot != BOOT_C:
            ring.append_note(RecordType.STOP, b"stop")
    image = parse_ring(bytes(buf))
    assert [b.boot for b in image.boots] == [BOOT_A, BOOT_B, BOOT_C]
    assert [len(b.records) for b in image.boots] == [5, 4, 5]
    assert [b.stopped for b in image.boots] == [True, True, False]
    assert [b.boot for b in image.ended_boots(BOOT_C)] == [BOOT_A, BOOT_B]
    seqs = [r.seq for b in image.boots for r in b.records]
    assert seqs == list(range(1, 15))


def test_lost_tail_of_a_boot_is_a_gap_at_its_end() -> None:
    buf = bytearray(1 << 16)
    ring = Ring.attach(buffer_region(buf), boot=BOOT_A)
    for i in range(5):
        ring.append(b"a%d" % i)
    ring = Ring.attach(buffer_region(buf), boot=BOOT_B)
    ring.append(b"b0")
    image = parse_ring(bytes(buf))
    last_a = image.boots[0].records[-1]
    buf[fmt.DATA_OFFSET + last_a.offset + 64] ^= 1   # corrupt its text
    image = parse_ring(bytes(buf))
    assert isinstance(image.boots[0].entries[-1], Gap)
    assert image.boots[0].entries[-1].count == 1
    assert image.corrupt == 1
    assert not image.boots[0].stopped


# -- attach, headers, reset -------------------------------------------------------


def test_attach_continues_the_ring() -> None:
    buf, ring = new_ring()
    for i in range(50):
        ring.append(b"first %d" % i)
    again = Ring.attach(buffer_region(buf), boot=BOOT_A)
    assert again.reset_reason is None and again.last_seq == 50
    again.append(b"second")
    (boot,) = parse_ring(bytes(buf)).boots
    assert boot.records[-1].seq == 51 and len(boot.records) == 51


@pytest.mark.parametrize("content, reason", [
    (b"\0" * 4096, "empty"),
    (b"DBGC" + b"\x11" * 4092, "foreign"),
    (bytes(range(256)) * 16, "foreign"),
])
def test_garbage_is_reported_and_memory_is_reset(content: bytes, reason: str) -> None:
    buf = bytearray(content * 4)
    with pytest.raises(RingFormatError) as err:
        parse_ring(bytes(buf))
    assert err.value.reason == reason
    ring = Ring.attach(buffer_region(buf), boot=BOOT_A)
    assert ring.reset_reason == str(err.value)
    ring.append(b"fresh")
    assert texts(parse_ring(bytes(buf)).boots[0]) == [b"fresh"]


def _file_region(buf: bytearray) -> Region:
    return Region("ring.file", "file", memoryview(buf))


def test_a_foreign_file_is_never_reset() -> None:
    buf = bytearray(b"#!/bin/sh\necho precious\n" * 500)
    before = bytes(buf)
    with pytest.raises(RingFormatError, match="not a memconsole ring"):
        Ring.attach(_file_region(buf), boot=BOOT_A)
    assert bytes(buf) == before


def _with_version(buf: bytearray, version: int) -> None:
    for at in (0, fmt.HEADER_SIZE):
        raw = bytearray(buf[at:at + fmt.HEADER_SIZE])
        raw[8:10] = version.to_bytes(2, "little")
        raw[60:64] = zlib.crc32(bytes(raw[:60])).to_bytes(4, "little")
        buf[at:at + fmt.HEADER_SIZE] = raw


@pytest.mark.parametrize("version, file_reset", [(0, True), (2, False)])
def test_other_versions(version: int, file_reset: bool) -> None:
    buf, ring = new_ring(8192)
    ring.append(b"old")
    _with_version(buf, version)
    with pytest.raises(RingFormatError) as err:
        parse_ring(bytes(buf))
    assert err.value.reason == "version" and err.value.version == version
    assert f"version {version}" in str(err.value)
    # Memory is always reset; a file of a newer version is left alone.
    assert Ring.attach(buffer_region(bytearray(buf)), boot=BOOT_A).reset_reason
    if file_reset:
        assert Ring.attach(_file_region(bytearray(buf)), boot=BOOT_A).reset_reason
    else:
        with pytest.raises(RingFormatError):
            Ring.attach(_file_region(bytearray(buf)), boot=BOOT_A)


def test_damaged_primary_header_falls_back_to_backup_and_is_repaired() -> None:
    buf, ring = new_ring(8192)
    ring.append(b"keep me")
    buf[20] ^= 0x40
    image = parse_ring(bytes(buf))
    assert image.header.copy == "backup" and texts(image.boots[0]) == [b"keep me"]
    again = Ring.attach(buffer_region(buf), boot=BOOT_A)
    assert again.reset_reason is None
    assert buf[:fmt.HEADER_SIZE] == buf[fmt.HEADER_SIZE:2 * fmt.HEADER_SIZE]
    assert parse_ring(bytes(buf)).header.copy == "primary"


def test_both_headers_damaged_is_reset_and_old_records_die() -> None:
    buf, ring = new_ring(8192)
    ring.append(b"old")
    buf[20] ^= 1
    buf[fmt.HEADER_SIZE + 20] ^= 1
    with pytest.raises(RingFormatError) as err:
        parse_ring(bytes(buf))
    assert err.value.reason == "damaged"
    ring = Ring.attach(buffer_region(buf), boot=BOOT_A)
    assert ring.reset_reason and ring.last_seq == 0     # new nonce: "old" is invalid
    ring.append(b"new")
    assert texts(parse_ring(bytes(buf)).boots[0]) == [b"new"]


def test_geometry_mismatch_resets_writer_but_reader_reads() -> None:
    buf, ring = new_ring(8192)
    ring.append(b"small ring")
    bigger = bytearray(buf) + bytearray(8192)
    assert texts(parse_ring(bytes(bigger)).boots[0]) == [b"small ring"]
    again = Ring.attach(buffer_region(bigger), boot=BOOT_A)
    assert again.reset_reason and "formatted for 8192" in again.reset_reason
    assert again.header.region_size == 16384


def test_too_small_region() -> None:
    with pytest.raises(RegionError, match="too small"):
        Ring.attach(buffer_region(bytearray(1024)), boot=BOOT_A)


# -- crash consistency ---------------------------------------------------------------


def _write_states(before: bytes, after: bytes, rng: random.Random, n: int) -> list[bytes]:
    """States a torn write can leave: every program-order prefix of the
    changed bytes, and random subsets (a page cache written back in any order)."""
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    states = []
    for k in range(0, len(changed) + 1, max(1, len(changed) // 40)):
        s = bytearray(before)
        for i in changed[:k]:
            s[i] = after[i]
        states.append(bytes(s))
    for _ in range(n):
        s = bytearray(before)
        for i in changed:
            if rng.random() < 0.5:
                s[i] = after[i]
        states.append(bytes(s))
    return states


def test_torn_writes_never_accept_a_partial_record() -> None:
    rng = random.Random(7)
    buf, ring = new_ring(4096)
    sent: dict[int, bytes] = {}
    for i in range(200):  # wraps several times
        before = bytes(buf)
        text = b"msg %d " % i + bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        seq = ring.append(text)
        sent[seq] = text
        after = bytes(buf)
        changed = [i for i in range(len(before)) if before[i] != after[i]]
        lo, hi = (min(changed), max(changed)) if changed else (0, -1)
        untouched = {r.seq for b in parse_ring(before).boots for r in b.records
                     if r.offset + fmt.DATA_OFFSET + fmt.aligned(fmt.REC_HEADER_SIZE
                                                                 + len(r.text)) <= lo
                     or r.offset + fmt.DATA_OFFSET > hi}
        for state in _write_states(before, after, rng, 5):
            image = parse_ring(state)
            got = {}
            for boot in image.boots:
                for rec in boot.records:
                    assert sent[rec.seq] == rec.text   # never a torn or stale mix
                    got[rec.seq] = rec
            assert untouched <= set(got)               # nothing else was lost


# -- corrupted memory --------------------------------------------------------------


def test_random_corruption_never_crashes_and_never_lies() -> None:
    rng = random.Random(3)
    buf, ring = new_ring(1 << 15)
    sent = {}
    for i in range(2000):
        text = b"record %d %s" % (i, b"y" * rng.randrange(120))
        sent[ring.append(text, source_seq=i)] = text
    clean = parse_ring(bytes(buf))
    total = clean.records
    for _trial in range(200):
        bad = bytearray(buf)
        for _ in range(rng.choice((1, 5, 50, 500))):
            bad[rng.randrange(fmt.DATA_OFFSET, len(bad))] = rng.randrange(256)
        image = parse_ring(bytes(bad))
        got = [r for b in image.boots for r in b.records]
        for rec in got:
            assert sent[rec.seq] == rec.text
        lost = total - len(got)
        if lost:
            assert image.corrupt + sum(b.missing for b in image.boots) >= 1
        assert image.corrupt <= lost + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=6000))
def test_arbitrary_bytes_give_an_image_or_a_format_error(data: bytes) -> None:
    try:
        image = parse_ring(data)
    except RingFormatError:
        return
    assert image.records >= 0


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=fmt.DATA_OFFSET, max_size=6000), st.integers(0, 2**32 - 1))
def test_arbitrary_data_area_under_a_valid_header(data: bytes, nonce: int) -> None:
    header = fmt.encode_header(len(data) + 4096, nonce, 0)
    region = header + header + data[fmt.DATA_OFFSET:] + bytes(4096)
    image = parse_ring(region)
    assert image.header.nonce == nonce


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=400), min_size=1, max_size=300))
def test_any_texts_round_trip_newest_first_survive(items: list[bytes]) -> None:
    buf, ring = new_ring(8192)
    for t in items:
        ring.append(t)
    got = texts(parse_ring(bytes(buf)).boots[0])
    assert got == items[-len(got):]
    assert len(got) >= 1


# -- logging handler ------------------------------------------------------------------


def test_logging_handler(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "app.ring"
    handler = RingHandler(str(path), ring_size=1 << 16)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    log = logging.getLogger("memconsole.test.ring")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.info("started %d", 3)
        log.error("disk on fire: \udcff")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
        handler.close()
    handler.close()  # twice is harmless
    (boot,) = parse_ring(path.read_bytes()).boots
    recs = boot.records
    assert [r.level for r in recs] == [6, 3, 3]
    assert {r.facility for r in recs} == {1}
    assert recs[0].text == b"memconsole.test.ring: started 3"
    assert recs[1].text.endswith(b"\\udcff")
    assert b"ValueError: boom" in recs[2].text
    assert all(isinstance(r, RingRecord) and r.time_ns for r in recs)


def test_syslog_levels() -> None:
    assert [syslog_level(n) for n in (5, 10, 20, 30, 40, 50, 60)] == [7, 7, 6, 4, 3, 2, 2]
