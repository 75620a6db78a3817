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
from memconsole.ring.regions import open_region

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
