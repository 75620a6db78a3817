"""Which Reed-Solomon blocks are not codewords, many blocks at a time (private).

persistent_ram_ecc_old() (fs/pstore/ram_core.c) runs decode_rs8() on every
128-byte block below a zone's ``size``, and persistent_ram_init_ecc() does
the same for the 12-byte header.  On a healthy region nearly every block is
a codeword, so only the blocks whose stored parity differs from the parity
of their data need :meth:`memconsole._rs.Codec.decode`; a block whose parity
matches has zero syndromes and decode_rs8() would return 0 for it.

Parity is linear over GF(2): the parity of a block is the XOR over positions
*j* of ``T[j][byte j]`` (:meth:`~memconsole._rs.Codec.position_tables`),
and a block shorter than 128 bytes has the parity of the same block with
zeros in front.  Two kernels evaluate that for a batch of blocks:

* numpy (the ``fast`` extra): per position, one ``take`` of whole table
  entries (opaque items of the parity's size) across all blocks of the
  batch, XORed as 64-bit words; batches of 8192 blocks keep the temporaries
  in cache, and run in parallel threads (numpy releases the GIL);
* the standard library: per position and parity byte, ``bytes.translate``
  maps the column of that position through ``T[j]``'s byte, and the columns
  are XORed as Python ints; a batch costs a fixed number of C-level passes.

Below 64 blocks both fall back to a per-block loop over the tables.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from memconsole.ramoops._rs import BLOCK_SIZE, Codec

__all__ = ["bad_blocks", "bad_blocks_at", "bad_blocks_runs", "have_numpy"]

_UNSET: Any = object()
#: numpy (optional extra "fast"), imported on first use: None when absent.
_np: Any = _UNSET


def _numpy() -> Any:
    global _np
    if _np is _UNSET:
        try:
            import numpy
        except ImportError:  # pragma: no cover - exercised when numpy is absent
            _np = None
        else:
            _np = numpy
    return _np

Buffer = bytes | bytearray | memoryview

_SMALL = 64           # below this many blocks, the per-block loop is cheaper
_NP_BATCH = 1 << 13   # blocks per numpy batch (1 MiB of data)
_PY_BATCH = 1 << 15   # blocks per standard-library batch (4 MiB of data)
_NONZERO = re.compile(rb"[^\x00]")


def have_numpy() -> bool:
    """True when the numpy kernel is available (imports it)."""
    return _numpy() is not None


# -- kernels: data is n blocks of 128 bytes, parity n blocks of nroots bytes ----


def _mismatch_loop(codec: Codec, data: bytes, par: bytes, n: int) -> list[int]:
    e = codec.nroots
    tables = codec.position_tables()
    out: list[int] = []
    for i in range(n):
        acc = 0
        for t, byte in zip(tables, data[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE], strict=True):
            acc ^= t[byte]
        if acc != int.from_bytes(par[i * e:(i + 1) * e], "big"):
            out.append(i)
    return out


@functools.lru_cache(maxsize=8)
def _translate_tables(codec: Codec) -> tuple[tuple[bytes, ...], ...]:
    """``tt[k][j]``: 256-byte translation table giving parity byte *k* of
    ``T[j][v]`` for each byte value *v*."""
    e = codec.nroots
    rows = [[t.to_bytes(e, "big") for t in tj] for tj in codec.position_tables()]
    return tuple(tuple(bytes(p[k] for p in row) for row in rows) for k in range(e))


def _mismatch_translate(codec: Codec, data: bytes, par: bytes, n: int) -> list[int]:
    e = codec.nroots
    cols = [data[j::BLOCK_SIZE] for j in range(BLOCK_SIZE)]
    diff = 0
    for k, tables in enumerate(_translate_tables(codec)):
        acc = int.from_bytes(par[k::e], "little")
        for col, table in zip(cols, tables, strict=True):
            acc ^= int.from_bytes(col.translate(table), "little")
        diff |= acc  # byte i of acc is nonzero where block i's parity byte k differs
    if not diff:
        return []
    return [m.start() for m in _NONZERO.finditer(diff.to_bytes(n, "little"))]


@functools.lru_cache(maxsize=8)
def _np_tables(codec: Codec) -> Any:
    """``(128, 256)`` array of ``8 * words`` -byte opaque items: ``T[j][v]``
    as the parity bytes in order, zero-padded to whole 64-bit words.  One
    ``take`` per position then moves all the words of an entry at once."""
    np = _numpy()
    e = codec.nroots
    width = (e + 7) // 8 * 8
    raw = np.zeros((BLOCK_SIZE, 256, width), dtype=np.uint8)
    for j, row in enumerate(codec.position_tables()):
        raw[j, :, :e] = np.frombuffer(b"".join(t.to_bytes(e, "big") for t in row),
                                      dtype=np.uint8).reshape(256, e)
    return raw.view(np.dtype((np.void, width))).reshape(BLOCK_SIZE, 256)


def _mismatch_np(codec: Codec, data: bytes, par: bytes, n: int) -> list[int]:
    np = _numpy()
    e = codec.nroots
    tables = _np_tables(codec)
    width = tables.dtype.itemsize
    blocks = np.frombuffer(data, dtype=np.uint8, count=n * BLOCK_SIZE).reshape(n, BLOCK_SIZE)
    # acc: the n recomputed parities, as n * width / 8 words.  take() copies
    # items byte for byte; the words are only XORed and compared.
    acc = tables[0].take(blocks[:, 0].astype(np.intp)).view(np.uint64)
    for j in range(1, BLOCK_SIZE):
        acc ^= tables[j].take(blocks[:, j].astype(np.intp)).view(np.uint64)
    stored = np.zeros((n, width), dtype=np.uint8)
    stored[:, :e] = np.frombuffer(par, dtype=np.uint8, count=n * e).reshape(n, e)
    bad = (acc.reshape(n, width // 8) != stored.view(np.uint64)).any(axis=1)
    return [int(i) for i in np.flatnonzero(bad)]


def _mismatch(codec: Codec, batches: Sequence[tuple[bytes, bytes, int]]) -> list[int]:
    """Indices, counted across *batches* in order, of the blocks whose parity
    does not match.  Each batch is (data, parity, block count)."""
    starts, total = [], 0
    for _, _, n in batches:
        starts.append(total)
        total += n
    if total < _SMALL:
        kernel = _mismatch_loop
    elif _numpy() is not None:
        kernel = _mismatch_np
        _np_tables(codec)  # build once, before any thread needs it
    else:
        kernel = _mismatch_translate
        _translate_tables(codec)

    def one(i: int) -> list[int]:
        data, par, n = batches[i]
        return [starts[i] + b for b in kernel(codec, data, par, n)]

    workers = min(len(batches), os.cpu_count() or 1, 8) if kernel is _mismatch_np else 1
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return [b for part in pool.map(one, range(len(batches))) for b in part]
    return [b for i in range(len(batches)) for b in one(i)]


# -- public entry points ------------------------------------------------------


def bad_blocks(codec: Codec, data: Buffer, parity: Buffer, count: int) -> list[int]:
    """Indices of the first *count* 128-byte blocks of *data* whose stored
    parity (``nroots`` bytes each, consecutive in *parity*) does not match."""
    batches, segments = _runs_to_batches(codec, _bytes_view(data), _bytes_view(parity),
                                         [(0, 0, count)])
    return [_owner(segments, i)[1] for i in _mismatch(codec, batches)]


def bad_blocks_runs(codec: Codec, buf: Buffer,
                    runs: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Check runs of consecutive 128-byte blocks in *buf*: run *r* is
    ``(data_offset, parity_offset, count)`` with ``count`` blocks from
    ``data_offset`` and their parity from ``parity_offset``.  Returns the
    (run, block) pairs whose parity does not match."""
    mv = _bytes_view(buf)
    batches, segments = _runs_to_batches(codec, mv, mv, runs)
    return [_owner(segments, i) for i in _mismatch(codec, batches)]


def _bytes_view(buf: Buffer) -> memoryview:
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


# (first block index across all batches, run, first block of the run)
_Segment = tuple[int, int, int]


def _owner(segments: list[_Segment], i: int) -> tuple[int, int]:
    """The (run, block) of block *i* counted across all batches."""
    start, run, block0 = segments[bisect.bisect_right(segments, (i, 1 << 62, 0)) - 1]
    return run, block0 + i - start


def _runs_to_batches(codec: Codec, dmv: memoryview, pmv: memoryview,
                     runs: Sequence[tuple[int, int, int]]
                     ) -> tuple[list[tuple[bytes, bytes, int]], list[_Segment]]:
    """Cut *runs* into batches of whole blocks (one copy of the data, which
    the kernels need contiguous anyway) and say where each run's pieces went."""
    e = codec.nroots
    step = _NP_BATCH if _numpy() is not None else _PY_BATCH
    segments: list[_Segment] = []
    batches: list[tuple[bytes, bytes, int]] = []
    dparts: list[memoryview] = []
    pparts: list[memoryview] = []
    n = total = 0
    for ri, (d0, p0, count) in enumerate(runs):
        done = 0
        while done < count:
            take = min(count - done, step - n)
            d = d0 + done * BLOCK_SIZE
            p = p0 + done * e
            dparts.append(dmv[d:d + take * BLOCK_SIZE])
            pparts.append(pmv[p:p + take * e])
            segments.append((total, ri, done))
            n += take
            total += take
            done += take
            if n == step:
                batches.append((b"".join(dparts), b"".join(pparts), n))
                dparts, pparts, n = [], [], 0
    if n:
        batches.append((b"".join(dparts), b"".join(pparts), n))
    return batches, segments


def bad_blocks_at(codec: Codec, buf: Buffer,
                  blocks: Sequence[tuple[int, int, int]]) -> list[int]:
    """Check scattered blocks of at most 128 bytes: block *i* is
    ``(data_offset, length, parity_offset)`` in *buf* (zone headers, the
    short last block of a zone).  Returns the indices *i* that do not match."""
    mv = _bytes_view(buf)
    e = codec.nroots
    pad = bytes(BLOCK_SIZE)
    data = b"".join(pad[length:] + mv[d:d + length] for d, length, _ in blocks)
    par = b"".join(mv[p:p + e] for _, _, p in blocks)
    return _mismatch(codec, [(data, par, len(blocks))]) if blocks else []
