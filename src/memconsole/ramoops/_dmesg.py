"""The dmesg record header ramoops writes at the start of a dmesg zone
(private; public names re-exported by :mod:`memconsole.ramoops`).

ramoops_write_kmsg_hdr() writes ``====<sec>.<usec>-<C|D>\\n`` and
ramoops_read_kmsg_hdr() (fs/pstore/ram.c) reads it back with vsscanf()
(lib/vsprintf.c), falling back to the older form without ``-C``/``-D``.
:func:`parse_dmesg_header` takes a fast path for the canonical form and
otherwise runs :func:`vsscanf`, a transcription of the kernel's; a
Hypothesis test checks that both agree.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "CANONICAL",
    "HDR_PLAIN",
    "HDR_WITH_TYPE",
    "DmesgHeader",
    "parse_dmesg_header",
    "vsscanf",
]

# The kernel's isspace(): _S for 9..13, 32 and 160 (lib/ctype.c).
_SPACE = frozenset((9, 10, 11, 12, 13, 32, 160))


class DmesgHeader(NamedTuple):
    """ramoops_read_kmsg_hdr()'s view of a dmesg zone.

    Attributes:
        length: header bytes (``%n``); 0 means "no valid header", and the
            kernel then zaps the zone instead of showing it.
        time_ns: ``tv_sec * 10**9 + usec * 1000``; 0 when absent.
        compressed: the ``-C`` marker.
    """

    length: int
    time_ns: int
    compressed: bool


def vsscanf(buf: bytes, fmt: list[str]) -> tuple[int, list[int], int]:
    """The subset of lib/vsprintf.c vsscanf() ramoops_read_kmsg_hdr() uses:
    literals, whitespace, %lld, %lu, %c and %n.  *buf* ends at its length as
    at a NUL.  Returns (conversions, values, %n position or 0)."""
    pos, num, n_pos = 0, 0, 0
    values: list[int] = []
    end = len(buf)

    def ch(i: int) -> int:
        return buf[i] if i < end else 0

    for item in fmt:
        if item == " ":
            while ch(pos) in _SPACE:
                pos += 1
            continue
        if not item.startswith("%"):
            for c in item.encode():
                if ch(pos) != c:
                    return num, values, n_pos
                pos += 1
            continue
        if item == "%n":
            n_pos = pos
            continue
        if ch(pos) == 0:
            break
        if item == "%c":
            values.append(ch(pos))
            pos += 1
            num += 1
            continue
        while ch(pos) in _SPACE:
            pos += 1
        signed = item == "%lld"
        start = pos
        if signed and ch(pos) == ord("-"):
            pos += 1
        if not 0x30 <= ch(pos) <= 0x39:
            break
        value = 0
        while 0x30 <= ch(pos) <= 0x39 and pos - start < 64:
            value = (value * 10 + ch(pos) - 0x30) % (1 << 64)
            pos += 1
        if signed and buf[start] == ord("-"):
            value = -value
        if signed and value >= 1 << 63:
            value -= 1 << 64
        values.append(value)
        num += 1
    return num, values, n_pos


#: ramoops_read_kmsg_hdr(): ``"====%lld.%lu-%c\\n%n"``, one item per directive.
HDR_WITH_TYPE = ["====", "%lld", ".", "%lu", "-", "%c", " ", "%n"]
#: The older form: ``"====%lld.%lu\\n%n"``.
HDR_PLAIN = ["====", "%lld", ".", "%lu", " ", "%n"]


# The form ramoops_write_kmsg_hdr() writes; vsscanf() reads it the same way
# (then skips whitespace for the "\n" directive, as below).
CANONICAL = re.compile(rb"====(\d{1,18})\.(\d{1,18})-([^\0])", re.DOTALL)


def parse_dmesg_header(old_log: bytes) -> DmesgHeader:
    """ramoops_read_kmsg_hdr(): ``====<sec>.<usec>-<C|D>\\n`` (or the older
    form without ``-C``/``-D``) at the start of a dmesg zone.  Note that the
    ``\\n`` directive skips every whitespace byte that follows, as the kernel
    does, even when it belongs to the record."""
    head = old_log[:96]  # "====" + %lld(20) + "." + %lu(20) + "-C\n" and spaces
    m = CANONICAL.match(head)
    if m:
        pos = m.end()
        while pos < len(head) and head[pos] in _SPACE:
            pos += 1
        if pos < len(head):
            return DmesgHeader(pos, int(m.group(1)) * 10**9 + int(m.group(2)) * 1000,
                               m.group(3) == b"C")
    num, vals, n = vsscanf(head, HDR_WITH_TYPE)
    if num == 3:
        return DmesgHeader(n, vals[0] * 10**9 + vals[1] * 1000, vals[2] == ord("C"))
    num, vals, n = vsscanf(head, HDR_PLAIN)
    if num == 2:
        return DmesgHeader(n, vals[0] * 10**9 + vals[1] * 1000, False)
    return DmesgHeader(0, 0, False)
