"""The recorder: follow the kernel log (or any text stream) into a ring.

``memconsole record`` runs :class:`Recorder` as a new-style daemon: no fork,
no PID file; ``READY=1`` to systemd once the ring is attached and the source
open; signal handlers only set a flag and wake the loop through
``signal.set_wakeup_fd``; the loop blocks in ``poll()`` on the source and
that wake-up pipe, so an idle recorder uses no CPU.  Memory is bounded: at
most :data:`BATCH` records and :data:`MAX_LINE` bytes of a partial line are
held between two appends.

Sources:

* ``/dev/kmsg`` (kernel log, Documentation/ABI/testing/dev-kmsg): each
  ``read()`` returns one record ``pri,seq,ts_usec,flags[,...];text\\n`` plus
  `` KEY=VALUE`` continuation lines; a fresh open starts at the oldest record
  still in the kernel's buffer, so the boot's early messages are included.
  ``EPIPE`` means the kernel overwrote records before they were read; the
  next read continues, and the jump in sequence numbers becomes a gap record
  with the count.  A recorder restarted within one boot continues after the
  last kernel sequence number the ring holds for this boot.
* a stream (stdin, a file, a FIFO): lines of text, or lines in the kmsg
  format (``--format kmsg``, or detected from the first line).

The parsers (:func:`parse_kmsg`, :class:`LineParser`) are pure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, NamedTuple, Protocol

from memconsole._ringfmt import (
    FLAG_CONT,
    FLAG_DICT,
    PRI_UNKNOWN,
    SEQ_UNKNOWN,
    RecordType,
)
from memconsole.errors import ConfigError
from memconsole.ring import Ring

__all__ = [
    "BATCH",
    "MAX_LINE",
    "KmsgRecord",
    "KmsgSource",
    "LineParser",
    "Recorder",
    "RecorderStats",
    "Source",
    "StreamSource",
    "open_source",
    "parse_kmsg",
    "sd_notify",
    "unescape",
]

#: Records read before they are appended and flushed as one batch.
BATCH = 4096
#: Longest line kept in one record from a stream; a longer one is split
#: into records, each but the last flagged ``FLAG_CONT``.
MAX_LINE = 16 * 1024
#: A /dev/kmsg record is at most CONSOLE_EXT_LOG_MAX (8 KiB) in 6.x.
_KMSG_READ = 16 * 1024
_STREAM_READ = 64 * 1024
_ESCAPE_RE = re.compile(rb"\\x([0-9a-fA-F]{2})")
# One line of a kmsg-format stream: a record (pri, seq, usec, flags, text;
# fields after the flags ignored, as the ABI asks), a continuation line, or
# anything else.
_KMSG_LINE_RE = re.compile(
    rb"^(?:(\d{1,10}),(\d{1,20}),(\d{1,20}),([^;,\n]{0,64})(?:,[^;\n]{0,200})?;([^\n]*)"
    rb"|( [^\n]*)|([^\n]*))\n", re.MULTILINE)
_Item = tuple[bytes, int, int, int, int, int]


def unescape(text: bytes) -> bytes:
    """Undo /dev/kmsg's ``\\xNN`` escaping of non-printable bytes and ``\\``
    (kernel/printk/printk.c, msg_add_ext_text)."""
    if b"\\x" not in text:
        return text
    return _ESCAPE_RE.sub(lambda m: bytes((int(m.group(1), 16),)), text)


class KmsgRecord(NamedTuple):
    """One kernel log record in the /dev/kmsg format.

    Attributes:
        pri: syslog priority (facility << 3 | level).
        seq: the kernel's 64-bit record sequence number.
        ts_usec: time since boot in microseconds (the printk clock).
        flags: ``-`` or ``c`` (fragment), as printed.
        text: the message, unescaped.
        dictionary: continuation ``KEY=VALUE`` lines joined by ``\\n``.
    """

    pri: int
    seq: int
    ts_usec: int
    flags: bytes
    text: bytes
    dictionary: bytes


def parse_kmsg(raw: bytes) -> KmsgRecord | None:
    """Parse one /dev/kmsg record (prefix line and continuation lines);
    None if *raw* does not have the prefix ``pri,seq,ts,flags;``.  Fields
    after the flags are ignored, as the ABI asks."""
    head, sep, rest = raw.partition(b";")
    if not sep or len(head) > 200:
        return None
    fields = head.split(b",", 4)
    if len(fields) < 4 or not (fields[0].isdigit() and fields[1].isdigit()
                               and fields[2].isdigit()):
        return None
    text, _, more = rest.partition(b"\n")
    dictionary = b""
    if more:
        lines = [ln[1:] for ln in more.split(b"\n") if ln.startswith(b" ")]
        dictionary = b"\n".join(lines)
    return KmsgRecord(int(fields[0]), int(fields[1]), int(fields[2]), fields[3],
                      unescape(text), dictionary)


def _boot_offset_ns() -> int:
    """Wall clock minus monotonic clock: turns a kmsg timestamp into a time."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class _SeqTracker:
    """Kernel sequence numbers: drop what the ring already has, turn jumps
    into gaps."""

    def __init__(self, last: int | None) -> None:
        self.next = 0 if last is None else last + 1
        self.lost = 0

    def admit(self, seq: int) -> tuple[bool, int]:
        """(keep the record, records missing before it)."""
        if seq < self.next:
            return False, 0
        missing = seq - self.next
        self.next = seq + 1
        self.lost += missing
        return True, missing


class _Batch:
    """Records waiting to be appended; gap records go in order."""

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.gaps: list[tuple[int, int, int, int]] = []  # (index, count, first, mono)

    def add_kmsg(self, rec: KmsgRecord, offset: int, seqs: _SeqTracker | None) -> None:
        if seqs is not None:
            keep, missing = seqs.admit(rec.seq)
            if not keep:
                return
            if missing:
                self.gaps.append((len(self.items), missing, rec.seq - missing,
                                  rec.ts_usec * 1000))
        flags = FLAG_CONT if rec.flags[:1] in (b"c", b"+") else 0
        body = rec.text
        if rec.dictionary:
            body, flags = body + b"\0" + rec.dictionary, flags | FLAG_DICT
        mono = rec.ts_usec * 1000
        self.items.append((body, rec.pri, flags, rec.seq, mono, offset + mono))

    def add_text(self, line: bytes, flags: int = 0) -> None:
        mono = time.monotonic_ns()
        self.items.append((line, PRI_UNKNOWN, flags, SEQ_UNKNOWN, mono, time.time_ns()))

    def write(self, ring: Ring) -> int:
        """Append everything to *ring*; return how many log records."""
        done = 0
        for index, count, first, mono in self.gaps:
            ring.append_batch(self.items[done:index])
            ring.append_gap(count, first, mono_ns=mono)
            done = index
        ring.append_batch(self.items[done:])
        n = len(self.items)
        self.items, self.gaps = [], []
        return n


class Source(Protocol):
    """Where records come from."""

    #: What the START note and messages call it.
    name: str

    def fileno(self) -> int:
        """The descriptor to poll."""

    def read_into(self, batch: _Batch) -> bool:
        """Read what is available without blocking into *batch* (up to
        about :data:`BATCH` records); False at end of input."""


class KmsgSource:
    """/dev/kmsg, or any descriptor that returns one kmsg record per read
    (tests use a SOCK_SEQPACKET pair).

    Args:
        fd: open non-blocking descriptor; closed by :meth:`close`.
        last_seq: the last kernel sequence number already in the ring for
            this boot (records up to it are skipped), or None.
    """

    def __init__(self, fd: int, last_seq: int | None, name: str = "/dev/kmsg") -> None:
        self.fd = fd
        self.name = name
        self.seqs = _SeqTracker(last_seq)
        self.overruns = 0

    @classmethod
    def open(cls, last_seq: int | None, path: str = "/dev/kmsg") -> KmsgSource:
        """Open *path* from its oldest record."""
        return cls(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), last_seq, path)

    def fileno(self) -> int:
        """The descriptor."""
        return self.fd

    def read_into(self, batch: _Batch) -> bool:
        """Read records until none is ready (or :data:`BATCH` of them)."""
        offset = _boot_offset_ns()
        for _ in range(BATCH):
            try:
                raw = os.read(self.fd, _KMSG_READ)
            except BlockingIOError:
                return True
            except BrokenPipeError:
                # The kernel overwrote records we had not read; the seq jump
                # of the next record says how many.
                self.overruns += 1
                continue
            if not raw:
                return False
            rec = parse_kmsg(raw)
            if rec is not None:
                batch.add_kmsg(rec, offset, self.seqs)
        return True

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)


class LineParser:
    """Split a byte stream into records: one per line, or kmsg-format lines
    with their continuation lines.

    Args:
        fmt: ``text``, ``kmsg``, or ``auto`` (kmsg if the first line parses
            as one).
    """

    def __init__(self, fmt: str = "auto") -> None:
        self.fmt = fmt
        self._tail = b""
        self._pending: list[Any] | None = None  # pri, seq, usec, flags, text, dict lines

    def feed(self, chunk: bytes, batch: _Batch, seqs: _SeqTracker | None, offset: int,
             final: bool = False) -> None:
        """Parse *chunk* (and, with *final*, the unterminated rest) into
        *batch*.  A kmsg record is held back only while its continuation
        lines may still follow within the same chunk."""
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        body, tail = data[:cut], data[cut:]
        pieces = []
        while len(tail) > MAX_LINE:
            # Bounded memory: a line longer than MAX_LINE goes out in pieces,
            # each but the last flagged as a fragment.
            pieces.append(tail[:MAX_LINE])
            tail = tail[MAX_LINE:]
        if final and tail:
            body, tail = body + tail + b"\n", b""
        self._tail = tail
        if self.fmt == "auto" and body:
            first = body[:body.find(b"\n")]
            self.fmt = "kmsg" if parse_kmsg(first) is not None else "text"
        if self.fmt == "kmsg":
            self._kmsg_lines(body, batch, seqs, offset)
        elif body:
            add = batch.add_text
            for line in body[:-1].split(b"\n"):
                add(line)
        if pieces:
            self.flush(batch, seqs, offset)
            for piece in pieces:
                batch.add_text(piece, FLAG_CONT)
        if final or not self._tail:
            self.flush(batch, seqs, offset)

    def _kmsg_lines(self, body: bytes, batch: _Batch, seqs: _SeqTracker | None,
                    offset: int) -> None:
        """The hot path of ``record --source FILE``: one regex pass over the
        complete lines, no per-line objects but the record's own tuple."""
        pending = self._pending
        emit = self._emit
        for pri, seq, usec, flags, text, cont, other in _KMSG_LINE_RE.findall(body):
            if pri:
                if pending is not None:
                    emit(pending, batch, seqs, offset)
                pending = [pri, seq, usec, flags, text, None]
            elif cont:
                if pending is not None:
                    if pending[5] is None:
                        pending[5] = []
                    pending[5].append(cont[1:])
            elif other:
                if pending is not None:
                    emit(pending, batch, seqs, offset)
                    pending = None
                batch.add_text(other)
        self._pending = pending

    @staticmethod
    def _emit(p: list[Any], batch: _Batch, seqs: _SeqTracker | None, offset: int) -> None:
        seq = int(p[1])
        if seqs is not None:
            if seq < seqs.next:
                return
            if seq > seqs.next:
                missing = seq - seqs.next
                seqs.lost += missing
                batch.gaps.append((len(batch.items), missing, seqs.next, int(p[2]) * 1000))
            seqs.next = seq + 1
        text = p[4]
        if b"\\x" in text:
            text = unescape(text)
        flags = FLAG_CONT if p[3][:1] in (b"c", b"+") else 0
        if p[5]:
            text, flags = text + b"\0" + b"\n".join(p[5]), flags | FLAG_DICT
        mono = int(p[2]) * 1000
        batch.items.append((text, int(p[0]), flags, seq, mono, offset + mono))

    def flush(self, batch: _Batch, seqs: _SeqTracker | None, offset: int) -> None:
        """Emit a held-back kmsg record."""
        if self._pending is not None:
            self._emit(self._pending, batch, seqs, offset)
            self._pending = None


class StreamSource:
    """Text from a descriptor (stdin, a file, a FIFO) until end of input."""

    def __init__(self, fd: int, name: str, fmt: str = "auto",
                 last_seq: int | None = None) -> None:
        self.fd = fd
        self.name = name
        self.parser = LineParser(fmt)
        self.seqs = _SeqTracker(last_seq)
        with contextlib.suppress(OSError):
            os.set_blocking(fd, False)

    def fileno(self) -> int:
        """The descriptor."""
        return self.fd

    def read_into(self, batch: _Batch) -> bool:
        """Read up to 16 chunks that are ready; False at end of input."""
        offset = _boot_offset_ns()
        seqs = self.seqs if self.parser.fmt != "text" else None
        for _ in range(16):
            if len(batch.items) >= BATCH:
                return True
            try:
                chunk = os.read(self.fd, _STREAM_READ)
            except BlockingIOError:
                return True
            if not chunk:
                self.parser.feed(b"", batch, seqs, offset, final=True)
                return False
            self.parser.feed(chunk, batch, seqs, offset)
            seqs = self.seqs if self.parser.fmt != "text" else None
        return True

    def close(self) -> None:
        """Close the descriptor (not stdin's)."""
        if self.fd > 2:
            os.close(self.fd)


def sd_notify(state: str) -> bool:
    """Send *state* (``READY=1``...) to systemd's ``$NOTIFY_SOCKET``, as in
    systemd's man/notify-selfcontained-example.py; False without one."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


@dataclass
class RecorderStats:
    """What a run did.

    Attributes:
        records: log records appended.
        lost: records the source lost (sum of gap records).
        overruns: times /dev/kmsg reported EPIPE.
        stop: why it stopped: ``SIGTERM``, ``SIGINT``, ``end of input``.
    """

    records: int = 0
    lost: int = 0
    overruns: int = 0
    stop: str = ""


class Recorder:
    """Copy *source* into *ring* until a signal or the end of input.

    Args:
        ring: the attached ring.
        source: a :class:`KmsgSource` or :class:`StreamSource`.
        notify: called with sd_notify states (default :func:`sd_notify`).
    """

    def __init__(self, ring: Ring, source: KmsgSource | StreamSource,
                 notify: Callable[[str], object] = sd_notify) -> None:
        self.ring = ring
        self.source = source
        self.notify = notify
        self.stats = RecorderStats()
        self._signal: int | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum

    def run(self) -> RecorderStats:
        """Record until SIGTERM/SIGINT/SIGHUP or end of input; append a STOP
        note, flush, and return the stats.  Call from the main thread."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            return self._loop(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in old.items():
                signal.signal(s, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _loop(self, wake_r: int) -> RecorderStats:
        ring, source, stats = self.ring, self.source, self.stats
        ring.append_note(RecordType.START,
                         f"memconsole record: recording {source.name} (pid {os.getpid()})"
                         .encode())
        ring.flush()
        self.notify(f"READY=1\nSTATUS=recording {source.name} into {ring.region.spec}")
        poller = select.poll()
        poller.register(source.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        batch = _Batch()
        more = True
        while more and self._signal is None:
            try:
                events = poller.poll()
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if any(fd == wake_r for fd, _ in events):
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            if self._signal is not None:
                break
            if any(fd == source.fileno() for fd, _ in events):
                more = source.read_into(batch)
                stats.lost += sum(g[1] for g in batch.gaps)
                stats.records += batch.write(ring)
                ring.flush()
        stats.overruns = getattr(source, "overruns", 0)
        stats.stop = signal.Signals(self._signal).name if self._signal else "end of input"
        self.notify("STOPPING=1")
        ring.append_note(RecordType.STOP, f"memconsole record: stopped ({stats.stop})".encode())
        ring.flush()
        return stats


def open_source(spec: str, ring: Ring, fmt: str = "auto") -> KmsgSource | StreamSource:
    """``kmsg``, ``stdin`` or a path, positioned to continue this boot."""
    last = ring.last_source_seq()
    if spec in ("stdin", "-"):
        return StreamSource(0, "stdin", fmt, last)
    try:
        if spec == "kmsg":
            return KmsgSource.open(last)
        fd = os.open(spec, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        what = "/dev/kmsg" if spec == "kmsg" else spec
        hint = " (needs root or CAP_SYSLOG)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        raise ConfigError(f"cannot open source {what}: {exc.strerror}{hint}") from exc
    return StreamSource(fd, spec, fmt, last)
