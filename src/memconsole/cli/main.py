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

__all__ = ["EXIT_DATA_MISSING", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE",
           "entry_point", "main"]


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
    "memconsole.cli.doctor",
    "memconsole.cli.canary",
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, no usage dump."""

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
        "4 nothing to read.",
    )
    parser.add_argument("--version", action="version", version=f"memconsole {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        if command is None or name == f"memconsole.cli.{command}":
            importlib.import_module(name).register(sub)
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
