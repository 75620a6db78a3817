"""The configuration file, ``/etc/memconsole.conf``: one reader, every key
with its default.

The file is optional.  Lines are ``KEY = VALUE``; a line whose first
non-blank character is ``#`` is a comment, and so is a blank line (a ``#``
after a value is part of the value: paths may hold one).  Keys are the
fields of :class:`Config`; ``memconsole setup`` writes its own between
:data:`SETUP_BEGIN` and :data:`SETUP_END`, and the template it starts from
(:func:`template`, package data ``memconsole.conf``) lists every key with
its default, commented out.

A broken file never stops a command: :func:`load` never raises for what a
file holds.  An unreadable file is one warning and the defaults; an unknown
key, a line that is not ``KEY = VALUE`` or a bad value is one warning each,
and that key keeps its default.  The warnings travel in
:attr:`Config.warnings` for the caller to print (library code never logs).

Standard library only, and cheap to import: ``collect`` reads it in early
boot.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, fields, replace
from pathlib import Path

from memconsole._common import fsync_dir, parse_size, temp_path
from memconsole.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "KEYS",
    "METHODS",
    "SETUP_BEGIN",
    "SETUP_END",
    "Config",
    "default_path",
    "load",
    "parse",
    "template",
    "write_template",
]

#: Where the configuration lives.
DEFAULT_CONFIG_PATH = Path("/etc/memconsole.conf")
#: Environment variable naming another configuration file (tests, the VM lab).
CONFIG_ENV = "MEMCONSOLE_CONFIG"
#: The lines around what ``memconsole setup`` writes.
SETUP_BEGIN = "# BEGIN memconsole setup"
SETUP_END = "# END memconsole setup"
#: The reservation methods ``memconsole setup`` knows (``none``: setup has
#: not reserved anything).
METHODS = ("memmap", "reserve-mem", "none")
#: Bytes read at most: a configuration is a few hundred bytes.
MAX_CONFIG_SIZE = 64 * 1024
_TEMPLATE = Path(__file__).with_name("memconsole.conf")
_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_PAGE = 4096


@dataclass(frozen=True)
class Config:
    """The configuration in force: the file's values over the defaults.

    Attributes:
        archive: the memconsole archive directory (``collect``, ``show``,
            ``list``, the canary's results).
        ring: the recorder's ring (``mem:ADDR:SIZE``, a pmem device or a
            file), or ``None``: no ring.
        canary: the survival canary's page (``mem:ADDR:4096`` at the end of
            the reserved range, or a file), or ``None``.
        ramoops: the range ramoops was given, ``mem:ADDR:SIZE``, or
            ``None`` (setup has not run).
        method: how setup reserved the range: ``memmap``, ``reserve-mem``
            or ``none``.
        panic: the ``panic=N`` setup put on the kernel command line (seconds
            before the reboot that keeps the RAM).
        source: the file read, or ``None`` (defaults only).
        warnings: one line per problem found in the file, in file order.
    """

    archive: Path = Path("/var/lib/memconsole")
    ring: str | None = None
    canary: str | None = None
    ramoops: str | None = None
    method: str = "none"
    panic: int = 10
    source: Path | None = None
    warnings: tuple[str, ...] = ()


#: The keys a file may set, in the order the template lists them.
KEYS: tuple[str, ...] = tuple(f.name for f in fields(Config)
                              if f.name not in ("source", "warnings"))


def _path(value: str) -> Path:
    if not value.startswith("/"):
        raise ConfigError(f"{value!r} is not an absolute path")
    return Path(value)


def _mem_spec(value: str) -> tuple[int, int]:
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != "mem":
        raise ConfigError(f"{value!r} is not mem:ADDR:SIZE")
    try:
        address = int(parts[1], 0)
    except ValueError:
        raise ConfigError(f"bad address {parts[1]!r} in {value!r}") from None
    size = parse_size(parts[2])
    if address % _PAGE or size % _PAGE or size == 0 or address < 0:
        raise ConfigError(f"{value!r}: address and size must be non-zero multiples of "
                          f"{_PAGE:#x}")
    return address, size


def _region(value: str) -> str | None:
    """A ring or canary: ``none``, ``mem:ADDR:SIZE`` or an absolute path."""
    if value.lower() == "none":
        return None
    if value.startswith("mem:"):
        _mem_spec(value)
        return value
    return str(_path(value))


def _canary(value: str) -> str | None:
    spec = _region(value)
    if spec is not None and spec.startswith("mem:") and _mem_spec(spec)[1] != _PAGE:
        raise ConfigError(f"{value!r}: a canary is one page, mem:ADDR:{_PAGE}")
    return spec


def _ramoops(value: str) -> str | None:
    if value.lower() == "none":
        return None
    _mem_spec(value)
    return value


def _method(value: str) -> str:
    if value not in METHODS:
        raise ConfigError(f"{value!r} is not one of {', '.join(METHODS)}")
    return value


def _panic(value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise ConfigError(f"{value!r} is not a whole number of seconds") from None


_CONVERT = {"archive": _path, "ring": _region, "canary": _canary, "ramoops": _ramoops,
            "method": _method, "panic": _panic}


def parse(text: str, source: Path | None = None) -> Config:
    """The configuration *text* describes, over the defaults; never raises.

    Each problem is one line of :attr:`Config.warnings` (``FILE:LINE: ...``),
    and the key it concerns keeps its default (or its earlier value).
    """
    where = str(source) if source is not None else "<config>"
    values: dict[str, object] = {}
    seen: dict[str, int] = {}
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE_RE.match(line)
        if m is None:
            warnings.append(f"{where}:{number}: not KEY = VALUE: {line[:80]!r}; ignored")
            continue
        key, value = m.group(1), m.group(2)
        if key not in _CONVERT:
            warnings.append(f"{where}:{number}: unknown key {key!r} (known: "
                            f"{', '.join(KEYS)}); ignored")
            continue
        try:
            values[key] = _CONVERT[key](value)
        except ConfigError as exc:
            default = getattr(Config(), key)
            warnings.append(f"{where}:{number}: {key}: {exc}; using "
                            f"{_show(values.get(key, default))}")
            continue
        if key in seen:
            warnings.append(f"{where}:{number}: {key} set again (first on line "
                            f"{seen[key]}); this one counts")
        seen[key] = number
    return replace(Config(), source=source, warnings=tuple(warnings), **values)  # type: ignore[arg-type]


def _show(value: object) -> str:
    return "none" if value is None else str(value)


def default_path() -> Path:
    """``$MEMCONSOLE_CONFIG`` when set, else :data:`DEFAULT_CONFIG_PATH`."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load(path: Path | None = None) -> Config:
    """Read the configuration file (*path*, or :func:`default_path`) and
    return the configuration in force; never raises for what the file holds.

    A missing file is the defaults, silently (a machine before ``setup``).
    A file that cannot be read (permissions, a directory, a FIFO, not
    UTF-8, larger than :data:`MAX_CONFIG_SIZE`) is one warning and the
    defaults.
    """
    path = default_path() if path is None else path
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang early boot.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        return _unreadable(path, exc.strerror or str(exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _unreadable(path, "not a regular file")
        data = os.read(fd, MAX_CONFIG_SIZE + 1)
    except OSError as exc:
        reason = "a directory" if exc.errno == errno.EISDIR else exc.strerror or str(exc)
        return _unreadable(path, reason)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_SIZE:
        return _unreadable(path, f"larger than {MAX_CONFIG_SIZE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _unreadable(path, f"not UTF-8 (byte {exc.start})")
    return parse(text, path)


def _unreadable(path: Path, reason: str) -> Config:
    return Config(source=None, warnings=(f"{path}: cannot read the configuration ({reason}); "
                                         "using the defaults",))


def template() -> str:
    """The shipped template: every key with its default, commented out."""
    return _TEMPLATE.read_text(encoding="utf-8")


def write_template(path: Path | None = None) -> bool:
    """Write :func:`template` to *path* (default :func:`default_path`) when
    no file is there; return whether it was written.  Never replaces a
    file: the new file is made complete beside it, then linked into place
    (``link`` fails when the name exists), and the directory is fsynced."""
    path = default_path() if path is None else path
    if os.path.lexists(path):
        return False
    tmp = temp_path(path)
    data = template().encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True
