"""SIGKILL one or two concurrent ``memconsole collect`` processes at random
moments over real records, then a clean run: nothing lost, nothing twice,
no temporary file left, one boot directory per crash.

The short CI version of bench/kill_collect.py (its docstring says what a
round does; docs/reliability.md has the figures of the long run).  As root,
every third round archives into a small tmpfs, so that copies also fail for
want of space while kills go on.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import memconsole

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kill_collect.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kill_collect", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_collect"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_random_kills_lose_nothing(tmp_path: Path) -> None:
    harness = _harness()
    # The harness runs the collect of the tree under test.
    assert Path(memconsole.__file__).resolve().parents[1] == harness.ROOT / "src"
    fig = harness.run(kills=60, seed=20261202, work=tmp_path,
                      full_disk_every=3 if os.geteuid() == 0 else 0)
    summary = (f"{fig.kills} kills, {fig.hits} hit a running collect, {fig.in_work} in its "
               f"work, {fig.mid_run} mid-run, {fig.rounds} rounds, {fig.seconds} s; "
               + "; ".join(fig.notes[:5]))
    assert fig.failures == 0, summary
    assert (fig.lost, fig.duplicates, fig.left_in_pstore, fig.leftovers, fig.unindexed,
            fig.wrong_boots) == (0, 0, 0, 0, 0, 0), summary
    assert fig.kills >= 60 and fig.records > 0
    # The kills really interrupted work, not only start-up or an idle process.
    assert fig.hits >= 20 and fig.in_work >= 5 and fig.mid_run >= 3, summary
    print(summary)
