"""memconsole.ko, the kernel console module, as sysfs shows it
(``/sys/module/memconsole/parameters``, docs/kmod.md).

A loaded module is always attached to its range (it refuses to load
otherwise) and exports the range as memconsole names it (``region``,
``mem:0x7200000:0x100000``), its ``state`` (writing, stopped, detached) and
counters.  :func:`parse_params` is pure (names to bytes in, a record out);
:func:`read_params` reads the directory below a sysfs mount point, so
tests give a scratch tree.

:func:`writer_of` is the recorder's question: does the module write the
range this ring spec names?  One ring has one writer: where the module
writes, ``memconsole record`` steps aside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from memconsole.errors import RegionError
from memconsole.ring.regions import RegionSpec, parse_spec

__all__ = ["PARAMS", "SYSFS", "KernelConsole", "parse_params", "read_kernel_console",
           "read_params", "writer_of"]

#: The module's parameters, relative to sysfs.
PARAMS = "module/memconsole/parameters"
#: The sysfs :func:`read_kernel_console` reads by default (tests point it at
#: a scratch tree).
SYSFS = Path("/sys")
_MAX_PARAM = 4096


@dataclass(frozen=True)
class KernelConsole:
    """What the loaded module says about itself.

    Attributes:
        region: the ring as memconsole names it (``mem:ADDR:SIZE``).
        address: its physical start.
        size: its size in bytes.
        state: ``writing``, ``stopped`` (a stop record was written) or
            ``detached``.
        attach: what it found at load (``continued: ...``, ``formatted: ...``).
        boot_id: the boot id its records carry (text form).
        records: records written since it was loaded (None: not shown).
        last_seq: ring sequence number of its newest record (None: not shown).
    """

    region: str
    address: int
    size: int
    state: str
    attach: str = ""
    boot_id: str = ""
    records: int | None = None
    last_seq: int | None = None

    def overlaps(self, address: int, size: int) -> bool:
        """Whether ``[address, address + size)`` shares a byte with the range."""
        return address < self.address + self.size and self.address < address + size


def _int(params: dict[str, bytes], name: str) -> int | None:
    try:
        return int(params[name].strip(), 0)
    except (KeyError, ValueError):
        return None


def parse_params(params: dict[str, bytes]) -> KernelConsole | None:
    """The module's record from its parameter files (name -> content), or
    None when they name no range (an older module, a damaged tree)."""
    region = params.get("region", b"").strip().decode("ascii", "replace")
    try:
        spec = parse_spec(region)
    except RegionError:
        spec = None
    if spec is None or spec.address is None or spec.size is None:
        address, size = _int(params, "mem_address"), _int(params, "mem_size")
        if address is None or not size:
            return None
        region = f"mem:{address:#x}:{size:#x}"
    else:
        address, size = spec.address, spec.size

    def text(name: str) -> str:
        return params.get(name, b"").strip().decode("utf-8", "replace")

    return KernelConsole(region, address, size, text("state") or "unknown", text("attach"),
                         text("boot_id"), _int(params, "records"), _int(params, "last_seq"))


def read_params(sysfs: Path | None = None) -> dict[str, bytes] | None:
    """The parameter files of a loaded memconsole.ko in *sysfs* (default
    :data:`SYSFS`; name -> content), or None when the module is not loaded."""
    directory = (SYSFS if sysfs is None else sysfs) / PARAMS
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegionError(f"cannot read {directory}: {exc.strerror}") from None
    out = {}
    for name in names:
        try:
            with open(directory / name, "rb") as f:
                out[name] = f.read(_MAX_PARAM)
        except OSError:
            continue  # a parameter the module does not let us read
    return out


def read_kernel_console(sysfs: Path | None = None) -> KernelConsole | None:
    """The loaded module as *sysfs* shows it, or None when it is not loaded
    (or names no range)."""
    params = read_params(sysfs)
    return None if params is None else parse_params(params)


def writer_of(spec: RegionSpec, module: KernelConsole | None) -> KernelConsole | None:
    """The module when it writes exactly the range *spec* names (the
    recorder must step aside), else None.  Raises :class:`RegionError`
    when the module writes a range that overlaps *spec* without being it:
    two writers would destroy each other's records, and neither range is
    the other's ring."""
    if module is None or spec.address is None or spec.size is None:
        return None  # a file or device: the module writes only physical memory
    if (spec.address, spec.size) == (module.address, module.size):
        return module
    if module.overlaps(spec.address, spec.size):
        raise RegionError(f"{spec.text}: overlaps {module.region}, the range memconsole.ko "
                          "writes (/sys/module/memconsole/parameters/region): give that "
                          "range, or load the module on another one")
    return None
