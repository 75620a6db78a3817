"""Reed-Solomon over GF(2^8) exactly as ramoops uses it (private).

ramoops protects each zone with the kernel's generic RS library
(lib/reed_solomon/): ``init_rs(symsize=8, gfpoly=0x11d, fcr=0, prim=1,
nroots=ecc_size)`` in persistent_ram_init_ecc() (fs/pstore/ram_core.c),
``encode_rs8()`` when writing and ``decode_rs8()`` when reading.  This module
mirrors those three functions:

* :func:`codec` builds the tables and generator polynomial as init_rs() does
  (lib/reed_solomon/reed_solomon.c, codec_init());
* :meth:`Codec.encode` is encode_rs.c (used by tests to make parity);
* :meth:`Codec.decode_reference` is decode_rs.c without erasures, step by
  step: syndromes, Berlekamp-Massey, Chien search, Forney, and the same
  three -EBADMSG exits (deg(lambda) == 0, a root in the shortened padding,
  deg(lambda) != roots found) plus the final syndrome re-check;
* :meth:`Codec.decode` computes the same values, with each step that is
  a sum over polynomial coefficients done a row at a time: multiplying a
  row of field elements by one constant is a ``bytes.translate``, adding
  two rows is an XOR of integers.  Syndromes come from the difference
  between stored and recomputed parity (the rest of the received word is a
  codeword, so it adds nothing), the Chien search evaluates lambda at all
  255 points at once.  A block full of garbage, which hostile memory with
  a valid-looking header makes of every block, costs a fraction of a
  millisecond instead of several; a test checks both give the same result;
* :meth:`Codec.check` tells a codeword from a damaged block without
  decoding it: parity is linear, so it is recomputed from per-position
  tables (:meth:`Codec.position_tables`) and compared.  Many blocks at once
  are checked by ``_rs_batch``; only those that fail go through the decoder.

Nothing here knows about zones; callers pass bytes and get bytes back.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

__all__ = ["BLOCK_SIZE", "Codec", "DecodeResult", "codec"]

#: persistent_ram_init_ecc(): ``block_size = ecc_info->block_size ?: 128``.
BLOCK_SIZE = 128
_NN = 255          # symbols per full codeword for symsize 8
_GFPOLY = 0x11D    # ecc_info->poly ?: 0x11d

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


@functools.cache
def _rows() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Translation tables for :meth:`Codec.decode`: ``mul[c]`` maps a field
    element to its product with *c*; ``pow_rows[k][i]`` is alpha^(i*k)
    (i < 255); ``chien_rows[j][i - 1]`` is alpha^(i*j) for i in 1..255."""
    a, ix = _ALPHA_TO, _INDEX_OF
    mul = [bytes(256)] + [
        bytes(0 if x == 0 else a[(ix[c] + ix[x]) % _NN] for x in range(256))
        for c in range(1, 256)]
    pow_rows = [bytes(a[(i * k) % _NN] for i in range(_NN)) for k in range(_NN)]
    chien_rows = [row[1:] + row[:1] for row in pow_rows]
    return mul, pow_rows, chien_rows


_GEN_STATES: list[list[int]] = [[1]]  # generator of n roots, poly form, n = 0, 1, ...


def _genpoly(nroots: int) -> list[int]:
    """The generator polynomial of *nroots* roots alpha^(fcr + i*prim), in
    index form, as codec_init() forms it.  Its loop passes through the
    generator of every smaller root count, so each state is kept: the
    generators of all sizes cost what the largest does."""
    a, ix = _ALPHA_TO, _INDEX_OF
    while len(_GEN_STATES) <= nroots:
        i = len(_GEN_STATES) - 1
        gen = [*_GEN_STATES[-1], 1]
        root = i  # fcr * prim + i * prim with fcr = 0, prim = 1
        for j in range(i, 0, -1):
            if gen[j] != 0:
                gen[j] = gen[j - 1] ^ a[(ix[gen[j]] + root) % _NN]
            else:
                gen[j] = gen[j - 1]
        gen[0] = a[(ix[gen[0]] + root) % _NN]
        _GEN_STATES.append(gen)
    return [ix[g] for g in _GEN_STATES[nroots]]


def _xor(x: bytes, y: bytes) -> bytes:
    return (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).to_bytes(len(x), "big")


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
        self._genpoly = _genpoly(nroots)
        self._tables_py: list[list[int]] | None = None

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
        """Check and correct one block: decode_rs8(rs, data, par, len, NULL,
        0, NULL, 0, NULL), computed row-wise (same result as
        :meth:`decode_reference`)."""
        nroots, a, ix, nn = self.nroots, _ALPHA_TO, _INDEX_OF, _NN
        dat, par = bytes(data), bytes(parity)
        length = len(dat)
        if len(par) != nroots:
            raise ValueError(f"parity of {len(par)} bytes, expected {nroots}")
        pad = nn - nroots - length
        if pad < 0 or pad >= nn - nroots:  # the kernel BUG_ON()s here
            raise ValueError(f"block length {length} outside 1..{nn - nroots}")
        if length > BLOCK_SIZE:
            return self.decode_reference(dat, par)
        delta = _xor(self.parity_fast(dat), par)
        if not any(delta):
            return DecodeResult(0, dat, par)
        mul, pow_rows, chien_rows = _rows()
        # Syndromes S_i = r(alpha^i): data + recomputed parity is a codeword,
        # so only the parity difference counts, delta_j at x^(nroots-1-j).
        acc = 0
        for j, d in enumerate(delta):
            if d:
                acc ^= int.from_bytes(pow_rows[nroots - 1 - j][:nroots].translate(mul[d]), "big")
        syn = acc.to_bytes(nroots, "big")
        bad = DecodeResult(-1, dat, par)
        s_idx = [ix[v] for v in syn]

        # Berlekamp-Massey, lambda and b in polynomial form (bytes): T(x) =
        # lambda(x) - discr * x * B(x) is one translate and one XOR.
        lam = b"\x01" + bytes(nroots)
        b = lam
        el = 0
        deg = 0  # degree of lambda: the discrepancy sums over its terms only
        syn_rev = syn[::-1]  # S_(r-1-i) = syn_rev[nroots - r + i]
        for r in range(1, nroots + 1):
            discr = 0
            m = min(r, deg + 1)
            for li, sv in zip(lam[:m], syn_rev[nroots - r:nroots - r + m], strict=True):
                if li:
                    discr ^= mul[li][sv]
            if discr == 0:
                b = b"\x00" + b[:nroots]  # B(x) <-- x * B(x)
                continue
            t = _xor(lam, (b"\x00" + b[:nroots]).translate(mul[discr]))
            if 2 * el <= r - 1:
                el = r - el
                b = lam.translate(mul[a[(nn - ix[discr]) % nn]])  # inv(discr) * lambda
            else:
                b = b"\x00" + b[:nroots]
            lam = t
            deg = len(lam.rstrip(b"\x00")) - 1
        deg_lambda = len(lam.rstrip(b"\x00")) - 1
        if deg_lambda <= 0:
            return bad
        # Chien search: lambda(alpha^i) for i = 1..255 at once; then the
        # roots in the kernel's order, with its two early exits.
        q = int.from_bytes(b"\x01" * nn, "big")
        for j in range(1, deg_lambda + 1):
            if lam[j]:
                q ^= int.from_bytes(chien_rows[j].translate(mul[lam[j]]), "big")
        values_at = q.to_bytes(nn, "big")
        roots: list[int] = []
        locs: list[int] = []
        pos = values_at.find(0)
        while pos >= 0:
            i, k = pos + 1, pos  # k = i - 1 with iprim = 1
            if k < pad:  # error located in the shortened (virtual) part
                return bad
            roots.append(i)
            locs.append(k)
            if len(roots) == deg_lambda:
                break
            pos = values_at.find(0, pos + 1)
        if len(roots) != deg_lambda:
            return bad
        return self._forney(dat, par, pad, s_idx, [ix[v] for v in lam], deg_lambda,
                            roots, locs)

    def _forney(self, dat_in: bytes, par_in: bytes, pad: int, s_idx: list[int],
                lam_idx: list[int], deg_lambda: int, roots: list[int], locs: list[int]
                ) -> DecodeResult:
        """decode_rs.c after the Chien search: omega, Forney's error values,
        the syndrome re-check, and the correction."""
        nroots, a, ix, nn = self.nroots, _ALPHA_TO, _INDEX_OF, _NN
        dat, par = bytearray(dat_in), bytearray(par_in)
        length = len(dat)
        bad = DecodeResult(-1, bytes(dat_in), bytes(par_in))
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

    def decode_reference(self, data: bytes | bytearray | memoryview,
                         parity: bytes | bytearray | memoryview) -> DecodeResult:
        """decode_rs8(rs, data, par, len, NULL, 0, NULL, 0, NULL), line by
        line as decode_rs.c has it (the reference :meth:`decode` is tested
        against)."""
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

    # -- parity by position tables ------------------------------------------

    def position_tables(self) -> list[list[int]]:
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

    def parity_fast(self, data: bytes | bytearray | memoryview) -> bytes:
        """Parity of a block of at most 128 bytes via the position tables."""
        tables = self.position_tables()
        acc = 0
        for t, byte in zip(tables[BLOCK_SIZE - len(data):], bytes(data), strict=True):
            acc ^= t[byte]
        return acc.to_bytes(self.nroots, "big")

    def check(self, data: bytes | bytearray | memoryview,
              parity: bytes | bytearray | memoryview) -> bool:
        """True when *parity* is the parity of *data* (at most 128 bytes):
        the cheap test before :meth:`decode`."""
        return self.parity_fast(bytes(data)) == bytes(parity)


@functools.lru_cache(maxsize=8)
def codec(nroots: int) -> Codec:
    """The shared :class:`Codec` for *nroots* parity bytes."""
    return Codec(nroots)

