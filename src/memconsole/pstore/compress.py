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
from dataclasses import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_DECOMPRESSED", "RAW_DEFLATE", "ZLIB", "Decompressed", "Inflated",
           "decompress", "inflate"]

#: Cap on decompressed size for records read from a pstore directory: a
#: dmesg record is at most a few hundred KiB (records decoded from ramoops
#: memory use the kernel's own cap, 3 x the zone capacity).
MAX_DECOMPRESSED = 16 << 20
#: Window bits of raw deflate (``-MAX_WBITS``), what pstore writes since 4.19.
RAW_DEFLATE = -15
#: Window bits of a zlib-wrapped stream (pstore before 4.19).
ZLIB = 15
_FEED = 64 << 10

# pstore_dump() starts every dmesg record with "%s#%d Part%u\n" (reason,
# oops count, part) before compressing it.  LZ4 blocks and LZO1X carry no
# checksum, so their output must start like that to be believed.
_PSTORE_DUMP_HEADER = re.compile(rb"[A-Za-z]+#\d+ Part\d+\n")


@dataclass(frozen=True)
class Decompressed:
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


@dataclass(frozen=True)
class Inflated:
    """Outcome of :func:`inflate`.

    Attributes:
        data: the output, at most ``max_out`` bytes (possibly partial).
        complete: the stream ended (Z_STREAM_END) within the cap.
        over_cap: the stream would produce more than ``max_out`` bytes.
        used: input bytes the stream occupied (up to its end when
            *complete*; otherwise every byte fed to it).
        error: zlib's message when the input is not a valid stream, else "".
    """

    data: bytes
    complete: bool
    over_cap: bool
    used: int
    error: str


def inflate(data: bytes | memoryview, max_out: int, wbits: int = RAW_DEFLATE,
            max_in: int | None = None) -> Inflated:
    """Inflate one stream from the start of *data*, producing at most
    *max_out* bytes and reading at most *max_in* input bytes (default all).

    Input is fed 64 KiB at a time, so a stream that fails or ends early
    costs what it read, not the length of *data* (a memory image can be
    gigabytes long).  Like zlib_inflate() with Z_FINISH in
    decompress_record(), a stream is good only if it ends within the cap;
    a partial result is returned anyway for callers that salvage text.
    """
    limit = len(data) if max_in is None else min(len(data), max_in)
    d = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    produced = fed = 0
    pending = b""
    try:
        while produced <= max_out and not d.eof:
            if pending:
                chunk: bytes | memoryview = pending
            elif fed < limit:
                chunk = data[fed:min(limit, fed + _FEED)]
                fed += len(chunk)
            else:
                break
            # One byte over the cap tells "would exceed" from "exactly fits".
            out = d.decompress(chunk, max_out + 1 - produced)
            pending = d.unconsumed_tail
            parts.append(out)
            produced += len(out)
    except zlib.error as exc:
        return Inflated(b"".join(parts)[:max_out], False, False, fed, str(exc))
    out = b"".join(parts)
    over = len(out) > max_out
    used = fed - len(d.unused_data) - len(pending) if d.eof else fed
    return Inflated(out[:max_out], d.eof and not over, over, used, "")


@functools.cache
def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def decompress(body: bytes | memoryview, max_out: int) -> Decompressed:
    """Decompress one dmesg record body, producing at most *max_out* bytes."""
    for wbits, method in ((RAW_DEFLATE, "deflate"), (ZLIB, "zlib")):
        res = inflate(body, max_out, wbits)
        if res.complete:
            return Decompressed(res.data, method, "")
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
