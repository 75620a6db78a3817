"""The recorder: kmsg parsing, stream parsing, gaps and resumption, and the
daemon contract (READY=1, SIGTERM, no CPU when idle, bounded memory)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memconsole.ring import Gap, RecordType, Ring, parse_ring
from memconsole.ring._kmsg import MAX_LINE
from memconsole.ring._kmsg import Batch as _Batch
from memconsole.ring._kmsg import SeqTracker as _SeqTracker
from memconsole.ring.recorder import KmsgSource, LineParser, parse_kmsg
from memconsole.ring.regions import buffer_region

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")


def mc(*args: str, **kwargs) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": SRC}
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "memconsole", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def read(path: Path):  # type: ignore[no-untyped-def]
    return parse_ring(path.read_bytes())


# -- parsing ------------------------------------------------------------------------


def test_parse_kmsg_abi_example() -> None:
    # Documentation/ABI/testing/dev-kmsg, the example record.
    raw = (b"7,160,424069,-;pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] "
           b"(ignored)\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n")
    rec = parse_kmsg(raw)
    assert rec is not None
    assert (rec.pri, rec.seq, rec.ts_usec, rec.flags) == (7, 160, 424069, b"-")
    assert rec.text.startswith(b"pci_root PNP0A03:00") and rec.text.endswith(b"(ignored)")
    assert rec.dictionary == b"SUBSYSTEM=acpi\nDEVICE=+acpi:PNP0A03:00"


def test_parse_kmsg_details() -> None:
    rec = parse_kmsg(b"30,340,5690716,c,future,fields;udevd[80]: tab\\x09and \\x5c\n")
    assert rec is not None and rec.pri == 30 and rec.flags == b"c"
    assert rec.text == b"udevd[80]: tab\tand \\"
    assert parse_kmsg(b"6,1,2,-;semi;colons;kept\n").text == b"semi;colons;kept"  # type: ignore[union-attr]
    for bad in (b"hello world\n", b"6,x,2,-;t\n", b"6,1;t\n", b"", b"+6,1,2,-;t",
                b"6,1,2,-" + b"," * 300 + b";t"):
        assert parse_kmsg(bad) is None


def test_line_parser_kmsg_across_chunks() -> None:
    stream = (b"6,0,10,-;first\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0\n"
              b"4,1,20,-;second\n6,5,30,-;after a jump\nnot kmsg at all\n")
    for cut in range(1, len(stream)):
        batch, seqs, parser = _Batch(), _SeqTracker(None), LineParser()
        parser.feed(stream[:cut], batch, seqs, 0)
        parser.feed(stream[cut:], batch, seqs, 0, final=True)
        texts = [item[0] for item in batch.items]
        assert texts[0].startswith(b"first"), cut
        assert texts[1:] == [b"second", b"after a jump", b"not kmsg at all"], cut
        if b"DEVICE=+pci:0000:00:01.0\n" in stream[:cut]:
            assert texts[0] == b"first\0SUBSYSTEM=pci\nDEVICE=+pci:0000:00:01.0"
        assert [(g[1], g[2]) for g in batch.gaps] == [(3, 2)]


def test_line_parser_text_and_long_lines() -> None:
    batch, parser = _Batch(), LineParser("auto")
    parser.feed(b"plain 1,2,3;no\nx" + b"y" * 40000, batch, None, 0)
    parser.feed(b"z\nlast without newline", batch, None, 0, final=True)
    assert parser.fmt == "text"
    texts = [item[0] for item in batch.items]
    assert texts[0] == b"plain 1,2,3;no"
    assert len(texts[1]) == MAX_LINE and batch.items[1][2] & 0x01  # FLAG_CONT
    assert texts[-1] == b"last without newline"
    assert b"".join(texts[1:-1]) == b"x" + b"y" * 40000 + b"z"
    assert not batch.items[-2][2] & 0x01


def test_seq_tracker_resume_and_gaps() -> None:
    seqs = _SeqTracker(41)
    assert seqs.admit(40) == (False, 0) and seqs.admit(41) == (False, 0)
    assert seqs.admit(42) == (True, 0) and seqs.admit(50) == (True, 7)
    assert _SeqTracker(None).admit(3) == (True, 3)   # lost before the recorder started


# -- a fake /dev/kmsg (one record per read) -----------------------------------------------


def fake_kmsg(records: list[bytes]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for r in records:
        a.send(r)
    b.setblocking(False)
    return a, b


def test_kmsg_source_gaps_overruns_and_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = bytearray(1 << 16)
    ring = Ring.attach(buffer_region(buf), boot=b"K" * 16)
    writer, reader = fake_kmsg([b"6,%d,%d,-;message %d\n" % (s, s * 1000, s)
                                for s in (0, 1, 2, 6, 7)])
    real_read = os.read
    calls = {"n": 0}

    def flaky_read(fd: int, n: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise BrokenPipeError(32, "EPIPE")  # the kernel overwrote records
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", flaky_read)
    source = KmsgSource(reader.fileno(), None, "fake")
    batch = _Batch()
    assert source.read_into(batch)
    monkeypatch.setattr(os, "read", real_read)
    assert source.overruns == 1
    batch.write(ring)
    (boot,) = parse_ring(bytes(buf)).boots
    entries = boot.entries
    assert [e.text for e in entries if not isinstance(e, Gap)] == \
        [b"message 0", b"message 1", b"message 2", b"message 6", b"message 7"]
    assert [e for e in entries if isinstance(e, Gap)] == [Gap(3, "overrun", 3, 3)]
    assert boot.records[3].mono_ns == 6_000_000
    # A restart within the boot continues after seq 7 and never duplicates.
    again = Ring.attach(buffer_region(buf), boot=b"K" * 16)
    assert again.last_source_seq() == 7
    writer.send(b"6,8,8000,-;message 8\n")
    w2, r2 = fake_kmsg([b"6,%d,1,-;again %d\n" % (s, s) for s in range(0, 10)])
    source = KmsgSource(r2.fileno(), again.last_source_seq(), "fake")
    batch = _Batch()
    source.read_into(batch)
    batch.write(again)
    (boot,) = parse_ring(bytes(buf)).boots
    assert [r.source_seq for r in boot.records] == [0, 1, 2, 6, 7, 8, 9]
    for s in (writer, reader, w2, r2):
        s.close()


# -- the command, end to end ---------------------------------------------------------------


def test_record_a_kmsg_file_then_show(tmp_path: Path) -> None:
    stream = tmp_path / "kmsg.txt"
    stream.write_bytes(b"".join(b"%d,%d,%d,-;line %d\n" % (6, s, s * 10, s) for s in range(500)))
    ring = tmp_path / "ring"
    proc = mc("record", "--ring", str(ring), "--ring-size", "256K", "--source", str(stream))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"formatted a new ring" in err and b"500 records" in err
    (boot,) = read(ring).boots
    recs = boot.records
    assert recs[0].type == RecordType.START and recs[-1].type == RecordType.STOP
    assert b"end of input" in recs[-1].text
    assert [r.text for r in recs[1:-1]] == [b"line %d" % s for s in range(500)]
    # The same stream again: every seq is already there for this boot.
    proc = mc("record", "--ring", str(ring), "--source", str(stream))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b" 0 records" in err
    show = mc("show", "--ring", str(ring), "--boot", "0")
    out, err = show.communicate(timeout=60)
    assert show.returncode == 0, err
    assert b"[    0.004990] line 499\n" in out and b"this boot, still running" in out


def test_record_stdin_text(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    proc = mc("record", "--ring", str(ring), "--source", "stdin", stdin=subprocess.PIPE)
    _, err = proc.communicate(b"one\ntwo\n\xff binary \x00 ok\nno newline", timeout=60)
    assert proc.returncode == 0, err
    texts = [r.text for r in read(ring).boots[0].records[1:-1]]
    assert texts == [b"one", b"two", b"\xff binary \x00 ok", b"no newline"]
    assert all(r.pri is None for r in read(ring).boots[0].records)


def test_daemon_ready_idle_and_sigterm(tmp_path: Path) -> None:
    """READY=1 over $NOTIFY_SOCKET, no CPU while the source is quiet, a clean
    exit with a STOP note on SIGTERM."""
    ring = tmp_path / "ring"
    notify_path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(30)
    read_end, write_end = os.pipe()
    proc = mc("record", "--ring", str(ring), "--source", "stdin", stdin=read_end,
              env={"NOTIFY_SOCKET": notify_path})
    os.close(read_end)
    try:
        ready = listener.recv(4096)
        assert ready.startswith(b"READY=1\n") and b"STATUS=recording stdin" in ready
        os.write(write_end, b"before the quiet\n")
        time.sleep(0.5)

        def cpu() -> int:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])   # utime + stime, in ticks

        before = cpu()
        time.sleep(2.0)
        assert cpu() - before <= 1, "the recorder used CPU while idle"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(write_end)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert listener.recv(4096) == b"STOPPING=1"
    listener.close()
    recs = read(ring).boots[0].records
    assert recs[1].text == b"before the quiet"
    assert recs[-1].type == RecordType.STOP and recs[-1].text.endswith(b"(SIGTERM)")
    assert read(ring).boots[0].stopped


def _peak_rss_kib(tmp_path: Path, lines: int) -> int:
    """Run ``memconsole record`` on a kmsg stream of *lines* records; return
    its own peak RSS."""
    stream = tmp_path / f"stream{lines}.txt"
    line = b"6,%d,1,-;" + b"m" * 180 + b"\n"
    with stream.open("wb") as f:
        for start in range(0, lines, 5000):
            f.write(b"".join(line % s for s in range(start, min(lines, start + 5000))))
    ring = tmp_path / f"ring{lines}"
    code = ("import resource, sys; from memconsole.cli import main; rc = main(sys.argv[1:]); "
            "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "record", "--ring", str(ring),
                           "--source", str(stream)], capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 0, proc.stderr
    assert b"%d records" % lines in proc.stderr
    return int(proc.stderr.split(b"peak ")[1].split()[0])


def test_bounded_memory_on_a_large_stream(tmp_path: Path) -> None:
    """A 57 MB stream costs no more memory than a 190 KB one, give or take
    one batch (4096 records) and one read (64 KiB)."""
    small = _peak_rss_kib(tmp_path, 1000)
    big = _peak_rss_kib(tmp_path, 300_000)
    assert big - small < 8 * 1024, f"peak RSS {small} KiB -> {big} KiB"


def test_missing_ring_spec_and_bad_source(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEMCONSOLE_RING"}
    proc = subprocess.run([sys.executable, "-m", "memconsole", "record"], env={
        **env, "PYTHONPATH": SRC}, capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"no ring: give --ring SPEC" in proc.stderr
    proc2 = mc("record", "--ring", str(tmp_path / "r"), "--source", str(tmp_path / "nope"))
    _, err = proc2.communicate(timeout=60)
    assert proc2.returncode == 1 and b"cannot open source" in err


@pytest.mark.root
def test_real_dev_kmsg_from_the_first_record(tmp_path: Path) -> None:
    """Read the host's own /dev/kmsg (nothing is written to it): the ring
    starts at the oldest record the kernel still holds, and a restart does
    not duplicate."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        first = parse_kmsg(os.read(fd, 16384))
    finally:
        os.close(fd)
    assert first is not None
    ring = tmp_path / "ring"
    for _ in range(2):
        proc = mc("record", "--ring", str(ring), "--ring-size", "4M")
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    image = read(ring)
    (boot,) = image.boots
    kernel = [r for r in boot.records if r.type == RecordType.LOG]
    seqs = [r.source_seq for r in kernel]
    assert seqs == sorted(set(seqs)), "a restart duplicated records"
    assert kernel[0].source_seq == first.seq and kernel[0].text == first.text
    gaps = boot.gaps
    assert all(g.reason == "overrun" for g in gaps)
    if first.seq > 0:
        assert gaps and gaps[0].count == first.seq  # lost before anyone read them


# -- properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
def test_text_stream_round_trips_in_any_chunking(data: bytes, cuts: list[int]) -> None:
    """Lines of text come out whole whatever the read sizes were."""
    batch, parser = _Batch(), LineParser("text")
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    for i, piece in enumerate(pieces):
        parser.feed(piece, batch, None, 0, final=i == len(pieces) - 1)
    got = b"\n".join(item[0] for item in batch.items)
    want = data[:-1] if data.endswith(b"\n") else data
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_break_the_kmsg_parsers(data: bytes) -> None:
    parse_kmsg(data)
    batch = _Batch()
    parser = LineParser("kmsg")
    parser.feed(data, batch, _SeqTracker(None), 0, final=True)
    assert all(isinstance(item[0], bytes) for item in batch.items)
