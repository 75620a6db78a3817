"""The kernel-configuration check of ``memconsole setup``: what the chosen
kernel's configuration means for keeping its last words, one finding per
option, each with what to do about it.  Pure: facts in, findings out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from memconsole.setup.facts import MOR_VARIABLE, KernelFacts, RamoopsBuild

__all__ = ["Finding", "Level", "check_config"]


class Level(enum.Enum):
    """How much a finding matters."""

    OK = "ok"
    NOTE = "note"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One configuration option and what it means here.

    Attributes:
        option: the option's name without ``CONFIG_`` (or a group name).
        value: ``y``, ``m``, ``n`` (not set), a value, or ``?``.
        level: ok, note, warning or error.
        text: one or two sentences: what it means and what to do.
    """

    option: str
    value: str
    level: Level
    text: str


_ALGORITHMS = ("DEFLATE", "LZO", "LZ4", "LZ4HC", "842", "ZSTD")


def _compression(k: KernelFacts) -> Finding:
    if k.option("PSTORE_COMPRESS") != "y":
        return Finding("PSTORE_COMPRESS", k.option("PSTORE_COMPRESS"), Level.OK,
                       "records are stored uncompressed")
    chosen = [a for a in _ALGORITHMS if k.option(f"PSTORE_{a}_COMPRESS") == "y"]
    default = k.option("PSTORE_COMPRESS_DEFAULT")
    if not chosen:
        # Linux 6.6 replaced the crypto API choice by zlib deflate alone.
        return Finding("PSTORE_COMPRESS", "y", Level.OK,
                       "records are deflate-compressed (zlib, the only choice since Linux "
                       "6.6); memconsole inflates them with the standard library")
    if set(chosen) <= {"DEFLATE"} and default in ("deflate", "?", "n"):
        return Finding("PSTORE_COMPRESS", f"y ({', '.join(chosen).lower()})", Level.OK,
                       "records are deflate-compressed; memconsole inflates them with the "
                       "standard library")
    level = Level.WARNING if "842" in chosen else Level.NOTE
    return Finding("PSTORE_COMPRESS", f"y ({', '.join(chosen).lower()}, default {default})",
                   level, "lz4, lzo and zstd records need memconsole's 'compress' extra "
                   "(pip install 'memconsole[compress]'); 842 cannot be read: boot with "
                   "pstore.compress=deflate")


def check_config(k: KernelFacts, uefi: bool) -> tuple[Finding, ...]:
    """Findings for kernel *k* on a machine that boots UEFI when *uefi*."""
    if k.config is None:
        return (Finding("config", "?", Level.WARNING,
                        f"no configuration for {k.release} (/boot/config-{k.release}): not "
                        "checked; give --kernel-config FILE"),)
    out = []
    pstore = k.option("PSTORE")
    if pstore == "n":
        out.append(Finding("PSTORE", pstore, Level.ERROR,
                           "no pstore: ramoops has nowhere to show its records; this kernel "
                           "cannot keep its last words"))
    else:
        out.append(Finding("PSTORE", pstore, Level.OK, "pstore is built in" if pstore == "y"
                           else "pstore is a module (loaded with ramoops)"))
    ram = {RamoopsBuild.MODULE: "m", RamoopsBuild.BUILTIN: "y"}.get(k.ramoops, "n")
    if k.ramoops is RamoopsBuild.MISSING:
        out.append(Finding("PSTORE_RAM", k.option("PSTORE_RAM"), Level.ERROR,
                           "no ramoops: nothing keeps the log in RAM across a reset"))
    else:
        out.append(Finding("PSTORE_RAM", ram, Level.OK,
                           "ramoops is a module: setup loads it with modules-load.d and "
                           "gives its options in modprobe.d" if ram == "m" else
                           "ramoops is built in: its parameters go on the kernel command "
                           "line"))
    out.append(_compression(k))
    if k.option("PSTORE_CONSOLE") == "y":
        out.append(Finding("PSTORE_CONSOLE", "y", Level.OK,
                           "ramoops can keep the console too (console_size, 4 KiB by "
                           "default)"))
    else:
        out.append(Finding("PSTORE_CONSOLE", k.option("PSTORE_CONSOLE"), Level.NOTE,
                           "ramoops keeps the log only when the kernel oopses or panics: a "
                           "hang ended by a watchdog or reset button leaves nothing.  "
                           "memconsole's recorder keeps the console of those boots: give "
                           "--ring SIZE and run 'memconsole record' (docs/operations.md "
                           "section 4)"))
    efi = k.option("EFI_VARS_PSTORE")
    if efi in ("y", "m") or k.efi_pstore:
        out.append(Finding("EFI_VARS_PSTORE", efi, Level.NOTE,
                           "efi_pstore can take pstore's only backend slot on a UEFI machine "
                           "(udev loads it there): setup adds pstore.backend=ramoops"))
    else:
        out.append(Finding("EFI_VARS_PSTORE", efi, Level.OK, "no efi_pstore backend"))
    apei = k.option("ACPI_APEI")
    out.append(Finding("ACPI_APEI", apei, Level.NOTE if apei == "y" else Level.OK,
                       "the built-in ERST backend registers first on servers whose firmware "
                       "has an ERST table: setup adds pstore.backend=ramoops" if apei == "y"
                       else "no ACPI ERST backend"))
    mor = k.option("RESET_ATTACK_MITIGATION")
    if mor == "y":
        out.append(Finding("RESET_ATTACK_MITIGATION", mor,
                           Level.WARNING if uefi else Level.NOTE,
                           "on UEFI firmware with a TPM this kernel asks, at every boot, for "
                           "RAM to be wiped at the next reset (the EFI variable "
                           f"{MOR_VARIABLE.split('-', 1)[0]}), which erases ramoops and the "
                           "ring.  Reboot once after setup and check the survival canary "
                           "('memconsole doctor'); if it was lost, clear that variable after "
                           "each boot (write 0 through efivarfs), which gives up the "
                           "cold-boot protection, or boot a kernel without this option"
                           + ("" if uefi else "; this machine boots BIOS, where it does "
                              "nothing")))
    else:
        out.append(Finding("RESET_ATTACK_MITIGATION", mor, Level.OK,
                           "the kernel does not ask the firmware to wipe RAM"))
    devmem = k.option("STRICT_DEVMEM")
    io = k.option("IO_STRICT_DEVMEM")
    out.append(Finding("STRICT_DEVMEM", devmem if io == "n" else f"{devmem} (IO_STRICT {io})",
                       Level.OK if devmem != "n" else Level.NOTE,
                       "/dev/mem reaches only ranges that are not System RAM (and, with "
                       "IO_STRICT_DEVMEM, not claimed by a driver): the ring and the canary "
                       "live in the memmap= range, which it allows" if devmem != "n" else
                       "/dev/mem reaches all of RAM: the recorder's checks, not the kernel's, "
                       "keep it off live memory"))
    timeout = k.option("PANIC_TIMEOUT")
    if timeout not in ("?", "n"):
        out.append(Finding("PANIC_TIMEOUT", timeout, Level.OK if timeout != "0" else Level.NOTE,
                           "compiled-in panic timeout; setup's panic=N on the command line "
                           "overrides it" + (" (0: wait for ever)" if timeout == "0" else "")))
    return tuple(out)
