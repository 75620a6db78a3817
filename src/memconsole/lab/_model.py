"""The lab's plain data: an installed kernel, a ramoops range, what a drill
left behind.  Kept apart from :class:`memconsole.lab.Lab` so that the drill
runners (``_systemd``) can use them without importing the package that
imports them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DrillResult", "Kernel", "Ramoops", "tail"]


@dataclass(frozen=True)
class Kernel:
    """An installed kernel the lab can boot.

    Attributes:
        release: ``uname -r`` of the kernel, e.g. ``6.1.0-56-amd64``.
        vmlinuz: the bootable image.
        modules_dir: ``/lib/modules/<release>``.
    """

    release: str
    vmlinuz: Path
    modules_dir: Path

    @property
    def headers(self) -> Path:
        """The kernel build tree used to compile the test module."""
        return self.modules_dir / "build"

    @property
    def version(self) -> tuple[int, int]:
        """(major, minor) parsed from the release."""
        m = re.match(r"(\d+)\.(\d+)", self.release)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@dataclass(frozen=True)
class Ramoops:
    """ramoops module parameters for a drill; ``None`` leaves the module default.

    Attributes:
        mem_address: physical start of the reserved region.
        mem_size: size of the region in bytes.
        record_size: size of each dmesg record zone.
        console_size, ftrace_size, pmsg_size: sizes of those zones.
        ecc: ECC bytes per block (``1`` means the kernel default of 16).
        max_reason: highest kmsg_dump reason to record (2 = oops).
        mem_name: a ``reserve_mem=SIZE:ALIGN:NAME`` label (Linux 6.11+):
            ramoops takes address and size from that reservation
            (``mem_name=NAME``), and the lab adds no ``memmap=``; the drill
            supplies ``reserve_mem=`` in ``extra_cmdline``.
        reserve: add ``memmap=mem_size$mem_address``; False when the drill's
            ``extra_cmdline`` reserves the range itself (e.g. one entry that
            holds ramoops and more after it).
        modprobe_conf: the text of a modprobe.d file; the guest then loads
            ramoops with a bare ``modprobe ramoops`` that reads only this
            file (``options``, ``install`` lines) as
            ``/etc/modprobe.d/memconsole.conf``, so the file itself is tested.
            The other fields then only describe the region (memfile capture).
    """

    mem_address: int = 0x7000000
    mem_size: int = 0x100000
    record_size: int | None = 0x4000
    console_size: int | None = None
    ftrace_size: int | None = None
    pmsg_size: int | None = None
    ecc: int | None = None
    max_reason: int | None = None
    mem_name: str | None = None
    reserve: bool = True
    modprobe_conf: str | None = None

    def module_args(self) -> list[str]:
        """``modprobe ramoops`` arguments."""
        if self.mem_name is not None:
            # fs/pstore/ram.c ramoops_register_dummy(): a found reserve_mem
            # region overrides mem_address/mem_size; giving none here means
            # a missing region leaves ramoops unregistered, not misplaced.
            args = [f"mem_name={self.mem_name}"]
        else:
            args = [f"mem_address={self.mem_address:#x}", f"mem_size={self.mem_size:#x}"]
        for name in ("record_size", "console_size", "ftrace_size", "pmsg_size"):
            value = getattr(self, name)
            if value is not None:
                args.append(f"{name}={value:#x}")
        if self.ecc is not None:
            args.append(f"ecc={self.ecc}")
        if self.max_reason is not None:
            args.append(f"max_reason={self.max_reason}")
        return args

    def memmap(self) -> str | None:
        """The ``memmap=`` boot option that keeps the kernel off the region
        (None when the region comes from ``reserve_mem=``)."""
        if self.mem_name is not None or not self.reserve:
            return None
        return f"memmap={self.mem_size:#x}${self.mem_address:#x}"


@dataclass
class DrillResult:
    """What a drill left behind.

    Attributes:
        workdir: the drill's host directory (shared with the guest).
        serial: everything the guest printed on its serial console.
        region: the raw ramoops region right after the crash (memfile mode).
        boots: how many kernels booted.
    """

    workdir: Path
    serial: str
    region: bytes | None
    boots: int

    @property
    def out_dir(self) -> Path:
        """Files the guest wrote to ``$OUT``."""
        return self.workdir / "out"

    def output(self, name: str) -> str:
        """Text of one file the guest wrote to ``$OUT``; "" if it is absent."""
        try:
            return (self.out_dir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])
