"""Shared fixtures.

VM tests (marker ``vm``) boot real kernels under QEMU.  They skip, with the
reason, when QEMU, busybox or a kernel is missing; with MEMCONSOLE_FORCE_VM=1
(CI sets it) a missing prerequisite fails the test instead.  Tests marked
``root`` need root the same way.

The heaviest VM drills (the kernel module, doctor, systemd, verify and ring
drills, minutes each under TCG) run on one kernel in every suite, chosen so
that both kernels are covered (the two kernel-module drills and the two
doctor drills each run one on 6.1 and one on 6.12); their twins on the other
kernel are marked ``long`` and run with MEMCONSOLE_LONG=1, as are eight of the
twelve crash kinds on 6.1 and the three on 6.12 that the soak's short run
crashes (tests/lab/test_vm_drill.py), so that the whole
default suite, VM tests included, stays within CI's time budget.
``MEMCONSOLE_LONG=1 MEMCONSOLE_FORCE_VM=1 scripts/test.sh`` runs everything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from memconsole.setup.units import Command

FORCE = os.environ.get("MEMCONSOLE_FORCE_VM") == "1"
LONG = os.environ.get("MEMCONSOLE_LONG") == "1"
FIXTURES = Path(__file__).parent / "fixtures"


def require(condition: bool, reason: str) -> None:
    """Skip (or, when forced, fail) unless *condition* holds."""
    if condition:
        return
    if FORCE:
        pytest.fail(f"MEMCONSOLE_FORCE_VM=1 but {reason}")
    pytest.skip(reason)


def _vm_missing() -> str | None:
    from memconsole.lab import find_kernels

    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (scripts/bootstrap.sh installs it)"
    if not (Path("/bin/busybox").exists() or Path("/usr/bin/busybox").exists()):
        return "busybox-static is not installed"
    if not find_kernels():
        return "no Debian -amd64 kernel with 9p modules under /boot"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("long") is not None and not LONG:
        pytest.skip("a long VM drill (its twin on the other kernel runs in every suite); "
                    "MEMCONSOLE_LONG=1 runs it")
    if item.get_closest_marker("vm") is not None:
        missing = _vm_missing()
        require(missing is None, missing or "")
    if item.get_closest_marker("root") is not None:
        require(os.geteuid() == 0, "needs root")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A :class:`memconsole.lab.Lab` with a cache shared by the session
    (and by later sessions: the default cache directory)."""
    from memconsole.lab import Lab

    return Lab(progress=lambda msg: print(f"lab: {msg}"))


def heavy_kernels(every_suite: str) -> list[object]:
    """The releases a heavy drill is parametrized over: *every_suite* always,
    the other of 6.1 and 6.12 marked ``long`` (see the module docstring)."""
    other = "6.1" if every_suite == "6.12" else "6.12"
    return [every_suite, pytest.param(other, marks=pytest.mark.long)]


def kernel_for(prefix: str):  # type: ignore[no-untyped-def]
    """The installed kernel whose release starts with *prefix* (6.1, 6.12)."""
    from memconsole.errors import LabError
    from memconsole.lab import pick_kernel

    try:
        return pick_kernel(prefix)
    except LabError as exc:
        require(False, str(exc))


LAB_FIXTURES = FIXTURES / "lab"


def lab_fixture(release: str, action: str, dest: Path) -> list[str]:
    """Copy the pstore files a real kernel showed after crash *action*
    (tests/fixtures/lab/<release>/<action>, see capture.py there) into *dest*
    with their original mtimes; return the file names."""
    import json

    src = LAB_FIXTURES / release / action
    mtimes = json.loads((src / "mtimes.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for name, ns in mtimes.items():
        shutil.copy(src / "pstore" / name, dest / name)
        os.utime(dest / name, ns=(ns, ns))
    return sorted(mtimes)


#: Why the units cannot run this checkout's memconsole (see :func:`unit_command`).
UNDER_TMP = ("this checkout is under /tmp or /var/tmp, where the units refuse a memconsole "
             "(they run with PrivateTmp=yes and would not see it); clone elsewhere to run this")


def unit_command() -> Command:
    """The ``Command`` the unit tests install: this memconsole's own, or,
    when this checkout lies under /tmp (which ``render_unit`` rightly refuses,
    :data:`UNDER_TMP`), the system interpreter's ``python3 -m memconsole``: a
    unit systemd can verify, for the tests that do not run it."""
    from memconsole.errors import ConfigError
    from memconsole.setup.units import UNITS_DIR, Command, default_command, render_unit

    command = default_command()
    try:
        render_unit((UNITS_DIR / "memconsole-record.service").read_text(), command)
    except ConfigError as exc:
        if "PrivateTmp" not in str(exc):
            raise
        return Command(("/usr/bin/python3", "-m", "memconsole"))
    return command
