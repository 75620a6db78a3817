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
import select
import signal
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from memconsole.errors import ConfigError
from memconsole.ring import Ring
from memconsole.ring._kmsg import (
    MAX_LINE,
    Batch,
    KmsgRecord,
    LineParser,
    SeqTracker,
    parse_kmsg,
    unescape,
)
from memconsole.ring.format import (
    RecordType,
)

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
#: A /dev/kmsg record is at most CONSOLE_EXT_LOG_MAX (8 KiB) in 6.x.
_KMSG_READ = 16 * 1024
_STREAM_READ = 64 * 1024
#: /dev/kmsg's device number (drivers/char/mem.c devlist).
_KMSG_DEV = (1, 11)
def _boot_offset_ns() -> int:
    """Wall clock minus monotonic clock: turns a kmsg timestamp into a time."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Source(Protocol):
    """Where records come from."""

    #: What the START note and messages call it.
    name: str

    def fileno(self) -> int:
        """The descriptor to poll."""

    def read_into(self, batch: Batch) -> bool:
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
        self.seqs = SeqTracker(last_seq)
        self.overruns = 0

    def resume(self, last_seq: int | None) -> None:
        """Skip records up to kernel sequence number *last_seq* (what the
        ring already holds for this boot)."""
        self.seqs = SeqTracker(last_seq)

    @classmethod
    def open(cls, last_seq: int | None, path: str = "/dev/kmsg") -> KmsgSource:
        """Open *path* from its oldest record."""
        return cls(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), last_seq, path)

    def fileno(self) -> int:
        """The descriptor."""
        return self.fd

    def read_into(self, batch: Batch) -> bool:
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


class StreamSource:
    """Text from a descriptor (stdin, a file, a FIFO) until end of input."""

    def __init__(self, fd: int, name: str, fmt: str = "auto",
                 last_seq: int | None = None) -> None:
        self.fd = fd
        self.name = name
        self.parser = LineParser(fmt)
        self.seqs = SeqTracker(last_seq)
        with contextlib.suppress(OSError):
            os.set_blocking(fd, False)

    def resume(self, last_seq: int | None) -> None:
        """Skip kmsg-format records up to sequence number *last_seq*."""
        self.seqs = SeqTracker(last_seq)

    def fileno(self) -> int:
        """The descriptor."""
        return self.fd

    def read_into(self, batch: Batch) -> bool:
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
        stop: why it stopped: ``SIGTERM``, ``SIGINT``, ``end of input``,
            or the source's read error.
        error: the read error that stopped it (with its reason), or ``""``.
    """

    records: int = 0
    lost: int = 0
    overruns: int = 0
    stop: str = ""
    error: str = ""


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
        batch = Batch()
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
                try:
                    more = source.read_into(batch)
                except OSError as exc:
                    # What was read before the error is still recorded.
                    stats.error = f"cannot read {source.name}: {exc.strerror}"
                    more = False
                stats.lost += sum(g[1] for g in batch.gaps)
                stats.records += batch.write(ring)
                ring.flush()
        stats.overruns = getattr(source, "overruns", 0)
        stats.stop = stats.error or (signal.Signals(self._signal).name if self._signal
                                     else "end of input")
        self.notify("STOPPING=1")
        ring.append_note(RecordType.STOP, f"memconsole record: stopped ({stats.stop})".encode())
        ring.flush()
        return stats


def _stream_kind(st: os.stat_result) -> str | None:
    """Why a source path may not be read, or None: a regular file or a FIFO
    only.  Opening a device can act on it (a watchdog starts counting);
    /dev/kmsg itself is ``--source kmsg``."""
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    if stat.S_ISCHR(mode):
        return f"a character device ({os.major(st.st_rdev)}:{os.minor(st.st_rdev)})"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a socket" if stat.S_ISSOCK(mode) else f"a file of type {stat.S_IFMT(mode):#o}"


def open_source(spec: str, fmt: str = "auto", last_seq: int | None = None
                ) -> KmsgSource | StreamSource:
    """Open the source ``kmsg`` (/dev/kmsg), ``stdin`` (or ``-``), or a
    path: a regular file or a FIFO, looked at (``stat``) before it is opened
    and opened non-blocking (a FIFO without a writer does not hang), its
    ``fstat`` the inode looked at.  Records up to *last_seq* are skipped
    (or later: the source's ``resume``).  Raises :class:`ConfigError` with
    the reason."""
    if spec in ("stdin", "-"):
        try:
            os.fstat(0)
        except OSError as exc:
            raise ConfigError(f"cannot read source stdin: {exc.strerror}") from exc
        return StreamSource(0, "stdin", fmt, last_seq)
    what = "/dev/kmsg" if spec == "kmsg" else spec
    try:
        if spec == "kmsg":
            return KmsgSource.open(last_seq)
        st = os.stat(spec)
        if stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == _KMSG_DEV:
            return KmsgSource.open(last_seq, spec)
        kind = _stream_kind(st)
        if kind is not None:
            raise ConfigError(f"source {spec}: {kind}, not a regular file or a FIFO; not "
                              "opening it (use --source kmsg for the kernel log, --source "
                              "stdin for a pipe)")
        fd = os.open(spec, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        hint = " (needs root or CAP_SYSLOG)" if exc.errno in (errno.EACCES, errno.EPERM) \
            and spec == "kmsg" else ""
        raise ConfigError(f"cannot open source {what}: {exc.strerror}{hint}") from exc
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise ConfigError(f"source {spec}: replaced while it was being opened")
    return StreamSource(fd, spec, fmt, last_seq)
