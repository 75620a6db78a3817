"""Command-line front end: ``memconsole COMMAND ...``.

One module per command (``collect``, ``show``, ``list``...), each exposing
``register(subparsers)``; :mod:`memconsole.cli.main` builds the parser and
runs the chosen command.  The front end lives in its own module so that a
command module named like a builtin (``list``) never shadows it there.
"""

from memconsole.cli.main import (
    EXIT_DATA_MISSING,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    build_parser,
    entry_point,
    main,
)

__all__ = ["EXIT_DATA_MISSING", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE",
           "build_parser", "entry_point", "main"]
