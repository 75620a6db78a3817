"""Decompression of compressed dmesg records (private).

The ramoops dmesg header only says "compressed" (``-C``), not how.  What the
kernel wrote depends on its version and configuration:

* 6.6 and later: zlib_deflate with ``-MAX_WBITS`` (raw deflate), read back by
  zlib_inflateInit2(-MAX_WBITS) in decompress_record() (fs/pstore/platform.c,
  commit "pstore: Replace crypto API compression with zlib_deflate library
  calls", v6.6);
* 4.19 to 6.5 with CONFIG_PSTORE_DEFLATE_COMPRESS (Debian's 6.1): the crypto
  API "deflate" (crypto/deflate.c), also raw deflate (negative window bits),
  so a -15 window inflates both;
* 4.19 to 6.5 with lz4, lz4hc, lzo or zstd chosen (``pstore.compress=``):
  raw LZ4 blocks, raw LZO1X, or zstd frames.  Those need the ``compress``
  extra (``lz4``, ``python-lzo``, ``zstandard``);
* before 4.19: zlib with a 2-byte zlib header (window bits 12).

:func:`decompress` tries deflate first (the kernels this project targets),
then the zlib wrapper, then whatever optional libraries are installed.  The
output is capped like the kernel's workspace (``max_out``); a stream that
would exceed it fails, as zlib_inflate() does with Z_FINISH.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Any, NamedTuple

__all__ = ["Decompressed", "decompress"]

# pstore_dump() starts every dmesg record with "%s#%d Part%u\n" (reason,
# oops count, part) before compressing it.  LZ4 blocks and LZO1X carry no
# checksum, so their output must start like that to be believed.
_PSTORE_DUMP_HEADER = re.compile(rb"[A-Za-z]+#\d+ Part\d+\n")


class Decompressed(NamedTuple):
    """Outcome of :func:`decompress`.

    Attributes:
        data: the decompressed bytes, or ``None`` when no method worked.
        method: ``"deflate"``, ``"zlib"``, ``"zstd"``, ``"lz4"``, ``"lzo"`` or
            ``""``.
        reason: why it failed (empty on success), e.g. which extras are missing.
    """

    data: bytes | None
    method: str
    reason: str


def _inflate(data: bytes | memoryview, wbits: int, max_out: int) -> bytes | None:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, max_out)
    except zlib.error:
        return None
    # Z_STREAM_END within the cap, as decompress_record() requires.
    if not d.eof or d.unconsumed_tail:
        return None
    return out


@functools.cache
def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def decompress(body: bytes | memoryview, max_out: int) -> Decompressed:
    """Decompress one dmesg record body, producing at most *max_out* bytes."""
    out = _inflate(body, -15, max_out)
    if out is not None:
        return Decompressed(out, "deflate", "")
    out = _inflate(body, 15, max_out)
    if out is not None:
        return Decompressed(out, "zlib", "")
    data = bytes(body)  # the optional libraries want bytes
    missing = []
    if data[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame magic
        zstd = _optional("zstandard")
        if zstd is None:
            missing.append("zstandard")
        else:
            try:
                res = zstd.ZstdDecompressor().decompress(data, max_output_size=max_out)
                if len(res) <= max_out:
                    return Decompressed(bytes(res), "zstd", "")
            except zstd.ZstdError:
                pass
    lz4 = _optional("lz4.block")
    if lz4 is None:
        missing.append("lz4")
    else:
        try:
            res = lz4.block.decompress(data, uncompressed_size=max_out)
            if _PSTORE_DUMP_HEADER.match(res):
                return Decompressed(bytes(res), "lz4", "")
        except Exception:  # lz4.block.LZ4BlockError; lz4 raises plain errors too
            pass
    lzo = _optional("lzo")
    if lzo is None:
        missing.append("python-lzo")
    else:
        try:
            res = lzo.decompress(data, False, max_out)
            if _PSTORE_DUMP_HEADER.match(res):
                return Decompressed(bytes(res), "lzo", "")
        except Exception:  # lzo.error
            pass
    reason = "not a deflate or zlib stream"
    if missing:
        reason += (f"; lz4/lzo/zstd records need {', '.join(missing)} "
                   "(pip install 'memconsole[compress]')")
    return Decompressed(None, "", reason)
