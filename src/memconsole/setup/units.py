"""Install and remove memconsole's systemd units.

The units ship as package data (``memconsole/units/*.service``) and say
``ExecStart=memconsole ...``, which systemd finds in its fixed search path
(``/usr/local/bin``, where ``pip install`` as root puts the command).
:func:`install_units` writes them into ``<root>/etc/systemd/system`` with
the command that runs *this* memconsole instead: the ``memconsole`` script
of this interpreter when there is one and it imports this package, else
``<python> -m memconsole`` (with ``PYTHONPATH`` when the package is a source
tree the interpreter does not import by itself).  Then the
``<target>.wants/`` links, as ``systemctl enable`` makes them (the
``[Install]`` section's ``WantedBy=``), and, on the running system, a
``systemctl daemon-reload``.  :func:`remove_units` undoes exactly that.

Nothing is started: the units run at the next boot (or ``systemctl start``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import memconsole
from memconsole._common import write_durably
from memconsole.errors import ConfigError

__all__ = [
    "UNITS_DIR",
    "UNIT_NAMES",
    "Command",
    "default_command",
    "install_units",
    "remove_units",
    "render_unit",
    "ring_dropin",
    "unit_paths",
]

#: Where the unit files are in the installed package.
UNITS_DIR = Path(memconsole.__file__).resolve().parent / "units"
#: The units, in the order they run at boot.
UNIT_NAMES = ("memconsole-collect.service", "memconsole-record.service")
_SYSTEM_DIR = Path("etc/systemd/system")
_DROPIN = "memconsole-ring.conf"
# A word safe both in a unit file (no %, $, quotes, spaces) and inside the
# collect unit's sh -c '...'.
_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")
# "memconsole" as a command word: after "=", a space, or "=-" (a command
# whose failure the unit ignores), never inside a path or another name.
_EXEC_RE = re.compile(r"(?:(?<![\w/.-])|(?<==-))memconsole(?= (?:collect|record|canary)\b)")


@dataclass(frozen=True)
class Command:
    """How systemd runs memconsole.

    Attributes:
        argv: the command words before the subcommand
            (``/usr/local/bin/memconsole`` or ``/usr/bin/python3 -m memconsole``).
        environment: variables the units set for it (``PYTHONPATH``).
    """

    argv: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()


def _package_root() -> Path:
    return Path(memconsole.__file__).resolve().parent.parent


def _imports_this_package(python: str) -> bool:
    """Whether *python*, started as systemd starts it (no PYTHONPATH, ``/``
    as working directory), imports the memconsole this code belongs to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    probe = "import memconsole, os; print(os.path.realpath(memconsole.__file__))"
    try:
        proc = subprocess.run([python, "-c", probe], cwd="/", env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    here = os.path.realpath(memconsole.__file__)
    return proc.returncode == 0 and proc.stdout.strip() == here


def _script_of(candidate: Path, python: str) -> bool:
    """Whether *candidate* is a console script run by the interpreter *python*."""
    try:
        with candidate.open("rb") as f:
            first = f.readline(4096)
    except OSError:
        return False
    interpreter = os.fsdecode(first.rstrip(b"\n").removeprefix(b"#!").strip())
    if interpreter == python:
        return True
    # A virtual environment's scripts say bin/python3 where sys.executable
    # may say bin/python: the same directory and the same file are the same.
    try:
        return (Path(interpreter).parent == Path(python).parent
                and os.path.samefile(interpreter, python))
    except OSError:
        return False


def default_command() -> Command:
    """The command that runs this memconsole under systemd."""
    python = sys.executable
    if not python:
        raise ConfigError("cannot tell which Python runs memconsole (sys.executable is empty)")
    if not _imports_this_package(python):
        return Command((python, "-m", "memconsole"), (("PYTHONPATH", str(_package_root())),))
    scripts = [Path(python).parent / "memconsole", Path(sysconfig.get_path("scripts")) /
               "memconsole"]
    found = shutil.which("memconsole")
    if found:
        scripts.append(Path(found))
    for script in scripts:
        if os.access(script, os.X_OK) and _script_of(script, python):
            return Command((str(script),))
    return Command((python, "-m", "memconsole"))


def _check_words(words: Sequence[str], what: str) -> None:
    for word in words:
        if not _SAFE.match(word):
            raise ConfigError(f"{what} {word!r} has characters a unit file cannot carry "
                              "unquoted (spaces, %, $, quotes)")


def _insert_after(lines: list[str], header: str, new: Sequence[str]) -> None:
    i = lines.index(header) + 1
    lines[i:i] = list(new)


def render_unit(text: str, command: Command) -> str:
    """The unit *text* with ``memconsole`` in ``ExecStart=`` replaced by
    *command*, its environment set in ``[Service]`` and the mounts it lives
    on required in ``[Unit]``."""
    _check_words(command.argv, "command word")
    for name, value in command.environment:
        _check_words((name, value), "environment")
    lines = text.splitlines()
    execs = 0
    for i, line in enumerate(lines):
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            lines[i], n = _EXEC_RE.subn(" ".join(command.argv), line)
            if n != 1:
                raise ConfigError(f"line {line!r} has {n} memconsole commands, expected 1")
            execs += 1
    if not execs:
        raise ConfigError("unit has no ExecStart= line")
    places = sorted({str(Path(command.argv[0]).parent)}
                    | {value for name, value in command.environment if name == "PYTHONPATH"})
    for place in places:
        if Path(place).is_relative_to("/tmp") or Path(place).is_relative_to("/var/tmp"):
            raise ConfigError(f"{place}: the units run with PrivateTmp=yes and would not see "
                              "a memconsole under /tmp or /var/tmp; install it elsewhere")
    _insert_after(lines, "[Unit]", [f"RequiresMountsFor={' '.join(places)}"])
    _insert_after(lines, "[Service]", [f"Environment={name}={value}"
                                       for name, value in command.environment])
    return "\n".join(lines) + "\n"


def ring_dropin(ring: str) -> str | None:
    """The drop-in ``memconsole-record.service`` needs for the ring *ring*
    (the ``MEMCONSOLE_RING`` spec), or None when the unit allows it already
    (``mem:`` ranges through /dev/mem, files in /var/lib/memconsole)."""
    if ring.startswith("mem:"):
        return None
    path = Path(ring)
    if not path.is_absolute():
        raise ConfigError(f"ring {ring!r}: give an absolute path, a /dev/pmemN device "
                          "or mem:ADDR:SIZE")
    _check_words((ring,), "ring")
    if re.fullmatch(r"/dev/pmem\d+(?:\.\d+)?", ring):
        device = "dev-" + ring.removeprefix("/dev/").replace("-", "\\x2d") + ".device"
        return (f"[Unit]\nRequires={device}\nAfter={device}\n\n"
                f"[Service]\nDeviceAllow={ring} rw\n")
    if path.parent == Path("/var/lib/memconsole"):
        return None
    return (f"[Unit]\nRequiresMountsFor={path.parent}\n\n"
            f"[Service]\nReadWritePaths={path.parent}\n")


def _wanted_by(text: str) -> list[str]:
    targets: list[str] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Install]" and line.startswith("WantedBy="):
            targets += line.removeprefix("WantedBy=").split()
    return targets


def _live(root: Path) -> bool:
    """*root* is this running system, booted with systemd."""
    return root.resolve() == Path("/") and Path("/run/systemd/system").is_dir() \
        and shutil.which("systemctl") is not None


def _systemctl(*args: str) -> None:
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [""])[-1]
        raise ConfigError(f"systemctl {' '.join(args)} failed ({proc.returncode}): {detail}")


def _remove_stale(directory: Path, name: str) -> None:
    """Remove the temporaries of *name* a killed install left in
    *directory*: write_durably's ``.NAME.tmpPID.HEX8`` and the links'
    ``.NAME.tmpPID``."""
    stale = re.compile(rf"^\.{re.escape(name)}\.tmp\d+(?:\.[0-9a-f]{{8}})?$")
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if stale.match(entry):
            (directory / entry).unlink(missing_ok=True)


def _symlink(target: str, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def unit_paths() -> tuple[str, ...]:
    """Every file :func:`install_units` may write, as paths below the root
    (``/etc/systemd/system/...``): the units, their ``.wants/`` links and
    the ring drop-in."""
    system = f"/{_SYSTEM_DIR}"
    out = []
    for name in UNIT_NAMES:
        out.append(f"{system}/{name}")
        out += [f"{system}/{target}.wants/{name}"
                for target in _wanted_by((UNITS_DIR / name).read_text())]
    out.append(f"{system}/memconsole-record.service.d/{_DROPIN}")
    return tuple(out)


def install_units(root: Path = Path("/"), *, command: Command | None = None,
                  ring: str | None = None, enable: bool = True,
                  reload: bool | None = None) -> list[Path]:
    """Install the units under *root* (``/`` or an image being built) and,
    with *enable*, link them into the targets that want them.

    *command* defaults to :func:`default_command`; *ring* (the
    ``MEMCONSOLE_RING`` spec) adds the drop-in :func:`ring_dropin` gives;
    *reload* runs ``systemctl daemon-reload`` (default: when *root* is the
    running system).  Returns the paths written.  Raises
    :class:`ConfigError`; an ``OSError`` from writing propagates.
    """
    command = command or default_command()
    system = root / _SYSTEM_DIR
    written: list[Path] = []
    texts = {name: render_unit((UNITS_DIR / name).read_text(), command) for name in UNIT_NAMES}
    dropin = ring_dropin(ring) if ring else None
    system.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        _remove_stale(system, name)
        write_durably(system / name, text.encode(), mode=0o644)
        written.append(system / name)
        if enable:
            for target in _wanted_by(text):
                wants = system / f"{target}.wants"
                wants.mkdir(exist_ok=True)
                _remove_stale(wants, name)
                _symlink(f"/{_SYSTEM_DIR}/{name}", wants / name)
                written.append(wants / name)
    dropin_dir = system / "memconsole-record.service.d"
    _remove_stale(dropin_dir, _DROPIN)
    if dropin is not None:
        dropin_dir.mkdir(exist_ok=True)
        write_durably(dropin_dir / _DROPIN, dropin.encode(), mode=0o644)
        written.append(dropin_dir / _DROPIN)
    else:
        (dropin_dir / _DROPIN).unlink(missing_ok=True)
    if reload if reload is not None else _live(root):
        _systemctl("daemon-reload")
    return written


def remove_units(root: Path = Path("/"), *, reload: bool | None = None) -> list[Path]:
    """Remove what :func:`install_units` wrote under *root*: the units, their
    ``.wants/`` links and the ring drop-in.  On the running system the units
    are stopped first (the recorder writes its stop record) and systemd
    reloaded.  Returns the paths removed."""
    system = root / _SYSTEM_DIR
    if _live(root):
        _systemctl("stop", *reversed(UNIT_NAMES))
    removed: list[Path] = []
    for name in UNIT_NAMES:
        _remove_stale(system, name)
        # glob() skips these links: their targets are absolute, inside *root*.
        for wants in sorted(system.glob("*.wants")):
            _remove_stale(wants, name)
            link = wants / name
            if link.is_symlink():
                link.unlink()
                removed.append(link)
        if (system / name).exists():
            (system / name).unlink()
            removed.append(system / name)
    dropin_dir = system / "memconsole-record.service.d"
    _remove_stale(dropin_dir, _DROPIN)
    if (dropin_dir / _DROPIN).exists():
        (dropin_dir / _DROPIN).unlink()
        removed.append(dropin_dir / _DROPIN)
        if not any(dropin_dir.iterdir()):
            dropin_dir.rmdir()
    if reload if reload is not None else _live(root):
        _systemctl("daemon-reload")
    return removed
