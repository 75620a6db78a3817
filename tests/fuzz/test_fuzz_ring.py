"""Fuzz harnesses for the ring's parsers: the ring reader (and the writer's
attach scan), the /dev/kmsg parsers and the physical-range rules.

Every target takes bytes.  Arbitrary input must give records, or a
:class:`~memconsole.errors.ParseError` (``RingFormatError``) or a
:class:`~memconsole.errors.RegionError`, never another exception and never
a hang; each target also checks what it got back (see the targets).

* ``ring``: the first byte picks how the rest is used: as a whole region
  (any bytes), as the data area behind a valid header, or as instructions
  for building hostile records *with valid CRCs* (sizes that lie, CRCs
  that fail, duplicate and wrapping sequence numbers, foreign boot ids,
  gap records with huge counts) in a valid ring.  The region goes through
  ``parse_ring`` and then ``Ring.attach`` (the writer's scan), an append
  and a second ``parse_ring`` that must show the appended record.
* ``kmsg``: ``parse_kmsg`` on the bytes, and the stream parser
  (``LineParser``) on the bytes cut into chunks, its items appended to a
  ring (so every value it produces must fit a record's fields).
* ``iomem``: ``parse_iomem``, ``memmap_ranges`` and ``memparse`` on the
  bytes, then ``check_mem_range`` and ``check_mem_access`` for ranges and
  options taken from them.

Seeds are real captures (tests/fixtures/ring: ring images, /dev/kmsg
records and /proc/iomem and /proc/cmdline of 6.1 and 6.12 guests; the
host's /dev/kmsg when readable), rings written by :class:`Ring`, and
hostile memory (a ramoops DBGC flood, headers claiming huge sizes).

In the test suite each target runs for a few seconds under atheris
(libFuzzer, coverage-guided) when it is installed, else as a Hypothesis
property.  A longer run, from the repository root::

    .venv/bin/python tests/fuzz/test_fuzz_ring.py TARGET -max_total_time=600 \\
        -timeout=10 -rss_limit_mb=2048 -max_len=16385 CORPUS_DIR

(CORPUS_DIR starts empty or with an earlier run's corpus; the seeds are
added each time.)  A crash is written as ``crash-<sha1>`` in the current
directory; every one found lands in tests/ring as a reproducer test.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import re
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ring"

if __name__ == "__main__":  # a fuzzing process: the worktree's code, instrumented
    sys.path.insert(0, str(ROOT / "src"))
    import atheris

    with atheris.instrument_imports(include=["memconsole"]):
        import memconsole.ring
        import memconsole.ring._kmsg
        import memconsole.ring.iomem
        import memconsole.ring.regions  # noqa: F401

from memconsole.errors import RegionError, RingFormatError  # noqa: E402
from memconsole.ring import Gap, Ring, RingRecord, parse_ring  # noqa: E402
from memconsole.ring._kmsg import Batch, LineParser, SeqTracker, parse_kmsg  # noqa: E402
from memconsole.ring.format import (  # noqa: E402
    DATA_OFFSET,
    HEADER_SIZE,
    MAX_RECORD,
    encode_header,
    encode_record,
    parse_header,
)
from memconsole.ring.iomem import (  # noqa: E402
    check_mem_access,
    check_mem_range,
    memmap_ranges,
    memparse,
    parse_iomem,
)
from memconsole.ring.regions import buffer_region  # noqa: E402

NONCE = 0x5EED1234
#: Size of the regions the ring seeds hold (and libFuzzer's -max_len for it).
SEED_REGION = 1 << 14
MAX_LEN = {"ring": SEED_REGION + 1, "kmsg": 1 << 16, "iomem": 1 << 16}
BOOTS = (bytes(16), b"\x11" * 16, bytes(range(16)), b"\xff" * 16)
HUGE = (0, 1, 2, (1 << 63) - 1, 1 << 63, (1 << 64) - 2, (1 << 64) - 1)


class Provider:
    """Deterministic values from fuzz bytes (atheris's FuzzedDataProvider
    idea, in pure Python so Hypothesis can drive the same targets)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + max(n, 0)]
        self.pos += len(out)
        return out

    def uint(self, nbytes: int) -> int:
        return int.from_bytes(self.bytes(nbytes), "little")

    def sint(self, nbytes: int) -> int:
        return int.from_bytes(self.bytes(nbytes).ljust(nbytes, b"\0"), "little", signed=True)

    def upto(self, n: int) -> int:
        return self.uint(4) % (n + 1) if n > 0 else 0

    def flag(self) -> bool:
        return bool(self.uint(1) & 1)

    def pick(self, items: tuple[int, ...] | tuple[bytes, ...]) -> int | bytes:
        return items[self.uint(1) % len(items)]


# -- ring -----------------------------------------------------------------------------


def _check_image(data: bytes | bytearray) -> None:
    """parse_ring gives a RingFormatError or an image whose parts hold."""
    try:
        image = parse_ring(bytes(data))
    except RingFormatError:
        return
    total = 0
    for boot in image.boots:
        recs = boot.records
        assert recs, "a boot without records"
        seqs = [r.seq for r in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        for e in boot.entries:
            if isinstance(e, Gap):
                assert e.count >= 0 and e.reason in ("overrun", "missing")
            else:
                assert isinstance(e, RingRecord) and e.type_name and e.boot == boot.boot
        assert boot.id and boot.last is recs[-1]
        _ = (boot.stopped, boot.last_log, boot.missing, boot.first_time_ns, boot.last_time_ns)
        total += len(recs)
    assert total == image.records
    assert image.corrupt >= 0 and image.duplicates >= 0


def _hostile_ring(p: Provider) -> bytearray:
    """A valid header, then records built from *p*: honest ones and liars."""
    size = 4096 * (1 + p.upto(15))
    buf = bytearray(size)
    header = encode_header(size, NONCE, 1)
    buf[0:HEADER_SIZE] = header
    buf[HEADER_SIZE:DATA_OFFSET] = header
    if p.flag():  # a damaged primary: the backup must be used
        buf[p.upto(HEADER_SIZE - 1)] ^= 0xFF
    data_size = (size - DATA_OFFSET) & ~7
    for i in range(p.upto(48)):
        if p.left() < 4:
            break
        off = DATA_OFFSET + 8 * p.upto(data_size // 8 - 1)
        how = p.uint(1)
        seq = p.pick(HUGE) if how & 1 else (i + 1 + p.upto(3))
        boot = p.pick(BOOTS) if how & 2 else p.bytes(16).ljust(16, b"\0")
        rtype = p.uint(1)
        body = p.bytes(p.upto(200))
        if rtype == 2 and how & 4:  # a gap record counting an absurd number
            body = int(p.pick(HUGE)).to_bytes(8, "little")
        rec = bytearray(encode_record(
            NONCE, int(seq), bytes(boot), rtype, body, pri=p.uint(2), flags=p.uint(1),
            source_seq=int(p.pick(HUGE)) if how & 8 else p.uint(8),
            mono_ns=p.sint(8), time_ns=p.sint(8)))
        end = min(off + len(rec), size)
        buf[off:end] = rec[:end - off]
        if how & 16:  # a size that lies, sealed with a CRC over what it claims
            claimed = p.pick((0, 1, 63, 64, MAX_RECORD, MAX_RECORD + 8, 1 << 31,
                              (1 << 32) - 1, p.uint(4)))
            buf[off + 8:off + 12] = int(claimed).to_bytes(4, "little")
            if off + int(claimed) <= size:
                crc = zlib.crc32(buf[off + 8:off + int(claimed)], NONCE)
                buf[off + 4:off + 8] = crc.to_bytes(4, "little")
        elif how & 32:  # a CRC that fails
            buf[off + 4] ^= 1
    return buf


def _attach_and_append(buf: bytearray) -> None:
    """The writer's view of the same bytes: attach (format or continue),
    append, and the reader must then show the appended record last."""
    region = buffer_region(bytearray(buf))
    try:
        ring = Ring.attach(region, boot=b"\xab" * 16)
    except (RingFormatError, RegionError):
        return
    seq = ring.append(b"after attach", source_seq=7)
    last = ring.append_batch([(b"batch", 6, 0, 8, 1000, 2000)])
    assert last == seq + 1
    image = parse_ring(bytes(region.buf))
    mine = [b for b in image.boots if b.boot == b"\xab" * 16]
    assert mine and mine[-1].records[-1].seq == last, "appended record not read back"
    ring.close()


def target_ring(data: bytes) -> None:
    p = Provider(data)
    mode = p.uint(1) % 3
    if mode == 0:
        buf = bytearray(p.bytes(p.left()))
    elif mode == 1:
        rest = p.bytes(p.left())
        size = max(4096, (DATA_OFFSET + len(rest) + 4095) & ~4095)
        buf = bytearray(size)
        header = encode_header(size, NONCE, 1)
        buf[0:HEADER_SIZE] = header
        buf[HEADER_SIZE:DATA_OFFSET] = header
        buf[DATA_OFFSET:DATA_OFFSET + len(rest)] = rest
    else:
        buf = _hostile_ring(p)
    _check_image(buf)
    _attach_and_append(buf)


# -- kmsg -----------------------------------------------------------------------------


def target_kmsg(data: bytes) -> None:
    rec = parse_kmsg(data)
    if rec is not None:
        assert isinstance(rec.text, bytes) and isinstance(rec.dictionary, bytes)
    p = Provider(data[:8])
    fmt = ("auto", "kmsg", "text")[p.uint(1) % 3]
    last = p.pick((None, 0, 5, 1 << 40, (1 << 64) - 2))  # type: ignore[arg-type]
    cut = [0, *sorted({p.upto(len(data)) for _ in range(3)}), len(data)]
    parser, batch = LineParser(fmt), Batch()
    seqs = SeqTracker(last if isinstance(last, int) else None)
    for a, b in itertools.pairwise(cut):
        parser.feed(data[a:b], batch, seqs if parser.fmt != "text" else None, 1 << 60)
    parser.feed(b"", batch, seqs if parser.fmt != "text" else None, 1 << 60, final=True)
    if rec is not None:
        batch.add_kmsg(rec, 1 << 60, seqs)
    ring = Ring.attach(buffer_region(bytearray(1 << 16)), boot=b"\xcd" * 16)
    batch.write(ring)
    parse_ring(bytes(ring.region.buf))
    ring.close()


# -- iomem ----------------------------------------------------------------------------


def target_iomem(data: bytes) -> None:
    p = Provider(data[:32])
    text = data[32:]
    entries = parse_iomem(text)
    for e in entries:
        assert e.depth >= 0 and isinstance(e.name, str)
    ranges = memmap_ranges(text)
    assert all(start >= 0 and size > 0 for start, size in ranges)
    word = text[:64].decode("latin-1")
    got = memparse(word)
    assert got is None or (got[0] >= 0 and word.endswith(got[1]))
    start, size = p.uint(6) & ~0xFFF, (p.uint(4) & ~0xFFF) or 4096
    if ranges and p.flag():
        start, size = ranges[0][0], max(ranges[0][1], 1)
    with contextlib.suppress(RegionError):
        check_mem_range(entries, start, size)
    firmware = parse_iomem(text[len(text) // 2:]) if p.flag() else None
    ramoops = (p.uint(4), p.uint(3)) if p.flag() else None
    cmdline = text if p.flag() else None
    try:
        warnings = check_mem_access(entries, start, size, cmdline=cmdline, firmware=firmware,
                                    ramoops=ramoops, write=p.flag(), force=p.flag())
    except RegionError:
        return
    assert all(isinstance(w, str) for w in warnings)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "ring": target_ring, "kmsg": target_kmsg, "iomem": target_iomem}


# -- seeds ----------------------------------------------------------------------------


def _written_ring() -> bytes:
    """A ring written by Ring: two boots, a gap, a wrap."""
    region = buffer_region(bytearray(16384))
    ring = Ring.attach(region, boot=BOOTS[1])
    for i in range(150):
        ring.append(b"kernel line %d" % i, pri=6, source_seq=i)
    ring.append_gap(40, 150)
    ring.close()
    ring = Ring.attach(region, boot=BOOTS[2])
    ring.append(b"second boot", dictionary=b"SUBSYSTEM=pci")
    ring.close()
    return bytes(region.buf)


def _shrunk(region: bytes, size: int) -> bytes:
    """The first records of the ring *region* in a region of *size* bytes,
    under a header with the same nonce."""
    nonce = parse_header(region).nonce
    header = encode_header(size, nonce, 1)
    return header + header + region[DATA_OFFSET:size]


def seeds(target: str) -> list[bytes]:
    """The seed inputs of *target*."""
    out: list[bytes] = []
    if target == "ring":
        # The real rings (256 KiB) as 16 KiB regions with their own nonce,
        # so their records stay valid and an execution stays fast.
        rings = [_shrunk(gzip.decompress(p.read_bytes()), SEED_REGION)
                 for p in sorted(FIXTURES.glob("ring-*.bin.gz"))]
        rings.append(_written_ring())
        for ring in rings:
            out.append(b"\0" + ring)
            out.append(b"\1" + ring[DATA_OFFSET:DATA_OFFSET + 8192])
        # Hostile memory: a ramoops DBGC flood and a ring header that claims
        # more than the region holds.
        out.append(b"\0" + b"DBGC" + b"\xff\xff\xff\x7f" * 2 + b"DBGC\0\0\0\0" * 1000)
        big = bytearray(encode_header(1 << 40, NONCE, 1)) * 2 + bytes(8192)
        out.append(b"\0" + bytes(big))
        out.append(b"\2" + bytes(range(256)) * 8)
    elif target == "kmsg":
        for path in sorted(FIXTURES.glob("kmsg-*.bin")):
            blob = path.read_bytes()
            records = re.split(rb"\n(?! )", blob)
            out += [r + b"\n" for r in records[:200] if r]
            out.append(blob[:16384])
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                for _ in range(50):
                    try:
                        out.append(os.read(fd, 16384))
                    except BlockingIOError:
                        break
                    except BrokenPipeError:
                        continue
            finally:
                os.close(fd)
        out.append(b"6,1,2,-;text\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0\n")
    else:
        for name in sorted(FIXTURES.glob("iomem-*.txt")):
            release = name.stem.split("-", 1)[1]
            cmdline = FIXTURES / f"cmdline-{release}.txt"
            head = bytes(32)
            out.append(head + name.read_bytes())
            if cmdline.exists():
                out.append(head + cmdline.read_bytes() + b"\n" + name.read_bytes())
    return out


# -- running ------------------------------------------------------------------------


def _fuzz_main() -> None:
    import atheris

    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options] "
                         "[CORPUS_DIR]")
    name = sys.argv.pop(1)
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        Path(corpus[0]).mkdir(parents=True, exist_ok=True)
        for n, seed in enumerate(seeds(name)):
            (Path(corpus[0]) / f"seed-{n:03d}").write_bytes(seed)
    atheris.Setup(sys.argv, TARGETS[name])
    atheris.Fuzz()


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    _fuzz_main()
else:
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    SHORT_SECONDS = int(os.environ.get("MEMCONSOLE_FUZZ_SECONDS", "4"))

    @pytest.mark.parametrize("target", sorted(TARGETS))
    def test_seeds_pass(target: str) -> None:
        """Every seed goes through its target (the corpus starts sound)."""
        for seed in seeds(target):
            TARGETS[target](seed)

    def test_real_rings_are_seeds() -> None:
        """The captured rings read as two boots (one reset, one stopped);
        shrunk to seeds, their records stay valid."""
        for path in sorted(FIXTURES.glob("ring-*.bin.gz")):
            whole = gzip.decompress(path.read_bytes())
            image = parse_ring(whole)
            assert [b.stopped for b in image.boots] == [False, True], path
            assert image.records > 1000 and image.corrupt == 0, (path, image.corrupt)
            seed = _shrunk(whole, SEED_REGION)
            target_ring(b"\0" + seed)
            image = parse_ring(seed)     # the first records; one may be cut at the end
            assert image.records > 20 and image.corrupt <= 1, (path, image.corrupt)

    @pytest.mark.parametrize("target", sorted(TARGETS))
    def test_short_fuzz_run(target: str, tmp_path: Path) -> None:
        """A few seconds of coverage-guided fuzzing (atheris) per target."""
        if not _have_atheris():
            pytest.skip("atheris is not installed: the Hypothesis properties below run instead")
        corpus = tmp_path / "corpus"
        proc = subprocess.run(
            [sys.executable, __file__, target, f"-max_total_time={SHORT_SECONDS}",
             "-timeout=10", "-rss_limit_mb=2048", f"-max_len={MAX_LEN[target]}",
             f"-artifact_prefix={tmp_path}/",
             "-seed=1", str(corpus)],
            capture_output=True, timeout=SHORT_SECONDS + 120, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        err = proc.stderr.decode(errors="replace")
        crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
        found = "; ".join(f"{c.name}: {c.read_bytes()[:512]!r}" for c in crashes)
        assert proc.returncode == 0 and not crashes, f"{found}\n{err[-4000:]}"
        done = re.findall(r"#(\d+)\s+DONE", err)
        assert done and int(done[-1]) > 0, err[-2000:]

    @pytest.mark.parametrize("target", sorted(TARGETS))
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.binary(max_size=20000))
    def test_arbitrary_bytes(target: str, data: bytes) -> None:
        """The same targets as Hypothesis properties (what runs where
        atheris does not install)."""
        TARGETS[target](data)
