"""src/memconsole/kmod/memconsole.ko builds without a warning (``W=1``) against the
headers of every installed lab kernel, and Kbuild's feature detection
matches what those headers declare."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require

KMOD = Path(__file__).resolve().parents[2] / "src" / "memconsole" / "kmod"


def _kernels() -> list[str]:
    from memconsole.lab import find_kernels

    return [k.release for k in find_kernels() if (k.headers / "Makefile").exists()]


@pytest.mark.parametrize("prefix", ["6.1", "6.12"])
def test_builds_without_warnings(tmp_path: Path, prefix: str) -> None:
    require(shutil.which("make") is not None and shutil.which("gcc") is not None,
            "make and gcc are needed to build the module")
    releases = [r for r in _kernels() if r.startswith(prefix + ".") or r.startswith(prefix + "-")]
    require(bool(releases), f"no {prefix} kernel with headers installed")
    release = releases[-1]
    for name in ("memconsole.c", "Kbuild"):
        shutil.copy(KMOD / name, tmp_path / name)
    headers = Path("/lib/modules") / release / "build"
    proc = subprocess.run(["make", "-C", str(headers), f"M={tmp_path}", "W=1", "modules"],
                          capture_output=True, text=True, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert (tmp_path / "memconsole.ko").exists()
    assert not re.search(r"warning:", log, re.IGNORECASE), log[-3000:]

    # The features Kbuild turned on are the ones the headers have.
    flags = set(re.findall(r"-DMEMCONSOLE_HAVE_(\w+)",
                           (tmp_path / ".memconsole.o.cmd").read_text()))
    common = Path(headers).resolve()
    include = [common / "include" / "linux"]
    makefile = (headers / "Makefile").read_text()
    m = re.search(r"^include (\S+)/Makefile$", makefile, re.MULTILINE)
    if m:  # Debian splits the headers: the arch tree includes the common one
        include.append(Path(m.group(1)) / "include" / "linux")

    def declared(word: str, header: str) -> bool:
        return any(word in (d / header).read_text() for d in include if (d / header).exists())

    assert ("RESERVE_MEM" in flags) == declared("reserve_mem_find_by_name", "mm.h"), flags
    assert ("KMSG_DUMP_DETAIL" in flags) == declared("struct kmsg_dump_detail",
                                                     "kmsg_dump.h"), flags
