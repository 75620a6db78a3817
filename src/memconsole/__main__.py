"""``python -m memconsole``."""

from memconsole.cli.main import entry_point

entry_point()
