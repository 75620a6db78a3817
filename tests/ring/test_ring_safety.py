"""What a ring spec, a source and a physical range must be before memconsole
opens them, and that a command that cannot run writes nothing.

* Only regular files (of a storage filesystem), pmem block devices and
  ``mem:`` ranges are opened as rings; a character device, a FIFO, a socket
  or a directory is refused from its ``lstat``, so naming one never opens
  it (inotify on the node sees no open).  ``show --ring FIFO`` returns.
* ``mem:`` ranges: tests/ring/test_ring_mem_rules.py.
* ``record`` checks its source, the spec and the region before the ring is
  created or written; every bad input is one line with the reason.
"""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import FIXTURES
from memconsole.cli import main
from memconsole.ring import Ring, parse_ring
from memconsole.ring.regions import buffer_region, open_region

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")
RING_FIXTURES = FIXTURES / "ring"
RELEASES = ("6.1", "6.12")


def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``memconsole ARGV`` in this process: (exit status, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:   # argparse: a usage error
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- inotify: was the node opened? ------------------------------------------------

_IN_ACCESS, _IN_MODIFY, _IN_CLOSE_WRITE, _IN_CLOSE_NOWRITE, _IN_OPEN = 0x1, 0x2, 0x8, 0x10, 0x20


@contextmanager
def opens_of(path: Path) -> Iterator[list[int]]:
    """Collect the inotify events of *path* (IN_OPEN and friends) while
    the block runs; the list is filled when it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    mask = _IN_ACCESS | _IN_MODIFY | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE | _IN_OPEN
    assert libc.inotify_add_watch(fd, str(path).encode(), mask) >= 0
    events: list[int] = []
    try:
        yield events
    finally:
        try:
            data = os.read(fd, 65536)
            events += [struct.unpack_from("iIII", data, o)[1]
                       for o in range(0, len(data), 16)]
        except BlockingIOError:
            pass
        os.close(fd)


def _device_nodes(tmp_path: Path) -> list[Path]:
    """Private character device nodes (null, zero, full: harmless ones),
    so that nothing else opens them while a test watches."""
    nodes = []
    for name, minor in (("null", 3), ("zero", 5), ("full", 7)):
        node = tmp_path / f"dev-{name}"
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, minor))
        nodes.append(node)
    return nodes


@pytest.mark.root
def test_character_devices_are_never_opened(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.txt"
    source.write_bytes(b"one line\n")
    for node in _device_nodes(tmp_path):
        link = tmp_path / f"link-to-{node.name}"
        link.symlink_to(node)
        for spec in (node, link):
            for argv in (("record", "--ring", str(spec), "--source", str(source)),
                         ("show", "--ring", str(spec), "--boot", "all")):
                with opens_of(node) as events:
                    code, err = run(*argv, capsys=capsys)
                assert events == [], f"{argv}: {node} was opened (inotify {events})"
                assert code == 1, err
                assert "a character device (1:" in one_line(err), err
    # ... and the real /dev/null: the same refusal, by its device number.
    code, err = run("record", "--ring", "/dev/null", "--source", str(source), capsys=capsys)
    assert code == 1 and "/dev/null: a character device (1:3)" in one_line(err)


def test_a_fifo_is_never_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO: ``record`` used to open it read-write (a waiting reader saw a
    writer), ``show`` read-only (and then waited forever for a writer)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    source = tmp_path / "src.txt"
    source.write_bytes(b"one line\n")
    pstore = tmp_path / "pstore"
    pstore.mkdir()
    with opens_of(fifo) as events:
        code, err = run("record", "--ring", str(fifo), "--source", str(source), capsys=capsys)
    assert events == [], f"record: the FIFO was opened (inotify {events})"
    assert code == 1 and "a FIFO, not a regular file or a pmem block device" in one_line(err)
    with opens_of(fifo) as events:
        proc = subprocess.run([sys.executable, "-m", "memconsole", "collect", "--ring", str(fifo),
                               "--pstore", str(pstore), "--archive", str(tmp_path / "archive")],
                              capture_output=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": SRC})
    assert events == [], f"collect: the FIFO was opened (inotify {events})"
    assert b"a FIFO, not a regular file or a pmem block device" in proc.stderr, proc.stderr


def test_show_ring_on_a_fifo_returns_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "memconsole", "show", "--ring", str(fifo)],
                          capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        f"memconsole show: {fifo}: a FIFO, not a regular file or a pmem block device"]


def test_other_kinds_are_refused_before_open(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.txt"
    source.write_bytes(b"one line\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "dir").mkdir()
    target = tmp_path / "ring"
    assert main(["record", "--ring", str(target), "--source", str(source)]) == 0
    capsys.readouterr()
    before = target.read_bytes()
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cases = {
        "sock": "a socket, not a regular file or a pmem block device",
        "dir": "a directory, not a regular file or a pmem block device",
        "link": f"a symbolic link (to {target}); a ring file is written only under its own name",
        "dangling": "which does not exist; a ring file is never created through a link",
    }
    try:
        for name, why in cases.items():
            spec = str(tmp_path / name)
            code, err = run("record", "--ring", spec, "--source", str(source), capsys=capsys)
            assert code == 1, err
            assert one_line(err).startswith(f"memconsole record: {spec}: ") and why in err, err
    finally:
        sock.close()
    assert target.read_bytes() == before, "written through a symbolic link"
    assert not (tmp_path / "nowhere").exists()
    # Reading follows a link: it never writes.
    assert run("show", "--ring", str(tmp_path / "link"), "--boot", "0", capsys=capsys)[0] == 0


def test_kernel_interface_files_and_dev_are_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.txt"
    source.write_bytes(b"one line\n")
    code, err = run("record", "--ring", "/proc/version", "--source", str(source), capsys=capsys)
    assert code == 1 and "/proc/version: a file of the kernel's proc interface" in one_line(err)
    # A mistyped device name is not created as a file in /dev (devtmpfs).
    missing = Path("/dev/pmem-memconsole-test-missing")
    assert not missing.exists()
    try:
        code, err = run("record", "--ring", str(missing), "--source", str(source),
                        capsys=capsys)
        assert code == 1 and not missing.exists(), err
    finally:
        missing.unlink(missing_ok=True)
    if "devtmpfs" in Path("/proc/self/mountinfo").read_text():
        assert "no such device; a ring file is never created in /dev" in one_line(err)


def test_non_pmem_block_device_is_refused_without_opening(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    disks = [Path(f"/dev/{n}") for n in ("loop0", "vda", "sda", "nvme0n1", "xvda")
             if Path(f"/dev/{n}").exists()]
    if not disks:
        pytest.skip("no block device to try")
    source = tmp_path / "src.txt"
    source.write_bytes(b"x\n")
    with opens_of(disks[0]) as events:
        code, err = run("record", "--ring", str(disks[0]), "--source", str(source),
                        capsys=capsys)
    assert code == 1 and "but not a pmem device (nd_pmem)" in one_line(err)
    assert not [e for e in events if e & (_IN_OPEN | _IN_CLOSE_WRITE)], events


# -- record: nothing is written unless it can run -----------------------------------


def _rings(tmp_path: Path) -> dict[str, bytes | None]:
    """A new ring path, an all-zero file and a ring with records."""
    zero = tmp_path / "zero"
    zero.write_bytes(bytes(8192))
    old = tmp_path / "old"
    with open_region(str(old), write=True, create_size=8192) as region:
        ring = Ring.attach(region)
        ring.append(b"an older record")
        ring.close()
    return {str(tmp_path / "new"): None, str(zero): zero.read_bytes(), str(old): old.read_bytes()}


def _unchanged(rings: dict[str, bytes | None]) -> None:
    for path, before in rings.items():
        if before is None:
            assert not os.path.exists(path), f"{path} was created"
        else:
            assert Path(path).read_bytes() == before, f"{path} was written"


def test_a_failing_source_leaves_the_ring_untouched(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "adir").mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sources = {
        str(tmp_path / "nonexistent"): "cannot open source {}: No such file or directory",
        str(tmp_path / "adir"): "source {}: a directory, not a regular file or a FIFO",
        "/dev/zero": "source {}: a character device (1:5), not a regular file or a FIFO",
    }
    rings = _rings(tmp_path)
    for source, why in sources.items():
        for ring in rings:
            code, err = run("record", "--ring", ring, "--source", source, capsys=capsys)
            assert code == 1 and why.format(source) in one_line(err), err
    _unchanged(rings)


def test_every_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.txt"
    source.write_bytes(b"x\n")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"important notes\n" * 1000)
    small = tmp_path / "small"
    small.write_bytes(b"tiny")
    rings = _rings(tmp_path)
    new = next(r for r, v in rings.items() if v is None)
    usage = [  # (arguments, text the line must hold); exit status 2
        (("--ring-size", "1Q"), "bad size '1Q'"),
        (("--ring-size", "0"), "ring size 0 is below the smallest ring (4096 bytes)"),
        (("--ring-size", "100"), "ring size 100 is below the smallest ring (4096 bytes)"),
        (("--ring-size", "2G"), "ring size 2147483648 (2.0 GiB) exceeds the largest ring"),
        (("--ring-size", "0x1000000000000000"), "exceeds the largest ring"),
        (("--format", "xml"), "invalid choice: 'xml'"),
    ]
    for extra, why in usage:
        code, err = run("record", "--ring", new, "--source", str(source), *extra, capsys=capsys)
        assert code == 2 and why in one_line(err), (extra, err)
    errors = [  # (ring spec, more arguments, text the line must hold); exit status 1
        ("mem:0x7200000", (), "bad ring spec 'mem:0x7200000': expected mem:ADDR:SIZE"),
        ("mem:0x7200001:1M", (), "must be non-zero multiples of the page size"),
        ("mem:0x7200000:1M", ("--ring-size", "2M"), "--ring-size 2097152 differs from the "
         "1048576 bytes of mem:0x7200000:1M"),
        (str(notes), (), "not a memconsole ring: unknown content (first bytes "
         "696d706f7274616e); not formatting it"),
        (str(small), (), f"{small}: 4 bytes; a ring has 4096..1073741824 bytes"),
        (str(tmp_path / "no" / "dir"), (), "cannot create it: No such file or directory"),
    ]
    for spec, extra, why in errors:
        code, err = run("record", "--ring", spec, "--source", str(source), *extra,
                        capsys=capsys)
        assert code == 1 and why in one_line(err), (spec, err)
    assert notes.read_bytes() == b"important notes\n" * 1000 and small.read_bytes() == b"tiny"
    _unchanged(rings)
    # A second writer: one line, the first writer's ring untouched.
    old = next(r for r in rings if r.endswith("old"))
    with open_region(old, write=True):
        code, err = run("record", "--ring", old, "--source", str(source), capsys=capsys)
    assert code == 1 and "another memconsole writer has this ring" in one_line(err)
    _unchanged(rings)


def test_a_read_error_of_the_source_is_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """/proc/self/mem opens, but reading its offset 0 fails (EIO): the
    recorder stops with a stop record and says why, exit status 1."""
    ring = tmp_path / "ring"
    code, err = run("record", "--ring", str(ring), "--source", "/proc/self/mem", capsys=capsys)
    lines = err.splitlines()
    assert code == 1 and "Traceback" not in err, err
    assert lines[-1] == ("memconsole record: 0 records; stopped (cannot read /proc/self/mem: "
                         "Input/output error)"), err
    (boot,) = parse_ring(ring.read_bytes()).boots
    assert boot.stopped and b"Input/output error" in boot.last.text


def test_a_fifo_source_without_a_writer_waits_then_records(tmp_path: Path) -> None:
    """A FIFO source is opened non-blocking (no hang at open) and read
    until its writer closes it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    ring = tmp_path / "ring"
    proc = subprocess.Popen([sys.executable, "-m", "memconsole", "record", "--ring", str(ring),
                             "--source", str(fifo)], stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": SRC})
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"through the fifo\n"))
    writer.start()
    _, err = proc.communicate(timeout=120)
    writer.join()
    assert proc.returncode == 0, err
    texts = [r.text for r in parse_ring(ring.read_bytes()).boots[0].records]
    assert b"through the fifo" in texts


def test_buffer_regions_still_format() -> None:
    region = buffer_region(bytearray(8192))
    assert Ring.attach(region).reset_reason == "region is empty (all zero)"
