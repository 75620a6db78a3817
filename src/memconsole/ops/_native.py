"""The journal's native protocol, client side, as ``sd_journal_sendv()``
speaks it (systemd ``src/libsystemd/sd-journal/journal-send.c``).

One entry is one datagram to ``/run/systemd/journal/socket`` holding its
fields, each either ``KEY=VALUE\\n`` or, when the value contains a newline,
the binary-safe form
``KEY\\n<64-bit little-endian length><VALUE>\\n``.  An entry too large for
a datagram (``EMSGSIZE``, ``ENOBUFS``, ``EAGAIN``) is written to a sealed
memfd whose descriptor is passed instead (``SCM_RIGHTS``); journald accepts
a memfd only when it is sealed (``journald-native.c``).

:func:`encode` is pure; :func:`send` does the I/O.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

__all__ = ["JOURNAL_SOCKET", "SNDBUF", "encode", "field_name_ok", "send"]

#: Where journald listens for native entries.
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
#: Send buffer asked for, as ``sd_journal`` does (``SNDBUF_SIZE``); the
#: kernel caps it at ``net.core.wmem_max``.
SNDBUF = 8 << 20

# journal_field_valid() (src/libsystemd/sd-journal/journal-file.c): at most 64
# characters, upper-case letters, digits and '_', not starting with a digit.
# A leading '_' marks a trusted field journald adds itself; from a client it
# is dropped, so it is refused here.
_FIELD_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
# What journald's datagram path retries as a memfd (journal-send.c).
_TOO_BIG = (errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN)
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def field_name_ok(name: str) -> bool:
    """Whether journald keeps a field of this name from a client."""
    return _FIELD_RE.match(name) is not None


def encode(fields: Iterable[tuple[str, bytes]]) -> bytes:
    """One entry in the native protocol.

    A value with a newline takes the binary-safe form, as in
    ``sd_journal_sendv()``; any other byte may stand in a ``KEY=VALUE`` line.  Raises
    ``ValueError`` for a field name journald would drop.
    """
    out = bytearray()
    for name, value in fields:
        if not field_name_ok(name):
            raise ValueError(f"journal field name {name!r} is not valid")
        key = name.encode("ascii")
        if b"\n" in value:
            out += key + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        else:
            out += key + b"=" + value + b"\n"
    return bytes(out)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("memconsole-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def send(entry: bytes, path: Path = JOURNAL_SOCKET, sndbuf: int = SNDBUF) -> bool:
    """Send one encoded entry to the journal at *path*.

    Returns False when no journal listens there (the socket is missing or
    refuses: ``sd_journal_sendv()`` treats that as success, the caller here
    decides); raises ``OSError`` for any other failure.  An entry the
    datagram cannot carry goes as a sealed memfd.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        try:
            sock.sendto(entry, str(path))
            return True
        except FileNotFoundError:
            return False
        except ConnectionRefusedError:
            return False
        except OSError as exc:
            if exc.errno not in _TOO_BIG:
                raise
        fd = _memfd(entry)
        try:
            sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))],
                          0, str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        finally:
            os.close(fd)
    return True
