"""pstore file names, dump headers, ECC notices and decompression."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from conftest import LAB_FIXTURES, lab_fixture
from memconsole.pstore import (
    DumpHeader,
    RecordName,
    decode_record,
    parse_dump_header,
    parse_name,
    read_pstore_dir,
    split_ecc_trailer,
)


@pytest.mark.parametrize(("name", "expected"), [
    ("dmesg-ramoops-0", RecordName("dmesg", "ramoops", 0, False)),
    ("dmesg-ramoops-12.enc.z", RecordName("dmesg", "ramoops", 12, True)),
    ("console-ramoops-0", RecordName("console", "ramoops", 0, False)),
    ("console-ramoops", None),  # 3.x kernels had no id on console: not the grammar
    ("pmsg-ramoops-0", RecordName("pmsg", "ramoops", 0, False)),
    ("ftrace-ramoops-3", RecordName("ftrace", "ramoops", 3, False)),
    ("dmesg-efi-150989223401001", RecordName("dmesg", "efi", 150989223401001, False)),
    ("dmesg-efi_pstore-1700000000001", RecordName("dmesg", "efi_pstore", 1700000000001, False)),
    ("dmesg-erst-6929004391389462529", RecordName("dmesg", "erst", 6929004391389462529, False)),
    ("dmesg-pstore_blk-0", RecordName("dmesg", "pstore_blk", 0, False)),
    ("powerpc-ofw-nvram-0", RecordName("powerpc-ofw", "nvram", 0, False)),
    ("mce-erst-5", RecordName("mce", "erst", 5, False)),
    ("dmesg.txt", None),
    ("random", None),
])
def test_parse_name(name: str, expected: RecordName | None) -> None:
    assert parse_name(name) == expected


@pytest.mark.parametrize(("line", "expected"), [
    (b"Oops#1 Part1\n<4>[    1.0] x", DumpHeader("Oops", 1, 1)),
    (b"Panic#2 Part3\n", DumpHeader("Panic", 2, 3)),
    (b"Emergency#1 Part1\n", DumpHeader("Emergency", 1, 1)),
    (b"Oops#1 Part\n", None),
    (b"<4>[    1.0] Oops#1 Part1\n", None),
    (b"", None),
])
def test_dump_header(line: bytes, expected: DumpHeader | None) -> None:
    assert parse_dump_header(line) == expected


def test_ecc_trailer() -> None:
    assert split_ecc_trailer(b"log\n\nECC: No errors detected\n") == (b"log\n", 0, 0)
    assert split_ecc_trailer(b"log\nECC: 3 Corrected bytes, 1 unrecoverable blocks\n") == (
        b"log", 3, 1)
    assert split_ecc_trailer(b"log\n") == (b"log\n", None, None)


def _lab_records(release: str, action: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    names = lab_fixture(release, action, tmp_path / "pstore")
    records, failures = read_pstore_dir(tmp_path / "pstore")
    assert not failures
    assert sorted(r.name for r in records) == names
    return records


@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_real_oops_then_panic(release: str, tmp_path: Path) -> None:
    """panic_on_oops: one crash leaves Oops#1 and Panic#2 with the same report."""
    records = sorted(_lab_records(release, "null", tmp_path), key=lambda r: r.mtime_ns)
    assert [r.header for r in records] == [DumpHeader("Oops", 1, 1), DumpHeader("Panic", 2, 1)]
    for r in records:
        assert b"BUG: kernel NULL pointer dereference" in r.body
        assert r.body.startswith(b"<")  # the header line is not part of the body
    assert b"Kernel panic - not syncing: Fatal exception" in records[1].body


def _deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def test_enc_z_is_inflated_and_truncation_reported() -> None:
    text = (LAB_FIXTURES / "6.1" / "bug" / "pstore" / "dmesg-ramoops-0").read_bytes()
    whole = decode_record("dmesg-ramoops-0.enc.z", _deflate_raw(text), 0)
    assert whole.text == text and whole.problem is None
    assert whole.header == DumpHeader("Oops", 1, 1)
    cut = decode_record("dmesg-ramoops-0.enc.z", _deflate_raw(text)[:300], 0)
    assert cut.problem is not None and "truncated" in cut.problem
    assert text.startswith(cut.text) and cut.text


@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_kernel_made_truncated_enc_z(release: str, tmp_path: Path) -> None:
    """The kernel itself failed to inflate a truncated record (see capture.py,
    variant sysrq-truncated): memconsole recovers the text before the cut."""
    (rec,) = _lab_records(release, "sysrq-truncated", tmp_path)
    assert rec.name == "dmesg-ramoops-0.enc.z" and rec.kind.compressed
    assert rec.problem is not None and "truncated after 276 bytes" in rec.problem
    assert rec.header == DumpHeader("Panic", 1, 1)
    assert rec.body.startswith(b"<6>[    0.000000] ")


def test_garbage_enc_z_keeps_raw_bytes() -> None:
    garbage = bytes(range(256)) * 4
    rec = decode_record("dmesg-ramoops-1.enc.z", garbage, 5)
    assert rec.raw == garbage and rec.text == b""
    assert rec.problem and "cannot inflate" in rec.problem


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["dmesg-ramoops-0", "dmesg-ramoops-3.enc.z", "console-ramoops-0",
                             "weird", "dmesg-efi-1.enc.z"]),
       raw=st.binary(max_size=4096))
def test_any_bytes_give_a_record(name: str, raw: bytes) -> None:
    """Arbitrary content never raises: it gives a record, maybe with a problem."""
    rec = decode_record(name, raw, 0)
    assert rec.raw == raw
    if rec.kind.compressed:
        if rec.problem is None:  # then it was a complete deflate stream
            payload = split_ecc_trailer(raw)[0]
            try:
                expected = zlib.decompress(payload, -15)
            except zlib.error:
                expected = zlib.decompress(payload)
            assert rec.text == expected
        else:
            assert rec.text == b"" or "truncated" in rec.problem
    else:
        assert raw.startswith(rec.text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_name_parses_or_is_none(name: str) -> None:
    parsed = parse_name(name)
    if parsed is not None:
        assert name.startswith(parsed.type + "-")
