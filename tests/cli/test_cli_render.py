"""What ``show``, ``show --ring``, ``list`` and ``oops`` print, on hostile input.

The record comes from a real kernel (fixtures/<release>/hostile, recipe in
fixtures/capture.py): a /dev/kmsg message full of terminal controls and
bytes that are not UTF-8, and a crashing task whose name holds ESC, a C1
CSI and a byte that is not UTF-8.  File and directory names around it are
made hostile here (names are what an admin or an attacker chooses).  Text
output must never carry a control character other than the log's own tabs
and newlines, whatever the locale; JSON must be strict JSON (no lone
surrogates) with one policy for bytes that are not UTF-8 (``\\xNN``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memconsole import render
from memconsole.cli import main
from memconsole.ring import RecordType, Ring
from memconsole.ring.regions import open_region

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
RELEASES = ("6.1", "6.12")
# A name with ESC c (terminal reset), a colour, a CR, a C1 CSI and a byte
# that is not UTF-8; the directory names add a newline.
NAME = os.fsdecode(b"dmesg-ramoops\x1bc\x1b[31m\r\xc2\x9b\xff-0")
NAME_SHOWN = "dmesg-ramoops\\x1bc\\x1b[31m\\x0d\\xc2\\x9b\\xff-0"
DIR = os.fsdecode(b"pstore\x1b]0;t\x07\n\xfe")
DIR_SHOWN = "pstore\\x1b]0;t\\x07\\x0a\\xfe"
# Any control character but tab and newline, DEL, a C1 control (UTF-8).
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")
LOCALES = [
    pytest.param({"LC_ALL": "C.UTF-8"}, "utf-8", id="C.UTF-8"),
    pytest.param({"LC_ALL": "C", "LANG": "C"}, "utf-8", id="C"),
    pytest.param({"PYTHONIOENCODING": "ascii"}, "ascii", id="ascii"),
    pytest.param({"PYTHONIOENCODING": "latin-1"}, "latin-1", id="latin-1"),
]


@pytest.fixture(autouse=True)
def _no_env_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMCONSOLE_RING", raising=False)


def hostile(release: str, dest: Path, name: str = NAME) -> Path:
    """The real hostile record in *dest* (created) under *name*, with the
    mtime the kernel gave it."""
    src = HERE / "fixtures" / release / "hostile"
    mtimes = json.loads((src / "mtimes.json").read_text())
    dest.mkdir(parents=True)
    ((orig, ns),) = mtimes.items()
    shutil.copy(src / "pstore" / orig, dest / name)
    os.utime(dest / name, ns=(ns, ns))
    return dest / name


def run(env: dict[str, str], *argv: str | Path) -> tuple[int, bytes, bytes]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8",
                         "MEMCONSOLE_RING")}
    full.update(env, PYTHONPATH=str(SRC))
    proc = subprocess.run([sys.executable, "-m", "memconsole", *map(str, argv)],
                          capture_output=True, env=full, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def assert_safe(data: bytes, encoding: str) -> str:
    """*data* holds no control character but tab and newline and is valid in
    *encoding*; return it decoded."""
    assert _CONTROL.search(data) is None, _CONTROL.search(data)
    return data.decode(encoding)


# --------------------------------------------------------------------------
# The escaping function
# --------------------------------------------------------------------------

def test_escape_as_dmesg_does() -> None:
    # util-linux sys-utils/dmesg.c safe_fwrite(): fwrite_hex() of every byte
    # of a character that is not printable, and of bytes that are not UTF-8.
    assert render.escape(b"a\x1bc\x07\x00\x7f.") == "a\\x1bc\\x07\\x00\\x7f."
    assert (render.escape(b"C1 \xc2\x9b CSI \xe2\x80\xae bidi")
            == "C1 \\xc2\\x9b CSI \\xe2\\x80\\xae bidi")
    assert render.escape(b"\xff\xfe\xc3") == "\\xff\\xfe\\xc3"
    assert render.escape("caf\u00e9 \u4e2d") == "caf\u00e9 \u4e2d"
    assert render.escape(b"back\\x1b slash") == "back\\x1b slash"  # as dmesg: not doubled
    # A name is one line; a log keeps its tabs and newlines, nothing else.
    assert render.escape(b"a\tb\nc\rd\x0b") == "a\\x09b\\x0ac\\x0dd\\x0b"
    assert render.escape(b"a\tb\nc\rd\x0b", layout=True) == "a\tb\nc\\x0dd\\x0b"
    # File names keep undecodable bytes as surrogates: the same \xNN.
    assert render.escape(os.fsdecode(b"x\xff\x1b")) == "x\\xff\\x1b"
    # What the output's encoding cannot show becomes the bytes of its UTF-8.
    assert render.escape("caf\u00e9", encoding="ascii") == "caf\\xc3\\xa9"
    assert render.escape("caf\u00e9 \u4e2d", encoding="latin-1") == "caf\u00e9 \\xe4\\xb8\\xad"


def test_json_policy_is_backslash_x() -> None:
    # The one JSON policy: \xNN for bytes that are not UTF-8 (kernel text
    # and file names alike), controls escaped by JSON, never a lone surrogate.
    assert render.text(b"a\xffb") == render.text(os.fsdecode(b"a\xffb")) == "a\\xffb"
    line = render.json_line({"name": os.fsdecode(b"n\xff\x1b\n"), "text": b"\xc2\x9b\xfe"})
    assert line.isascii() and line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {"name": "n\\xff\x1b\n", "text": "\x9b\\xfe"}


# --------------------------------------------------------------------------
# show, list, oops on the real hostile record
# --------------------------------------------------------------------------

@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(("env", "encoding"), LOCALES)
def test_show_list_oops_text_in_any_locale(tmp_path: Path, release: str,
                                           env: dict[str, str], encoding: str) -> None:
    pstore = tmp_path / DIR
    hostile(release, pstore)
    archive = tmp_path / DIR / "archive"
    rc, out, err = run(env, "show", "--pstore", pstore, "--archive", archive)
    assert rc == 0, err
    shown = assert_safe(out, encoding)
    assert_safe(err, encoding)
    lines = shown.splitlines()
    assert lines[0].startswith("Boot ") and "sysrq triggered crash, task \\x1b[31mx" in lines[0]
    assert lines[1] == f"Records: {NAME_SHOWN}"
    hostile_line = next(line for line in lines if "memconsole-lab: hostile:" in line)
    assert hostile_line.endswith(
        "memconsole-lab: hostile: \\x1bc reset, \\x1b[31mred\\x1b[0m, \\x1b]0;title\\x07, "
        "C1 \\xc2\\x9b CSI, not UTF-8 \\xff\\xfe, tab\tend, cr\\x0dover, del \\x7f")
    comm = next(line for line in lines if " Comm: " in line)
    assert " Comm: \\x1b[31mx\\xc2\\x9b2J\\xff Not tainted" in comm

    rc, out, err = run(env, "list", "--pstore", pstore, "--archive", archive)
    assert rc == 0, err
    listed = assert_safe(out, encoding).splitlines()
    assert listed[0] == lines[0] and "kernel panic: sysrq triggered crash" in listed[-1]

    rc, out, err = run(env, "oops", pstore)
    assert rc == 0, err
    first = assert_safe(out, encoding).splitlines()[0]
    assert first.startswith(f"{tmp_path}/{DIR_SHOWN}/{NAME_SHOWN}:")
    assert re.search(r"kernel panic: sysrq triggered crash, task \\x1b\[31mx\\x9b2J\\xff "
                     r"\(pid \d+\)$", first), first


def test_newline_in_a_record_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A name is one line: its newline cannot start a line of its own.
    name = "dmesg-ramoops\n\x1b]0;x\x07-0"
    hostile("6.1", tmp_path / "p", name)
    assert main(["show", "--pstore", str(tmp_path / "p"), "--archive", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Records: dmesg-ramoops\\x0a\\x1b]0;x\\x07-0" and lines[2] == ""
    assert main(["oops", str(tmp_path / "p")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{tmp_path}/p/dmesg-ramoops\\x0a\\x1b]0;x\\x07-0:")


@pytest.mark.parametrize(("env", "encoding"), LOCALES[1:3])
def test_diagnostics_escape_names(tmp_path: Path, env: dict[str, str], encoding: str) -> None:
    empty = tmp_path / DIR
    empty.mkdir()
    rc, out, err = run(env, "show", "--pstore", empty, "--archive", empty / DIR)
    assert rc == 4 and out == b""
    assert assert_safe(err, encoding) == (
        f"memconsole show: no crash records in pstore or in the archive "
        f"({tmp_path}/{DIR_SHOWN}/{DIR_SHOWN})\n")
    rc, out, err = run(env, "oops", empty / NAME)
    assert rc == 1
    assert assert_safe(err, encoding) == (
        f"memconsole oops: {tmp_path}/{DIR_SHOWN}/{NAME_SHOWN}: cannot read: "
        "No such file or directory\n")


def _strict(line: str) -> object:
    """A JSON Lines line as a strict parser takes it: ASCII, and no string in
    it a lone surrogate."""
    assert line.isascii()
    obj = json.loads(line)
    json.dumps(obj, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return obj


@pytest.mark.parametrize("release", RELEASES)
def test_json_of_list_and_oops(tmp_path: Path, release: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    pstore = tmp_path / DIR
    hostile(release, pstore)
    assert main(["list", "--json", "--pstore", str(pstore), "--archive",
                 str(tmp_path / "a")]) == 0
    (event,) = [_strict(line) for line in capsys.readouterr().out.splitlines()]
    assert isinstance(event, dict)
    assert event["records"] == ["dmesg-ramoops\x1bc\x1b[31m\r\x9b\\xff-0"]
    assert event["comm"] == "\x1b[31mx\x9b2J\\xff"
    rc, out, err = run({"PYTHONIOENCODING": "ascii"}, "oops", "--json", pstore)
    assert rc == 0, err
    (report,) = [_strict(line) for line in out.decode("ascii").splitlines()]
    assert isinstance(report, dict) and isinstance(report["source"], dict)
    assert report["source"]["file"] == str(pstore / NAME).replace("\udcff", "\\xff").replace(
        "\udcfe", "\\xfe").replace("\udcc2\udc9b", "\x9b")
    assert report["comm"] == event["comm"]


# --------------------------------------------------------------------------
# show --ring
# --------------------------------------------------------------------------

BOOT = b"\x5a" * 16
BOOT_ID = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a"


def _ring_of_hostile_lines(path: Path, release: str) -> list[bytes]:
    """A ring whose records are the kernel lines of the hostile record, as a
    recorder of a raw console would keep them; return their texts."""
    record = (HERE / "fixtures" / release / "hostile" / "pstore" / "dmesg-ramoops-0").read_bytes()
    lines = [re.sub(rb"^<\d+>\[[ \d.]+\] ", b"", line)
             for line in record.split(b"\n") if line.startswith(b"<")]
    lines = [line for line in lines if b"hostile" in line or b" Comm: " in line]
    assert len(lines) == 2
    region = open_region(str(path), write=True, create_size=1 << 16)
    ring = Ring.attach(region, boot=BOOT)
    for i, line in enumerate(lines):
        ring.append(line, pri=4, mono_ns=i * 10**9, time_ns=1_795_600_000 * 10**9 + i,
                    rtype=RecordType.LOG)
    ring.close()
    region.close()
    return lines


@pytest.mark.parametrize(("env", "encoding"), LOCALES)
def test_show_ring_text_and_json(tmp_path: Path, env: dict[str, str], encoding: str) -> None:
    (tmp_path / DIR).mkdir()
    path = tmp_path / DIR / NAME
    texts = _ring_of_hostile_lines(path, "6.12")
    rc, out, err = run(env, "show", "--ring", path, "--boot", "all")
    assert rc == 0, err
    lines = assert_safe(out, encoding).splitlines()
    assert lines[0] == f"Boot {BOOT_ID} (ring {tmp_path}/{DIR_SHOWN}/{NAME_SHOWN}): 2 records"
    assert lines[1].startswith("[    0.000000] memconsole-lab: hostile: \\x1bc reset, ")
    assert "tab\tend, cr\\x0dover, del \\x7f" in lines[1]
    assert lines[2].startswith("[    1.000000] CPU: 0 UID: 0 PID: ")
    rc, out, err = run(env, "show", "--ring", path, "--boot", BOOT_ID[:6], "--json")
    assert rc == 0, err
    objs = [_strict(line) for line in out.decode("ascii").splitlines()]
    assert [o["text"] for o in objs if isinstance(o, dict)] == [render.text(t) for t in texts]
    assert "not UTF-8 \\xff\\xfe" in render.text(texts[0])
    assert "\x1bc reset" in render.text(texts[0])


# --------------------------------------------------------------------------
# --boot: a bad value is a usage error
# --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["xyz", "-0", "1", "+1", "-", "abc", "-1x", "g000", "",
                                   "\uff11\uff12\uff13\uff14", "-\u0663", "1234 ", "all,0"])
def test_bad_boot_is_usage_error(tmp_path: Path, value: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["show", "--ring", str(tmp_path / "ring"), "--boot", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith("memconsole show: error: argument --boot: ")


@pytest.mark.parametrize("value", ["-1", "-12", "0", "all", "5a5a", "5A5A5A5A-5A", BOOT_ID])
def test_good_boot_values(tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ring"
    _ring_of_hostile_lines(path, "6.1")
    rc = main(["show", "--ring", str(path), "--boot", value])
    out, err = capsys.readouterr()
    if value in ("-1", "all") or value[0] in "5A":
        assert rc == 0 and out.startswith(f"Boot {BOOT_ID} "), err
    else:  # no such boot among the ring's one (-12, or 0: not the running boot)
        assert rc == 4 and f"no boot {value} among 1 boot(s)" in err
