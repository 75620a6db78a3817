"""Oracle tests on real ramoops regions captured in the VM lab.

Each tests/fixtures/ramoops/NAME/ holds the raw region a Debian 6.1 or 6.12
kernel left in guest RAM after crashing (region.bin.gz, copied from QEMU's
memory-backend file before the second boot) and the files the same kernel
showed in /sys/fs/pstore on the next boot (pstore/*.gz).  NAME.recipe is the
command that captured it.  The decoder must reproduce those files byte for
byte, ECC notice included, both when it detects the geometry and when it is
given the module parameters.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import cast

import pytest

from memconsole import cli
from memconsole.errors import ConfigError
from memconsole.ramoops import (
    Geometry,
    ZoneKind,
    ZoneOrder,
    ZoneStatus,
    _rs_batch,
    decode,
    detect,
    layout,
    resolve_geometry,
)
from memconsole.render import text as render_text

HERE = Path(__file__).parent.parent / "fixtures" / "ramoops"
NAMES = sorted(p.name for p in HERE.iterdir() if (p / "region.bin.gz").exists())
ECC_NAMES = [n for n in NAMES if json.loads((HERE / n / "meta.json").read_text())
             ["ramoops"].get("ecc")]


def load(name: str) -> tuple[bytes, dict[str, bytes], dict[str, object]]:
    d = HERE / name
    region = gzip.decompress((d / "region.bin.gz").read_bytes())
    files = {p.name[:-3]: gzip.decompress(p.read_bytes()) for p in (d / "pstore").glob("*.gz")}
    return region, files, json.loads((d / "meta.json").read_text())


def geometry_from_meta(meta: dict) -> Geometry:  # type: ignore[type-arg]
    """The module parameters the drill passed, as the kernel normalises them."""
    p = meta["ramoops"]
    major, minor = (int(x) for x in meta["kernel"].split(".")[:2])
    return Geometry.from_params(
        0x100000, p.get("record_size", 4096), p.get("console_size", 4096),
        p.get("ftrace_size", 4096), p.get("pmsg_size", 4096), p.get("ecc", 0),
        order=ZoneOrder.V6_2 if (major, minor) >= (6, 2) else ZoneOrder.V6_1)


def test_fixtures_present() -> None:
    assert len(NAMES) >= 5
    for n in NAMES:
        assert (HERE / f"{n}.recipe").read_text().startswith("PYTHONPATH=src python3 ")


@pytest.mark.parametrize("name", NAMES)
def test_detected_geometry_reproduces_kernel_files(name: str) -> None:
    region, files, meta = load(name)
    det = detect(region)
    want = geometry_from_meta(meta)
    assert det.offset == 0
    assert det.geometry.ecc_size == want.ecc_size
    assert [(z.kind, z.offset, z.size) for z in layout(det.geometry)
            if z.kind is ZoneKind.DMESG] == \
        [(z.kind, z.offset, z.size) for z in layout(want) if z.kind is ZoneKind.DMESG]
    out = decode(region, det.geometry)
    assert {r.name: r.content for r in out.records} == files
    assert out.problems == ()


@pytest.mark.parametrize("name", NAMES)
def test_module_parameters_reproduce_kernel_files(name: str) -> None:
    region, files, meta = load(name)
    out = decode(region, geometry_from_meta(meta))
    assert {r.name: r.content for r in out.records} == files
    assert all(z.status in (ZoneStatus.OK, ZoneStatus.EMPTY) for z in out.zones)


@pytest.mark.parametrize("name", NAMES)
def test_cli_out_dir_matches_pstore(name: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    region, files, _ = load(name)
    image = tmp_path / "mem.img"
    # The region somewhere inside a larger memory image, as in a VM memory file.
    image.write_bytes(bytes(0x3000) + region + bytes(0x1000))
    out = tmp_path / "out"
    assert cli.main(["decode", str(image), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    assert "inferred: region at 0x3000" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES[:2])
def test_cli_json_lines(name: str, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    region, files, _ = load(name)
    image = tmp_path / "r.bin"
    image.write_bytes(region)
    assert cli.main(["decode", str(image), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    objs = [json.loads(line) for line in lines]
    assert sorted(o["name"] for o in objs) == sorted(files)
    for o in objs:
        assert set(o) >= {"zone", "name", "type", "time", "compressed", "size",
                          "ecc_corrected", "ecc_bad_blocks", "text"}
        assert o["type"] == "dmesg" and o["compressed"] is True
        assert files[o["name"]].startswith(o["text"].encode())


# -- ECC on real regions ----------------------------------------------------------


def _flip(region: bytes, where: int, count: int, seed: int) -> bytes:
    buf = bytearray(region)
    for pos in random.Random(seed).sample(range(128), count):
        buf[where + pos] ^= 0x5A
    return bytes(buf)


@pytest.mark.parametrize("name", ECC_NAMES)
def test_ecc_corrects_up_to_half_and_reports(name: str) -> None:
    region, _, meta = load(name)
    g = geometry_from_meta(meta)
    clean = decode(region, g)
    rec0 = clean.records[0]
    z = layout(g)[rec0.zone]
    half = g.ecc_size // 2
    hurt = decode(_flip(region, z.offset + 12 + 2 * 128, min(half, 128), 1), g)
    got = hurt.records[0]
    assert got.payload == rec0.payload
    assert got.ecc_corrected == min(half, 128) and got.ecc_bad_blocks == 0
    assert got.ecc_notice == (f"\nECC: {min(half, 128)} Corrected bytes, "
                              "0 unrecoverable blocks\n").encode()


@pytest.mark.parametrize("name", ECC_NAMES)
def test_ecc_beyond_half_marks_block_and_keeps_the_rest(name: str) -> None:
    region, _, meta = load(name)
    g = geometry_from_meta(meta)
    clean = decode(region, g)
    zi = clean.records[0].zone
    z = layout(g)[zi]
    blk = 1
    hurt = decode(_flip(region, z.offset + 12 + blk * 128, g.ecc_size // 2 + 1, 2), g)
    zr, zc = hurt.zones[zi], clean.zones[zi]
    assert zr.status is ZoneStatus.OK and zr.ecc_bad_blocks == 1 and zr.ecc_corrected == 0
    # Outside the damaged block every byte of the zone still decodes.
    assert zr.old_log[:blk * 128] == zc.old_log[:blk * 128]
    assert zr.old_log[(blk + 1) * 128:] == zc.old_log[(blk + 1) * 128:]
    rec = next(r for r in hurt.records if r.zone == zi)
    assert rec.ecc_notice == b"\nECC: 0 Corrected bytes, 1 unrecoverable blocks\n"
    # The record was compressed: like the kernel, a broken stream is kept as .enc.z.
    assert rec.name.endswith(".enc.z")


@pytest.mark.parametrize("name", ECC_NAMES)
def test_flipped_header_bytes_are_corrected(name: str) -> None:
    region, files, meta = load(name)
    g = geometry_from_meta(meta)
    buf = bytearray(region)
    half = g.ecc_size // 2
    for pos in range(min(half, 12)):
        buf[pos] ^= 0xFF  # signature, start and size of zone 0
    out = decode(bytes(buf), g)
    rec = next(r for r in out.records if r.id == 0)
    assert rec.content.split(b"\nECC:")[0] == files[rec.name].split(b"\nECC:")[0]
    assert rec.ecc_corrected == min(half, 12)


@pytest.mark.parametrize("name", ECC_NAMES)
def test_standard_library_ecc_check_agrees_with_numpy(name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The batch check has a numpy kernel and a bytes.translate one: on a real
    # region with a correctable and an uncorrectable block, both must lead to
    # the same zones and records.
    region, _, meta = load(name)
    g = geometry_from_meta(meta)
    z = layout(g)[decode(region, g).records[0].zone]
    hurt = _flip(region, z.offset + 12, g.ecc_size // 2, 4)
    hurt = _flip(hurt, z.offset + 12 + 3 * 128, g.ecc_size // 2 + 1, 5)
    want = decode(hurt, g)
    assert want.zones[z.number].ecc_bad_blocks == 1
    monkeypatch.setattr(_rs_batch, "_np", None)
    assert decode(hurt, g) == want


# -- corrupt input: one line, no traceback ---------------------------------------


def _cli(tmp_path: Path, data: bytes, *opts: str) -> tuple[int, str]:
    image = tmp_path / "bad.img"
    image.write_bytes(data)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["decode", str(image), *opts])
    return rc, err.getvalue()


def test_wrong_signature_names_zone_and_numbers(tmp_path: Path) -> None:
    region, _, _ = load("k61-null-defaults")
    buf = bytearray(region)
    buf[0x4040:0x4044] = b"XXXX"
    rc, err = _cli(tmp_path, bytes(buf), "--mem-size", "1M", "--record-size", "16K",
                   "--zone-order", "6.1")
    assert rc == 3
    assert ("zone 1 (dmesg-1) at 0x4040: signature 0x58585858 is not 0x43474244, "
            "skipping") in err
    assert "Traceback" not in err


def test_start_beyond_size_and_size_beyond_capacity(tmp_path: Path) -> None:
    region, _, _ = load("k61-null-defaults")
    buf = bytearray(region)
    buf[4:8] = (20000).to_bytes(4, "little")           # zone 0: start > size
    buf[0x4040 + 8:0x4040 + 12] = (70000).to_bytes(4, "little")  # zone 1: size > cap
    rc, err = _cli(tmp_path, bytes(buf), "--mem-size", "1M", "--record-size", "16K")
    assert rc == 4  # both records gone, as the kernel would zap them
    size0 = int.from_bytes(region[8:12], "little")
    assert f"zone 0 (dmesg-0) at 0x0: start 20000 > size {size0}" in err
    assert "zone 1 (dmesg-1) at 0x4040: size 70000 exceeds capacity 16436" in err


def test_truncated_image(tmp_path: Path) -> None:
    region, _, meta = load("k612-null-defaults")
    # The library decodes what is there and names the zones the image cuts off...
    out = decode(region[:0x6000], geometry_from_meta(meta))
    assert ("zone 1 (dmesg-1) at 0x4040: needs 16448 bytes, the image has 8128 from "
            "there (truncated image?)") in out.problems
    # ...while the command refuses a --mem-size the image does not have.
    rc, err = _cli(tmp_path, region[:0x6000], "--mem-size", "1M", "--record-size", "16K")
    assert rc == 1
    assert err == ("memconsole decode: mem_size 0x100000 from offset 0x0 reaches past the "
                   "end of the image (0x6000 bytes)\n")
    rc, err = _cli(tmp_path, region[:0x6000])
    assert "Traceback" not in err


def test_wrong_geometry_is_one_line(tmp_path: Path) -> None:
    region, _, _ = load("k612-null-defaults")
    rc, err = _cli(tmp_path, region, "--offset", "0x10", "--mem-size", "0xF0000")
    assert rc == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith("memconsole decode: zone 0 (dmesg-0) at 0x0: signature ")
    assert "wrong --offset or geometry options?" in lines[-1]
    rc, err = _cli(tmp_path, region, "--offset", "0x200000")
    assert rc == 1 and "beyond the end of the image" in err
    rc, err = _cli(tmp_path, bytes(4096))
    assert rc == 1 and err.count("\n") == 1 and "no ramoops zone header" in err


def test_scan_recovers_records_when_every_header_is_gone(tmp_path: Path) -> None:
    region, files, _ = load("k612-null-defaults")
    buf = bytearray(region)
    pos = buf.find(b"DBGC")
    while pos >= 0:  # zero every zone header, payloads intact
        buf[pos:pos + 12] = bytes(12)
        pos = buf.find(b"DBGC", pos + 1)
    rc, err = _cli(tmp_path, bytes(buf))
    assert rc == 1 and "no ramoops zone header" in err
    out = tmp_path / "out"
    rc, err = _cli(tmp_path, bytes(buf), "--scan", "--out", str(out))
    assert rc == 0
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    assert got == {f"{k}.recovered": v for k, v in files.items()}


# -- the geometry from options, detection or both (resolve_geometry) ------------


def _ramoops(meta: dict[str, object]) -> dict[str, int]:
    """The ramoops module parameters a fixture's drill passed."""
    return cast(dict[str, int], meta["ramoops"])


def _params(meta: dict[str, object]) -> list[str]:
    p = _ramoops(meta)
    opts = ["--mem-size", "1M", "--record-size", str(p.get("record_size", 4096))]
    for key in ("console_size", "ftrace_size", "pmsg_size"):
        if key in p:
            opts += [f"--{key.replace('_', '-')}", str(p[key])]
    return opts


@pytest.mark.parametrize("name", NAMES)
def test_module_parameters_on_the_command_line(name: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # The parameters the drill passed; zone order, ftrace CPUs and ECC are
    # read from the zones, as the kernel's own values were not given.
    region, files, meta = load(name)
    image = tmp_path / "r.bin"
    image.write_bytes(region)
    out = tmp_path / "out"
    assert cli.main(["decode", str(image), *_params(meta), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    err = capsys.readouterr().err
    if _ramoops(meta).get("ecc"):
        assert "ECC of" in err and "detected from the header parity" in err


@pytest.mark.parametrize("name", NAMES)
def test_resolve_geometry_options_detection_and_overrides(name: str) -> None:
    region, _, meta = load(name)
    want = geometry_from_meta(meta)
    p = _ramoops(meta)
    explicit = resolve_geometry(region, mem_size=0x100000,
                                record_size=p.get("record_size", 4096),
                                console_size=p.get("console_size"),
                                ftrace_size=p.get("ftrace_size"),
                                pmsg_size=p.get("pmsg_size"))
    assert explicit.offset == 0
    assert layout(explicit.geometry) == layout(want)
    assert explicit.geometry.ecc_size == want.ecc_size
    detected = resolve_geometry(region)
    assert detected.notes[0].startswith("region at 0x0: ")
    assert [z for z in layout(detected.geometry) if z.kind is ZoneKind.DMESG] == \
        [z for z in layout(want) if z.kind is ZoneKind.DMESG]
    # What the user gives overrides what detection found, and is checked.
    other = ZoneOrder.V6_1 if want.order is ZoneOrder.V6_2 else ZoneOrder.V6_2
    assert resolve_geometry(region, order=other).geometry.order is other
    with pytest.raises(ConfigError, match=r"outside 0\.\.127"):
        resolve_geometry(region, ecc=128)
    with pytest.raises(ConfigError, match="past the end of the image"):
        resolve_geometry(region, mem_size=len(region) + 1)


def test_json_text_follows_the_one_policy(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # A damaged deflate stream stays compressed (.enc.z, as the kernel keeps
    # it): binary payload, shown as \xNN in JSON like every memconsole JSON;
    # the exact bytes are the --out file.
    region, _, meta = load("k612-null-defaults")
    g = geometry_from_meta(meta)
    rec = decode(region, g).records[0]
    z = layout(g)[rec.zone]
    buf = bytearray(region)
    for i in range(64):
        buf[z.offset + 12 + 200 + i] ^= 0xFF
    image = tmp_path / "r.bin"
    image.write_bytes(bytes(buf))
    out = tmp_path / "out"
    assert cli.main(["decode", str(image), "--json", "--out", str(out)]) == 0
    objs = {o["name"]: o for o in map(json.loads, capsys.readouterr().out.splitlines())}
    broken = objs[rec.name + ".enc.z"]
    assert "base64" not in broken and "\\x" in broken["text"]
    assert broken["text"] == render_text((out / (rec.name + ".enc.z")).read_bytes())
