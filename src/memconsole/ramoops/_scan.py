"""dmesg records found without any zone header (private; public names
re-exported by :mod:`memconsole.ramoops`).

When no zone header survives, the records themselves still start with the
line ramoops_write_kmsg_hdr() (fs/pstore/ram.c) writes,
``====<sec>.<usec>-<C|D>\\n``.  :func:`scan_headerless` finds those lines
anywhere in an image and recovers what follows: a compressed record ends
where its deflate stream ends, a plain one at the first NUL (the kernel
zaps a dmesg zone before writing it).

The scan is linear: the header pattern is matched by the regular
expression engine, a record found is not searched again for headers, each
candidate reads at most ``max_out`` bytes, and all candidates together
feed at most four bytes of input per image byte to inflate.
"""

from __future__ import annotations

from memconsole.pstore.compress import inflate
from memconsole.ramoops._detect import find_bytes
from memconsole.ramoops._dmesg import CANONICAL, parse_dmesg_header
from memconsole.ramoops._geometry import Buffer, Progress, ZoneKind
from memconsole.ramoops._records import Record

__all__ = ["MAX_RECOVERED", "scan_headerless"]

#: Records :func:`scan_headerless` returns at most.
MAX_RECOVERED = 4096
_CHUNK = 16 << 20
_HEAD = 96  # "====" + %lld + "." + %lu + "-C\n" and the whitespace after it


def scan_headerless(image: Buffer, start: int = 0, end: int | None = None,
                    max_out: int = 3 << 20, progress: Progress | None = None
                    ) -> tuple[Record, ...]:
    """``--scan`` when no zone header survives at all: find dmesg records by
    their ``====sec.usec-C|D`` line anywhere in *image* and recover them.
    Compressed ones end where their deflate stream ends; plain ones at the
    first NUL.  Records are numbered in image order and marked recovered."""
    mv = image if isinstance(image, memoryview) else memoryview(image)
    end = len(mv) if end is None else min(end, len(mv))
    start = max(start, 0)
    budget = 4 * max(end - start, 0) + (16 << 20)  # inflate input, all candidates
    out: list[Record] = []
    covered = start  # bytes below this belong to a record already recovered
    pos = start
    while pos < end and len(out) < MAX_RECOVERED and budget > 0:
        stop = min(end, pos + _CHUNK)
        chunk = bytes(mv[pos:min(end, stop + _HEAD)])
        m = CANONICAL.search(chunk, max(covered - pos, 0))
        while m is not None:
            at = pos + m.start()
            if at >= stop or len(out) >= MAX_RECOVERED or budget <= 0:
                break
            m = CANONICAL.search(chunk, m.start() + 1)
            hdr = parse_dmesg_header(chunk[at - pos:at - pos + _HEAD])
            if not hdr.length:
                continue
            body_at = at + hdr.length
            if hdr.compressed:
                res = inflate(mv[body_at:end], max_out, max_in=min(budget, max_out))
                budget -= res.used
                if not res.complete or not res.data:
                    continue
                text, stored = res.data, res.used
            else:
                nul = find_bytes(mv, b"\0", body_at, min(end, body_at + max_out))
                stored = (end if nul is None else nul) - body_at
                stored = min(stored, max_out)
                text = bytes(mv[body_at:body_at + stored])
                if not text:
                    continue
            covered = body_at + stored
            # Go on after the record, not inside it.
            m = CANONICAL.search(chunk, covered - pos) if covered - pos < len(chunk) else None
            n = len(out)
            out.append(Record(-1, ZoneKind.DMESG, n, f"dmesg-ramoops-{n}.recovered",
                              hdr.time_ns, hdr.compressed, text, b"", 0, 0, True,
                              f"found at image offset {at:#x} without a zone header "
                              f"({stored} bytes stored)"))
        pos = max(stop, covered)
        if progress is not None:
            progress(min(pos, end) - start, end - start)
    return tuple(out)
