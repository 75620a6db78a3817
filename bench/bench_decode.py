"""Benchmark ``memconsole decode`` on a large ECC-protected ramoops region.

    PYTHONPATH=src python3 bench/bench_decode.py [--size 64M] [--ecc 16]
        [--record-size 16K] [--repeat 3] [--reedsolo-blocks 3000]

Builds a region of --size bytes whose every dmesg zone is full (a compressed
record of real 6.12 panic text from tests/fixtures/ramoops, padded to the
zone capacity, RS parity written as the kernel writes it), then times, in one
run on the same file, each row --repeat times (best and median):

1. ``cat IMAGE > /dev/null`` (page cache warm): the I/O floor;
2. ``memconsole decode IMAGE`` as a subprocess (geometry given, every block
   checked, every record decompressed; a summary line per record), then the
   same with ``--out DIR`` (every record written to a temporary directory),
   then ramoops.decode() in this process (no interpreter start-up);
3. the CLI with numpy hidden (standard-library ECC check) on a smaller region;
4. the pure-Python ``reedsolo`` package checking the same 144-byte codewords
   (``RSCodec.check``), timed on a sample of blocks and reported as MB/s of
   region data;
5. detection side by side on --hostile-size bytes (4 MiB): a real 6.12
   region (tests/fixtures/ramoops/k612-null-defaults) at the end of zeros,
   then hostile memory: a zone header every 16 bytes (the "region full of
   DBGC headers" that took 49 s), ``DBGC`` repeated, and an empty header
   every 1024 bytes (read as 4096 zones); each as ``memconsole decode
   IMAGE`` and ``--scan`` (interpreter start-up included) and as
   ramoops.resolve_geometry() + decode() in this process.

The load average before and after is printed with the table: the machine
this runs on is shared, and the numbers move with it.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole.errors import MemconsoleError  # noqa: E402
from memconsole.ramoops import (  # noqa: E402
    Geometry,
    ZoneKind,
    _rs,
    _rs_batch,
    ecc_layout,
    layout,
)


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text, 0)


def _zone(size: int, ecc: int, sig_xor: int = 0, payload: bytes = b"") -> bytes:
    lay = ecc_layout(size, ecc)
    zone = bytearray(size)
    zone[12:12 + len(payload)] = payload
    zone[0:12] = ((0x43474244 ^ sig_xor).to_bytes(4, "little")
                  + len(payload).to_bytes(4, "little") + len(payload).to_bytes(4, "little"))
    if len(payload) == lay.capacity:
        zone[4:8] = (0).to_bytes(4, "little")  # full ring: start wrapped to 0
    codec = _rs.codec(ecc)
    for blk in range(lay.blocks):
        d0 = 12 + blk * 128
        d1 = min(d0 + 128, 12 + lay.capacity)
        zone[lay.par_buffer + blk * ecc:lay.par_buffer + (blk + 1) * ecc] = \
            codec.parity_fast(zone[d0:d1])
    zone[lay.par_header:lay.par_header + ecc] = codec.encode(zone[:12])
    return bytes(zone)


def build(size: int, ecc: int, record_size: int) -> tuple[bytes, Geometry]:
    geom = Geometry.from_params(size, record_size, ecc=ecc)
    zones = layout(geom)
    dz = zones[0]
    cap = ecc_layout(dz.size, ecc).capacity
    src = gzip.decompress((ROOT / "tests/fixtures/ramoops/k612-null-defaults/pstore/"
                           "dmesg-ramoops-1.gz").read_bytes())
    header = b"====1795670420.253017-C\n"
    lines = src.splitlines(keepends=True)
    def stream(n: int) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, -12, 4)
        return c.compress(b"".join(lines[j % len(lines)] for j in range(n))) + c.flush()

    lo, hi = 1, 64 * len(lines)  # the longest text whose stream fits the zone
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(header) + len(stream(mid)) <= cap:
            lo = mid
        else:
            hi = mid - 1
    payload = header + stream(lo)
    dmesg = _zone(dz.size, ecc, 0, payload)
    out = bytearray()
    for z in zones:
        if z.kind is ZoneKind.DMESG:
            out += dmesg
        else:
            out += _zone(z.size, ecc, 0x060C75 if z.kind is ZoneKind.FTRACE else 0)
    out += bytes(size - len(out))
    return bytes(out), geom


def timed(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=check, stdout=subprocess.DEVNULL,
                   stderr=None if check else subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def hostile_images(size: int) -> list[tuple[str, bytes]]:
    """A real region at the end of zeros, then hostile memory of *size*."""
    real = gzip.decompress((ROOT / "tests/fixtures/ramoops/k612-null-defaults/"
                            "region.bin.gz").read_bytes())

    def every(stride: int) -> bytes:
        buf = bytearray(size)
        hdr = (0x43474244).to_bytes(4, "little") + bytes(8)
        for p in range(0, size - 12, stride):
            buf[p:p + 12] = hdr
        return bytes(buf)

    return [("real 6.12 region after zeros", bytes(size - len(real)) + real),
            ("zone header every 16 bytes", every(16)),
            ("'DBGC' repeated", b"DBGC" * (size // 4)),
            ("empty zone header every 1024 bytes", every(1024))]


def bench_hostile(size: int, tmp: Path, env: dict[str, str], reps: range
                  ) -> list[tuple[str, float, float, int]]:
    from memconsole import ramoops

    rows = [("python -m memconsole --version (start-up, the floor of the CLI rows)",
             *_stats([timed([sys.executable, "-m", "memconsole", "--version"], env)
                      for _ in reps]), size)]
    for what, data in hostile_images(size):
        image = tmp / "hostile.img"
        image.write_bytes(data)
        cmd = [sys.executable, "-m", "memconsole", "decode", str(image)]
        rows.append((f"decode IMAGE: {what}",
                     *_stats([timed(cmd, env, check=False) for _ in reps]), size))
        rows.append((f"decode --scan IMAGE: {what}",
                     *_stats([timed([*cmd, "--scan"], env, check=False) for _ in reps]), size))
        times = []
        for _ in reps:
            t = time.perf_counter()
            try:
                res = ramoops.resolve_geometry(data)
                view = memoryview(data)[res.offset:res.offset + res.geometry.mem_size]
                ramoops.decode(view, res.geometry)
            except MemconsoleError:
                pass
            times.append(time.perf_counter() - t)
        rows.append((f"resolve_geometry() + decode() in process: {what}", *_stats(times),
                     size))
    return rows


def _stats(times: list[float]) -> tuple[float, float]:
    """(best, median) of repeated timings."""
    ordered = sorted(times)
    return ordered[0], ordered[len(ordered) // 2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=_size, default=64 << 20)
    ap.add_argument("--ecc", type=int, default=16)
    ap.add_argument("--record-size", type=_size, default=16 << 10)
    ap.add_argument("--reedsolo-blocks", type=int, default=3000)
    ap.add_argument("--pure-python-size", type=_size, default=8 << 20)
    ap.add_argument("--repeat", type=int, default=3, help="runs per row (best and median)")
    ap.add_argument("--hostile-size", type=_size, default=4 << 20,
                    help="size of the detection images (real and hostile)")
    ap.add_argument("--only-hostile", action="store_true",
                    help="only the detection rows (real and hostile memory)")
    args = ap.parse_args()
    mib = args.size / 2**20
    load_before = os.getloadavg()
    print(f"building a {mib:.0f} MiB region, ecc {args.ecc}, record_size "
          f"{args.record_size} ...", file=sys.stderr)
    rows: list[tuple[str, float, float, int]] = []  # what, best s, median s, bytes
    reps = range(max(args.repeat, 1))
    if args.only_hostile:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
            rows = bench_hostile(args.hostile_size, Path(tmp), env, reps)
        _table(rows, f"{args.hostile_size >> 20} MiB images", load_before, reps)
        return 0
    region, geom = build(args.size, args.ecc, args.record_size)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "region.img"
        image.write_bytes(region)
        subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)  # warm
        rows.append(("cat IMAGE > /dev/null",
                     *_stats([timed(["sh", "-c", f"cat {image} > /dev/null"]) for _ in reps]),
                     args.size))
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        opts = ["--mem-size", str(args.size), "--record-size", str(args.record_size),
                "--ecc", str(args.ecc), "--zone-order", "6.2", "--ftrace-cpus", "1"]
        cmd = [sys.executable, "-m", "memconsole", "decode", str(image), *opts]
        flavour = "numpy" if _rs_batch.have_numpy() else "no numpy"
        rows.append((f"memconsole decode IMAGE ({flavour}; summary to stdout)",
                     *_stats([timed(cmd, env) for _ in reps]), args.size))
        outs = [Path(tmp) / f"out{i}" for i in reps]
        times = [timed([*cmd, "--out", str(out)], env) for out in outs]
        n_files = len(list(outs[0].iterdir()))
        rows.append((f"memconsole decode IMAGE --out DIR ({flavour}; {n_files} files)",
                     *_stats(times), args.size))
        from memconsole.ramoops import decode
        times = []
        for _ in reps:
            t = time.perf_counter()
            n = len(decode(region, geom).records)
            times.append(time.perf_counter() - t)
        rows.append((f"ramoops.decode() in process ({n} records)", *_stats(times), args.size))
        # Standard-library ECC check on a smaller region (numpy hidden from the child).
        small = min(args.pure_python_size, args.size)
        sregion, _ = build(small, args.ecc, args.record_size)
        simage = Path(tmp) / "small.img"
        simage.write_bytes(sregion)
        hide = Path(tmp) / "hide"
        (hide / "numpy").mkdir(parents=True)
        (hide / "numpy" / "__init__.py").write_text("raise ImportError('hidden')\n")
        env2 = dict(os.environ, PYTHONPATH=f"{hide}:{ROOT / 'src'}")
        sopts = ["--mem-size", str(small), "--record-size", str(args.record_size),
                 "--ecc", str(args.ecc), "--zone-order", "6.2", "--ftrace-cpus", "1"]
        scmd = [sys.executable, "-m", "memconsole", "decode", str(simage), *sopts]
        rows.append((f"memconsole decode IMAGE, no numpy ({small >> 20} MiB region)",
                     *_stats([timed(scmd, env2) for _ in reps]), small))
        hostile = bench_hostile(args.hostile_size, Path(tmp), env, reps)
    try:
        import reedsolo  # type: ignore[import-untyped]
    except ImportError:
        print("reedsolo not installed: pip install reedsolo", file=sys.stderr)
    else:
        rsc = reedsolo.RSCodec(nsym=args.ecc, nsize=255, fcr=0, prim=0x11D, generator=2,
                               c_exp=8)
        zone0 = layout(geom)[0]
        lay = ecc_layout(zone0.size, args.ecc)
        words = []
        for blk in range(min(args.reedsolo_blocks, lay.blocks * 50)):
            z, b = divmod(blk, lay.blocks - 1)
            base = z * zone0.size
            d0 = base + 12 + b * 128
            p0 = base + lay.par_buffer + b * args.ecc
            words.append(region[d0:d0 + 128] + region[p0:p0 + args.ecc])
        t = time.perf_counter()
        for w in words:
            assert rsc.check(w)[0]
        t = time.perf_counter() - t
        rate = len(words) * 128 / t
        secs = args.size / rate
        rows.append((f"reedsolo RSCodec.check ({len(words)} blocks, extrapolated)",
                     secs, secs, args.size))
    _table(rows, f"{mib:.0f} MiB region, ecc {args.ecc} (every 128-byte block checked), "
           f"record_size {args.record_size}", load_before, reps)
    rs_rows = [r for r in rows if r[0].startswith("reedsolo")]
    if rs_rows:
        rs_rate = rs_rows[0][3] / rs_rows[0][1]
        for what, best, median, size in rows[1:4]:
            print(f"\n{what} vs reedsolo: {size / best / rs_rate:.0f}x best, "
                  f"{size / median / rs_rate:.0f}x median", end="")
        print()
    _table(hostile, f"detection on {args.hostile_size >> 20} MiB images, real and hostile",
           os.getloadavg(), reps)
    return 0


def _table(rows: list[tuple[str, float, float, int]], title: str,
           load_before: tuple[float, float, float], reps: range) -> None:
    load_after = os.getloadavg()
    print(f"\n{title}, Python {sys.version.split()[0]}, "
          f"numpy {'yes' if _rs_batch.have_numpy() else 'no'}, {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"best and median of {len(reps)} runs\n")
    print("| what | best s | MB/s | median s | MB/s |")
    print("|---|---:|---:|---:|---:|")
    for what, best, median, size in rows:
        print(f"| {what} | {best:.2f} | {size / best / 1e6:.1f} | {median:.2f} | "
              f"{size / median / 1e6:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
