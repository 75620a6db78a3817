"""Every command's --help ends with an example of it."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from memconsole.cli.main import build_parser, main


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_commands())


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def test_every_command_is_covered() -> None:
    assert {"collect", "list", "metrics", "report", "setup"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command: str) -> None:
    text = _help(command)
    head, sep, example = text.partition("\nexample:\n")
    assert sep, f"memconsole {command} --help has no example section"
    lines = [ln.strip() for ln in example.splitlines() if ln.strip()]
    assert lines and all(ln.startswith(("memconsole ", "sudo memconsole ")) for ln in lines)
    # The example runs this command, with options it has.
    for line in lines:
        words = line.removeprefix("sudo ").split()
        assert words[1] == command
        options = {w.split("=")[0] for w in words[2:] if w.startswith("--")}
        for opt in options:
            assert opt in head, f"example uses {opt}, which {command} does not have"


def test_top_level_help_names_every_command_and_exit_codes() -> None:
    text = _help()
    for command in COMMANDS:
        assert command in text
    assert "75 busy" in text and "130 interrupted" in text
