"""The CLI's event helper (memconsole.cli._sources.all_events): what the
history library skipped marks the events partial, so show and list exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import lab_fixture


def test_history_reports_partial(tmp_path: Path) -> None:
    """The library gives the warnings (and prints nothing); the CLI helper
    marks the events partial so show and list can exit 3."""
    import argparse

    from memconsole.archive import Archive
    from memconsole.cli._sources import all_events
    from memconsole.history import crash_history
    from memconsole.pstore import PstoreSource

    (tmp_path / "a" / "boots" / "20260101T000000Z").mkdir(parents=True)
    (tmp_path / "a" / "boots" / "20260101T000000Z" / "records.json").write_text("{}")
    lab_fixture("6.1", "panic", tmp_path / "p")
    history = crash_history(Archive(tmp_path / "a"), [PstoreSource(tmp_path / "p", True)])
    assert [e.kind for e in history.events] == ["panic"]
    assert len(history.warnings) == 1 and "not a JSON list" in history.warnings[0]
    events = all_events(argparse.Namespace(archive=tmp_path / "a", pstore=tmp_path / "p",
                                           ring=None), "list")
    assert events.partial and len(events) == 1


def test_show_and_list_exit_partial_when_a_boot_is_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memconsole.cli import main

    (tmp_path / "a" / "boots" / "20260101T000000Z").mkdir(parents=True)
    (tmp_path / "a" / "boots" / "20260101T000000Z" / "records.json").write_text("{}")
    lab_fixture("6.12", "null", tmp_path / "p")
    for cmd in (["show"], ["list"], ["list", "--json"]):
        rc = main([*cmd, "--pstore", str(tmp_path / "p"), "--archive", str(tmp_path / "a")])
        out, err = capsys.readouterr()
        assert rc == 3, (cmd, err)
        assert out and err.count("\n") == 1 and "20260101T000000Z" in err
    # Without the damaged boot the same commands succeed.
    (tmp_path / "a" / "boots" / "20260101T000000Z" / "records.json").write_text("[]")
    assert main(["list", "--pstore", str(tmp_path / "p"), "--archive", str(tmp_path / "a")]) == 0
