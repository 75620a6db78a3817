"""Hypothesis strategies shared by the test suite, in one place.

* :func:`kernel_log`: real kernel log lines (from the fixtures, which come
  from real kernels and public reports) in any order, cut anywhere, with
  junk glued on and any line separators: what a log looks like after
  interleaving, truncation and console noise.
* :func:`mutated`: a real seed changed the way fuzzers change inputs (bytes
  flipped, inserted, deleted, a range repeated, another seed or a token
  spliced in, cut short), for the fuzz harnesses' Hypothesis halves.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

__all__ = ["kernel_log", "mutated"]


@st.composite
def kernel_log(draw: st.DrawFn, lines: Sequence[bytes], *, max_lines: int = 150,
               max_cut: int = 200, max_junk: int = 6,
               separators: Sequence[bytes] = (b"\n",)) -> bytes:
    """*lines* in any order and number (up to *max_lines*), each cut after
    at most *max_cut* bytes, followed by up to *max_junk* arbitrary bytes
    and one of *separators*."""
    parts = draw(st.lists(st.tuples(st.sampled_from(list(lines)), st.integers(0, max_cut),
                                    st.binary(max_size=max_junk),
                                    st.sampled_from(list(separators))),
                          max_size=max_lines))
    return b"".join(line[:cut] + junk + sep for line, cut, junk, sep in parts)


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], *, tokens: Sequence[bytes] = (),
            max_ops: int = 6, min_ops: int = 1) -> bytes:
    """One of *seeds* with *min_ops* to *max_ops* mutations."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    kinds = 7 if tokens else 6
    for _ in range(draw(st.integers(min_ops, max_ops))):
        op = draw(st.integers(0, kinds - 1))
        at = draw(st.integers(0, len(data)))
        if op == 0:
            if data:  # (an emptied input has no byte to flip)
                data[min(at, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == 2:
            del data[at:at + draw(st.integers(1, 4096))]
        elif op == 3:
            piece = data[at:at + draw(st.integers(1, 512))]
            data[at:at] = piece * draw(st.integers(1, 20))
        elif op == 4:
            other = draw(st.sampled_from(list(seeds)))
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start:start + draw(st.integers(1, 8192))]
        elif op == 5:
            del data[at:]
        else:
            token = draw(st.sampled_from(list(tokens)))
            data[at:at + len(token)] = token
    return bytes(data)
