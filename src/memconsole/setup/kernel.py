"""Pure readers of what an installed kernel says about itself: the bzImage
setup header, a kernel configuration file, a module's ``.modinfo`` section
and ``modules.builtin.modinfo``.  Bytes in, immutable values out; no I/O
(:mod:`memconsole.setup.facts` reads the files).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from memconsole.errors import ParseError

__all__ = [
    "BootHeader",
    "builtin_params",
    "modinfo_params",
    "parse_bzimage",
    "parse_kconfig",
    "release_key",
]

# Documentation/arch/x86/boot.rst, "The real-mode kernel header": offsets
# from the start of the image file.
_HDRS_MAGIC_OFF = 0x202
_HDRS_MAGIC = b"HdrS"
_VERSION_OFF = 0x206        # u16 boot protocol version
_KVER_OFF = 0x20E           # u16 kernel_version: string at 0x200 + value
_SYSSIZE_OFF = 0x1F4        # u32 protected-mode code size in 16-byte paragraphs
_INITRD_MAX_OFF = 0x22C     # u32 initrd_addr_max (protocol 2.03+)
_ALIGN_OFF = 0x230          # u32 kernel_alignment (2.05+)
_XLOADFLAGS_OFF = 0x236     # u16 xloadflags (2.12+)
_PREF_OFF = 0x258           # u64 pref_address (2.10+)
_INIT_SIZE_OFF = 0x260      # u32 init_size (2.10+)
_XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1


@dataclass(frozen=True)
class BootHeader:
    """The x86 boot protocol header of a bzImage.

    Attributes:
        protocol: boot protocol version (``0x20f`` is 2.15).
        kernel_version: the version string the image carries
            (``6.12.117+deb12-amd64 (debian-kernel@...) #1 SMP ...``), or "".
        init_size: bytes the kernel needs from its load address while it
            decompresses and initialises (the footprint with ``nokaslr``).
        pref_address: preferred load address (``LOAD_PHYSICAL_ADDR``).
        kernel_alignment: physical alignment the kernel requires.
        initrd_addr_max: highest address an initrd may end at.
        syssize: bytes of protected-mode code a loader copies to 1 MiB.
        initrd_above_4g: ``XLF_CAN_BE_LOADED_ABOVE_4G`` is set.
    """

    protocol: int
    kernel_version: str
    init_size: int
    pref_address: int
    kernel_alignment: int
    initrd_addr_max: int
    syssize: int
    initrd_above_4g: bool

    @property
    def release(self) -> str:
        """The ``uname -r`` part of :attr:`kernel_version` ("" if none)."""
        return self.kernel_version.split(" ", 1)[0]


def parse_bzimage(data: bytes) -> BootHeader:
    """Read the setup header of an x86 bzImage (only the first 4 KiB are
    needed).  Raises :class:`ParseError` for anything that is not a bzImage
    of boot protocol 2.10 or later (``init_size`` is 2.10's)."""
    if len(data) < _INIT_SIZE_OFF + 4 or data[_HDRS_MAGIC_OFF:_HDRS_MAGIC_OFF + 4] != _HDRS_MAGIC:
        raise ParseError("not an x86 bzImage (no 'HdrS' boot header at 0x202)")
    (protocol,) = struct.unpack_from("<H", data, _VERSION_OFF)
    if protocol < 0x20A:
        raise ParseError(f"boot protocol {protocol >> 8}.{protocol & 0xff} is older than "
                         "2.10 (no init_size)")
    (kver_ptr,) = struct.unpack_from("<H", data, _KVER_OFF)
    version = ""
    start = 0x200 + kver_ptr
    if kver_ptr and start < len(data):
        end = data.find(b"\0", start, start + 256)
        version = data[start:end if end >= 0 else start + 256].decode("ascii", "replace")
    (syssize,) = struct.unpack_from("<I", data, _SYSSIZE_OFF)
    (initrd_max,) = struct.unpack_from("<I", data, _INITRD_MAX_OFF)
    (align,) = struct.unpack_from("<I", data, _ALIGN_OFF)
    (xlf,) = struct.unpack_from("<H", data, _XLOADFLAGS_OFF)
    (pref,) = struct.unpack_from("<Q", data, _PREF_OFF)
    (init_size,) = struct.unpack_from("<I", data, _INIT_SIZE_OFF)
    return BootHeader(protocol, version, init_size, pref, align, initrd_max, syssize * 16,
                      bool(xlf & _XLF_CAN_BE_LOADED_ABOVE_4G))


_KCONFIG_SET = re.compile(rb"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_KCONFIG_UNSET = re.compile(rb"^# CONFIG_([A-Za-z0-9_]+) is not set$")


def parse_kconfig(data: bytes) -> dict[str, str]:
    """``/boot/config-R`` -> ``{"PSTORE": "y", "PSTORE_RAM": "m", ...}``
    (names without ``CONFIG_``; ``# CONFIG_X is not set`` gives ``"n"``;
    quoted strings keep their quotes off).  Raises :class:`ParseError` when
    nothing in *data* looks like a kernel configuration."""
    out: dict[str, str] = {}
    bad = 0
    for line in data.splitlines()[:200_000]:
        line = line.strip()
        m = _KCONFIG_SET.match(line)
        if m:
            value = m.group(2).decode("utf-8", "replace")
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[m.group(1).decode()] = value
            continue
        m = _KCONFIG_UNSET.match(line)
        if m:
            out[m.group(1).decode()] = "n"
        elif line and not line.startswith(b"#"):
            bad += 1
    if not out:
        raise ParseError("no CONFIG_ lines: not a kernel configuration file")
    if bad > len(out):
        raise ParseError(f"{bad} lines are neither CONFIG_X=V nor comments: "
                         "not a kernel configuration file")
    return out


def _elf_sections(data: bytes) -> dict[str, bytes]:
    """Section name -> contents of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise ParseError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ParseError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shentsize < 64 or shnum == 0 or shnum > 65535 or shstrndx >= shnum \
            or shoff + shnum * shentsize > len(data):
        raise ParseError(f"ELF section table at {shoff:#x} ({shnum} x {shentsize}) does not "
                         f"fit the file ({len(data)} bytes)")
    headers = []
    for i in range(shnum):
        name, _type, _flags, _addr, off, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize)
        if off + size > len(data) and _type != 8:  # SHT_NOBITS occupies no file space
            raise ParseError(f"ELF section {i} ({off:#x}+{size:#x}) is outside the file")
        headers.append((name, _type, off, size))
    _, _, stroff, strsize = headers[shstrndx]
    strtab = data[stroff:stroff + strsize]
    out = {}
    for name, stype, off, size in headers:
        end = strtab.find(b"\0", name)
        if end < 0:
            continue
        out[strtab[name:end].decode("ascii", "replace")] = b"" if stype == 8 \
            else data[off:off + size]
    return out


def modinfo_params(elf: bytes) -> frozenset[str]:
    """Parameter names of a kernel module: its ``.modinfo`` section's
    ``parmtype=NAME:type`` and ``parm=NAME:description`` entries, the names
    ``modinfo -F parm`` prints (a parameter declared with
    module_param_named() has only its type under its own name: ramoops's
    ``ecc``).  *elf* is the uncompressed ``.ko``."""
    sections = _elf_sections(elf)
    if ".modinfo" not in sections:
        raise ParseError("no .modinfo section: not a kernel module")
    return _param_names(sections[".modinfo"], b"")


def _param_names(modinfo: bytes, prefix: bytes) -> frozenset[str]:
    names = set()
    for entry in modinfo.split(b"\0"):
        for key in (prefix + b"parmtype=", prefix + b"parm="):
            if entry.startswith(key) and b":" in entry[len(key):]:
                rest = entry[len(key):]
                names.add(rest[:rest.index(b":")].decode("ascii", "replace"))
    return frozenset(names)


def builtin_params(modinfo: bytes, module: str) -> frozenset[str]:
    """Parameter names of built-in *module* from
    ``/lib/modules/R/modules.builtin.modinfo`` (NUL-separated
    ``module.parm=NAME:description`` and ``module.parmtype=NAME:type``)."""
    return _param_names(modinfo, f"{module}.".encode())


def release_key(release: str) -> tuple[tuple[int, str], ...]:
    """Sort key that orders kernel releases as versions (``6.12`` after
    ``6.1``, ``6.1.0-57`` after ``6.1.0-9``)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part)
                 for part in re.split(r"(\d+)", release) if part)
