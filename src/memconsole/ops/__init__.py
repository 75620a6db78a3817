"""Operating memconsole on a machine and in a fleet: the journal entry of
each crash (:mod:`memconsole.ops.journal`).

The systemd units themselves are package data (``memconsole/units/``),
installed by :mod:`memconsole.setup.units`.
"""

from __future__ import annotations

__all__: list[str] = []
