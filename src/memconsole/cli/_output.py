"""What the commands print besides their data: one-line diagnostics and a
progress line on long work.  stdout carries data; all of this goes to stderr,
and the progress line only when stderr is a terminal."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "warn"]

#: Work smaller than this finishes too fast for a progress line.
PROGRESS_MIN = 4 << 20


def warn(command: str, message: str) -> None:
    """One diagnostic line on stderr: ``memconsole COMMAND: MESSAGE``."""
    print(f"memconsole {command}: {message}", file=sys.stderr)


class Progress:
    """``memconsole CMD: LABEL: 512/1024 MiB (50%)`` on stderr, rewritten in
    place at most 5 times a second; silent unless stderr is a terminal and
    the work is at least :data:`PROGRESS_MIN` bytes.  Call it with the bytes
    done (and optionally a new total); :meth:`close` erases the line."""

    def __init__(self, command: str, label: str, total: int = 0) -> None:
        self.command, self.label, self.total = command, label, total
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        now = time.monotonic()
        if not self.enabled or self.total < PROGRESS_MIN or now - self._last < 0.2:
            return
        self._last = now
        pct = 100 * done // max(self.total, 1)
        sys.stderr.write(f"\rmemconsole {self.command}: {self.label}: "
                         f"{done >> 20}/{self.total >> 20} MiB ({pct}%)\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        """Erase the progress line (if one was drawn)."""
        if self.enabled and self._last:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._last = 0.0
