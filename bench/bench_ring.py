"""Benchmark memconsole's ring: the recorder, the Python API and the logging
handler, each side by side with its plain-file equivalent, in one run.

    PYTHONPATH=src python3 bench/bench_ring.py [--records 500000] [--dir /dev/shm]

1. Recorder: a kmsg-format stream of --records records (lines of a real
   boot log, ``pri,seq,usec,-;text``, about 100 bytes each) timed as
   ``cat STREAM > FILE`` and as ``memconsole record --ring FILE --source
   STREAM`` (1 MiB ring, wrapping all the time; interpreter start-up
   included), and as the recorder loop in this process.
2. API: ``Ring.append`` of 100-byte records one by one, and ``Ring.extend``
   in batches of 1000, into a 64 MiB file ring (and into an anonymous
   buffer, for the cost without the page cache).
3. Logging: ``RingHandler`` vs ``logging.FileHandler`` with the same
   formatter, per record.

Files go to --dir (default: a tmpfs if there is one).  Prints a Markdown
table for docs/benchmarks.md, with the load average before and after.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole.ring import Ring  # noqa: E402
from memconsole.ring.handler import RingHandler  # noqa: E402
from memconsole.ring.recorder import Recorder, StreamSource  # noqa: E402
from memconsole.ring.regions import Region, buffer_region, open_region  # noqa: E402

_BOOT_LOG = [
    "Linux version 6.12.117+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP",
    "Command line: BOOT_IMAGE=/vmlinuz root=UUID=0f3c quiet memmap=1M$0x7200000",
    "BIOS-e820: [mem 0x0000000000100000-0x0000000006ffffff] usable",
    "ACPI: RSDP 0x00000000000F58D0 000014 (v00 BOCHS )",
    "pci 0000:00:02.0: [1234:1111] type 00 class 0x030000 conventional PCI endpoint",
    "virtio_blk virtio1: [vda] 41943040 512-byte logical blocks (21.5 GB/20.0 GiB)",
    "EXT4-fs (vda1): mounted filesystem 0f3c ro with ordered data mode. Quota mode: none.",
    "systemd[1]: Started systemd-journald.service - Journal Service.",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "audit: type=1400 audit(1795668000.123:42): apparmor=\"STATUS\" operation=\"profile_load\"",
]


def _stream(path: Path, n: int) -> int:
    with path.open("wb") as f:
        for start in range(0, n, 10000):
            f.write("".join(
                f"6,{s},{s * 1000},-;{_BOOT_LOG[s % len(_BOOT_LOG)]}\n"
                for s in range(start, min(n, start + 10000))).encode())
    return path.stat().st_size


def _timed(argv: list[str], stdout: int | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=stdout, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.perf_counter() - start


def bench_recorder(d: Path, n: int) -> list[tuple[str, float, int]]:
    stream = d / "kmsg.stream"
    size = _stream(stream, n)
    target = d / "ring"
    rows: list[tuple[str, float, int]] = []
    with stream.open("rb") as src, target.open("wb") as dst:
        start = time.perf_counter()
        subprocess.run(["cat"], stdin=src, stdout=dst, check=True)
        rows.append(("`cat STREAM > FILE`", time.perf_counter() - start, n))
    target.unlink()
    t = _timed([sys.executable, "-m", "memconsole", "record", "--ring", str(target),
                "--ring-size", "1M", "--source", str(stream)])
    rows.append(("`memconsole record --ring FILE --source STREAM` (1 MiB ring)", t, n))
    target.unlink()
    region = open_region(str(target), write=True, create_size=1 << 20)
    ring = Ring.attach(region)
    source = StreamSource(os.open(stream, os.O_RDONLY), str(stream), "kmsg")
    start = time.perf_counter()
    Recorder(ring, source, notify=lambda s: None).run()
    rows.append(("recorder loop in process (same stream, same ring)",
                 time.perf_counter() - start, n))
    source.close()
    ring.close()
    region.close()
    print(f"stream: {n} records, {size / 1e6:.1f} MB", file=sys.stderr)
    return rows


def bench_api(d: Path, n: int) -> list[tuple[str, float, int]]:
    text = b"x" * 100
    rows: list[tuple[str, float, int]] = []
    makers: list[tuple[str, Callable[[], Region]]] = [
        ("file ring (64 MiB, page cache)",
         lambda: open_region(str(d / "api.ring"), write=True, create_size=64 << 20)),
        ("anonymous buffer", lambda: buffer_region(bytearray(64 << 20)))]
    for label, make in makers:
        region = make()
        ring = Ring.attach(region)
        append = ring.append
        start = time.perf_counter()
        for _ in range(n):
            append(text)
        rows.append((f"`Ring.append`, 100-byte records, one by one, {label}",
                     time.perf_counter() - start, n))
        batch = [text] * 1000
        start = time.perf_counter()
        for _ in range(n // 1000):
            ring.extend(batch)
        rows.append((f"`Ring.extend`, 100-byte records, batches of 1000, {label}",
                     time.perf_counter() - start, n // 1000 * 1000))
        ring.close()
        region.close()
    return rows


def bench_logging(d: Path, n: int) -> list[tuple[str, float, int]]:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows: list[tuple[str, float, int]] = []
    handlers: list[tuple[str, Callable[[], logging.Handler]]] = [
                ("`logging.FileHandler`", lambda: logging.FileHandler(d / "app.log")),
                ("`RingHandler` (file ring, 4 MiB)",
                 lambda: RingHandler(str(d / "app.ring"), ring_size=4 << 20))]
    for label, make in handlers:
        handler = make()
        handler.setFormatter(fmt)
        log = logging.getLogger(f"bench.{len(rows)}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        start = time.perf_counter()
        for i in range(n):
            log.info("request %d served in %d ms for user %s", i, i % 97, "alice")
        rows.append((label, time.perf_counter() - start, n))
        log.removeHandler(handler)
        handler.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--api-records", type=int, default=1_000_000)
    ap.add_argument("--log-records", type=int, default=200_000)
    shm = Path("/dev/shm")
    ap.add_argument("--dir", type=Path, default=shm if shm.is_dir() else None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        sections = [("Recorder", bench_recorder(d, args.records)),
                    ("Python API", bench_api(d, args.api_records)),
                    ("Logging handler", bench_logging(d, args.log_records))]
    load1 = os.getloadavg()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, files in "
          f"{args.dir or tempfile.gettempdir()}, load average {load0[0]:.1f} before, "
          f"{load1[0]:.1f} after\n")
    print("| what | records | seconds | records/s | µs/record |")
    print("|---|---:|---:|---:|---:|")
    for title, rows in sections:
        print(f"| **{title}** | | | | |")
        for label, secs, n in rows:
            print(f"| {label} | {int(n)} | {secs:.2f} | {n / secs:,.0f} | "
                  f"{secs / n * 1e6:.2f} |")
    log_rows = sections[2][1]
    print(f"\nRingHandler / FileHandler cost: {log_rows[1][1] / log_rows[0][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
