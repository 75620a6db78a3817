"""Kernel taint flags: letters and names.

The table mirrors ``taint_flags[]`` in kernel/panic.c (6.15: 20 flags,
``TAINT_FLAGS_COUNT``); the kernel prints it two ways, both handled by
:mod:`memconsole.oops`:

* ``print_tainted()``: one column per flag, the flag's letter when set and a
  space (``G`` for an unset ``P``) otherwise: ``Tainted: G           OE``;
* ``print_tainted_verbose()`` (6.11+): ``Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE``.

A letter a newer kernel adds is kept and named ``<unknown X>``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["TAINT_FLAGS", "TaintFlag", "taint_names"]


class TaintFlag(NamedTuple):
    """One taint flag."""

    bit: int
    """Bit number in ``/proc/sys/kernel/tainted``."""
    letter: str
    """The letter ``print_tainted()`` shows when the flag is set."""
    name: str
    """The ``TAINT_*`` name without its prefix, as 6.11+ prints it."""


#: kernel/panic.c taint_flags[], in bit order (include/linux/panic.h TAINT_*).
TAINT_FLAGS: tuple[TaintFlag, ...] = tuple(
    TaintFlag(bit, letter, name) for bit, (letter, name) in enumerate((
        ("P", "PROPRIETARY_MODULE"),
        ("F", "FORCED_MODULE"),
        ("S", "CPU_OUT_OF_SPEC"),
        ("R", "FORCED_RMMOD"),
        ("M", "MACHINE_CHECK"),
        ("B", "BAD_PAGE"),
        ("U", "USER"),
        ("D", "DIE"),
        ("A", "OVERRIDDEN_ACPI_TABLE"),
        ("W", "WARN"),
        ("C", "CRAP"),
        ("I", "FIRMWARE_WORKAROUND"),
        ("O", "OOT_MODULE"),
        ("E", "UNSIGNED_MODULE"),
        ("L", "SOFTLOCKUP"),
        ("K", "LIVEPATCH"),
        ("X", "AUX"),
        ("T", "RANDSTRUCT"),
        ("N", "TEST"),
        ("J", "FWCTL"),
    )))

_BY_LETTER = {f.letter: f for f in TAINT_FLAGS}


def taint_names(letters: str) -> tuple[str, ...]:
    """Names of the flags in *letters* (``"OE"`` -> ``("OOT_MODULE", "UNSIGNED_MODULE")``),
    in the order given; unknown letters as ``<unknown X>``."""
    return tuple(_BY_LETTER[c].name if c in _BY_LETTER else f"<unknown {c}>" for c in letters)
