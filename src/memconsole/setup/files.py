"""The files a plan becomes, and the checks of GRUB's escaping.

How a ``memmap=SIZE$ADDR`` word travels (verified with Debian's
grub-mkconfig and by booting the result through real GRUB, docs/setup.md):
grub-mkconfig *sources* every /etc/default/grub.d/*.cfg as shell, so inside
double quotes ``\\\\\\$`` becomes ``\\$``; 10_linux writes the value into
grub.cfg unchanged; GRUB's own parser then reads ``\\$`` as a literal
``$``.  One backslash fewer leaves ``$0x...`` for GRUB to expand (to
nothing), and ``memmap=SIZE`` without an address is a memory limit: the
kernel keeps SIZE bytes of RAM and cannot boot.  So the drop-in is checked
by running /bin/sh on it before it is written, and grub.cfg after
update-grub (:func:`check_grub_cfg`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from memconsole.errors import SetupError
from memconsole.setup.facts import GRUB_DROPIN
from memconsole.setup.planner import Plan

__all__ = [
    "BLOCK_BEGIN",
    "BLOCK_END",
    "CONFIG",
    "GRUB_DROPIN",
    "MODPROBE",
    "MODULES_LOAD",
    "PSTORE_DROPIN",
    "Desired",
    "check_dropin",
    "check_grub_cfg",
    "config_block",
    "desired_files",
    "dropin_text",
    "grub_escape",
    "grub_words",
    "merge_block",
    "modprobe_text",
    "remove_block",
    "sh_double_quote",
]

MODPROBE = "/etc/modprobe.d/memconsole.conf"
MODULES_LOAD = "/etc/modules-load.d/memconsole.conf"
PSTORE_DROPIN = "/etc/systemd/system/systemd-pstore.service.d/memconsole.conf"
CONFIG = "/etc/memconsole.conf"
BLOCK_BEGIN = b"# BEGIN memconsole setup"
BLOCK_END = b"# END memconsole setup"

# What a kernel parameter may contain here: every word setup writes fits.
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.,:=$/+-]+$")


@dataclass(frozen=True)
class Desired:
    """A file setup wants to exist.

    Attributes:
        path: absolute path inside the root (``/etc/...``).
        role: ``grub``, ``modprobe``, ``modules-load``, ``systemd-pstore`` or
            ``config``.
        content: the whole file, or None for a shared file (see block).
        block: for a shared file, the marked block setup owns in it.
        mode: permission bits of a new file.
    """

    path: str
    role: str
    content: bytes | None = None
    block: bytes | None = None
    mode: int = 0o644


def grub_escape(word: str) -> str:
    """*word* as GRUB's script parser must read it to pass *word* to the
    kernel: ``$`` and ``\\`` escaped with a backslash."""
    if not _SAFE_WORD.match(word):
        raise SetupError(f"kernel parameter {word!r} has characters setup does not write")
    return word.replace("\\", "\\\\").replace("$", "\\$")


def sh_double_quote(text: str) -> str:
    """*text* escaped for the inside of a POSIX shell double-quoted string."""
    for ch in ("\\", "$", '"', "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def grub_words(text: str) -> list[str]:
    """The words GRUB passes to the kernel for a grub.cfg ``linux`` argument
    string *text* (after the image path): whitespace-split, ``\\X`` read as
    ``X``.  A word that is one variable reference (``$vt_handoff``) is kept
    as it is; any other bare ``$`` (GRUB would expand what follows it)
    raises :class:`SetupError`."""
    out = []
    for raw in text.split():
        if re.fullmatch(r"\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)", raw):
            # A whole-word variable of the distribution's (Ubuntu's
            # $vt_handoff): GRUB expands it, and it is none of setup's words.
            out.append(raw)
            continue
        word = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                word.append(raw[i + 1])
                i += 2
                continue
            if ch == "$":
                raise SetupError(f"{raw!r}: a bare '$' in grub.cfg is a GRUB variable "
                                 "reference, expanded at boot (the kernel would not get it)")
            if ch in "'\"":
                raise SetupError(f"{raw!r}: quotes in a kernel word")
            word.append(ch)
            i += 1
        out.append("".join(word))
    return out


def dropin_text(plan: Plan) -> bytes:
    """/etc/default/grub.d/90-memconsole.cfg for *plan*."""
    value = " ".join(sh_double_quote(grub_escape(w)) for w in plan.cmdline)
    return (
        "# memconsole setup: kernel parameters for ramoops (docs/setup.md).\n"
        "# 'memconsole setup --undo' removes this file.  grub-mkconfig sources it as\n"
        "# shell: \"\\\\\\$\" leaves \"\\$\" in grub.cfg, which GRUB reads as a literal \"$\",\n"
        "# so the kernel gets memmap=SIZE$ADDR.  Appended to GRUB_CMDLINE_LINUX (not\n"
        "# _DEFAULT) so recovery entries keep the range reserved too.\n"
        f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {value}"\n').encode()


def check_dropin(text: bytes, words: tuple[str, ...] | list[str]) -> None:
    """Run /bin/sh on the drop-in *text* as grub-mkconfig would (sourced,
    with an empty GRUB_CMDLINE_LINUX) and check that the value it leaves
    carries exactly *words* through GRUB's parser.  Raises
    :class:`SetupError` otherwise: such a drop-in is never written."""
    script = b"GRUB_CMDLINE_LINUX=\n" + text + b'\nprintf "%s" "$GRUB_CMDLINE_LINUX"\n'
    try:
        proc = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True,
                              env={"PATH": "/usr/bin:/bin"}, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"cannot run /bin/sh to check the GRUB drop-in: {exc}") from None
    if proc.returncode != 0:
        raise SetupError(f"the GRUB drop-in is not valid shell: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    value = proc.stdout.decode("utf-8", "replace")
    expected = [grub_escape(w) for w in words]
    if value.split() != expected:
        raise SetupError(f"the GRUB drop-in would put {value.strip()!r} into grub.cfg, not "
                         f"{' '.join(expected)!r}: refusing to write it")
    if grub_words(value) != list(words):
        raise SetupError(f"GRUB would pass {grub_words(value)} to the kernel, not {list(words)}")


_LINUX_LINE = re.compile(r"^\s*linux(?:efi|16)?\s+(\S+)(.*)$")


def check_grub_cfg(text: str, words: tuple[str, ...] | list[str]) -> tuple[int, list[str]]:
    """Check every kernel line of a generated grub.cfg: the number of
    ``linux`` lines, and one problem per line that does not pass *words*
    to the kernel exactly (a bare ``$`` included)."""
    lines = 0
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINUX_LINE.match(line)
        if m is None:
            continue
        lines += 1
        try:
            got = grub_words(m.group(2))
        except SetupError as exc:
            problems.append(f"grub.cfg line {n}: {exc}")
            continue
        missing = [w for w in words if w not in got]
        if missing:
            problems.append(f"grub.cfg line {n} ({m.group(1)}) lacks {' '.join(missing)}")
    if lines == 0:
        problems.append("grub.cfg has no 'linux' line")
    return lines, problems


def config_block(plan: Plan) -> bytes:
    """The block setup owns in /etc/memconsole.conf (KEY = VALUE lines,
    read by memconsole's configuration reader, doctor and the canary)."""
    lines = [BLOCK_BEGIN.decode(),
             "# Written by 'memconsole setup' (docs/setup.md); --undo removes this block."]
    if plan.ring is not None:
        lines.append(f"ring = {plan.ring.spec()}")
    lines.append(f"canary = {plan.canary.spec()}" if plan.canary else "canary = none")
    if plan.ramoops is not None:
        lines.append(f"ramoops = {plan.ramoops.spec()}")
    else:
        lines.append(f"# ramoops: reserve_mem of {plan.ramoops_size:#x} bytes; the kernel picks "
                     "the address (/sys/module/ramoops/parameters/mem_address)")
    lines.append(f"method = {plan.method.value}")
    lines.append(f"panic = {plan.panic}")
    lines.append(BLOCK_END.decode())
    return ("\n".join(lines) + "\n").encode()


def _block_span(data: bytes) -> tuple[int, int] | None:
    lines = data.splitlines(keepends=True)
    pos = 0
    begin = None
    for line in lines:
        stripped = line.rstrip(b"\r\n")
        if stripped == BLOCK_BEGIN and begin is None:
            begin = pos
        elif stripped == BLOCK_END and begin is not None:
            return begin, pos + len(line)
        pos += len(line)
    return None


def merge_block(existing: bytes | None, block: bytes) -> bytes:
    """*existing* with setup's block replaced by *block* (or appended)."""
    if not existing:
        return block
    span = _block_span(existing)
    if span is not None:
        return existing[:span[0]] + block + existing[span[1]:]
    sep = b"" if existing.endswith(b"\n") else b"\n"
    return existing + sep + block


def remove_block(existing: bytes, block: bytes) -> bytes | None:
    """*existing* without setup's *block*, or None when the block is not
    there exactly as setup wrote it."""
    span = _block_span(existing)
    if span is None or existing[span[0]:span[1]] != block:
        return None
    return existing[:span[0]] + existing[span[1]:]


def modprobe_text(lines: Sequence[str]) -> str:
    """/etc/modprobe.d/memconsole.conf holding the plan's *lines*."""
    return ("# memconsole setup: ramoops on the reserved range (docs/setup.md); the install\n"
            "# line loads it only when the kernel was booted with the reservation.\n"
            "# 'memconsole setup --undo' removes this file.\n"
            + "".join(f"{line}\n" for line in lines))


def desired_files(plan: Plan, grub: bool) -> list[Desired]:
    """Every file *plan* needs (the GRUB drop-in only when *grub*: the
    machine has GRUB's configuration)."""
    out = []
    if grub:
        out.append(Desired(GRUB_DROPIN, "grub", dropin_text(plan)))
    if plan.modprobe:
        out.append(Desired(MODPROBE, "modprobe", modprobe_text(plan.modprobe).encode()))
    if plan.modules_load:
        out.append(Desired(MODULES_LOAD, "modules-load", (
            "# memconsole setup: nothing else loads ramoops on x86 (it has no alias).\n"
            + "".join(f"{line}\n" for line in plan.modules_load)).encode()))
    if plan.pstore_after_modules:
        out.append(Desired(PSTORE_DROPIN, "systemd-pstore", (
            b"# memconsole setup: systemd-pstore is ordered only after modprobe@efi_pstore;\n"
            b"# look at /sys/fs/pstore only after systemd-modules-load has loaded ramoops.\n"
            b"[Unit]\nAfter=systemd-modules-load.service\n")))
    out.append(Desired(CONFIG, "config", block=config_block(plan)))
    return out
