"""The man page and the bash completion are generated from the argument
parser (scripts/cli_docs.py) and checked in; the exit codes of
cli/exitcodes.py are all documented."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require
from memconsole.cli import exitcodes
from memconsole.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import cli_docs  # noqa: E402

CMDS = cli_docs.commands(build_parser())


def test_checked_in_files_are_current() -> None:
    assert cli_docs.MAN_PAGE.read_text() == cli_docs.man_page(), \
        "share/man/man1/memconsole.1 is stale: run scripts/cli_docs.py"
    assert cli_docs.COMPLETION.read_text() == cli_docs.completion(), \
        "the bash completion is stale: run scripts/cli_docs.py"


def _rendered() -> str:
    require(shutil.which("groff") is not None, "groff is not installed (groff-base)")
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(cli_docs.MAN_PAGE)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "GROFF_NO_SGR": "1"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return re.sub(r".\x08", "", done.stdout)  # overstrike bold and underline


@pytest.mark.parametrize("command", sorted(CMDS))
def test_man_page_has_every_command_and_option(command: str) -> None:
    text = _rendered()
    section = text.split(f"\n   {command}\n", 1)
    assert len(section) == 2, f"no section for {command}"
    body = re.split(r"\n   [a-z]+\n|\nEXIT STATUS", section[1], maxsplit=1)[0]
    for action in CMDS[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue  # -h, --help: said once, in SYNOPSIS
        for opt in action.option_strings:
            assert opt in body, f"{command}: {opt} missing from the man page"
    assert "Example:" in body


def test_man_page_exit_status() -> None:
    text = _rendered().split("EXIT STATUS", 1)[1]
    for name, value, _ in cli_docs.exit_codes():
        assert re.search(rf"^\s+{value} \({name}\)$", text, re.MULTILINE), name


def _codes() -> dict[str, int]:
    return {k: v for k, v in vars(exitcodes).items()
            if k.startswith("EXIT_") and isinstance(v, int)}


def test_every_exit_code_is_documented() -> None:
    docs = (ROOT / "docs" / "cli.md").read_text()
    table = docs.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert len(_codes()) >= 7
    for name, value in _codes().items():
        assert re.search(rf"^\| {value} \| `{name}` \| \S", table, re.MULTILINE), \
            f"{name} = {value} has no row in docs/cli.md's exit code table"
    # And the generator reads the same table as the module.
    assert {n: v for n, v, _ in cli_docs.exit_codes()} == _codes()


# -- bash completion, sourced in a real bash -----------------------------------

def _complete(*words: str, cwd: Path | None = None) -> list[str]:
    bash = shutil.which("bash")
    require(bash is not None, "bash is not installed")
    assert bash is not None
    script = (f"source {cli_docs.COMPLETION}\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
              "COMP_LINE=\"$*\"; COMP_POINT=${#COMP_LINE}\n"
              "_memconsole\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
              "complete -p memconsole >&2\n")
    done = subprocess.run([bash, "--norc", "--noprofile", "-c", script, "bash",
                           "memconsole", *words], capture_output=True, text=True,
                          check=True, cwd=cwd)
    assert "-F _memconsole memconsole" in done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_completion_of_commands() -> None:
    assert _complete("") == [*CMDS, "--help", "--version"]
    assert _complete("me") == ["metrics"]
    assert _complete("re") == ["record", "report"]


@pytest.mark.parametrize("command", sorted(CMDS))
def test_completion_of_every_option(command: str) -> None:
    want = [o for a in CMDS[command]._actions for o in a.option_strings if o.startswith("--")]
    got = _complete(command, "--")
    assert got == want


def test_completion_of_values(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile.html").write_text("")
    assert _complete("collect", "--journal", "") == ["auto", "yes", "no"]
    assert _complete("record", "--format", "t") == ["text"]
    assert _complete("metrics", "--textfile", "a", cwd=tmp_path) == ["adir"]
    assert sorted(_complete("report", "--html", "a", cwd=tmp_path)) == ["adir", "afile.html"]
    assert sorted(_complete("oops", "a", cwd=tmp_path)) == ["adir", "afile.html"]
    # A value that is not a path or a choice completes to nothing.
    assert _complete("metrics", "--ring", "") == []
    # After a value, options again.
    assert "--html" in _complete("report", "--archive", "x", "--")


def test_commands_are_in_one_place() -> None:
    assert isinstance(next(a for a in build_parser()._actions
                           if isinstance(a, argparse._SubParsersAction)),
                      argparse._SubParsersAction)
