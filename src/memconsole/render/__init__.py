"""Presentation helpers shared by the commands: kernel text for people and
JSON Lines for programs.

JSON output represents kernel text as a JSON string; bytes that are not valid
UTF-8 appear as ``\\xNN`` escapes (Python's ``backslashreplace``), so a
literal backslash in the kernel text is doubled only by JSON's own escaping.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["dmesg_text", "text", "write_jsonl"]

_PREFIX_RE = re.compile(rb"^<\d{1,3}>", re.MULTILINE)


def text(data: bytes) -> str:
    """Kernel bytes as a str for JSON or a terminal (non-UTF-8 as ``\\xNN``)."""
    return data.decode("utf-8", "backslashreplace")


def dmesg_text(data: bytes) -> bytes:
    """A dumped log as ``dmesg`` shows it: the ``<N>`` syslog level prefixes
    pstore_dump() writes are removed."""
    return _PREFIX_RE.sub(b"", data)


def write_jsonl(objects: Iterable[dict[str, Any]]) -> None:
    """Write one compact JSON object per line to stdout."""
    out = sys.stdout
    for obj in objects:
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()
