#!/usr/bin/env python3
"""Generate memconsole's man page and bash completion from its argument parser.

    python3 scripts/cli_docs.py            # rewrite both files below
    python3 scripts/cli_docs.py --check    # exit 1 if either is out of date

* ``share/man/man1/memconsole.1``: every command with its synopsis,
  description, options and example (``memconsole.cli.main.EXAMPLES``), and
  the exit codes with the comments of ``memconsole/cli/exitcodes.py``;
* ``share/bash-completion/completions/memconsole``: the function
  ``_memconsole``: commands, each command's options, the choices of options
  that have them, directories for ``DIR`` values, files for ``FILE``,
  ``PATH`` and ``IMAGE`` values and positional arguments.

Both are checked in; tests/cli/test_help_docs.py fails when they differ from
what this script writes.  Install: copy them to /usr/local/share/man/man1/
and /usr/local/share/bash-completion/completions/ (docs/cli.md).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memconsole import __version__  # noqa: E402
from memconsole.cli import exitcodes  # noqa: E402
from memconsole.cli.main import EXAMPLES, build_parser  # noqa: E402

MAN_PAGE = ROOT / "share" / "man" / "man1" / "memconsole.1"
COMPLETION = ROOT / "share" / "bash-completion" / "completions" / "memconsole"
_DIR_WORDS = ("DIR",)
_FILE_WORDS = ("FILE", "PATH", "IMAGE")


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers, in --help order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def exit_codes() -> list[tuple[str, int, str]]:
    """(name, value, its ``#:`` comment) for each code of exitcodes.py, in order."""
    source = Path(exitcodes.__file__).read_text()
    comments: list[str] = []
    out = []
    for line in source.splitlines():
        if line.startswith("#:"):
            comments.append(line[2:].strip())
            continue
        m = re.match(r"^(EXIT_[A-Z_]+) = (.+)$", line)
        if m:
            out.append((m.group(1), int(ast.literal_eval(m.group(2))), " ".join(comments)))
        comments = []
    return out


# -- man page -------------------------------------------------------------------

def _roff(text: str) -> str:
    """Text for a roff line: backslashes and hyphens escaped, no leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln[:1] in (".", "'") else ln for ln in text.splitlines())


def _option_label(action: argparse.Action) -> str:
    names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    if action.choices is not None:
        value = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        value = str(action.metavar or action.dest.upper())
    return f"{names} \\fI{_roff(str(value))}\\fR"


def _help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": parser.prog,
                       "default": action.default}
    return text


def man_page() -> str:
    parser = build_parser()
    cmds = commands(parser)
    out = [f'.TH MEMCONSOLE 1 "" "memconsole {__version__}" "User Commands"',
           ".SH NAME", "memconsole \\- keep a Linux machine's last words across a crash",
           ".SH SYNOPSIS", "\\fBmemconsole\\fR \\fICOMMAND\\fR [\\fIoptions\\fR]",
           ".br", "\\fBmemconsole\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR",
           ".SH DESCRIPTION", _roff(parser.description or ""),
           ".PP", _roff("Data goes to stdout; diagnostics and progress to stderr, one line "
                        "each, prefixed memconsole COMMAND:.  Documentation: docs/ in the "
                        "source tree (docs/cli.md for every command)."),
           ".SH COMMANDS"]
    for name, sub in cmds.items():
        usage = sub.format_usage().removeprefix("usage: ").rstrip()
        out += [f".SS {name}", ".nf", _roff(usage), ".fi",
                ".PP", _roff(sub.description or "")]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                out += [".TP", _option_label(action), _roff(_help(action, sub))]
            else:
                out += [".TP", f"\\fI{_roff(str(action.metavar or action.dest))}\\fR",
                        _roff(_help(action, sub))]
        if name in EXAMPLES:
            out += [".PP", "Example:", ".PP", ".RS", ".nf", _roff(EXAMPLES[name]), ".fi",
                    ".RE"]
    out += [".SH EXIT STATUS", "Every command uses these codes "
            "(src/memconsole/cli/exitcodes.py):"]
    for code_name, value, comment in exit_codes():
        out += [".TP", f"\\fB{value}\\fR ({code_name})", _roff(comment)]
    out += [".SH ENVIRONMENT", ".TP", "\\fBMEMCONSOLE_RING\\fR",
            _roff("the default of --ring for record, collect, list, metrics and report."),
            ".SH FILES", ".TP", "\\fI/var/lib/memconsole\\fR",
            _roff("the archive: boots/<boot>/ with the records, records.json, the rings, "
                  "journal.json and canary.json."),
            ".TP", "\\fI/etc/systemd/system/memconsole\\-collect.service\\fR, "
            "\\fImemconsole\\-record.service\\fR",
            _roff("the units memconsole setup installs (docs/operations.md)."),
            ".SH SEE ALSO", "\\fBjournalctl\\fR(1), \\fBsystemd\\-pstore\\fR(8), "
            "\\fBdmesg\\fR(1)"]
    return "\n".join(out) + "\n"


# -- bash completion ----------------------------------------------------------------

def _value_kind(action: argparse.Action) -> str:
    """How the value of *action* completes: ``choices:...``, ``dir``, ``file`` or ``none``."""
    if action.choices is not None:
        return "choices:" + " ".join(str(c) for c in action.choices)
    meta = str(action.metavar or "")
    if any(w in meta for w in _DIR_WORDS):
        return "dir"
    if any(w in meta for w in _FILE_WORDS):
        return "file"
    return "none"


def _quote(words: str) -> str:
    return "'" + words.replace("'", "'\\''") + "'"


def completion() -> str:
    parser = build_parser()
    cmds = commands(parser)
    top = " ".join([*cmds, "--help", "--version"])
    lines = [
        "# bash completion for memconsole, generated from its argument parser by",
        "# scripts/cli_docs.py: do not edit.",
        "_memconsole() {",
        "    local cur prev cmd i opts",
        '    cur=${COMP_WORDS[COMP_CWORD]}',
        '    prev=${COMP_WORDS[COMP_CWORD-1]}',
        '    cmd=',
        '    for ((i = 1; i < COMP_CWORD; i++)); do',
        '        case ${COMP_WORDS[i]} in',
        '            -*) ;;',
        '            *) cmd=${COMP_WORDS[i]}; break ;;',
        '        esac',
        '    done',
        '    COMPREPLY=()',
        '    if [[ -z $cmd ]]; then',
        f'        COMPREPLY=($(compgen -W {_quote(top)} -- "$cur"))',
        '        return 0',
        '    fi',
        '    case $cmd in',
    ]
    for name, sub in cmds.items():
        options: list[str] = []
        values: dict[str, list[str]] = {}
        positional = "none"
        for action in sub._actions:
            if action.option_strings:
                options += action.option_strings
                if action.nargs != 0:
                    values.setdefault(_value_kind(action), []).extend(action.option_strings)
            else:
                positional = "file"
        lines.append(f"        {name})")
        lines.append(f"            opts={_quote(' '.join(options))}")
        if values:
            lines.append('            case $prev in')
            for kind, opts in values.items():
                pattern = "|".join(opts)
                if kind.startswith("choices:"):
                    action_line = (f'COMPREPLY=($(compgen -W {_quote(kind[8:])} -- "$cur"))')
                elif kind == "dir":
                    action_line = 'COMPREPLY=($(compgen -d -- "$cur"))'
                elif kind == "file":
                    action_line = 'COMPREPLY=($(compgen -f -- "$cur"))'
                else:
                    action_line = ":"
                lines.append(f"                {pattern}) {action_line}; return 0 ;;")
            lines.append('            esac')
        if positional == "file":
            lines += ['            if [[ $cur != -* ]]; then',
                      '                COMPREPLY=($(compgen -f -- "$cur"))',
                      '                return 0',
                      '            fi']
        lines += ['            COMPREPLY=($(compgen -W "$opts" -- "$cur"))', "            ;;"]
    lines += ["    esac", "    return 0", "}", "complete -o filenames -F _memconsole memconsole",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate memconsole's man page and bash "
                                 "completion from its argument parser.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 when a checked-in file differs")
    args = ap.parse_args(argv)
    stale = []
    for path, text in ((MAN_PAGE, man_page()), (COMPLETION, completion())):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    for path in stale:
        print(f"{path.relative_to(ROOT)} is out of date: run scripts/cli_docs.py",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
