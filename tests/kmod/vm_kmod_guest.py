"""Guest side of tests/kmod/test_vm_kmod.py: run inside the lab guest (as root,
by the host's interpreter over 9p) to prepare the memory memconsole.ko
attaches to and to copy rings out.

    python vm_kmod_guest.py formats KO SPEC OUT.json
    python vm_kmod_guest.py dump SPEC FILE

``formats`` loads the module four times on the ring *SPEC*, each time on
memory prepared another way, and records what the module said and what a
reader then finds:

1. random bytes over the whole region (what RAM holds after a cold boot);
2. a ring of format version 0, made with the Python format code (a header
   of version 0 with a valid CRC, and records of it), as an older writer
   would have left it;
3. the same with version 2 (a newer writer);
4. the ring the module wrote in step 3, with its primary header damaged
   (one byte of ``created_ns`` changed, CRC no longer matching).

The module is unloaded after steps 1-3 (each ring then ends with the
module's stop record) and left loaded after step 4.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from memconsole.errors import MemconsoleError
from memconsole.ring import current_boot_id, parse_ring
from memconsole.ring.format import DATA_OFFSET, HEADER_SIZE, encode_header, encode_record
from memconsole.ring.regions import open_region, parse_spec

PARAMS = Path("/sys/module/memconsole/parameters")


def _header_of_version(size: int, version: int) -> bytes:
    raw = bytearray(encode_header(size, int.from_bytes(os.urandom(4), "little"), 1))
    struct.pack_into("<H", raw, 8, version)
    raw[60:64] = zlib.crc32(raw[:60]).to_bytes(4, "little")
    return bytes(raw)


def _write(spec: str, at: int, data: bytes) -> None:
    with open_region(spec, write=True) as region:
        region.buf[at:at + len(data)] = data


def _old_ring(spec: str, version: int) -> None:
    """A ring of another version with three records, as its writer left it."""
    size = parse_spec(spec).size or 0
    header = _header_of_version(size, version)
    nonce = struct.unpack_from("<I", header, 40)[0]
    records = b"".join(
        encode_record(nonce, n, current_boot_id(), 1, f"version {version} record {n}".encode())
        .ljust(128, b"\0") for n in (1, 2, 3))
    _write(spec, 0, header + header + records)


def _load(ko: str, spec: str) -> dict[str, object]:
    parsed = parse_spec(spec)
    proc = subprocess.run(["insmod", ko, f"mem_address={parsed.address:#x}",
                           f"mem_size={parsed.size:#x}"], capture_output=True, text=True,
                          check=False)
    params = {p.name: p.read_text().strip() for p in PARAMS.iterdir()} if PARAMS.is_dir() else {}
    return {"insmod_rc": proc.returncode, "insmod_err": proc.stderr.strip(), "params": params}


def _unload() -> int:
    return subprocess.run(["rmmod", "memconsole"], check=False).returncode


def _read(spec: str) -> dict[str, object]:
    with open_region(spec) as region:
        data = region.snapshot()
    try:
        image = parse_ring(data)
    except MemconsoleError as exc:
        return {"error": str(exc)}
    records = [r for b in image.boots for r in b.records]
    return {"boots": len(image.boots), "records": len(records), "corrupt": image.corrupt,
            "first": [records[0].type_name, records[0].text.decode(errors="replace")]
            if records else None,
            "last": [records[-1].type_name, records[-1].text.decode(errors="replace")]
            if records else None,
            "texts": [r.text.decode(errors="replace") for r in records[:3]],
            "seqs": [records[0].seq, records[-1].seq] if records else None}


def formats(ko: str, spec: str, out: Path) -> None:
    size = parse_spec(spec).size or 0
    steps: list[dict[str, object]] = []

    def step(name: str, keep: bool = False) -> None:
        result: dict[str, object] = {"step": name, **_load(ko, spec)}
        if not keep:
            result["rmmod_rc"] = _unload()
            result["ring"] = _read(spec)
        steps.append(result)

    _write(spec, 0, os.urandom(size))
    step("garbage")
    _old_ring(spec, 0)
    step("version 0")
    _old_ring(spec, 2)
    step("version 2")
    with open_region(spec) as region:
        primary = bytearray(region.buf[:HEADER_SIZE])
    primary[48] ^= 0xFF  # created_ns: the CRC no longer matches
    _write(spec, 0, bytes(primary))
    before = _read(spec)
    step("damaged primary header", keep=True)
    steps[-1]["ring_before"] = before
    with open_region(spec) as region:
        steps[-1]["headers_equal"] = region.buf[:HEADER_SIZE] == \
            region.buf[HEADER_SIZE:DATA_OFFSET]
    out.write_text(json.dumps(steps, indent=1))


def dump(spec: str, path: Path) -> None:
    with open_region(spec) as region:
        path.write_bytes(region.snapshot())


def main(argv: list[str]) -> int:
    if argv[:1] == ["formats"] and len(argv) == 4:
        formats(argv[1], argv[2], Path(argv[3]))
    elif argv[:1] == ["dump"] and len(argv) == 3:
        dump(argv[1], Path(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
