"""Presentation helpers shared by the commands: kernel text for people and
JSON Lines for programs.

The one policy for bytes that are not UTF-8, in JSON and on a terminal:
they appear as ``\\xNN`` escapes (Python's ``backslashreplace``).  Kernel
text arrives as ``bytes``; file names and paths arrive as ``str`` in which
Python keeps undecodable bytes as lone surrogates (``surrogateescape``):
both are turned into the same ``\\xNN`` form, so no lone surrogate ever
reaches a JSON parser.  A literal backslash in the input is doubled only by
JSON's own escaping.

Text for a terminal goes through :func:`escape`, which prints what util-linux
``dmesg`` prints (sys-utils/dmesg.c ``safe_fwrite()``/``fwrite_hex()``):
every byte of a character that is not printable, or not UTF-8, or that the
output's encoding cannot show, becomes ``\\xNN``, so a record name or a
kernel message can never send a terminal control sequence (``ESC c``,
colours, a C1 CSI) or break a line that the layout did not break.  JSON
Lines (:func:`json_line`, :func:`write_jsonl`) are 7-bit: controls and
non-ASCII characters are JSON's own ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
import sys
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dmesg_text", "escape", "json_line", "json_safe", "output_encoding", "text",
           "write_jsonl", "write_text"]

_PREFIX_RE = re.compile(rb"^<\d{1,3}>", re.MULTILINE)

# Characters escape() looks at: all but printable ASCII (and, in a log's
# layout, tab and newline).
_SUSPECT = re.compile(r"[^\x20-\x7e]")
_SUSPECT_LAYOUT = re.compile(r"[^\t\n\x20-\x7e]")


def text(data: bytes | str) -> str:
    """Kernel bytes, or an OS string such as a file name, as a str for JSON
    or a terminal: bytes that are not UTF-8 become ``\\xNN``."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            # Surrogates that do not stand for a byte: keep them visible.
            raw = data.encode("utf-8", "backslashreplace")
    else:
        raw = data
    return raw.decode("utf-8", "backslashreplace")


def json_safe(obj: Any) -> Any:
    """*obj* with every string (keys included) and bytes value passed through
    :func:`text`, recursively through dicts, lists and tuples."""
    if isinstance(obj, (str, bytes)):
        return text(obj)
    if isinstance(obj, dict):
        return {text(k) if isinstance(k, str) else k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@functools.lru_cache(maxsize=4096)
def _escape_char(c: str, encoding: str) -> str:
    """One character :func:`escape` looked at, as it is printed."""
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o >= 0xA0 and c.isprintable():
        try:
            c.encode(encoding)
            return c
        except UnicodeEncodeError:
            pass
    # dmesg's fwrite_hex(): every byte of the character.
    return "".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogatepass"))


def escape(data: bytes | str, *, layout: bool = False, encoding: str = "utf-8") -> str:
    """*data* (kernel bytes, or a str such as a file name, a headline) made
    safe to print, as util-linux ``dmesg`` prints kernel text.

    Every character that is not printable becomes ``\\xNN`` per byte of its
    UTF-8 form: the C0 controls (``ESC`` as ``\\x1b``, ``CR`` as ``\\x0d``),
    ``DEL``, the C1 controls (``\\xc2\\x9b``), and what Unicode does not class
    as printable (format characters such as bidirectional overrides,
    separators other than the space).  Bytes that are not UTF-8, and
    characters *encoding* (the output's) cannot represent, become ``\\xNN``
    too.  With *layout*, tab and newline are kept: they are the layout of a
    log; without it (names, one-line fields) they are escaped as well.
    Backslashes are left as they are, as dmesg leaves them.
    """
    s = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    pattern = _SUSPECT_LAYOUT if layout else _SUSPECT
    if pattern.search(s) is None:
        return s
    enc = codecs.lookup(encoding).name
    return pattern.sub(lambda m: _escape_char(m.group(), enc), s)


def output_encoding() -> str:
    """The encoding of stdout (UTF-8 when it does not say)."""
    return getattr(sys.stdout, "encoding", None) or "utf-8"


def write_text(data: bytes | str, *, layout: bool = False) -> None:
    """Write *data* to stdout through :func:`escape`, for stdout's encoding
    (so it never fails to encode, whatever the locale)."""
    sys.stdout.write(escape(data, layout=layout, encoding=output_encoding()))


def dmesg_text(data: bytes) -> bytes:
    """A dumped log as ``dmesg`` shows it: the ``<N>`` syslog level prefixes
    pstore_dump() writes are removed."""
    return _PREFIX_RE.sub(b"", data)


def json_line(obj: dict[str, Any]) -> str:
    """One JSON Lines line of *obj*: compact, strings made safe by
    :func:`json_safe`, 7-bit (non-ASCII and control characters as JSON
    ``\\uXXXX`` escapes), newline-terminated."""
    return json.dumps(json_safe(obj), ensure_ascii=True) + "\n"


def write_jsonl(objects: Iterable[dict[str, Any]]) -> None:
    """Write one :func:`json_line` per object to stdout."""
    out = sys.stdout
    for obj in objects:
        out.write(json_line(obj))
    out.flush()
