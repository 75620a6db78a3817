"""Crash signatures: a stable identity for "the same bug".

A signature is the first 16 hex digits of the SHA-256 of its *basis*, a
short text built only from names:

    <kind>|<culprit [module]>|<caller>|<caller's caller>|<...>

* the kind (``null-pointer``, ``warning``, ...);
* the report's culprit (:attr:`memconsole.oops.Report.culprit`, the frame its
  title and headline name), then the frames after it in the same stack, at
  most :data:`DEPTH` functions in all; the callers skip the same machinery as
  the culprit (:mod:`memconsole.oops._machinery`, one table) and the entry
  frames too, whose names change between kernel versions;
* compiler suffixes that change from build to build are removed
  (``.cold``, ``.constprop.0``, ``.isra.0``, ``.part.0``, ``.llvm.123``), and
  system call wrappers are reduced to the call's name (``__x64_sys_finit_module``
  and ``__do_sys_finit_module`` are both ``finit_module``);
* offsets, sizes, addresses, PIDs, CPUs, times and line numbers are never
  used, so the signature survives reboots, KASLR, rebuilds and minor
  versions; a different kind or culprit gives a different signature.

A kernel panic adds its reason with numbers as ``N``.  A report without any
usable frame (a bare panic line, a truncated report) falls back to its
headline with every number replaced by ``N``, plus the work function of its
``Workqueue:`` line if it has one; two different bugs whose reports were both
cut before any frame can share such a signature.

This module computes from names only; the report builder calls it once per
report and stores the result in :attr:`memconsole.oops.Report.signature`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from memconsole._common import sha256_hex
from memconsole.oops._machinery import SYSCALL_PREFIXES, normalize_function
from memconsole.oops._model import Kind

__all__ = ["DEPTH", "basis", "digest", "normalize_function", "syscall_name"]

#: How many functions (culprit plus callers) go into the basis.
DEPTH = 4

@functools.cache
def _number() -> re.Pattern[str]:
    return re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+")


@functools.lru_cache(maxsize=16384)
def syscall_name(name: str) -> str:
    """*name* without any system call wrapper prefix: ``__x64_sys_rmdir``,
    ``__se_sys_rmdir``, ``SyS_rmdir`` -> ``rmdir``."""
    for _ in range(4):
        for prefix in SYSCALL_PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix):]
                break
        else:
            break
    return name


def basis(kind: Kind, functions: Sequence[str], *, headline: str, panic_reason: str | None = None,
          workqueue: str | None = None) -> str:
    """The text a signature hashes: *kind*, then the *functions* (labels such as
    ``crashy_null [crashy]``, culprit first, at most :data:`DEPTH`); a panic's
    reason with numbers as ``N``; without functions the *headline* with numbers as
    ``N`` and the work function of the *workqueue* line."""
    parts = [kind.value, *functions[:DEPTH]]
    if kind is Kind.PANIC or not functions:
        what = panic_reason if kind is Kind.PANIC and panic_reason else headline
        parts.append(_number().sub("N", what).strip())
    if not functions and workqueue:
        # "events crashy_work_fn [crashy]": the work function is stable, the pool is not.
        parts.append("work " + workqueue.split(" ", 1)[-1])
    return "|".join(parts)


def digest(basis_text: str) -> str:
    """The 16 hex digits of *basis_text*."""
    return sha256_hex(basis_text.encode("utf-8", "backslashreplace"))[:16]
