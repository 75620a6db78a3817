"""Fault injection: a writer killed with SIGKILL at random moments, 1,000
times in the suite (10,000 in the long run), each kill followed by a read
of the ring.

Method (docs/ring.md, "Fault injection"):

* The ring is a 16 KiB file mapping, so it wraps every ~40 records and
  kills land in wrap-arounds (tail zeroing) as well as in appends.
* Each round forks a writer (no exec: the child shares nothing with the
  parent but the ring file and one shared anonymous page).  The child
  attaches to the ring (continuing what the last child left, torn record
  included) and appends forever: single records, or batches of 2-13
  records through ``append_batch``, chosen by sequence number.  A record's
  text is a pure function of its sequence number.  After each call returns
  the child stores the last sequence number in the shared page with one
  aligned 8-byte store (ctypes; ``struct.pack_into`` stores byte by byte and
  a kill can tear it).
* The parent sleeps a random 0-3 ms, SIGKILLs the child, reaps it, and reads
  the ring file and what the writer *reported* complete.
* Checks per round: every accepted record's text is exactly the one written
  with its sequence number (no torn, stale or corrupt record is accepted),
  and every reported record that later writes cannot have overwritten is
  present.  Record placement is deterministic (records are contiguous; one
  that does not fit before the end of the data area goes to offset 0 and the
  tail is zeroed), so the test computes how many bytes were written after
  each record, counting in full the call in flight and any earlier call a
  kill interrupted (a batch killed between its copy and its last magic has
  written all its bytes).

``MEMCONSOLE_FAULT_KILLS`` changes the number of rounds (default 1000; the
long run of docs/ring.md sets 10000).

Then the ring under several writers (threads through one RingHandler;
processes contending for the writer's lock, killed and replaced), memory
images copied while the writer writes, and bit flips in a full ring, each
with its own round count in the environment (``MEMCONSOLE_FAULT_THREADS_ROUNDS``,
``_CONTENTION_KILLS``, ``_SNAPSHOTS``, ``_FLIPS``; docs/reliability.md,
"Fault injection at scale", has the long runs).
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import random
import signal
import time
from pathlib import Path

from memconsole.ring import Ring, parse_ring
from memconsole.ring import format as fmt
from memconsole.ring.regions import buffer_region, open_region

KILLS = int(os.environ.get("MEMCONSOLE_FAULT_KILLS", "1000"))
RING_SIZE = 16 * 1024


def text_for(seq: int) -> bytes:
    """The text of record *seq*: 0-700 bytes, derived from the number."""
    digest = hashlib.blake2b(seq.to_bytes(8, "little"), digest_size=8).digest()
    n = int.from_bytes(digest[:2], "little") % 701
    return (b"%d:" % seq + digest * (n // 8 + 1))[:max(n, len(b"%d:" % seq))]


def call_after(seq: int) -> int:
    """How many records the writer's call starting at *seq* appends."""
    return seq % 13 + 1 if seq % 7 == 0 else 1


def _writer(path: Path, shared: mmap.mmap) -> None:
    region = open_region(str(path), write=True)
    ring = Ring.attach(region, boot=b"F" * 16)
    reported = ctypes.c_uint64.from_buffer(shared)
    while True:
        seq = ring.last_seq + 1
        k = call_after(seq)
        if k == 1:
            ring.append(text_for(seq), source_seq=seq, mono_ns=seq, time_ns=seq)
        else:
            ring.append_batch([(text_for(s), 6, 0, s, s, s) for s in range(seq, seq + k)])
        reported.value = seq + k - 1


class _Model:
    """Where each record lands: the writer's placement rule, replayed."""

    def __init__(self, data_size: int) -> None:
        self.size = data_size
        self.n = [0]       # aligned size of record s (index s)
        self.z = [0]       # tail bytes zeroed when record s wrapped
        self.pos = 0

    def extend_to(self, seq: int) -> None:
        while len(self.n) <= seq:
            s = len(self.n)
            n = fmt.aligned(fmt.REC_HEADER_SIZE + len(text_for(s)))
            zeroed = 0
            if self.pos + n > self.size:
                zeroed, self.pos = self.size - self.pos, 0
            self.pos += n
            self.n.append(n)
            self.z.append(zeroed)

    def in_flight_end(self, reported: int, previous_top: int) -> int:
        """The last record the round's writer can have touched.  Its child
        attached after ``previous_top`` (the newest record after the last
        round, reported or not) and starts each call after the last one;
        the call after the last reported one is in flight."""
        first = max(reported, previous_top) + 1
        return first + call_after(first) - 1

    def must_survive(self, reported: int, end: int) -> range:
        """Records <= *reported* that nothing written up to record *end*
        (counted in full) can have touched."""
        if reported == 0:
            return range(1, 1)
        self.extend_to(end)
        written = sum(self.n[s] + self.z[s] for s in range(reported + 1, end + 1))
        lo = reported
        while lo >= 1:
            if written > self.size - self.n[lo]:
                break
            written += self.n[lo] + self.z[lo]
            lo -= 1
        return range(lo + 1, reported + 1)


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "ring"
    region = open_region(str(path), write=True, create_size=RING_SIZE)
    Ring.attach(region, boot=b"F" * 16).close()
    region.close()
    shared = mmap.mmap(-1, mmap.PAGESIZE)
    rng = random.Random(20261126)
    model: _Model | None = None
    previous_top = touched = 0
    stats = {"records": 0, "corrupt_seen": 0, "unreported_complete": 0, "max_seq": 0}
    started = time.monotonic()
    for round_no in range(KILLS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _writer(path, shared)
            finally:
                os._exit(1)
        time.sleep(rng.random() * 0.003)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"round {round_no}: writer exited by itself ({status})"
        reported = ctypes.c_uint64.from_buffer(shared).value
        image = parse_ring(path.read_bytes())
        if model is None:
            model = _Model(image.header.data_size)
        accepted = {}
        for boot in image.boots:
            for rec in boot.records:
                # Zero corrupt records accepted: each is exactly what was written.
                assert rec.text == text_for(rec.seq), f"round {round_no}: seq {rec.seq}"
                assert rec.source_seq == rec.seq
                accepted[rec.seq] = rec
        # Every completed record that later writes cannot have overwritten.
        # Bytes once written stay written: a batch killed after its copy but
        # before all its magics covered space up to its last record.
        end = touched = max(touched, model.in_flight_end(reported, previous_top))
        missing = [s for s in model.must_survive(reported, end) if s not in accepted]
        assert not missing, f"round {round_no}: reported {reported}, lost {missing[:5]}"
        top = max(accepted, default=0)
        assert top <= end, f"round {round_no}: seq {top} was never written"
        previous_top = top
        stats["records"] = len(accepted)
        stats["corrupt_seen"] += image.corrupt > 0
        stats["unreported_complete"] += top > reported
        stats["max_seq"] = top
    elapsed = time.monotonic() - started
    print(f"{KILLS} kills in {elapsed:.1f} s: {stats}")
    assert stats["max_seq"] > 1000, "the writer hardly ran: kills came too early"


# -- several writers ---------------------------------------------------------------
#
# The design (docs/ring.md, "One writer per ring"; memconsole.ring): a Ring
# is not thread-safe, RingHandler serialises the threads of one program
# through the logging lock, and a region has one writer at a time (an
# exclusive flock for files and devices); a second writer is refused with
# RegionError and may attach once the first is gone, killed or closed.

# Rounds of the tests below (the suite's; docs/reliability.md gives the
# long runs' settings).
THREADS = int(os.environ.get("MEMCONSOLE_FAULT_THREADS_ROUNDS", "2"))
CONTENDERS = 4
CONTENTION_KILLS = int(os.environ.get("MEMCONSOLE_FAULT_CONTENTION_KILLS", "60"))
SNAPSHOTS = int(os.environ.get("MEMCONSOLE_FAULT_SNAPSHOTS", "200"))
FLIPS = int(os.environ.get("MEMCONSOLE_FAULT_FLIPS", "300"))


def test_threads_through_one_handler(tmp_path: Path) -> None:
    """8 threads log 400 records each through one RingHandler, *THREADS*
    rounds: every record exactly once, seq without a hole, each thread's
    records in its own order, nothing corrupt."""
    import logging
    import threading

    from memconsole.ring.handler import RingHandler

    for round_no in range(THREADS):
        path = tmp_path / f"threads{round_no}"
        handler = RingHandler(str(path), ring_size=1 << 20)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger(f"memconsole.test.threads{round_no}")
        log.propagate = False
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        go = threading.Event()

        def work(t: int, log: logging.Logger = log, go: threading.Event = go) -> None:
            go.wait()
            for i in range(400):
                log.info("t%d:%d:%s", t, i, "x" * ((t * 31 + i * 7) % 90))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        go.set()
        for th in threads:
            th.join()
        log.removeHandler(handler)
        handler.close()
        image = parse_ring(path.read_bytes())
        records = [r for b in image.boots for r in b.records]
        assert image.corrupt == 0 and image.duplicates == 0
        assert [r.seq for r in records] == list(range(1, 8 * 400 + 1)), round_no
        per_thread: dict[int, list[int]] = {}
        for r in records:
            t, i, pad = r.text.split(b":")
            assert pad == b"x" * ((int(t[1:]) * 31 + int(i) * 7) % 90)
            per_thread.setdefault(int(t[1:]), []).append(int(i))
        assert per_thread == {t: list(range(400)) for t in range(8)}
    print(f"{THREADS} rounds of 8 threads x 400 records through one RingHandler: every "
          "record once, in order")


def _contender_text(wid: int, session: int, i: int) -> bytes:
    head = b"%d:%d:%d:" % (wid, session, i)
    return head + hashlib.blake2b(head, digest_size=16).digest() * ((wid + i) % 5)


def _contender(path: Path, wid: int, counters: mmap.mmap) -> None:
    """Open the ring as a writer again and again; refused while another
    holds it; write a session of 1-20 records, close."""
    from memconsole.errors import RegionError

    refused = ctypes.c_uint64.from_buffer(counters, 8 * wid)
    rng = random.Random(wid)
    session = 0
    while True:
        try:
            region = open_region(str(path), write=True)
        except RegionError as exc:
            assert "another memconsole writer" in str(exc), exc
            refused.value += 1
            time.sleep(rng.random() * 0.001)
            continue
        session += 1
        ring = Ring.attach(region, boot=b"C" * 16)
        for i in range(rng.randint(1, 20)):
            ring.append(_contender_text(wid, session, i), source_seq=wid)
        ring.close()
        region.close()


def _check_sessions(image: object, final: bool) -> int:
    """Every accepted record is exactly what its writer wrote; each writer
    session's records are one run of consecutive seq numbers (no other
    writer inside it) numbered 0, 1, ... from its first surviving one.
    Returns the number of sessions seen."""
    from memconsole.ring import RingImage

    assert isinstance(image, RingImage)
    records = [r for b in image.boots for r in b.records]
    runs: list[tuple[int, int]] = []
    last_i: dict[tuple[int, int], tuple[int, int]] = {}
    for r in records:
        wid, session, i, _ = r.text.split(b":", 3)
        key = (int(wid), int(session))
        assert r.text == _contender_text(*key, int(i)), r.seq
        if key in last_i:
            seq, prev = last_i[key]
            # Within a session: the next record, and the next seq.
            assert (r.seq, int(i)) == (seq + 1, prev + 1), (key, r.seq, i)
            assert runs[-1] == key, f"session {key} interleaved with {runs[-1]}"
        else:
            runs.append(key)
        last_i[key] = (r.seq, int(i))
    assert len(runs) == len(set(runs)), "a session came back after another writer"
    if final:
        assert sum(b.missing for b in image.boots) == 0
    return len(runs)


def test_concurrent_writers_are_serialised_and_killed_ones_replaced(tmp_path: Path) -> None:
    """Four processes contend for one 64 KiB ring file, each opening it as
    a writer, writing a session and closing, again and again; one of them
    is SIGKILLed every 0-20 ms and replaced (*CONTENTION_KILLS* kills).
    While they run and at the end: only the lock holder writes (sessions
    never interleave), refusals happened, nothing accepted is torn."""
    path = tmp_path / "ring"
    region = open_region(str(path), write=True, create_size=64 * 1024)
    Ring.attach(region, boot=b"C" * 16).close()
    region.close()
    # One refusal counter per writer ever started.
    counters = mmap.mmap(-1, 8 * (CONTENDERS + CONTENTION_KILLS))
    rng = random.Random(20261202)

    def spawn(wid: int) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _contender(path, wid, counters)
            finally:
                os._exit(1)
        return pid

    procs = {wid: spawn(wid) for wid in range(CONTENDERS)}
    next_wid = CONTENDERS
    sessions = 0
    try:
        for _ in range(CONTENTION_KILLS):
            time.sleep(rng.random() * 0.02)
            wid = rng.choice(sorted(procs))
            os.kill(procs[wid], signal.SIGKILL)
            _, status = os.waitpid(procs.pop(wid), 0)
            assert os.WIFSIGNALED(status), f"writer {wid} exited by itself ({status})"
            procs[next_wid] = spawn(next_wid)
            next_wid += 1
            sessions = max(sessions, _check_sessions(parse_ring(path.read_bytes()), False))
    finally:
        for pid in procs.values():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    refused = sum(ctypes.c_uint64.from_buffer(counters, 8 * w).value for w in range(next_wid))
    final = _check_sessions(parse_ring(path.read_bytes()), True)
    print(f"{CONTENTION_KILLS} kills of {CONTENDERS} contending writers: {refused} refusals, "
          f"up to {max(sessions, final)} sessions in the ring")
    assert refused > 0 and final > 1


# -- a reset or a snapshot while the writer writes ---------------------------------


def test_snapshots_of_a_ring_being_written(tmp_path: Path) -> None:
    """A memory image taken while the writer runs (as a VM memory dump or
    a /dev/mem read mid-write sees it: the bytes copied piece by piece, at
    different moments of the writes), *SNAPSHOTS* times: every accepted record is
    exactly the one written with its seq, and every record reported
    complete before the copy began that the writes up to its end could not
    reach is present."""
    path = tmp_path / "ring"
    region = open_region(str(path), write=True, create_size=RING_SIZE)
    Ring.attach(region, boot=b"F" * 16).close()
    region.close()
    shared = mmap.mmap(-1, mmap.PAGESIZE)
    reported = ctypes.c_uint64.from_buffer(shared)
    model: _Model | None = None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            _writer(path, shared)
        finally:
            os._exit(1)
    torn = checked = 0
    try:
        while reported.value < 50:
            time.sleep(0.001)
        for _ in range(SNAPSHOTS):
            before = reported.value
            # Copied 256 bytes at a time, as a dump copies memory: the writer
            # goes on between the pieces.
            pieces = []
            with path.open("rb", buffering=0) as f:
                while piece := f.read(256):
                    pieces.append(piece)
            raw = b"".join(pieces)
            after = reported.value
            image = parse_ring(raw)
            if model is None:
                model = _Model(image.header.data_size)
            accepted = {}
            for boot in image.boots:
                for rec in boot.records:
                    assert rec.text == text_for(rec.seq), f"seq {rec.seq}"
                    accepted[rec.seq] = rec
            # Written while copying: up to the call in flight after *after*.
            end = after + call_after(after + 1)
            missing = [s for s in model.must_survive(before, end) if s not in accepted]
            assert not missing, f"reported {before}..{after}: lost {missing[:5]}"
            torn += image.corrupt > 0
            checked += len(model.must_survive(before, end))
            time.sleep(random.random() * 0.002)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"{SNAPSHOTS} snapshots of a ring being written: {checked} records checked "
          f"present, {torn} snapshots with a rejected (torn) candidate")
    assert checked > SNAPSHOTS


# -- bit flips ---------------------------------------------------------------------


def test_bit_flips(tmp_path: Path) -> None:
    """A full, wrapped ring; *FLIPS* times 1-64 random bits flipped in the
    data area (as decaying DRAM flips them), in a fifth of the trials one
    bit of one header copy too (its magic included): exactly the records
    none of whose bytes changed are accepted, unchanged; both header copies
    damaged: refused."""
    from memconsole.errors import RingFormatError

    path = tmp_path / "ring"
    region = open_region(str(path), write=True, create_size=RING_SIZE)
    ring = Ring.attach(region, boot=b"F" * 16)
    seq = 0
    while seq < 400:  # ~10 wraps
        seq = ring.append(text_for(ring.last_seq + 1), source_seq=ring.last_seq + 1)
    ring.close()
    region.close()
    clean = path.read_bytes()
    image = parse_ring(clean)
    extents = {r.seq: (fmt.DATA_OFFSET + r.offset,
                       fmt.DATA_OFFSET + r.offset + fmt.REC_HEADER_SIZE + len(r.text))
               for b in image.boots for r in b.records}
    rng = random.Random(11)
    refused = hit_records = 0
    for trial in range(FLIPS):
        bad = bytearray(clean)
        for _ in range(rng.randint(1, 64)):
            bad[rng.randrange(fmt.DATA_OFFSET, len(bad))] ^= 1 << rng.randrange(8)
        # Bytes changed (two flips of one bit cancel out).
        flipped = {p for p in range(fmt.DATA_OFFSET, len(bad)) if bad[p] != clean[p]}
        headers = rng.random()
        if headers < 0.2:     # one copy: the other is used
            at = rng.choice((rng.randrange(fmt.HEADER_SIZE),
                             fmt.HEADER_SIZE + rng.randrange(fmt.HEADER_SIZE)))
            bad[at] ^= 1 << rng.randrange(8)
        elif headers < 0.22:  # both copies
            for copy in (0, fmt.HEADER_SIZE):
                bad[copy + rng.randrange(fmt.HEADER_SIZE)] ^= 1 << rng.randrange(8)
            try:
                parse_ring(bytes(bad))
            except RingFormatError:
                refused += 1
                continue
            raise AssertionError(f"trial {trial}: both headers damaged, ring accepted")
        got = {r.seq: r for b in parse_ring(bytes(bad)).boots for r in b.records}
        intact = {s for s, (lo, hi) in extents.items()
                  if not any(lo <= p < hi for p in flipped)}
        for s, rec in got.items():
            assert rec.text == text_for(s), f"trial {trial}: seq {s}"
        assert set(got) == intact, (f"trial {trial}: lost {sorted(intact - set(got))}, "
                                    f"accepted damaged {sorted(set(got) - intact)}")
        hit_records += len(extents) - len(intact)
    print(f"{FLIPS} bit-flip trials on {len(extents)} records: {hit_records} damaged records "
          f"rejected, every intact one accepted; {refused} with both headers damaged refused")
    assert hit_records > 0


def test_a_flipped_bit_in_the_primary_magic_falls_back_to_the_backup() -> None:
    """One bit of the primary header's magic flipped, the backup intact:
    the ring is read through the backup, as for any other damage of the
    primary.  (It was called foreign, "not a memconsole ring": show --ring
    gave up, and a writer on a memory region formatted it anew, losing the
    previous boot's console.)  A writer continues it and repairs the
    primary."""
    buf = bytearray(RING_SIZE)
    ring = Ring.attach(buffer_region(buf), boot=b"F" * 16)
    ring.append(b"the last words")
    buf[3] ^= 0x10
    image = parse_ring(bytes(buf))
    assert image.header.copy == "backup"
    assert [r.text for b in image.boots for r in b.records] == [b"the last words"]
    ring.close()
    # The next boot's writer continues the ring (the record kept, the
    # primary header rewritten from the backup).
    ring = Ring.attach(buffer_region(buf), boot=b"G" * 16)
    ring.append(b"the next boot")
    ring.close()
    assert buf[:fmt.HEADER_SIZE] == buf[fmt.HEADER_SIZE:2 * fmt.HEADER_SIZE]
    image = parse_ring(bytes(buf))
    assert image.header.copy == "primary"
    assert [r.text for b in image.boots for r in b.records] == [b"the last words",
                                                                b"the next boot"]
