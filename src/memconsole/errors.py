"""The exception tree.  Every error memconsole raises derives from
:class:`MemconsoleError`; messages carry the numbers that explain them."""

from __future__ import annotations

__all__ = [
    "ArchiveBusyError",
    "ArchiveError",
    "ConfigError",
    "CorruptRecordError",
    "LabError",
    "MemconsoleError",
    "ParseError",
    "RegionError",
    "RingFormatError",
    "SetupError",
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


class RingFormatError(ParseError):
    """A memory region does not hold a usable memconsole ring header.

    Attributes:
        reason: ``"empty"`` (all zero), ``"foreign"`` (another format or
            garbage), ``"version"`` (a ring of another format version),
            ``"geometry"`` (a ring header that does not fit the region) or
            ``"damaged"`` (our magic, but the header checksum fails).
        version: the format version found, when the header names one.
    """

    def __init__(self, message: str, reason: str, version: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.version = version


class ConfigError(MemconsoleError):
    """A command-line option or configuration value is invalid."""


class ArchiveError(MemconsoleError):
    """The archive cannot be created, read or written."""


class ArchiveBusyError(ArchiveError):
    """Another ``collect`` holds the archive's lock and did not let go in
    the time allowed.  Nothing was read or written."""


class RegionError(MemconsoleError):
    """A ring's memory region cannot be used: a bad ``--ring`` spec, a
    physical range that is not reserved, a device that is busy or not pmem,
    a missing permission.  Nothing was written when this is raised."""


class SetupError(MemconsoleError):
    """``memconsole setup`` cannot plan or install a configuration: no RAM
    range satisfies the rules, the kernel lacks what the plan needs, a file
    cannot be written.  When this is raised during installation, every file
    is as it was before (the error says so, or names what is not)."""


class LabError(MemconsoleError):
    """The VM crash lab could not build, boot or crash a guest.

    Attributes:
        serial_tail: the last lines the guest printed on its serial console.
    """

    def __init__(self, message: str, serial_tail: str = "") -> None:
        super().__init__(message)
        self.serial_tail = serial_tail
