"""Unit tests of the ramoops decoder on generated zones.

These check algorithms (geometry arithmetic, header rules, RS, vsscanf,
deflate) against the kernel functions they mirror, on bytes made here.
Kernel behaviour itself is checked on real captured regions in
test_ramoops_fixtures.py and live in test_ramoops_vm.py.
"""

from __future__ import annotations

import os
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memconsole.errors import ConfigError, MemconsoleError, ParseError
from memconsole.pstore.compress import decompress
from memconsole.ramoops import (
    HEADER_SIZE,
    PERSISTENT_RAM_SIG,
    Geometry,
    ZoneKind,
    ZoneOrder,
    ZoneStatus,
    _rs,
    _rs_batch,
    decode,
    decode_zone,
    detect,
    ecc_layout,
    layout,
    parse_dmesg_header,
)

# -- helpers: write zones as persistent_ram_write() would -----------------------


def make_zone(size: int, payload: bytes, *, ecc: int = 0, start: int | None = None,
              sig: int = PERSISTENT_RAM_SIG, ring_start: int = 0) -> bytes:
    """A zone holding *payload*; with *ring_start* the ring has wrapped and
    the oldest byte sits there (persistent_ram_save_old())."""
    lay = ecc_layout(size, ecc)
    data = bytearray(lay.capacity)
    if ring_start:
        assert len(payload) == lay.capacity
        data[ring_start:] = payload[:lay.capacity - ring_start]
        data[:ring_start] = payload[lay.capacity - ring_start:]
        hstart, hsize = ring_start, lay.capacity
    else:
        data[:len(payload)] = payload
        hstart, hsize = (len(payload) if start is None else start), len(payload)
    zone = bytearray(size)
    struct.pack_into("<Iii", zone, 0, sig, hstart, hsize)
    zone[HEADER_SIZE:HEADER_SIZE + lay.capacity] = data
    if ecc:
        codec = _rs.codec(ecc)
        for blk in range(lay.blocks):
            d0 = HEADER_SIZE + blk * 128
            d1 = min(d0 + 128, HEADER_SIZE + lay.capacity)
            p0 = lay.par_buffer + blk * ecc
            zone[p0:p0 + ecc] = codec.encode(zone[d0:d1])
        zone[lay.par_header:lay.par_header + ecc] = codec.encode(zone[:HEADER_SIZE])
    return bytes(zone)


def dmesg_text(n: int = 3000, seed: int = 0) -> bytes:
    rnd = random.Random(seed)
    lines = [f"<6>[{i:5d}.{rnd.randrange(10**6):06d}] line {i} {rnd.random()}\n"
             for i in range(n)]
    return ("Panic#1 Part1\n" + "".join(lines)).encode()


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -12, 4)
    return c.compress(data) + c.flush()


def region_for(geom: Geometry, fill: dict[tuple[ZoneKind, int], bytes]) -> bytes:
    """A whole region: every zone initialised (empty header) as ramoops does
    at probe time, some filled with payloads."""
    out = bytearray(geom.mem_size)
    for z in layout(geom):
        sig = PERSISTENT_RAM_SIG ^ (0x060C00 if z.kind is ZoneKind.FTRACE else 0)
        payload = fill.get((z.kind, z.id), b"")
        out[z.offset:z.offset + z.size] = make_zone(z.size, payload, ecc=geom.ecc_size,
                                                    sig=sig)
    return bytes(out)


# -- geometry ---------------------------------------------------------------------


def test_layout_zone_size_exceeds_record_size_and_is_even() -> None:
    # 1 MiB, record 16 KiB, defaults 4 KiB: dump 1036288 / 63 = 16449 -> 16448
    # (ALIGN_DOWN(zone_sz, 2)), as the lab's 6.1.192 and 6.12 kernels lay it out.
    zones = layout(Geometry.from_params(0x100000, 0x4000, order=ZoneOrder.V6_1))
    dmesg = [z for z in zones if z.kind is ZoneKind.DMESG]
    assert len(dmesg) == 63 and {z.size for z in dmesg} == {16448}
    tail = [(z.kind, z.offset, z.size) for z in zones if z.kind is not ZoneKind.DMESG]
    assert tail == [(ZoneKind.CONSOLE, 0xFCFC0, 4096), (ZoneKind.FTRACE, 0xFDFC0, 4096),
                    (ZoneKind.PMSG, 0xFEFC0, 4096)]
    old = layout(Geometry.from_params(0x100000, 0x4000).with_(align_even=False))
    assert old[0].size == 16449


def test_layout_order_6_2_puts_pmsg_before_ftrace() -> None:
    zones = layout(Geometry.from_params(0x100000, 0x4000, order=ZoneOrder.V6_2))
    assert [z.kind for z in zones[-3:]] == [ZoneKind.CONSOLE, ZoneKind.PMSG,
                                             ZoneKind.FTRACE]


def test_layout_per_cpu_ftrace_and_pow2_rounding() -> None:
    g = Geometry.from_params(0x10000, 3000, console_size=5000, ftrace_size=8192,
                             pmsg_size=0, ecc=1, ftrace_cpus=3)
    assert (g.record_size, g.console_size, g.ecc_size) == (2048, 4096, 16)
    ft = [z for z in layout(g) if z.kind is ZoneKind.FTRACE]
    assert [z.size for z in ft] == [2730] * 3  # ALIGN_DOWN(8192 / 3, 2)


def test_layout_refuses_what_probe_refuses() -> None:
    with pytest.raises(ConfigError, match="exceed mem_size"):
        layout(Geometry.from_params(8192, 4096, 4096, 4096, 4096))
    with pytest.raises(ConfigError, match="record count == 0"):
        layout(Geometry.from_params(12288 + 100, 4096))
    with pytest.raises(ConfigError, match="non-zero"):
        Geometry.from_params(0)


def test_ecc_layout_matches_persistent_ram_init_ecc() -> None:
    # 4096-byte zone, ecc 16: buffer 4084, blocks DIV_ROUND_UP(4068, 144) = 29,
    # total 30 * 16 = 480, capacity 3604, header parity in the last 16 bytes.
    lay = ecc_layout(4096, 16)
    assert (lay.capacity, lay.blocks, lay.par_buffer, lay.par_header) == (3604, 29, 3616, 4080)
    with pytest.raises(ConfigError, match="invalid ecc_size"):
        ecc_layout(64, 40)


# -- zone headers -------------------------------------------------------------------


@pytest.mark.parametrize("ecc", [0, 16])
def test_zone_accept_rules(ecc: int) -> None:
    spec = layout(Geometry.from_params(0x10000, 4096, ecc=ecc))[0]
    ok = make_zone(4096, b"hello", ecc=ecc)
    assert decode_zone(ok, spec, ecc).status is ZoneStatus.OK
    assert decode_zone(make_zone(4096, b"", ecc=ecc), spec, ecc).status is ZoneStatus.EMPTY
    bad_sig = decode_zone(make_zone(4096, b"x", ecc=ecc, sig=0x1234), spec, ecc)
    assert bad_sig.status is ZoneStatus.BAD_SIG
    assert "zone 0 (dmesg-0) at 0x0: signature 0x00001234 is not 0x43474244" in bad_sig.problem
    over = decode_zone(make_zone(4096, b"x", ecc=ecc, start=2), spec, ecc)
    assert over.status is ZoneStatus.INVALID and "start 2 > size 1" in over.problem
    cap = ecc_layout(4096, ecc).capacity
    big = bytearray(make_zone(4096, b"x", ecc=ecc))
    struct.pack_into("<ii", big, 4, 0, cap + 1)
    if ecc:  # re-protect the header so only the size rule fires
        big[4096 - ecc:] = _rs.codec(ecc).encode(big[:12])
    res = decode_zone(bytes(big), spec, ecc)
    assert res.status is ZoneStatus.INVALID
    assert f"size {cap + 1} exceeds capacity {cap}" in res.problem
    neg = bytearray(make_zone(4096, b"x"))
    struct.pack_into("<i", neg, 8, -5)  # atomic_t read as size_t: huge
    assert decode_zone(bytes(neg), spec, 0).status is ZoneStatus.INVALID


def test_ring_reassembly_oldest_byte_at_start() -> None:
    spec = layout(Geometry.from_params(0x10000, 4096))[0]
    cap = ecc_layout(4096, 0).capacity
    text = bytes(range(256)) * (cap // 256) + b"z" * (cap % 256)
    res = decode_zone(make_zone(4096, text, ring_start=1000), spec, 0)
    assert res.old_log == text


def test_truncated_zone_names_numbers() -> None:
    spec = layout(Geometry.from_params(0x10000, 4096))[1]
    res = decode_zone(b"\0" * 5000, spec, 0)
    assert res.status is ZoneStatus.TRUNCATED
    assert res.problem == ("zone 1 (dmesg-1) at 0x1000: needs 4096 bytes, the image has "
                           "904 from there (truncated image?)")


# -- dmesg header (vsscanf) -----------------------------------------------------------


@pytest.mark.parametrize("text, expect", [
    (b"====1700000000.123456-C\nxx", (24, 1700000000123456000, True)),
    (b"====1700000000.123456-D\nxx", (24, 1700000000123456000, False)),
    (b"====5.7\nrest", (8, 5000007000, False)),           # pre-compression form
    (b"==== 12. 34-D \n\t x", (17, 12000034000, False)),  # %d skips spaces; \n any run
    (b"====-3.000001-D\n", (16, -2999999000, False)),      # %lld takes a sign
    (b"====3.-1-D\n", (0, 0, False)),                      # %lu does not
    (b"====3.1-D", (9, 3000001000, False)),                # %n after end: still counts
    (b"====3.1-", (7, 3000001000, False)),                 # no %c: the 2nd form
    (b"===3.1-D\n", (0, 0, False)),
    (b"", (0, 0, False)),
])
def test_parse_dmesg_header(text: bytes, expect: tuple[int, int, bool]) -> None:
    assert tuple(parse_dmesg_header(text)) == expect


# -- Reed-Solomon -------------------------------------------------------------------


@pytest.mark.parametrize("nroots", [1, 2, 16, 32, 64, 127])
def test_rs_encoder_matches_reedsolo(nroots: int) -> None:
    reedsolo = pytest.importorskip("reedsolo")
    rsc = reedsolo.RSCodec(nsym=nroots, nsize=255, fcr=0, prim=0x11D, generator=2, c_exp=8)
    rnd = random.Random(nroots)
    for length in (1, 12, 100, 128):
        data = bytes(rnd.randrange(256) for _ in range(length))
        assert _rs.codec(nroots).encode(data) == bytes(rsc.encode(data))[length:]


@pytest.mark.parametrize("nroots", [2, 16, 32])
def test_rs_decode_corrects_up_to_half_nroots(nroots: int) -> None:
    codec = _rs.codec(nroots)
    rnd = random.Random(nroots)
    for length in (12, 128):
        data = bytes(rnd.randrange(256) for _ in range(length))
        par = codec.encode(data)
        for nerr in range(1, nroots // 2 + 1):
            word = bytearray(data + par)
            for pos in rnd.sample(range(len(word)), nerr):
                word[pos] ^= rnd.randrange(1, 256)
            res = codec.decode(word[:length], word[length:])
            assert (res.corrected, res.data, res.parity) == (nerr, data, par)


def test_rs_decode_reports_uncorrectable() -> None:
    codec = _rs.codec(16)
    data = os.urandom(128)
    word = bytearray(data + codec.encode(data))
    for pos in range(0, 9 * 7, 7):  # 9 errors > 16 / 2
        word[pos] ^= 0xA5
    res = codec.decode(word[:128], word[128:])
    assert res.corrected == -1 and res.data == bytes(word[:128])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 2, 3, 8, 16, 17, 32, 64, 100, 127]),
       st.integers(1, 128), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_row_wise_decoder_equals_the_decode_rs_transcription(
        nroots: int, length: int, seed: int, kind: int) -> None:
    # decode() computes decode_rs.c's values row by row; decode_reference()
    # follows it line by line.  Same verdict, count and bytes, whether the
    # block is clean, correctable, just beyond or all garbage.
    codec = _rs.codec(nroots)
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(length))
    word = bytearray(data + codec.encode(data))
    nerr = [rnd.randrange(nroots // 2 + 1), nroots // 2 + 1 + rnd.randrange(3),
            len(word), rnd.randrange(len(word) + 1)][kind]
    for pos in rnd.sample(range(len(word)), min(nerr, len(word))):
        word[pos] ^= rnd.randrange(1, 256)
    d, p = bytes(word[:length]), bytes(word[length:])
    assert codec.decode(d, p) == codec.decode_reference(d, p)


@pytest.mark.parametrize("nroots", [1, 16, 20, 64])
def test_batch_check_kernels_agree(monkeypatch: pytest.MonkeyPatch, nroots: int) -> None:
    # numpy, bytes.translate and the per-block loop must find exactly the
    # damaged blocks, full ones in runs and short ones (right-aligned) alike.
    codec = _rs.codec(nroots)
    rnd = random.Random(nroots)
    n = 300
    blocks = bytearray(rnd.randbytes(128 * n))
    par = bytearray(b"".join(codec.encode(blocks[i * 128:(i + 1) * 128]) for i in range(n)))
    want = sorted(rnd.sample(range(n), 9))
    for blk in want:
        if blk % 2:
            blocks[blk * 128 + rnd.randrange(128)] ^= 1 << rnd.randrange(8)
        else:
            par[blk * nroots + rnd.randrange(nroots)] ^= 0x40
    lengths = [rnd.randrange(1, 129) for _ in range(n)]
    short_par = bytearray(b"".join(codec.encode(blocks[i * 128:i * 128 + lengths[i]])
                                   for i in range(n)))
    for blk in want:  # damage inside the short block's own bytes
        short_par[blk * nroots] ^= 1
    buf = bytes(blocks) + bytes(short_par)
    items = [(i * 128, lengths[i], 128 * n + i * nroots) for i in range(n)]
    results = []
    for np_mod in (_rs_batch._numpy(), None):
        monkeypatch.setattr(_rs_batch, "_np", np_mod)
        results.append(_rs_batch.bad_blocks(codec, bytes(blocks), bytes(par), n))
        results.append(_rs_batch.bad_blocks(codec, bytes(blocks), bytes(par), 40)
                       + [b + 40 for b in _rs_batch.bad_blocks(
                           codec, bytes(blocks[40 * 128:]), bytes(par[40 * nroots:]), n - 40)])
        runs = [(0, 128 * n, 100), (100 * 128, 128 * n + 100 * nroots, 200)]
        results.append([r * 100 + b for r, b in _rs_batch.bad_blocks_runs(
            codec, bytes(blocks) + bytes(par), runs)])
        results.append(_rs_batch.bad_blocks_at(codec, buf, items))
        results.append([i * 30 + j for i in range(10) for j in _rs_batch.bad_blocks_at(
            codec, buf, items[i * 30:(i + 1) * 30])])
    assert all(r == want for r in results)


# -- records ------------------------------------------------------------------------


def test_decode_compressed_and_plain_records_with_ecc_notice() -> None:
    g = Geometry.from_params(0x20000, 0x4000, ecc=16)
    text = dmesg_text(300)
    comp = b"====1700000000.000001-C\n" + deflate_raw(text)
    plain = b"====1700000001.000002-D\n" + text[:5000]
    region = region_for(g, {(ZoneKind.DMESG, 0): comp, (ZoneKind.DMESG, 2): plain,
                            (ZoneKind.CONSOLE, 0): b"console tail\n"})
    out = decode(region, g)
    names = [r.name for r in out.records]
    assert names == ["dmesg-ramoops-0", "dmesg-ramoops-2", "console-ramoops-0"]
    assert out.records[0].payload == text and out.records[0].compressed
    assert out.records[1].payload == text[:5000] and not out.records[1].compressed
    assert out.records[1].time_ns == 1700000001000002000
    assert all(r.ecc_notice == b"\nECC: No errors detected\n" for r in out.records)
    assert out.problems == ()


def test_undecompressable_record_becomes_enc_z_like_the_kernel() -> None:
    g = Geometry.from_params(0x10000, 0x4000)
    junk = b"====1.000001-C\n" + b"\xff" * 50
    out = decode(region_for(g, {(ZoneKind.DMESG, 1): junk}), g)
    (rec,) = out.records
    assert rec.name == "dmesg-ramoops-1.enc.z" and rec.payload == b"\xff" * 50
    assert "decompression failed" in rec.note


def test_dmesg_without_header_is_discarded_then_salvaged_by_scan() -> None:
    g = Geometry.from_params(0x10000, 0x4000)
    region = bytearray(region_for(g, {(ZoneKind.DMESG, 0): b"no header here\n"}))
    out = decode(bytes(region), g)
    assert out.records == () and "no '====sec.usec-C|D' header" in out.problems[0]
    # A zeroed header with the payload intact (the cached-mapping failure):
    text = dmesg_text(200)
    z1 = layout(g)[1]
    region[z1.offset:z1.offset + z1.size] = make_zone(
        z1.size, b"====1700000000.000001-C\n" + deflate_raw(text))
    region[z1.offset:z1.offset + 12] = bytes(12)
    out = decode(bytes(region), g, scan=True)
    rec = next(r for r in out.records if r.zone == 1)
    assert rec.recovered and rec.payload == text
    assert rec.name == "dmesg-ramoops-1.recovered"


def test_decompress_cap_and_fallbacks() -> None:
    text = b"x" * 10000
    assert decompress(deflate_raw(text), 10000).data == text
    assert decompress(deflate_raw(text), 9999).data is None  # over the cap
    assert decompress(zlib.compress(text), 10000).method == "zlib"  # pre-4.19 pstore
    res = decompress(b"\x00\x01garbage", 100)
    assert res.data is None and res.reason


# -- detection ----------------------------------------------------------------------


@pytest.mark.parametrize("order", [ZoneOrder.V6_1, ZoneOrder.V6_2])
@pytest.mark.parametrize("ecc", [0, 16, 48])
def test_detect_recovers_generated_geometry(order: ZoneOrder, ecc: int) -> None:
    g = Geometry.from_params(0x40000, 0x2000, console_size=0x1000, ftrace_size=0x2000,
                             pmsg_size=0x800, ecc=ecc, ftrace_cpus=2, order=order)
    text = dmesg_text(100)
    region = region_for(g, {(ZoneKind.DMESG, 3): b"====9.000001-C\n" + deflate_raw(text)})
    image = os.urandom(5000) + region + os.urandom(3000)
    det = detect(image)
    assert det.offset == 5000
    got = [(z.kind, z.offset, z.size) for z in layout(det.geometry)]
    want = [(z.kind, z.offset, z.size) for z in layout(g)]
    if not ecc:
        # No header marks the end of the last zone: without ECC parity its
        # size is the module default, a guess the CLI states.
        assert got[-1][:2] == want[-1][:2]
        got, want = got[:-1], want[:-1]
    assert got == want
    assert det.geometry.ecc_size == ecc and det.geometry.order is order
    out = decode(memoryview(image)[det.offset:], det.geometry)
    assert [r.payload for r in out.records] == [text]


def test_detect_without_headers_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no ramoops zone header"):
        detect(bytes(100000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=6000), st.integers(0, 24))
def test_arbitrary_bytes_give_records_or_memconsole_errors(blob: bytes, ecc: int) -> None:
    # Seed some headers so the decoder gets past the signature check.
    image = bytearray(blob)
    for pos in range(0, len(image) - 12, 1024):
        image[pos:pos + 4] = PERSISTENT_RAM_SIG.to_bytes(4, "little")
    try:
        det = detect(bytes(image))
        decode(memoryview(bytes(image))[det.offset:], det.geometry, scan=True)
    except MemconsoleError:
        pass
    try:
        g = Geometry.from_params(max(len(image), 1), 1024, 256, 256, 256, ecc=ecc)
        decode(bytes(image), g, scan=True)
    except MemconsoleError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**7), st.sampled_from(b"CD \n\0x"),
       st.binary(max_size=6))
def test_header_fast_path_equals_vsscanf(sec: int, usec: int, kind: int, tail: bytes) -> None:
    from memconsole.ramoops import _dmesg as dm

    text = b"====%d.%d-" % (sec, usec) + bytes([kind]) + tail
    slow = dm.vsscanf(text[:96], dm.HDR_WITH_TYPE)
    got = parse_dmesg_header(text)
    if slow[0] == 3:
        assert got == (slow[2], slow[1][0] * 10**9 + slow[1][1] * 1000, slow[1][2] == ord("C"))
    else:
        assert got.length == dm.vsscanf(text[:96], dm.HDR_PLAIN)[2] or not got.length


def test_one_inflate_path() -> None:
    # Raw inflate lives in pstore/compress.py (with its caps); everything
    # else calls it.
    from pathlib import Path

    import memconsole

    root = Path(memconsole.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "decompressobj" in p.read_text() or "zlib.decompress(" in p.read_text())
    assert users == ["pstore/compress.py"]
