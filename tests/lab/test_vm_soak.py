"""The short CI version of bench/soak.py (its docstring says what a cycle
does; docs/reliability.md has the figures of the long run): one QEMU
process on 6.12 with ramoops ECC and the ring recorder on, six crashes of
six kinds (three that panic: an oops, the hung-task detector, sysrq; three
that do not, known from the ring only: a reset, a soft lockup and a hard
lockup, the two lockups reset through the QEMU monitor), collect at every
boot, then the archive checked against what was crashed.  Six, not ten: a
ring cycle costs 20 to 50 s under TCG (two Python start-ups in the guest
per boot, collect and the recorder) and the suite has a time budget.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import kernel_for

pytestmark = pytest.mark.vm

BENCH = Path(__file__).resolve().parents[2] / "bench" / "soak.py"

#: The other ten crash kinds run in the long soak.
KINDS = ("reset", "null", "lockup", "hung", "hardlockup", "sysrq")


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_crash_loop_loses_nothing(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    soak = _harness()
    kernel_for("6.12")
    config = soak.Config("6.12", ecc=True, ring=True)
    chain = soak.Chain(config, 1, KINDS)
    (result,) = soak.run([chain], tmp_path, lab=lab)
    figs = soak.figures([result])["total"]
    why = "; ".join(f"boot {c.boot} ({c.kind}): {c.why}" for c in result.cycles if c.why)
    summary = f"{figs}; {why}; spurious {result.spurious}; error {result.error[:2000]}"
    assert not result.error, summary
    assert [c.kind for c in result.cycles] == list(KINDS), summary
    # Every boot collected (exit 0, or 4 when nothing was there: the first boot).
    assert sorted(result.collect_status) == list(range(1, len(KINDS) + 2)), summary
    assert set(result.collect_status.values()) <= {"0", "4"}, result.collect_status
    assert figs.cycles == figs.expected == len(KINDS), summary
    assert (figs.losses, figs.duplicates, figs.spurious, figs.left_in_pstore,
            figs.not_collected) == (0, 0, 0, 0, 0), summary
    assert figs.recovered == figs.classified == len(KINDS), summary
    assert all(c.marker for c in result.cycles), summary
    print(f"{figs.cycles} cycles in {figs.seconds:.0f} s")
