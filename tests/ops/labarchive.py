"""An archive built from the lab's real records: every crash fixture of
tests/fixtures/lab (both kernels, see capture.py there) collected as it
would be on the machine, and both ring fixtures of tests/fixtures/ring
(their first boot ended in a reset while recording: a hang-or-reset event).
Shared by the list schema, metrics and report tests."""

from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

from conftest import FIXTURES, LAB_FIXTURES, lab_fixture
from memconsole.cli import main

#: (release, crash) of every lab fixture, in a fixed order.
CRASHES = tuple((rel.name, crash.name) for rel in sorted(LAB_FIXTURES.iterdir()) if rel.is_dir()
                for crash in sorted(rel.iterdir()) if (crash / "mtimes.json").exists())
RINGS = ("6.1", "6.12")


def build(dest: Path) -> Path:
    """Collect every lab fixture and ring into *dest*/archive; return it."""
    archive = dest / "archive"
    quiet = io.StringIO()
    for n, (release, crash) in enumerate(CRASHES):
        pstore = dest / "pstore" / f"{n:02d}-{release}-{crash}"
        lab_fixture(release, crash, pstore)
        argv = ["collect", "--pstore", str(pstore), "--archive", str(archive),
                "--journal", "no"]
        if n < len(RINGS):
            ring = dest / f"ring-{RINGS[n]}.bin"
            ring.write_bytes(gzip.decompress(
                (FIXTURES / "ring" / f"ring-{RINGS[n]}.bin.gz").read_bytes()))
            argv += ["--ring", str(ring)]
        with contextlib.redirect_stderr(quiet):
            rc = main(argv)
        assert rc == 0, (release, crash, quiet.getvalue())
    return archive


def empty_pstore(dest: Path) -> Path:
    """An empty pstore directory (so that commands read only the archive)."""
    path = dest / "pstore-empty"
    path.mkdir(exist_ok=True)
    return path


def shared(factory: object) -> tuple[Path, Path, Path]:
    """(archive, empty pstore, directory) built once per test session (per
    xdist worker) under the session's base temporary directory: the test
    modules that read it share one copy (they must leave it as they found it)."""
    base = factory.getbasetemp()  # type: ignore[attr-defined]
    dest = Path(base) / "lab-archive"
    if not (dest / ".built").exists():
        dest.mkdir(exist_ok=True)
        build(dest)
        empty_pstore(dest)
        (dest / ".built").touch()
    return dest / "archive", dest / "pstore-empty", dest
