"""memconsole: make a Linux machine's last words survive a crash.

The core modules (pstore, oops, archive, cli) use the standard library only,
so they run in early boot on a bare system.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
