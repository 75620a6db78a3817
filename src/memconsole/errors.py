"""The exception tree.  Every error memconsole raises derives from
:class:`MemconsoleError`; messages carry the numbers that explain them."""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ConfigError",
    "CorruptRecordError",
    "LabError",
    "MemconsoleError",
    "ParseError",
]


class MemconsoleError(Exception):
    """Base of every memconsole error."""


class ParseError(MemconsoleError):
    """Input bytes do not follow the format they claim to follow."""


class CorruptRecordError(ParseError):
    """One record is damaged (bad header, failed decompression, ...).

    Attributes:
        record: name of the record (file name or zone), or ``""``.
    """

    def __init__(self, message: str, record: str = "") -> None:
        super().__init__(message)
        self.record = record


class ConfigError(MemconsoleError):
    """A command-line option or configuration value is invalid."""


class ArchiveError(MemconsoleError):
    """The archive cannot be created, read or written."""


class LabError(MemconsoleError):
    """The VM crash lab could not build, boot or crash a guest.

    Attributes:
        serial_tail: the last lines the guest printed on its serial console.
    """

    def __init__(self, message: str, serial_tail: str = "") -> None:
        super().__init__(message)
        self.serial_tail = serial_tail
