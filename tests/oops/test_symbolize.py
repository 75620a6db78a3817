"""memconsole.symbolize on real crashes.

* The lab's crashy.ko is built at test time with the installed Debian
  headers (memconsole.lab.Lab.crashy(): Debian builds modules with DWARF);
  the crash records in fixtures/lab came from the same source and headers.
  Expected lines are found in lab/crashy.c by their text.
* fixtures/symbols/<kernel>/ holds a crash and the kernel's System.map text
  symbols taken from /proc/kallsyms of the same boot (recipe: capture.py
  there; Debian's /boot/System.map-* is a placeholder).
* A small program built with gcc -g stands in for a vmlinux with debug info.
"""

from __future__ import annotations

import dataclasses
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import kernel_for, require
from memconsole import oops
from memconsole.errors import ConfigError, LabError, ParseError
from memconsole.oops import symbolize

FIXTURES = Path(__file__).parent.parent / "fixtures"
CRASHY_C = Path(__file__).parent.parent.parent / "src" / "memconsole" / "lab" / "crashy.c"


def _line_of(text: str, after: str = "") -> int:
    """1-based line number of the first line containing *text* after one containing *after*."""
    lines = CRASHY_C.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def built(request: pytest.FixtureRequest) -> tuple[str, Path]:
    from memconsole.lab import Lab

    require(shutil.which("addr2line") is not None, "addr2line (binutils) is not installed")
    kernel = kernel_for(request.param)
    try:
        ko = Lab(progress=lambda msg: None).crashy(kernel)
    except LabError as exc:
        require(False, f"cannot build crashy.ko: {exc}")
    return request.param, ko


def _lab(version: str, action: str) -> oops.Report:
    path = sorted((FIXTURES / "lab" / version / action / "pstore").glob("dmesg-*"))[-1]
    report = oops.primary_report(path.read_bytes())
    assert report is not None
    return report


def _symbolized(version: str, action: str, ko: Path) -> oops.Report:
    report = _lab(version, action)
    result, notes = symbolize.symbolize(report, symbolize.find_symbols([ko]))
    assert notes == [], notes
    return result


def _src(frame: oops.Frame | None) -> list[tuple[str, str, int | None, bool]]:
    assert frame is not None
    return [(s.function, Path(s.file).name, s.line, s.inlined) for s in frame.source]


def test_module_has_debug_info(built: tuple[str, Path]) -> None:
    table = symbolize.read_elf_symbols(built[1].read_bytes(), str(built[1]))
    assert table.relocatable
    init = table.by_name["crashy_init"][0]
    assert init.section == ".init.text"  # module_init code
    # gcc may place a function called only from init code in .text.unlikely (6.1)
    assert table.by_name["crashy_null"][0].section in (".text", ".text.unlikely")


def test_faulting_line_and_call_site(built: tuple[str, Path]) -> None:
    version, ko = built
    r = _symbolized(version, "null", ko)
    assert _src(r.rip) == [("crashy_null", "crashy.c", _line_of("crashy_sink = *ptr;",
                                                                  "void crashy_null"), False)]
    init = next(f for f in r.call_trace if f.function == "crashy_init")
    # A return address is looked up one byte back: the line of the call.
    assert _src(init) == [("crashy_init", "crashy.c", _line_of("crashy_null();"), False)]
    # Kernel image frames stay as they are without a vmlinux.
    assert all(not f.source for f in r.call_trace if f.module is None)


def test_inlined_chain(built: tuple[str, Path]) -> None:
    version, ko = built
    r = _symbolized(version, "list", ko)
    frame = next(f for f in r.call_trace if f.function == "crashy_list")
    chain = _src(frame)
    assert chain[-1] == ("crashy_list", "crashy.c", _line_of("list_del(&crashy_list_entry);"),
                         False)
    assert len(chain) >= 2 and all(inl for _, _, _, inl in chain[:-1])
    assert chain[0][1] == "list.h"


def test_workqueue_and_hung(built: tuple[str, Path]) -> None:
    version, ko = built
    r = _symbolized(version, "workqueue", ko)
    assert _src(r.rip)[0][2] == _line_of("crashy_sink = *ptr;", "void crashy_work_fn")
    r = _symbolized(version, "hung", ko)
    hung = next(f for f in r.call_trace if f.function == "crashy_hung")
    assert _src(hung)[-1][2] == _line_of("schedule_timeout_uninterruptible(")


def test_wrong_build_is_refused(built: tuple[str, Path]) -> None:
    report = _lab(built[0], "null")
    assert report.rip is not None
    bad = dataclasses.replace(report, rip=dataclasses.replace(report.rip, size=0x1234))
    result, notes = symbolize.symbolize(bad, symbolize.find_symbols([built[1]]))
    assert result.rip is not None and result.rip.source == ()
    assert any("different build" in n for n in notes)


def test_module_trees_and_compressed_modules(built: tuple[str, Path], tmp_path: Path) -> None:
    version, ko = built
    release = _lab(version, "null").kernel_release
    assert release is not None
    # /lib/modules/<release>/... with an xz-compressed module
    tree = tmp_path / "modules" / release / "extra"
    tree.mkdir(parents=True)
    (tree / "crashy.ko.xz").write_bytes(lzma.compress(ko.read_bytes()))
    symbols = symbolize.find_symbols([tmp_path / "modules"], release)
    r, notes = symbolize.symbolize(_lab(version, "null"), symbols)
    symbols.close()
    assert notes == [] and r.rip is not None and r.rip.source
    # a debug root: <root>/lib/modules/<release>/...
    root = tmp_path / "debug"
    (root / "lib" / "modules" / release).mkdir(parents=True)
    shutil.copy(ko, root / "lib" / "modules" / release / "crashy.ko")
    r, notes = symbolize.symbolize(_lab(version, "null"), symbolize.find_symbols([root], release))
    assert notes == [] and r.rip is not None and r.rip.source


def test_cli_symbols(built: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from memconsole.cli import main

    version, ko = built
    assert main(["oops", str(FIXTURES / "lab" / version / "null" / "pstore"),
                 "--symbols", str(ko)]) == 0
    out = capsys.readouterr().out
    assert "crashy_null (" in out and f"crashy.c:{_line_of('crashy_sink = *ptr;')}" in out


# --------------------------------------------------------------------------
# System.map and raw addresses (KASLR)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_raw_addresses_through_system_map(version: str) -> None:
    here = FIXTURES / "symbols" / version
    table = symbolize.read_system_map((here / "System.map").read_bytes())
    record = (here / "pstore" / "dmesg-ramoops-1").read_bytes()
    report = oops.primary_report(record)
    assert report is not None
    kaslr = int((here / "kaslr.txt").read_text(), 16)
    assert report.kernel_offset == kaslr  # kallsyms and the oops agree
    # Replace every kernel-image frame by the raw address the kernel ran it at.
    lines = record.split(b"\n")
    expected = []
    for f in report.call_trace:
        if f.module is None and f.function in table.by_name and f.offset is not None:
            addr = table.by_name[f.function][0].value + f.offset + kaslr
            expected.append((f.function, f.offset, f.size))
            old = f" {f.function}+0x{f.offset:x}/0x{f.size:x}".encode()
            i = next(i for i, line in enumerate(lines) if line.endswith(old))
            lines[i] = lines[i][:-len(old)] + f" 0x{addr:x}".encode()
    assert len(expected) >= 3
    raw = oops.primary_report(b"\n".join(lines))
    assert raw is not None
    assert sum(f.function.startswith("0xffffffff") for f in raw.call_trace) >= len(expected)
    resolved, _ = symbolize.symbolize(raw, symbolize.Symbols(system_map=table))
    assert [(f.function, f.offset, f.size) for f in resolved.call_trace] == [
        (f.function, f.offset, f.size) for f in report.call_trace]


def test_system_map_parsing() -> None:
    table = symbolize.read_system_map(
        b"ffffffff81000000 T _text\nffffffff81000040 t foo\nffffffff810000a0 D data\n"
        b"garbage\nzzzz T bad\nffffffff81000100 T bar\n")
    assert sorted(table.by_name) == ["_text", "bar", "foo"]
    hit = table.at(0xFFFFFFFF81000050)
    assert hit is not None and (hit[0].name, hit[1], hit[2]) == ("foo", 0x10, 0xC0)
    assert table.at(0x10) is None


# --------------------------------------------------------------------------
# An ELF executable with DWARF as a stand-in vmlinux
# --------------------------------------------------------------------------

_PROGRAM = """\
volatile int sink;
__attribute__((noinline)) void victim(int *p)
{
    sink = *p;
}
__attribute__((noinline)) void caller(int *p)
{
    victim(p);
    sink++;
}
int main(void) { caller(0); return 0; }
"""


def test_vmlinux_like_executable(tmp_path: Path) -> None:
    require(shutil.which("gcc") is not None and shutil.which("addr2line") is not None,
            "gcc or addr2line is not installed")
    src, exe = tmp_path / "prog.c", tmp_path / "vmlinux"
    src.write_text(_PROGRAM)
    subprocess.run(["gcc", "-g", "-O1", "-no-pie", "-o", str(exe), str(src)], check=True)
    table = symbolize.read_elf_symbols(exe.read_bytes(), str(exe))
    assert not table.relocatable
    victim, caller = table.by_name["victim"][0], table.by_name["caller"][0]
    dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(exe)], capture_output=True,
                          text=True, check=True).stdout
    call = re.search(rf"\n\s*([0-9a-f]+):\s+call\s+{victim.value:x} <victim>", dump)
    assert call is not None
    ret_off = int(call.group(1), 16) + 5 - caller.value  # x86 "call rel32" is 5 bytes
    log = (f"BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
           f"RIP: 0010:victim+0x0/0x{victim.span or victim.size:x}\n"
           f"Call Trace:\n <TASK>\n caller+0x{ret_off:x}/0x{caller.span or caller.size:x}\n"
           f" </TASK>\n").encode()
    report = oops.primary_report(log)
    assert report is not None
    result, notes = symbolize.symbolize(report, symbolize.find_symbols([exe]))
    assert notes == []
    assert _src(result.rip) == [("victim", "prog.c", 4, False)]  # its first instruction loads *p
    assert _src(result.call_trace[0]) == [("caller", "prog.c", 8, False)]


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"", b"\x7fELF", b"not an elf at all" * 10,
    b"\x7fELF\x02\x01\x01" + b"\0" * 33 + (10**6).to_bytes(8, "little") + b"\0" * 10
    + (64).to_bytes(2, "little") + (5).to_bytes(2, "little") + b"\0\0",
    b"\x7fELF\x07\x01" + b"\0" * 80,
], ids=["empty", "magic-only", "text", "section-headers-past-end", "bad-class"])
def test_corrupt_elf_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        symbolize.read_elf_symbols(data, "bad")


def test_missing_symbols_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        symbolize.find_symbols([tmp_path / "nope"])
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    with pytest.raises(ConfigError):
        symbolize.find_symbols([junk])
