"""``setup`` and ``setup --undo`` SIGKILLed, then run again to completion, in
a scratch root: the short CI version of bench/kill_setup.py (its docstring
says what a round does and checks; docs/reliability.md, "Fault injection
at scale", has the long run's figures).  Plus the reproducers of what the
harness found: directory times undo did not give back, and what a killed
run left that the next run did not clean."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import memconsole
from conftest import require
from memconsole.cli.main import main

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kill_setup.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kill_setup", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_setup"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _boot_ready() -> None:
    require(any(Path("/boot").glob("vmlinuz-*")), "no kernel under /boot")


def _summary(fig: object) -> str:
    d = vars(fig)
    return ", ".join(f"{k} {v}" for k, v in d.items() if k != "notes") + "; " + "; ".join(
        d["notes"][:6])


def test_harness_refuses_the_real_root(tmp_path: Path) -> None:
    harness = _harness()
    with pytest.raises(SystemExit, match="refusing root"):
        harness._safe_root(Path("/"), tmp_path)
    with pytest.raises(SystemExit, match="refusing root"):
        harness._safe_root(tmp_path, tmp_path)  # the work directory itself
    with pytest.raises(SystemExit, match="refusing root"):
        harness._safe_root(tmp_path / "r", Path("/"))


def test_kills_at_file_operations_and_random_moments(tmp_path: Path) -> None:
    """Six rounds killed just before a file operation (sampled over both
    layouts and the three scenarios) and a few random kills: nothing
    half-written, the completed command's tree exact."""
    _boot_ready()
    harness = _harness()
    # The harness runs the setup of the tree under test.
    assert Path(str(memconsole.__file__)).resolve().parents[1] == harness.SRC
    fig = harness.run(kills=3, seed=20261202, work=tmp_path, steps=6, runs=1)
    summary = _summary(fig)
    assert fig.failures == 0, summary
    assert fig.step_rounds == 6 and fig.kills >= 9, summary
    # The kills interrupted file operations, and some left a mixed tree.
    assert fig.in_work >= 6 and fig.mid_transaction >= 2, summary


def _layout(tmp_path: Path, layout: str) -> Path:
    harness = _harness()
    root = tmp_path / "root"
    root.mkdir()
    harness.make_layout(root, layout)
    return root


def _setup(root: Path, *extra: str) -> int:
    iomem = Path(__file__).resolve().parents[1] / "fixtures/setup/iomem/qemu-seabios-512M-6.12.txt"
    return main(["setup", "--root", str(root), "--iomem", str(iomem), *extra])


@pytest.mark.parametrize("layout, parent", [("minimal", "."), ("debian", "var/lib")])
def test_undo_gives_back_the_time_of_the_manifest_directory_parent(
        tmp_path: Path, layout: str, parent: str) -> None:
    """Before: undo removed /var/lib/memconsole (setup had created it for its
    manifest) but left /var/lib with the time of that removal: the manifest's
    directory was not among those whose times setup recorded."""
    _boot_ready()
    harness = _harness()
    root = _layout(tmp_path, layout)
    before = harness.snapshot(root)
    assert _setup(root) == 0
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    after = harness.snapshot(root)
    assert after[parent] == before[parent]
    assert after == before


def test_undo_gives_back_the_time_of_an_existing_wants_directory(tmp_path: Path) -> None:
    """Before: with --units on a system that already has
    /etc/systemd/system/sysinit.target.wants, undo removed the links but the
    directory kept the time of their removal (the units are a step beside
    the transaction, and their directories were not recorded)."""
    _boot_ready()
    harness = _harness()
    root = _layout(tmp_path, "debian")
    before = harness.snapshot(root)
    assert _setup(root, "--units", "--ring", "1M") == 0
    wants = "etc/systemd/system/sysinit.target.wants"
    assert (root / wants / "memconsole-record.service").is_symlink()
    assert main(["setup", "--root", str(root), "--undo"]) == 0
    assert harness.snapshot(root) == before


def _killed_at(tmp_path: Path, ref: Any, undo: bool, pick: str) -> int:
    """The file operation of an uninterrupted run (setup of the layout, or
    --undo of the installed one) whose path ends with *pick*, from 1."""
    harness = _harness()
    root = harness._copy(ref.installed if undo else ref.template, tmp_path / "probe", tmp_path)
    log = tmp_path / "ops.log"
    os.environ["KILL_SETUP_LOG"] = str(log)
    try:
        assert harness.run_command(root, undo).rc == 0
    finally:
        del os.environ["KILL_SETUP_LOG"]
    ops = log.read_text().splitlines()
    return next(i for i, line in enumerate(ops, 1) if line.endswith(pick))


def test_undo_after_a_setup_killed_while_staging(tmp_path: Path) -> None:
    """Before: a setup killed after staging its first file (manifest not yet
    committed) left the staged file and the directories it created, and the
    undo that followed said 'nothing to undo' and left them."""
    _boot_ready()
    harness = _harness()
    ref = harness.reference(tmp_path, "debian", runs=1)
    step = _killed_at(tmp_path, ref, False, ".memconsole.conf.memconsole-new")
    fig = harness.Figures()
    harness.one_round(tmp_path, 0, ref, "setup-then-undo", fig, None, step=step)
    assert fig.failures == 0 and fig.manifest_dir_left == 0, _summary(fig)


def test_undo_killed_after_restoring_the_files(tmp_path: Path) -> None:
    """Before: an undo killed once it had removed the manifest but not yet
    the directories setup created (/etc/default/grub.d, the systemd-pstore
    drop-in's) left them for good: the next undo found no manifest."""
    _boot_ready()
    harness = _harness()
    ref = harness.reference(tmp_path, "debian", runs=1)
    step = _killed_at(tmp_path, ref, True, "systemd-pstore.service.d")
    fig = harness.Figures()
    harness.one_round(tmp_path, 0, ref, "undo", fig, None, step=step)
    assert fig.failures == 0 and fig.manifest_dir_left == 0, _summary(fig)
