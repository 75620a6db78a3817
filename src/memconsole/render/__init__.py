"""Presentation helpers shared by the commands: kernel text for people and
JSON Lines for programs.

The one policy for bytes that are not UTF-8, in JSON and on a terminal:
they appear as ``\\xNN`` escapes (Python's ``backslashreplace``).  Kernel
text arrives as ``bytes``; file names and paths arrive as ``str`` in which
Python keeps undecodable bytes as lone surrogates (``surrogateescape``):
both are turned into the same ``\\xNN`` form, so no lone surrogate ever
reaches a JSON parser.  A literal backslash in the input is doubled only by
JSON's own escaping.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["dmesg_text", "json_safe", "text", "write_jsonl"]

_PREFIX_RE = re.compile(rb"^<\d{1,3}>", re.MULTILINE)


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


def dmesg_text(data: bytes) -> bytes:
    """A dumped log as ``dmesg`` shows it: the ``<N>`` syslog level prefixes
    pstore_dump() writes are removed."""
    return _PREFIX_RE.sub(b"", data)


def write_jsonl(objects: Iterable[dict[str, Any]]) -> None:
    """Write one compact JSON object per line to stdout (strings made safe
    by :func:`json_safe`)."""
    out = sys.stdout
    for obj in objects:
        out.write(json.dumps(json_safe(obj), ensure_ascii=False) + "\n")
    out.flush()
