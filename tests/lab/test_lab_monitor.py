"""The QEMU monitor socket of a drill whose directory is deep (pytest's,
a CI runner's): a UNIX socket path holds 108 bytes, so the lab moves the
socket to a short private directory rather than let QEMU refuse to start."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from memconsole.lab import _short_monitor


def _argv(path: Path) -> list[str]:
    return ["qemu-system-x86_64", "-monitor", f"unix:{path},server=on,wait=off", "-m", "512M"]


def test_a_short_path_stays() -> None:
    argv = _argv(Path("/tmp/x/monitor.sock"))
    assert _short_monitor(argv) == (argv, None)
    assert _short_monitor(["qemu-system-x86_64", "-m", "512M"])[1] is None


def test_a_long_path_moves_to_a_private_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    argv = _argv(deep / "monitor.sock")
    moved, short = _short_monitor(argv)
    assert short is not None
    try:
        assert stat.S_IMODE(os.stat(short).st_mode) == 0o700
        spec = moved[moved.index("-monitor") + 1]
        assert spec == f"unix:{short / 'monitor.sock'},server=on,wait=off"
        assert moved[:1] == argv[:1] and moved[3:] == argv[3:]
        # A socket can be made there (it could not at the long path).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(short / "monitor.sock"))
        deep.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(str(deep / "monitor.sock"))
            except OSError:
                pass
            else:
                raise AssertionError("a socket path over 108 bytes was accepted")
    finally:
        (short / "monitor.sock").unlink(missing_ok=True)
        short.rmdir()
