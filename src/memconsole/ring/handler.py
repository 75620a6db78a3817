"""A :class:`logging.Handler` that keeps a Python program's last words in a
memconsole ring, so they survive the program's (or, with a memory-backed
ring, the machine's) crash.

    import logging
    from memconsole.ring.handler import RingHandler

    logging.getLogger().addHandler(RingHandler("/var/lib/myapp/ring", ring_size=4 << 20))

Each log record becomes one ring record: the formatted message (UTF-8,
undecodable characters as ``\\xNN``), the syslog priority (facility
``user`` and the level mapped from the logging level), the record's own
creation time and the monotonic clock.  ``memconsole show --ring PATH``
reads it back.

A record is in the ring's memory when :meth:`RingHandler.emit` returns: a
killed process loses nothing it logged.  For a file ring to survive a power
loss, or a pmem ring a reset, pass ``sync=True`` (an msync per record) or
call :meth:`RingHandler.flush` at the points that matter.
"""

from __future__ import annotations

import logging

from memconsole.ring import Ring
from memconsole.ring.regions import Region, open_region

__all__ = ["RingHandler", "syslog_level"]

#: syslog facility ``user`` (RFC 5424), the one /dev/kmsg gives user messages.
FACILITY_USER = 1


def syslog_level(levelno: int) -> int:
    """The syslog level (0 emerg .. 7 debug) of a :mod:`logging` level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class RingHandler(logging.Handler):
    """Append every log record to a ring.

    Args:
        ring: an attached :class:`~memconsole.ring.Ring`, or a ring spec (a
            file path, a pmem device or ``mem:ADDR:SIZE``) to open and attach
            (and close with the handler).
        level: the handler's level.
        ring_size: size of a ring file that does not exist yet.
        sync: flush (msync) after every record.
        facility: syslog facility number stored with each record.
    """

    def __init__(self, ring: Ring | str, level: int = logging.NOTSET, *,
                 ring_size: int | None = None, sync: bool = False,
                 facility: int = FACILITY_USER) -> None:
        super().__init__(level)
        self._region: Region | None = None
        if isinstance(ring, str):
            region = open_region(ring, write=True, create_size=ring_size)
            try:
                ring = Ring.attach(region)
            except BaseException:
                region.close()
                raise
            self._region = region
        self.ring = ring
        self.sync = sync
        self._closed = False
        self._pri = [facility << 3 | syslog_level(n) for n in range(0, 60)]

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record* and append it (the logging lock is held)."""
        if self._closed:
            return
        try:
            text = self.format(record).encode("utf-8", "backslashreplace")
            n = record.levelno
            pri = self._pri[n] if 0 <= n < 60 else self._pri[59]
            created = getattr(record, "created_ns", None) or int(record.created * 1e9)
            self.ring.append(text, pri=pri, time_ns=created)
            if self.sync:
                self.ring.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Flush what was appended (msync for file and pmem rings)."""
        self.acquire()
        try:
            if not self._closed:
                self.ring.flush()
        finally:
            self.release()

    def close(self) -> None:
        """Flush; close the ring if this handler opened it."""
        try:
            self.flush()
            self._closed = True
            if self._region is not None:
                self.ring.close()
                self._region.close()
                self._region = None
        finally:
            super().close()
