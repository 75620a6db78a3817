"""Exit codes of every memconsole command, defined once (docs/cli.md)."""

from __future__ import annotations

__all__ = ["EXIT_BUSY", "EXIT_CHECK_FAILED", "EXIT_DATA_MISSING", "EXIT_ERROR",
           "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE"]

#: Everything asked for was done.
EXIT_OK = 0
#: The command failed as a whole (bad input, missing prerequisite, ...).
EXIT_ERROR = 1
#: The command line itself is wrong (argparse's own code).
EXIT_USAGE = 2
#: Batch work finished, but some entries failed; see stderr for each.
EXIT_PARTIAL = 3
#: There was nothing to read: no records, no archive, no ring.
EXIT_DATA_MISSING = 4
#: A check found a fault: ``doctor`` (a check says ``fail``) or ``canary``
#: (the previous boot's canary was lost or damaged).
EXIT_CHECK_FAILED = 5
#: Another instance holds the lock (``collect`` on one archive); nothing was
#: done, try again later (``EX_TEMPFAIL`` of sysexits.h).
EXIT_BUSY = 75
#: Interrupted by SIGINT (Ctrl-C), as shells report 128 + 2.
EXIT_INTERRUPTED = 130
