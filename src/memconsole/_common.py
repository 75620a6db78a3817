"""What every subsystem needs exactly once: the size grammar and the
durable write.

One spelling of a size is accepted everywhere a size is given (``record
--ring-size``, ``decode --mem-size``, ``setup --size``, ``mem:ADDR:SIZE``
ring specs): a decimal or ``0x`` hexadecimal count of bytes, optionally
followed by a binary unit ``K``, ``M``, ``G``, ``T`` (case-insensitive,
``KiB``/``MiB``/``KB`` spellings too; every unit is a power of 1024, as the
kernel's ``memparse()`` reads ``memmap=`` and ``ramoops.mem_size``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from memconsole.errors import ConfigError

# The interpreter's own SHA-256 where it has one: hashlib's loads the OpenSSL
# library, about a fifth of a bare interpreter's start, which every collect
# and show would pay (docs/benchmarks.md, start-up).  Same digests.
try:
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python < 3.12
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # an interpreter built without it
        from hashlib import sha256 as _sha256  # type: ignore[assignment,unused-ignore]


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of *data* (``hashlib.sha256(data).hexdigest()``)."""
    return str(_sha256(data).hexdigest())

__all__ = ["SIZE_EXAMPLES", "fsync_dir", "is_temp_name", "parse_size", "size_arg", "temp_path",
           "write_durably"]

#: Shown in every error about a size.
SIZE_EXAMPLES = "examples: 4096, 0x100000, 64K, 1M, 1MiB, 2G"

_SIZE_RE = re.compile(r"^(0[xX][0-9a-fA-F]+|\d+)\s*([KkMmGgTt]?)(?:i?[Bb])?$")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
# The temporary names write_durably() uses: ".NAME.tmpPID.HEX8".
_TEMP_RE = re.compile(r"^\..+\.tmp\d+\.[0-9a-f]{8}$", re.DOTALL)


def parse_size(text: str) -> int:
    """``1M``, ``0x100000``, ``65536``, ``64K``, ``1MiB`` -> bytes.

    Raises :class:`ConfigError` for anything else (negative, fractional,
    unknown unit, empty).
    """
    m = _SIZE_RE.match(text.strip())
    if m is None:
        raise ConfigError(f"bad size {text!r} ({SIZE_EXAMPLES})")
    return int(m.group(1), 0) << _SHIFT[m.group(2).lower()]


def size_arg(text: str) -> int:
    """:func:`parse_size` as an argparse ``type=``: a bad size is a usage
    error (one line, exit status 2), never a traceback."""
    try:
        return parse_size(text)
    except ConfigError as exc:
        import argparse  # only a command line calls this

        raise argparse.ArgumentTypeError(str(exc)) from None


def fsync_dir(path: Path) -> None:
    """fsync the directory *path*, so the names created in it survive a
    power cut (a file's own fsync does not make its directory entry durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside *path*, as :func:`write_durably` uses:
    ``.NAME.tmpPID.HEX8`` (the pid and 32 random bits make it unique; the
    leading dot keeps it out of a reader's way)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}.{os.urandom(4).hex()}")


def is_temp_name(name: str) -> bool:
    """Whether *name* is one of :func:`temp_path`'s names: what a killed
    writer leaves behind, to be removed by the next writer that holds the
    directory's lock."""
    return _TEMP_RE.match(name) is not None


def write_durably(path: Path, data: bytes, mtime_ns: int | None = None,
                  mode: int = 0o600, sync_dir: bool = True) -> None:
    """Write *data* to *path* atomically and durably: a new temporary file
    beside it (``O_EXCL | O_NOFOLLOW``: a planted file or symlink of that
    name is never written through), fsync, rename over *path* (a symlink at
    *path* is replaced, never followed), fsync the directory.  On failure
    nothing is left behind and the error propagates; a writer killed
    midway leaves only the temporary file (see :func:`is_temp_name`).

    With *sync_dir* false the directory is not fsynced: the new name is
    durable only once the caller fsyncs the directory (one fsync for the
    names of many files, :meth:`memconsole.archive.Archive.store_all`)."""
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
