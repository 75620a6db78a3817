"""``memconsole oops`` on real records and logs (fixtures/lab, fixtures/reports)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from memconsole.cli import _output, main

FIXTURES = Path(__file__).parent.parent / "fixtures"
LAB = FIXTURES / "lab"
REPORTS = FIXTURES / "reports"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["oops", "--json", *argv])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_pstore_directory_one_report_per_crash(capsys: pytest.CaptureFixture[str]) -> None:
    # Oops#1 and Panic#2 hold the same report: it is listed once, from the Panic dump.
    code, objs = _json(capsys, str(LAB / "6.12" / "null" / "pstore"))
    assert code == 0 and len(objs) == 1
    o = objs[0]
    assert o["kind"] == "null-pointer" and o["panic_reason"] == "Fatal exception"
    assert o["sentence"] == ("kernel panic: BUG: unable to handle kernel NULL pointer dereference "
                             "in crashy_null [crashy], task insmod (pid 164), kernel tainted OE")
    assert o["rip"] == {"function": "crashy_null", "offset": 0x15, "size": 0x30, "module": "crashy"}
    assert o["tainted"] == "OE" and o["taint_flags"] == ["OOT_MODULE", "UNSIGNED_MODULE"]
    assert o["kernel_offset"] == "0x11a00000" and o["fault_address"] == "0x0"
    assert o["module_flags"] == {"crashy": "OE+"} and o["uid"] == 0
    assert isinstance(o["signature"], str) and len(o["signature"]) == 16
    trace = o["call_trace"]
    assert isinstance(trace, list) and trace[0] == {
        "function": "crashy_init", "offset": 0x165, "size": 0xFF0, "module": "crashy",
        "reliable": True, "context": "TASK"}
    src = o["source"]
    assert isinstance(src, dict)
    path = Path(str(src["file"]))
    assert path.name == "dmesg-ramoops-1"
    line = path.read_bytes().splitlines()[int(src["line"]) - 1]
    assert b"BUG: kernel NULL pointer dereference" in line


def test_archive_and_single_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n, action in enumerate(("bug", "divide")):
        boot = tmp_path / "boots" / f"2026112{n}T000000Z"
        shutil.copytree(LAB / "6.1" / action / "pstore", boot)
        (boot / "records.json").write_text("[]")
    code, objs = _json(capsys, str(tmp_path))
    assert code == 0 and [o["kind"] for o in objs] == ["bug", "divide-error"]
    record = LAB / "6.1" / "gpf" / "pstore" / "dmesg-ramoops-1"
    code, objs = _json(capsys, str(record))
    assert code == 0 and [o["kind"] for o in objs] == ["general-protection"]


def test_logs_plain_gzip_directory_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = b"".join(p.read_bytes() for p in sorted(REPORTS.glob("*.txt")))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kern.log").write_bytes(text)
    (tmp_path / "logs" / "kern.log.2.gz").write_bytes(gzip.compress(text))
    code, plain = _json(capsys, str(tmp_path / "logs" / "kern.log"))
    assert code == 0 and len(plain) >= 47
    code, gz = _json(capsys, str(tmp_path / "logs" / "kern.log.2.gz"))
    assert [o["signature"] for o in gz] == [o["signature"] for o in plain]
    assert [o["source"] for o in gz][3]["line"] == plain[3]["source"]["line"]
    code, both = _json(capsys, str(tmp_path / "logs"))
    assert len(both) == 2 * len(plain)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    code, piped = _json(capsys, "-")
    assert [o["headline"] for o in piped] == [o["headline"] for o in plain]
    assert piped[0]["source"] == {"file": "-", "line": plain[0]["source"]["line"],
                                  "offset": plain[0]["source"]["offset"]}


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oops", str(LAB / "6.12" / "list" / "pstore")]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.endswith(": kernel panic: BUG: corrupted list in crashy_list [crashy], "
                          "task insmod (pid 162), kernel tainted OE")
    assert "    signature " in out and "call trace:" in out


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_bytes(b"[    1.0] nothing to see\n")
    assert main(["oops", str(quiet)]) == 4
    assert main(["oops", str(tmp_path / "missing")]) == 1
    assert main(["oops", str(tmp_path / "missing"), str(LAB / "6.1" / "null" / "pstore")]) == 3
    err = capsys.readouterr().err
    assert "missing: cannot read" in err and "no crash report found" in err


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_tty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "big.log"
    log.write_bytes((LAB / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes() * 200)
    monkeypatch.setattr(_output, "PROGRESS_MIN", 0)
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(time, "monotonic", iter(range(100, 10**6)).__next__)
    assert main(["oops", "--json", str(log)]) == 0
    assert "\rmemconsole oops: " in tty.getvalue() and "MiB (" in tty.getvalue()
    capsys.readouterr()
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    assert main(["oops", "--json", str(log)]) == 0
    assert "MiB" not in plain.getvalue()


def _inflated_intact(gz: bytes, text: bytes) -> int:
    """How many leading bytes of what *gz* inflates to (until the inflater
    fails) are those of *text*."""
    out = bytearray()
    d = zlib.decompressobj(31)
    try:
        for i in range(0, len(gz), 512):
            out += d.decompress(gz[i:i + 512])
    except zlib.error:
        pass
    n = 0
    while n < min(len(out), len(text)) and out[n] == text[n]:
        n += 1
    return n


def _corrupt(data: bytes, at: float) -> bytes:
    """*data* gzip-compressed with the deflate stream overwritten from *at*
    (a fraction of the file) on: the inflater stops there."""
    gz = bytearray(gzip.compress(data, 6, mtime=0))
    cut = int(len(gz) * at)
    gz[cut:cut + 64] = b"\xff" * 64
    return bytes(gz)


def test_corrupt_gzip_one_line_then_the_other_paths(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = b"".join(p.read_bytes() for p in sorted(REPORTS.glob("*.txt")))
    good = tmp_path / "good.log"
    good.write_bytes(text)
    code, whole = _json(capsys, str(good))
    assert code == 0 and len(whole) >= 40
    damaged = []
    for n, (at, kind) in enumerate(((0.6, "corrupt"), (0.3, "corrupt"))):
        path = tmp_path / f"kern.log.{n}.gz"
        path.write_bytes(_corrupt(text, at))
        damaged.append((path, kind))
    truncated = tmp_path / "kern.log.9.gz"
    truncated.write_bytes(gzip.compress(text, mtime=0)[:-5000])
    trailing = tmp_path / "kern.log.8.gz"
    trailing.write_bytes(gzip.compress(text, mtime=0) + b"garbage after the member")
    paths = [str(damaged[0][0]), str(good), str(damaged[1][0]), str(truncated), str(trailing)]
    code = main(["oops", "--json", *paths])
    out, err = capsys.readouterr()
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 3, err
    # One line per damaged path, each naming it; the good log is read whole.
    lines = err.splitlines()
    assert len(lines) == 4, err
    for line, name in zip(lines, [paths[0], paths[2], paths[3], paths[4]], strict=True):
        assert line.startswith(f"memconsole oops: {name}: ")
    assert "truncated gzip data near byte" in lines[2]
    for line in lines[:2]:
        assert ("corrupt gzip data near byte" in line
                or "gzip data fails its integrity check (CRC check failed" in line), line
    by_file: dict[str, list[object]] = {}
    for o in objs:
        by_file.setdefault(o["source"]["file"], []).append(o["signature"])
    sigs = [o["signature"] for o in whole]
    assert by_file[str(good)] == sigs
    # What was inflated before the damage was scanned: the reports that end
    # before the first damaged byte are out, in order (the last of them may
    # have taken in lines the inflater made of the damage before it noticed,
    # and those lines may hold more reports).
    ends = [o["source"]["offset"] for o in whole]
    for name in paths[0], paths[2], paths[3]:
        part = by_file.get(name, [])
        clean = _inflated_intact(Path(name).read_bytes(), text)
        whole_before = sum(1 for o, nxt in zip(whole, [*ends[1:], len(text)], strict=True)
                           if nxt <= clean)
        assert whole_before > 5 and part[:whole_before - 1] == sigs[:whole_before - 1], name
    assert by_file[paths[4]] == sigs  # the member itself was whole


def test_corrupt_gzip_in_a_directory_of_logs(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    text = (LAB / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log.gz").write_bytes(_corrupt(text * 20, 0.5))
    (logs / "b.log").write_bytes(text)
    code = main(["oops", "--json", str(logs)])
    out, err = capsys.readouterr()
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 3 and err.count("\n") == 1 and f"{logs / 'a.log.gz'}: corrupt gzip" in err
    source = objs[-1]["source"]
    assert isinstance(source, dict) and source["file"] == str(logs / "b.log")


def test_cannot_read_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"x\n")
    for path, reason in ((tmp_path / "missing", "No such file or directory"),
                         (afile / "below", "Not a directory")):
        assert main(["oops", str(path)]) == 1
        err = capsys.readouterr().err
        assert err == f"memconsole oops: {path}: cannot read: {reason}\n"
