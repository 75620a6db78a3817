"""Command-line front end: ``memconsole COMMAND ...``.

Each command lives in its own module of this package exposing
``register(subparsers)``; the parser it adds sets ``func`` to a callable
``(args) -> int``.  stdout carries data, stderr carries diagnostics.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from memconsole import __version__
from memconsole.cli.exitcodes import (
    EXIT_DATA_MISSING,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
)
from memconsole.errors import MemconsoleError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["EXAMPLES", "EXIT_DATA_MISSING", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE",
           "build_parser", "entry_point", "main"]


# Command modules, in the order ``--help`` lists them.  Add one line per command.
_COMMAND_MODULES: tuple[str, ...] = (
    "memconsole.cli.collect",
    "memconsole.cli.show",
    "memconsole.cli.list",
    "memconsole.cli.record",
    "memconsole.cli.oops",
    "memconsole.cli.decode",
    "memconsole.cli.demo",
    "memconsole.cli.setup",
    "memconsole.cli.verify",
    "memconsole.cli.metrics",
    "memconsole.cli.report",
    "memconsole.cli.doctor",
    "memconsole.cli.canary",
)


# One example per command, shown at the end of its --help (and in the man
# page, scripts/cli_docs.py).  Add one entry with each command.
EXAMPLES: dict[str, str] = {
    "collect": "memconsole collect            # archive pstore into /var/lib/memconsole, "
               "then erase it\n"
               "memconsole collect --keep --json --ring mem:0x7200000:1M",
    "show": "memconsole show                        # why did the last boot die?\n"
            "memconsole show --ring mem:0x7200000:1M --boot -1",
    "list": "memconsole list --by-signature\n"
            "memconsole list --json | jq -r 'select(.kind != \"unknown\") | .signature'",
    "record": "memconsole record --ring mem:0x7200000:1M   # as memconsole-record.service runs it",
    "oops": "memconsole oops /var/log/kern.log.1.gz --symbols /usr/lib/debug",
    "decode": "memconsole decode ramoops.img --out records/",
    "demo": "sudo memconsole demo --kernel 6.12 --crash null",
    "setup": "sudo memconsole setup --dry-run --size 1M --ring 1M   # the plan, nothing written\n"
             "sudo memconsole setup --size 1M --ring 1M --panic 10 --units\n"
             "sudo memconsole setup --undo",
    "verify": "sudo memconsole verify --crash panic",
    "metrics": "memconsole metrics --textfile /var/lib/prometheus/node-exporter",
    "report": "memconsole report --html /tmp/crashes.html && xdg-open /tmp/crashes.html",
    "doctor": "sudo memconsole doctor          # one line per check, with its fix\n"
              "sudo memconsole doctor --json | jq -r 'select(.status != \"ok\") | .fix'",
    "canary": "sudo memconsole canary          # check the last boot's canary, write this "
              "boot's\n"
              "memconsole canary --check --json",
}


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped as usual; an epilog that opens with
    ``example:`` keeps its lines (commands are not re-wrapped)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def _example(command: str) -> str | None:
    ex = EXAMPLES.get(command)
    if ex is None:
        return None
    return "example:\n" + "\n".join("  " + line for line in ex.splitlines())


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, no usage dump."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in *argv*, if it is a known one (first non-option)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if f"memconsole.cli.{arg}" in _COMMAND_MODULES else None
        if arg == "--":
            return None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser: with *command*, only that command's module
    is imported (start-up stays cheap in early boot and under emulation);
    without, every command is registered (for ``--help``)."""
    parser = _Parser(
        prog="memconsole",
        description="Keep a Linux machine's last words across a crash: collect, "
        "archive and explain what pstore/ramoops saved.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 partial (some entries failed), "
        "4 nothing to read, 75 busy (another collect holds the archive), 130 interrupted; "
        "docs/cli.md and memconsole(1) list them all.  memconsole COMMAND --help shows "
        "an example of each command.",
    )
    parser.add_argument("--version", action="version", version=f"memconsole {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        if command is None or name == f"memconsole.cli.{command}":
            importlib.import_module(name).register(sub)
    for cmd, cmd_parser in sub.choices.items():
        if cmd_parser.epilog is None:
            cmd_parser.epilog = _example(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run memconsole with *argv* (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except MemconsoleError as exc:
        print(f"memconsole {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"memconsole {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``memconsole list | head``): not an error.
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
