"""Reed-Solomon over GF(2^8) exactly as ramoops uses it (private).

ramoops protects each zone with the kernel's generic RS library
(lib/reed_solomon/): ``init_rs(symsize=8, gfpoly=0x11d, fcr=0, prim=1,
nroots=ecc_size)`` in persistent_ram_init_ecc() (fs/pstore/ram_core.c),
``encode_rs8()`` when writing and ``decode_rs8()`` when reading.  This module
mirrors those three functions:

* :func:`codec` builds the tables and generator polynomial as init_rs() does
  (lib/reed_solomon/reed_solomon.c, codec_init());
* :meth:`Codec.encode` is encode_rs.c (used by tests to make parity);
* :meth:`Codec.decode` is decode_rs.c without erasures: syndromes,
  Berlekamp-Massey, Chien search, Forney, and the same three -EBADMSG exits
  (deg(lambda) == 0, a root in the shortened padding, deg(lambda) != roots
  found) plus the final syndrome re-check;
* :meth:`Codec.bad_blocks` finds the blocks that are not codewords without
  decoding them: parity is linear, so it is recomputed from per-position
  tables (numpy when installed, Python ints otherwise) and compared.  Only
  those blocks go through the full decoder.

Nothing here knows about zones; callers pass bytes and get bytes back.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

__all__ = ["BLOCK_SIZE", "Codec", "DecodeResult", "codec", "have_numpy"]

#: persistent_ram_init_ecc(): ``block_size = ecc_info->block_size ?: 128``.
BLOCK_SIZE = 128
_NN = 255          # symbols per full codeword for symsize 8
_GFPOLY = 0x11D    # ecc_info->poly ?: 0x11d

_np: Any
try:  # optional extra "fast"
    import numpy as _np
except ImportError:  # pragma: no cover - exercised when numpy is absent
    _np = None


def have_numpy() -> bool:
    """True when the numpy fast path for :meth:`Codec.bad_blocks` is available."""
    return _np is not None


def _tables() -> tuple[list[int], list[int]]:
    # codec_init(): alpha_to[] (index -> poly) and index_of[] (poly -> index),
    # with index_of[0] = nn ("log of zero") and alpha_to[nn] = 0.
    alpha_to = [0] * (_NN + 1)
    index_of = [0] * (_NN + 1)
    index_of[0] = _NN
    alpha_to[_NN] = 0
    sr = 1
    for i in range(_NN):
        index_of[sr] = i
        alpha_to[i] = sr
        sr <<= 1
        if sr & 0x100:
            sr ^= _GFPOLY
        sr &= _NN
    return alpha_to, index_of


_ALPHA_TO, _INDEX_OF = _tables()


class DecodeResult(NamedTuple):
    """Outcome of decoding one block.

    Attributes:
        corrected: symbols corrected (decode_rs8's positive return), or -1 when
            the block is uncorrectable (its -EBADMSG).
        data: the data bytes after correction (unchanged when uncorrectable).
        parity: the parity bytes after correction.
    """

    corrected: int
    data: bytes
    parity: bytes


class Codec:
    """RS(255, 255 - nroots) over GF(2^8), poly 0x11d, fcr 0, prim 1."""

    def __init__(self, nroots: int) -> None:
        if not 1 <= nroots < _NN:
            raise ValueError(f"nroots {nroots} outside 1..254")
        self.nroots = nroots
        a, ix = _ALPHA_TO, _INDEX_OF
        # Generator polynomial from its roots alpha^(fcr + i*prim), i < nroots,
        # as codec_init() forms it, kept in index form.
        gen = [0] * (nroots + 1)
        gen[0] = 1
        for i in range(nroots):
            root = i  # fcr * prim + i * prim with fcr = 0, prim = 1
            gen[i + 1] = 1
            for j in range(i, 0, -1):
                if gen[j] != 0:
                    gen[j] = gen[j - 1] ^ a[(ix[gen[j]] + root) % _NN]
                else:
                    gen[j] = gen[j - 1]
            gen[0] = a[(ix[gen[0]] + root) % _NN]
        self._genpoly = [ix[g] for g in gen]
        self._tables_py: list[list[int]] | None = None
        self._tables_np: Any = None

    # -- encode_rs.c -------------------------------------------------------

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Parity of *data* (at most 255 - nroots bytes), as encode_rs8()
        leaves it in a zeroed ``par`` buffer."""
        nroots, gp, a, ix = self.nroots, self._genpoly, _ALPHA_TO, _INDEX_OF
        if len(data) > _NN - nroots:
            raise ValueError(f"block of {len(data)} bytes exceeds {_NN - nroots}")
        par = [0] * nroots
        for byte in bytes(data):
            fb = ix[byte ^ par[0]]
            if fb != _NN:
                for j in range(1, nroots):
                    par[j] ^= a[(fb + gp[nroots - j]) % _NN]
            del par[0]
            par.append(a[(fb + gp[0]) % _NN] if fb != _NN else 0)
        return bytes(par)

    # -- decode_rs.c -------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview,
               parity: bytes | bytearray | memoryview) -> DecodeResult:
        """Check and correct one block, mirroring decode_rs8(rs, data, par,
        len, NULL, 0, NULL, 0, NULL)."""
        nroots, a, ix = self.nroots, _ALPHA_TO, _INDEX_OF
        nn = _NN
        dat = bytearray(data)
        par = bytearray(parity)
        length = len(dat)
        if len(par) != nroots:
            raise ValueError(f"parity of {len(par)} bytes, expected {nroots}")
        pad = nn - nroots - length
        if pad < 0 or pad >= nn - nroots:  # the kernel BUG_ON()s here
            raise ValueError(f"block length {length} outside 1..{nn - nroots}")
        # Syndromes: evaluate the received word at alpha^(fcr+i)*prim = alpha^i.
        syn = [0] * nroots
        for sym in (*dat, *par):
            for i in range(nroots):
                s = syn[i]
                syn[i] = sym ^ a[(ix[s] + i) % nn] if s else sym
        if not any(syn):
            return DecodeResult(0, bytes(dat), bytes(par))
        s_idx = [ix[v] for v in syn]
        bad = DecodeResult(-1, bytes(data), bytes(parity))

        # Berlekamp-Massey (no erasures: r = el = 0).
        lam = [1] + [0] * nroots
        b = [ix[v] for v in lam]
        el = 0
        for r in range(1, nroots + 1):
            discr = 0
            for i in range(r):
                if lam[i] != 0 and s_idx[r - i - 1] != nn:
                    discr ^= a[(ix[lam[i]] + s_idx[r - i - 1]) % nn]
            discr_r = ix[discr]
            if discr_r == nn:
                b = [nn, *b[:nroots]]
                continue
            t = [lam[0]] + [lam[i + 1] ^ a[(discr_r + b[i]) % nn] if b[i] != nn
                            else lam[i + 1] for i in range(nroots)]
            if 2 * el <= r - 1:
                el = r - el
                b = [nn if lam[i] == 0 else (ix[lam[i]] - discr_r + nn) % nn
                     for i in range(nroots + 1)]
            else:
                b = [nn, *b[:nroots]]
            lam = t

        lam_idx = [ix[v] for v in lam]
        deg_lambda = max((i for i, v in enumerate(lam_idx) if v != nn), default=0)
        if deg_lambda == 0:
            return bad
        # Chien search; iprim = 1 for prim = 1.
        reg = list(lam_idx)
        roots: list[int] = []
        locs: list[int] = []
        k = 0  # iprim - 1
        for i in range(1, nn + 1):
            q = 1
            for j in range(deg_lambda, 0, -1):
                if reg[j] != nn:
                    reg[j] = (reg[j] + j) % nn
                    q ^= a[reg[j]]
            if q == 0:
                if k < pad:  # error located in the shortened (virtual) part
                    return bad
                roots.append(i)
                locs.append(k)
                if len(roots) == deg_lambda:
                    break
            k = (k + 1) % nn
        if len(roots) != deg_lambda:
            return bad
        # Forney: omega = s * lambda mod x^nroots, error values.
        deg_omega = deg_lambda - 1
        omega = []
        for i in range(deg_omega + 1):
            tmp = 0
            for j in range(i, -1, -1):
                if s_idx[i - j] != nn and lam_idx[j] != nn:
                    tmp ^= a[(s_idx[i - j] + lam_idx[j]) % nn]
            omega.append(ix[tmp])
        values = [0] * len(roots)
        corrected = 0
        for jj in range(len(roots) - 1, -1, -1):
            num1 = 0
            for i in range(deg_omega, -1, -1):
                if omega[i] != nn:
                    num1 ^= a[(omega[i] + i * roots[jj]) % nn]
            if num1 == 0:
                continue
            num2 = a[(roots[jj] * (0 - 1) + nn) % nn]  # fcr = 0
            den = 0
            for i in range(min(deg_lambda, nroots - 1) & ~1, -1, -2):
                if lam_idx[i + 1] != nn:
                    den ^= a[(lam_idx[i + 1] + i * roots[jj]) % nn]
            values[jj] = a[(ix[num1] + ix[num2] + nn - ix[den]) % nn]
            corrected += 1
        # Re-check: the syndrome of the error pattern must equal the received one.
        for i in range(nroots):
            tmp = 0
            for val, loc in zip(values, locs, strict=True):
                if val:
                    tmp ^= a[(ix[val] + i * (nn - loc - 1)) % nn]
            if tmp != a[s_idx[i]]:
                return bad
        for val, loc in zip(values, locs, strict=True):
            if loc < nn - nroots:
                dat[loc - pad] ^= val
            else:
                par[loc - pad - length] ^= val
        return DecodeResult(corrected, bytes(dat), bytes(par))

    # -- batch check -------------------------------------------------------

    def _position_tables(self) -> list[list[int]]:
        """``t[j][v]``: parity (as a big-endian int) contributed by byte *v*
        at position *j* of a right-aligned 128-byte block.  Parity is linear
        and leading zero bytes leave the encoder's register at zero, so a
        shorter block is the same block with zeros in front."""
        if self._tables_py is None:
            last = [int.from_bytes(self.encode(bytes([v])), "big") for v in range(256)]
            tables = [last]
            mask = (1 << (8 * self.nroots)) - 1
            for _ in range(BLOCK_SIZE - 1):
                # Feed one zero byte into every state: the next earlier position.
                prev = tables[-1]
                nxt = []
                for state in prev:
                    top = state >> (8 * (self.nroots - 1))
                    shifted = (state << 8) & mask
                    nxt.append(shifted ^ last[top])
                tables.append(nxt)
            tables.reverse()
            self._tables_py = tables
        return self._tables_py

    def parity_fast(self, data: bytes | memoryview) -> bytes:
        """Parity of a block of at most 128 bytes via the position tables."""
        tables = self._position_tables()
        acc = 0
        for t, byte in zip(tables[BLOCK_SIZE - len(data):], bytes(data), strict=True):
            acc ^= t[byte]
        return acc.to_bytes(self.nroots, "big")

    def check(self, data: bytes | bytearray | memoryview,
              parity: bytes | bytearray | memoryview) -> bool:
        """True when *parity* is the parity of *data* (at most 128 bytes):
        the cheap test before :meth:`decode`."""
        return self.parity_fast(bytes(data)) == bytes(parity)

    def bad_blocks_runs(self, buf: bytes | bytearray | memoryview,
                        runs: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """Check runs of consecutive 128-byte blocks in *buf*: run *r* is
        ``(data_offset, parity_offset, count)``.  Returns (run, block) pairs
        whose parity does not match."""
        runs = [r for r in runs if r[2] > 0]
        if not runs:
            return []
        total = sum(r[2] for r in runs)
        if _np is None or total < 64:
            doffs: list[int] = []
            poffs: list[int] = []
            owner: list[tuple[int, int]] = []
            for ri, (d0, p0, cnt) in enumerate(runs):
                for b in range(cnt):
                    doffs.append(d0 + b * BLOCK_SIZE)
                    poffs.append(p0 + b * self.nroots)
                    owner.append((ri, b))
            return [owner[i] for i in self.bad_blocks_at(buf, doffs, poffs)]
        np = _np
        e = self.nroots
        arr = np.frombuffer(buf, dtype=np.uint8)
        owner = [(ri, b) for ri, r in enumerate(runs) for b in range(r[2])]
        step = 1 << 15  # blocks per batch: bounded temporaries
        batches: list[tuple[int, list[tuple[int, int, int]]]] = []
        i = done = 0
        while i < len(runs):
            batch, n = [], 0
            while i < len(runs) and (n == 0 or n + runs[i][2] <= step):
                batch.append(runs[i])
                n += runs[i][2]
                i += 1
            batches.append((done, batch))
            done += n

        def work(item: tuple[int, list[tuple[int, int, int]]]) -> list[int]:
            base, batch = item
            # Runs are contiguous in memory: views and one copy, no index arrays.
            blocks = np.concatenate([arr[d:d + c * BLOCK_SIZE].reshape(c, BLOCK_SIZE)
                                     for d, _, c in batch])
            par = np.concatenate([arr[p:p + c * e].reshape(c, e) for _, p, c in batch])
            return [base + int(j) for j in
                    self._mismatch_np(np.ascontiguousarray(blocks.T), par)]

        # numpy releases the GIL in indexing and ufuncs: batches run in parallel.
        workers = min(len(batches), os.cpu_count() or 1, 8)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                found = [j for part in pool.map(work, batches) for j in part]
        else:
            found = [j for item in batches for j in work(item)]
        return [owner[j] for j in found]

    def bad_blocks(self, data: bytes | memoryview, parity: bytes | memoryview,
                   count: int) -> list[int]:
        """Indices of the first *count* 128-byte blocks of *data* whose
        stored parity (``nroots`` bytes each, consecutive in *parity*) does not
        match.  Those, and only those, need :meth:`decode`."""
        if count <= 0:
            return []
        if _np is not None and count >= 64:
            return self._bad_blocks_np(data, parity, count)
        e = self.nroots
        tables = self._position_tables()
        out: list[int] = []
        mv, pv = memoryview(data), memoryview(parity)
        for blk in range(count):
            block = mv[blk * BLOCK_SIZE:(blk + 1) * BLOCK_SIZE]
            stored = int.from_bytes(pv[blk * e:(blk + 1) * e], "big")
            acc = 0
            for t, byte in zip(tables, block, strict=False):
                acc ^= t[byte]
            if acc != stored:
                out.append(blk)
        return out

    def bad_blocks_at(self, buf: bytes | bytearray | memoryview, data_offsets: list[int],
                      parity_offsets: list[int]) -> list[int]:
        """Like :meth:`bad_blocks` for 128-byte blocks scattered in *buf*:
        block *i* is ``buf[data_offsets[i]:+128]`` with parity at
        ``parity_offsets[i]``.  Returns the indices *i* that do not match.
        One call covers every zone of a region, so numpy's per-call cost is
        paid once."""
        n = len(data_offsets)
        if n == 0:
            return []
        if _np is None or n < 64:
            e = self.nroots
            tables = self._position_tables()
            mv = memoryview(buf)
            out: list[int] = []
            for i, (d0, p0) in enumerate(zip(data_offsets, parity_offsets, strict=False)):
                acc = 0
                for t, byte in zip(tables, mv[d0:d0 + BLOCK_SIZE], strict=False):
                    acc ^= t[byte]
                if acc != int.from_bytes(mv[p0:p0 + e], "big"):
                    out.append(i)
            return out
        np = _np
        return self._bad_at_np(buf, np.asarray(data_offsets, dtype=np.int64),
                               np.asarray(parity_offsets, dtype=np.int64))

    def _bad_at_np(self, buf: bytes | bytearray | memoryview, doffs: Any, poffs: Any) -> list[int]:
        np = _np
        assert np is not None
        n = len(doffs)
        arr = np.frombuffer(buf, dtype=np.uint8)
        res: list[int] = []
        step = 1 << 16
        for first in range(0, n, step):
            d = doffs[first:first + step]
            p = poffs[first:first + step]
            cols = arr[d[None, :] + np.arange(BLOCK_SIZE, dtype=np.int64)[:, None]]
            par = arr[p[:, None] + np.arange(self.nroots, dtype=np.int64)[None, :]]
            res.extend(int(i) + first for i in self._mismatch_np(cols, par))
        return res

    def _np_tables(self) -> Any:
        np = _np
        assert np is not None
        if self._tables_np is None:
            e = self.nroots
            words = (e + 7) // 8
            tab = np.zeros((BLOCK_SIZE, 256, words * 8), dtype=np.uint8)
            for j, row in enumerate(self._position_tables()):
                for v, val in enumerate(row):
                    tab[j, v, :e] = np.frombuffer(val.to_bytes(e, "big"), dtype=np.uint8)
            self._tables_np = tab.view(np.uint64).reshape(BLOCK_SIZE, 256, words)
        return self._tables_np

    def _mismatch_np(self, cols: Any, par: Any) -> Any:
        """*cols*: (128, n) block bytes by position; *par*: (n, nroots) stored
        parity.  Returns the indices whose recomputed parity differs."""
        np = _np
        assert np is not None
        tables = self._np_tables()
        e = self.nroots
        words = tables.shape[2]
        n = cols.shape[1]
        acc = tables[0][cols[0]]
        for j in range(1, BLOCK_SIZE):
            acc ^= tables[j][cols[j]]
        stored = np.zeros((n, words * 8), dtype=np.uint8)
        stored[:, :e] = par
        return np.flatnonzero((acc != stored.view(np.uint64)).any(axis=1))

    def _bad_blocks_np(self, data: bytes | memoryview, parity: bytes | memoryview,
                       count: int) -> list[int]:
        np = _np
        assert np is not None
        e = self.nroots
        out: list[int] = []
        step = 1 << 16  # blocks per chunk: bounded temporaries (8 MiB of data)
        for first in range(0, count, step):
            n = min(step, count - first)
            blocks = np.frombuffer(data, dtype=np.uint8, count=n * BLOCK_SIZE,
                                   offset=first * BLOCK_SIZE).reshape(n, BLOCK_SIZE)
            par = np.frombuffer(parity, dtype=np.uint8, count=n * e,
                                offset=first * e).reshape(n, e)
            out.extend(int(i) + first
                       for i in self._mismatch_np(np.ascontiguousarray(blocks.T), par))
        return out


@functools.lru_cache(maxsize=8)
def codec(nroots: int) -> Codec:
    """The shared :class:`Codec` for *nroots* parity bytes."""
    return Codec(nroots)

