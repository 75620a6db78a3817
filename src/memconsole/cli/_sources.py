"""The options that say where the read commands find records (pstore
directories, the archive, a ring), shared by ``collect``, ``show`` and
``list`` so the three agree on defaults.  Finding and reading the sources
is the library's (memconsole.pstore.find_sources, memconsole.history);
this module turns options into its parameters and prints its warnings.
An option not given takes its default from /etc/memconsole.conf
(memconsole.config.load(): ``archive``, ``ring``), read once per command
and only when an option needs it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from memconsole.cli._output import warn
from memconsole.errors import ConfigError
from memconsole.render import text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from memconsole.history import CrashEvent
    from memconsole.pstore import PstoreSource

# memconsole.archive and memconsole.pstore are imported where they are used:
# ``record`` uses this module for --ring only and reads neither.

__all__ = ["RING_ENV", "EventList", "add_archive_arg", "add_pstore_arg", "add_ring_arg",
           "all_events", "configured", "pstore_sources", "ring_spec", "warn"]

#: Environment variable that gives ``--ring`` its default for ``record``,
#: ``collect`` and ``list`` (systemd units read it from /etc/default/memconsole).
RING_ENV = "MEMCONSOLE_RING"


def add_pstore_arg(parser: argparse.ArgumentParser) -> None:
    """``--pstore DIR``."""
    from memconsole.pstore import DEFAULT_PSTORE_DIR, SYSTEMD_PSTORE_DIR

    parser.add_argument(
        "--pstore", metavar="DIR", type=Path,
        help=f"read records from DIR only (default: {DEFAULT_PSTORE_DIR} and "
        f"{SYSTEMD_PSTORE_DIR}, where systemd-pstore moves them)")


def add_archive_arg(parser: argparse.ArgumentParser) -> None:
    """``--archive DIR``, by default the configuration's ``archive``."""
    from memconsole.archive import DEFAULT_ARCHIVE_DIR

    parser.add_argument("--archive", metavar="DIR", type=Path, default=None,
                        help="the memconsole archive (default: archive = in "
                        f"/etc/memconsole.conf, else {DEFAULT_ARCHIVE_DIR})")


def add_ring_arg(parser: argparse.ArgumentParser, what: str, env_default: bool = True) -> None:
    """``--ring SPEC``, by default from ``$MEMCONSOLE_RING``, else the
    configuration's ``ring``."""
    default = os.environ.get(RING_ENV) or None if env_default else None
    parser.add_argument(
        "--ring", metavar="SPEC", default=default,
        help=f"{what}: a ring file, a pmem device (/dev/pmem0), or mem:ADDR:SIZE for a "
        "memmap-reserved physical range through /dev/mem"
        + (f" (default ${RING_ENV}, else ring = in /etc/memconsole.conf)"
           if env_default else ""))
    parser.set_defaults(ring_from_config=env_default)


def configured(args: argparse.Namespace, command: str) -> None:
    """Give ``--archive`` and ``--ring`` their configured defaults when not
    set: one :func:`memconsole.config.load`, its problems one warning line
    (a broken file never stops a command; its keys keep their defaults)."""
    if getattr(args, "config_applied", False):
        return
    args.config_applied = True
    archive = hasattr(args, "archive") and args.archive is None
    ring = getattr(args, "ring_from_config", False) and not args.ring
    if not (archive or ring):
        return
    from memconsole import config

    cfg = config.load()
    if cfg.warnings:
        more = len(cfg.warnings) - 1
        warn(command, text(cfg.warnings[0]) + (f" (and {more} more problem"
                                                f"{'s' if more > 1 else ''} in the file)"
                                                if more else ""))
    if archive:
        args.archive = cfg.archive
    if ring:
        args.ring = cfg.ring


def ring_spec(args: argparse.Namespace) -> str:
    """The ``--ring`` value, or a :class:`ConfigError` saying how to give one."""
    configured(args, "record")
    if not args.ring:
        raise ConfigError(f"no ring: give --ring SPEC, set ${RING_ENV} or ring = in "
                          "/etc/memconsole.conf")
    return str(args.ring)


def pstore_sources(args: argparse.Namespace, command: str) -> list[PstoreSource]:
    """The pstore directories of ``--pstore`` (or the defaults), their
    warnings printed.  An explicit ``--pstore`` that is missing is a
    :class:`ConfigError`.  Also gives ``--archive`` and ``--ring`` their
    configured defaults (:func:`configured`)."""
    from memconsole.pstore import find_sources

    configured(args, command)
    sources, warnings = find_sources(args.pstore)
    for line in warnings:
        warn(command, line)
    return sources


class EventList(list["CrashEvent"]):
    """Crash events, oldest first, and whether something had to be skipped
    to get them.

    Attributes:
        partial: something was skipped (each skip was one warning line on
            stderr): the command's exit status is then 3 (partial).
    """

    partial: bool = False


def all_events(args: argparse.Namespace, command: str) -> EventList:
    """Crash events from the archive, pending records and ``--ring``
    (memconsole.history.crash_history), oldest first; its warnings are
    printed, one line each."""
    from memconsole.archive import Archive
    from memconsole.history import crash_history

    configured(args, command)
    history = crash_history(Archive(args.archive), pstore_sources(args, command),
                            getattr(args, "ring", None))
    for line in history.warnings:
        warn(command, text(line))
    events = EventList(history.events)
    events.partial = bool(history.warnings)
    return events
