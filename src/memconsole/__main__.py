"""``python -m memconsole``."""

from memconsole.cli import entry_point

entry_point()
