"""``memconsole show`` on real lab records: the sentence, then the title, culprit and
signature, then the report itself (symbolised when symbols are given), then where the
full log is; ``--full`` prints the whole boot log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import LAB_FIXTURES, kernel_for, lab_fixture, require
from memconsole import oops
from memconsole.cli import main
from memconsole.errors import LabError
from memconsole.pstore import decode_record
from memconsole.render import dmesg_text


def _show(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> list[str]:
    code = main(["show", "--pstore", str(tmp_path / "pstore"), "--archive",
                 str(tmp_path / "archive"), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines()


@pytest.mark.parametrize("release", ["6.1", "6.12"])
@pytest.mark.parametrize("action", ["null", "warn", "hung", "sysrq"])
def test_show_leads_with_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    release: str, action: str) -> None:
    names = lab_fixture(release, action, tmp_path / "pstore")
    lines = _show(capsys, tmp_path)
    # The log the report was read from: the last dump (the Panic one).
    pstore = LAB_FIXTURES / release / action / "pstore"
    logs = [decode_record(n, (pstore / n).read_bytes(), 0, n).body for n in names]
    log, report = next((t, r) for t, r in ((t, oops.primary_report(t)) for t in logs)
                       if r is not None and r.panic_reason is not None)
    assert lines[0].endswith(".") and "ended in a kernel panic: " in lines[0]
    assert lines[1] == f"Title: {report.title}"
    culprit = report.culprit.label() if report.culprit else "none found"
    assert lines[2].startswith(f"Culprit: {culprit}")
    assert lines[3] == f"Signature: {report.signature} ({report.signature_basis})"
    assert lines[4].startswith("Records: ") and lines[5] == ""
    body = lines[6:lines.index("", 6)]
    # The report itself, from its first line; not the boot log from its first line.
    assert not any("Linux version" in line for line in body)
    assert body[0] == dmesg_text(log[report.start:]).split(b"\n", 1)[0].decode()
    assert any("Kernel panic - not syncing" in line for line in body)
    # The culprit, the title and the signature are the report's: the three agree.
    if report.culprit is not None and report.family != "panic":  # a panic names its reason
        assert report.culprit.function in report.title
        assert report.culprit.label() in report.signature_basis
    assert lines[-1].startswith(f"Full log ({len(dmesg_text(log).splitlines())} lines")
    assert lines[-1].endswith("): memconsole show --full")


def test_show_full_prints_the_boot_log(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    lab_fixture("6.12", "null", tmp_path / "pstore")
    short = _show(capsys, tmp_path)
    full = _show(capsys, tmp_path, "--full")
    assert full[:5] == short[:5]
    # The Panic dump's log from its first line (the record holds the boot from 0.029 s).
    assert full[6] == "[    0.029928] No NUMA configuration found"
    assert full[6] not in short
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000000" in "\n".join(full)
    assert not any(line.startswith("Full log (") for line in full)
    assert len(full) > len(short) + 300  # the 403-line boot log


@pytest.mark.parametrize("release", ["6.1", "6.12"])
def test_show_symbolised(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         release: str) -> None:
    from memconsole.lab import Lab

    require(shutil.which("addr2line") is not None, "addr2line (binutils) is not installed")
    try:
        ko = Lab(progress=lambda msg: None).crashy(kernel_for(release))
    except LabError as exc:
        require(False, f"cannot build crashy.ko: {exc}")
    lab_fixture(release, "null", tmp_path / "pstore")
    lines = _show(capsys, tmp_path, "--symbols", str(ko))
    assert lines[2].startswith("Culprit: crashy_null [crashy] (") and "crashy.c:" in lines[2]
    rip = next(i for i, line in enumerate(lines) if "crashy_null+0x" in line)
    assert lines[rip + 1].strip().startswith("crashy_null (") and "crashy.c:" in lines[rip + 1]
    init = next(i for i, line in enumerate(lines) if "crashy_init+0x" in line)
    assert "crashy.c:" in lines[init + 1]
