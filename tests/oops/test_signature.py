"""Crash signatures (memconsole.oops.signature) on real reports.

The lab records (fixtures/lab, recipe fixtures/lab/capture.py) hold each
crashy.ko crash on Debian 6.1 and 6.12; fixtures/symbols holds another boot
of the null crash on both kernels (recipe fixtures/symbols/capture.py), with
other PIDs, times and KASLR offsets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memconsole import oops
from memconsole.oops import Kind, signature

FIXTURES = Path(__file__).parent.parent / "fixtures"
LAB = FIXTURES / "lab"
ACTIONS = ["null", "bug", "divide", "gpf", "rodata", "list", "warn", "softlockup", "hung",
           "panic", "sysrq", "workqueue"]


def _primary(path: Path) -> oops.Report:
    report = oops.primary_report(path.read_bytes())
    assert report is not None
    return report


def _lab(version: str, action: str) -> oops.Report:
    return _primary(sorted((LAB / version / action / "pstore").glob("dmesg-*"))[-1])


@pytest.mark.parametrize("action", ACTIONS)
def test_same_bug_same_signature_across_kernels(action: str) -> None:
    # Debian 6.1 and 6.12: other builds, offsets, KASLR, PIDs, times, header formats.
    old, new = _lab("6.1", action), _lab("6.12", action)
    assert old.signature == new.signature, (old.signature_basis, new.signature_basis)
    assert re.fullmatch(r"[0-9a-f]{16}", old.signature)


def test_same_bug_same_signature_across_reboots() -> None:
    for version in ("6.1", "6.12"):
        other_boot = _primary(FIXTURES / "symbols" / version / "pstore" / "dmesg-ramoops-1")
        assert other_boot.kernel_offset != _lab(version, "null").kernel_offset
        assert other_boot.signature == _lab(version, "null").signature
    # An Oops dump and the Panic dump of the same crash.
    dumps = sorted((LAB / "6.12" / "null" / "pstore").glob("dmesg-*"))
    assert len({_primary(d).signature for d in dumps}) == 1


def test_different_bugs_different_signatures() -> None:
    sigs = {a: _lab("6.12", a).signature for a in ACTIONS}
    assert len(set(sigs.values())) == len(ACTIONS), sigs
    reports = [r for p in sorted((FIXTURES / "reports").glob("*.txt"))
               for r in [oops.primary_report(p.read_bytes())] if r is not None]
    framed = [r for r in reports if r.rip is not None or r.call_trace]
    assert len(framed) >= 40
    assert len({r.signature for r in framed}) == len(framed)
    # Reports cut before their first frame fall back to the headline (and work function).
    cut = _primary(FIXTURES / "reports" / "list-corruption-4.18-x86_64-rhel-bug.txt")
    assert cut.signature_basis == (
        "list-corruption|BUG: corrupted list|work _cas_rpool_pre_alloc_do [cas_cache]")


def test_basis_names_the_culprit_and_skips_machinery() -> None:
    assert _lab("6.12", "null").signature_basis == (
        "null-pointer|crashy_null [crashy]|crashy_init [crashy]|do_one_initcall|do_init_module")
    # A stall: the culprit is above the dispatch frame, and the callers stop at it.
    assert _lab("6.1", "softlockup").signature_basis == (
        "soft-lockup|crashy_init [crashy]|do_one_initcall")
    # Hung task: the scheduler frames it sleeps in are skipped.
    assert _lab("6.12", "hung").signature_basis.startswith("hung-task|crashy_hung [crashy]|")
    # List corruption: the list checker (RIP) is skipped, the caller named.
    assert _lab("6.1", "list").signature_basis.startswith("list-corruption|crashy_list [crashy]|")
    # Panic: dump_stack/panic skipped, the reason kept (numbers as N).
    assert _lab("6.12", "sysrq").signature_basis == (
        "panic|sysrq_handle_crash|__handle_sysrq|write_sysrq_trigger|proc_reg_write|"
        "sysrq triggered crash")
    # Hard lockup: the NMI watchdog frames are skipped.
    hard = _primary(FIXTURES / "reports" / "hard-lockup-3.8-x86_64-nmi-watchdog.txt")
    assert "watchdog_overflow_callback" not in hard.signature_basis
    assert hard.signature_basis.split("|")[1] == "account_idle_ticks"


@pytest.mark.parametrize("path", sorted((FIXTURES / "reports").glob("*.txt")), ids=lambda p: p.stem)
def test_basis_has_no_numbers_from_the_crash(path: Path) -> None:
    for report in oops.parse_reports(path.read_bytes()):
        assert not re.search(r"0x[0-9a-f]|\+0x|/0x", report.signature_basis)
        assert "? " not in report.signature_basis
        if report.pid is not None and report.pid > 99:
            assert str(report.pid) not in report.signature_basis.split("|")[-1] or (
                report.kind is not Kind.PANIC)


def _rewrite(text: bytes, pattern: bytes, repl: bytes) -> bytes:
    out = re.sub(pattern, repl, text)
    assert out != text
    return out


def test_offsets_kaslr_and_unreliable_frames_do_not_matter() -> None:
    text = (LAB / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes()
    report = oops.primary_report(text)
    assert report is not None
    # Other offsets and sizes, another KASLR offset, PID and times, a stale frame.
    shifted = _rewrite(text, rb"\+0x[0-9a-f]+/0x[0-9a-f]+", b"+0x1/0x2")
    shifted = _rewrite(shifted, rb"Kernel Offset: 0x[0-9a-f]+", b"Kernel Offset: 0x1000000")
    shifted = _rewrite(shifted, rb"PID: 164", b"PID: 1")
    shifted = _rewrite(shifted, rb"\[ *\d+\.\d+\]", b"[   99.000000]")
    shifted = _rewrite(shifted, rb"( crashy_init\+0x1/0x2 \[crashy\]\n)",
                       rb"\1<4>[   99.000000]  ? random_stale_frame+0x1/0x2\n")
    other = oops.primary_report(shifted)
    assert other is not None and other.kernel_offset == 0x1000000 and other.pid == 1
    assert other.signature == report.signature


def test_compiler_suffixes_and_wrappers_are_removed() -> None:
    assert signature.normalize_function("__list_del_entry_valid.cold") == "__list_del_entry_valid"
    assert signature.normalize_function("foo.constprop.0.isra.0") == "foo"
    assert signature.normalize_function("bar.part.3") == "bar"
    assert signature.normalize_function("baz.llvm.12345678") == "baz"
    assert signature.normalize_function("__pfx_qux") == "qux"
    assert signature.normalize_function("cold_start") == "cold_start"
    assert signature.syscall_name("__x64_sys_finit_module") == "finit_module"
    assert signature.syscall_name("__do_sys_finit_module") == "finit_module"
    assert signature.syscall_name("__se_sys_mremap") == "mremap"
    assert signature.syscall_name("SyS_pause") == "pause"
    text = (LAB / "6.12" / "null" / "pstore" / "dmesg-ramoops-1").read_bytes()
    report = oops.primary_report(text)
    renamed = oops.primary_report(_rewrite(text, rb"(crashy_\w+|do_init_module)\+",
                                           rb"\1.constprop.0+"))
    assert report is not None and renamed is not None
    assert renamed.culprit is not None and renamed.culprit.function == "crashy_null.constprop.0"
    assert renamed.signature == report.signature


def test_without_frames_the_headline_without_numbers() -> None:
    text = b"<0>[  12.5] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n"
    report = oops.primary_report(text)
    assert report is not None and report.kind is Kind.PANIC
    assert report.signature_basis == "panic|Attempted to kill init! exitcode=N"
    other = oops.primary_report(text.replace(b"0x0000000b", b"0x00000009"))
    assert other is not None and other.signature == report.signature
