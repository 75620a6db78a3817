"""``memconsole list --json`` is the fleet's stable record: every object it
prints for the lab's real crashes validates against docs/schema/list-v1.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from labarchive import CRASHES, shared

from memconsole.cli import main

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "list-v1.json"


@pytest.fixture(scope="module")
def lab_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    archive, pstore, _ = shared(tmp_path_factory)
    return archive, pstore


def _listed(capsys: pytest.CaptureFixture[str], archive: Path, pstore: Path,
            *extra: str) -> list[dict[str, object]]:
    assert main(["list", "--archive", str(archive), "--pstore", str(pstore), "--json",
                 *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_every_event_validates(lab_archive: tuple[Path, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    objects = _listed(capsys, *lab_archive)
    # null-then-sysrq leaves two crashes; the two rings add a hang each.
    assert len(objects) >= len(CRASHES) + 2
    validator = _validator()
    for obj in objects:
        validator.validate(obj)
        assert obj["version"] == 1
    kinds = {o["kind"] for o in objects}
    assert {"null-pointer", "panic", "bug", "soft-lockup", "unknown"} <= kinds
    rings = [o for o in objects if o["sources"] == ["ring"]]
    assert len(rings) == 2 and all(not o["ring"]["stopped"] for o in rings)  # type: ignore[index]


def test_every_bug_validates(lab_archive: tuple[Path, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    events = _listed(capsys, *lab_archive)
    bugs = _listed(capsys, *lab_archive, "--by-signature")
    validator = _validator()
    for obj in bugs:
        validator.validate(obj)
    assert sum(b["count"] for b in bugs) == len(events)  # type: ignore[misc]
    # The same crash on two kernels (and null-then-sysrq's null) is one bug.
    assert any(b["count"] > 1 for b in bugs)  # type: ignore[operator]


def test_schema_rejects_what_is_not_the_record(lab_archive: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    obj = _listed(capsys, *lab_archive)[0]
    validator = _validator()
    for broken in ({k: v for k, v in obj.items() if k != "version"},
                   {**obj, "version": 2},
                   {**obj, "pid": "121"},
                   {**obj, "renamed": obj["kind"]},
                   {**obj, "time": "2026-11-26 05:20:23"}):
        assert not validator.is_valid(broken), broken
