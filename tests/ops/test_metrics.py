"""``memconsole metrics``: the node_exporter textfile, read back with
prometheus_client's own text parser (and promtool when it is installed),
its numbers checked against ``list --json`` for an archive of the lab's
real crashes, the canary's results and a live recorder's lag."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from labarchive import shared
from prometheus_client.parser import text_string_to_metric_families

from memconsole.cli import main
from memconsole.ops.metrics import TEXTFILE_NAME

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def lab_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    archive, pstore, _ = shared(tmp_path_factory)
    return archive, pstore


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of *text* by (sample name, sorted labels), through the
    reference parser (it raises on anything that is not the text format)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def _metrics(tmp_path: Path, archive: Path, *extra: str) -> tuple[Path, str]:
    out = tmp_path / "textfile"
    out.mkdir(exist_ok=True)
    assert main(["metrics", "--archive", str(archive), "--textfile", str(out), *extra]) == 0
    path = out / TEXTFILE_NAME
    return path, path.read_text()


def _canary(archive: Path) -> None:
    """A canary.json as `memconsole canary` writes it (docs/doctor.md, "The
    survival canary"): two boots' canaries survived, then one was lost."""
    boots = [str(uuid.UUID(int=n)) for n in range(1, 5)]
    results = [
        {"spec": "mem:0x7200000:4096", "boot_id": boots[1], "checked_ns": 1796170000 * 10**9,
         "outcome": "first", "detail": "no canary yet", "previous": None},
        {"spec": "mem:0x7200000:4096", "boot_id": boots[2], "checked_ns": 1796171000 * 10**9,
         "outcome": "survived", "detail": "...", "previous": {"seq": 1}},
        {"spec": "mem:0x7200000:4096", "boot_id": boots[3], "checked_ns": 1796172000 * 10**9,
         "outcome": "survived", "detail": "...", "previous": {"seq": 2}},
        {"spec": "/var/lib/canary-file", "boot_id": boots[3], "checked_ns": 1796172500 * 10**9,
         "outcome": "lost", "detail": "the page was cleared (all zero)", "previous": None},
    ]
    written = {"mem:0x7200000:4096": {"boot_id": boots[3], "time_ns": 1796172000 * 10**9,
                                      "seq": 3},
               "/var/lib/canary-file": {"boot_id": boots[3], "time_ns": 1796172500 * 10**9,
                                        "seq": 1}}
    (archive / "canary.json").write_text(json.dumps(
        {"version": 1, "written": written, "results": results}))


def test_textfile_parses_and_counts_the_lab_crashes(
        tmp_path: Path, lab_archive: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    archive, pstore = lab_archive
    path, text = _metrics(tmp_path, archive)
    samples = _parse(text)
    assert main(["list", "--archive", str(archive), "--pstore", str(pstore), "--json"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by_kind = Counter(e["kind"] for e in events)
    got = {dict(k[1])["kind"]: v for k, v in samples.items()
           if k[0] == "memconsole_crashes_total"}
    assert got == by_kind
    by_sig = Counter(e["signature"] for e in events if e["signature"])
    got_sig: Counter[str] = Counter()
    for (name, labels), v in samples.items():
        if name == "memconsole_crashes_by_signature_total":
            got_sig[dict(labels)["signature"]] += int(v)
            assert dict(labels)["title"]
    assert got_sig == by_sig
    newest = max(e["time"] for e in events)
    last = samples[("memconsole_last_crash_timestamp_seconds", ())]
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last)) == newest[:19]
    assert samples[("memconsole_archive_problems", ())] == 0
    # node_exporter runs as its own user; no temporary file is left.
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(path.parent) == [TEXTFILE_NAME]


def test_textfile_is_replaced_atomically(tmp_path: Path,
                                         lab_archive: tuple[Path, Path]) -> None:
    archive, _ = lab_archive
    path, first = _metrics(tmp_path, archive)
    reader = path.open()  # a scrape in progress
    inode = path.stat().st_ino
    _canary(archive)
    try:
        path, second = _metrics(tmp_path, archive)
    finally:
        (archive / "canary.json").unlink()
    assert path.stat().st_ino != inode  # renamed over, not rewritten in place
    assert reader.read() == first  # the open file is still the whole old one
    reader.close()
    assert second != first and "memconsole_canary_survived" in second
    assert os.listdir(path.parent) == [TEXTFILE_NAME]


def test_canary_survival(tmp_path: Path, lab_archive: tuple[Path, Path]) -> None:
    archive, _ = lab_archive
    _canary(archive)
    try:
        _, text = _metrics(tmp_path, archive)
    finally:
        (archive / "canary.json").unlink()
    s = _parse(text)
    mem, file = (("spec", "mem:0x7200000:4096"),), (("spec", "/var/lib/canary-file"),)
    assert s[("memconsole_canary_survived", mem)] == 1
    assert s[("memconsole_canary_survived", file)] == 0
    assert s[("memconsole_canary_resets_survived_in_a_row", mem)] == 2
    assert s[("memconsole_canary_resets_survived_in_a_row", file)] == 0
    assert s[("memconsole_canary_last_check_timestamp_seconds", mem)] == 1796172000
    assert s[("memconsole_canary_checks_total",
              (("outcome", "survived"), *mem))] == 2
    assert s[("memconsole_canary_checks_total",
              (("outcome", "first"), *mem))] == 1


def test_broken_canary_file_is_a_warning(tmp_path: Path, lab_archive: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    archive, _ = lab_archive
    (archive / "canary.json").write_text("{not json")
    out = tmp_path / "tf"
    out.mkdir()
    try:
        rc = main(["metrics", "--archive", str(archive), "--textfile", str(out)])
    finally:
        (archive / "canary.json").unlink()
    assert rc == 3
    assert "canary.json: unusable" in capsys.readouterr().err
    assert "memconsole_crashes_total" in (out / TEXTFILE_NAME).read_text()


def test_promtool_accepts_it(tmp_path: Path, lab_archive: tuple[Path, Path]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    path, _ = _metrics(tmp_path, lab_archive[0])
    done = subprocess.run([promtool, "check", "metrics"], stdin=path.open("rb"),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _wait(pred, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.root
def test_recorder_lag_of_a_live_recorder(tmp_path: Path,
                                         lab_archive: tuple[Path, Path]) -> None:
    """A real recorder copying this machine's /dev/kmsg into a ring file:
    no lag while it runs; stopped (SIGSTOP), the kernel's new lines are
    its lag; resumed, the lag is gone."""
    archive, _ = lab_archive
    ring = tmp_path / "live.ring"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    rec = subprocess.Popen([sys.executable, "-m", "memconsole", "record", "--ring", str(ring),
                            "--ring-size", "1M"], env=env, stderr=subprocess.PIPE)

    def sample() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return _parse(_metrics(tmp_path, archive, "--ring", str(ring))[1]) \
            if ring.exists() else {}

    def lag() -> float | None:
        return sample().get(("memconsole_recorder_lag_records", ()))

    try:
        _wait(lambda: sample().get(("memconsole_ring_records", ()), 0) > 0, "records")
        _wait(lambda: lag() == 0, "no lag")
        s = sample()
        assert s[("memconsole_ring_readable", ())] == 1
        assert s[("memconsole_ring_gaps", ())] == 0
        assert abs(s[("memconsole_ring_last_record_timestamp_seconds", ())] - time.time()) \
            < 24 * 3600 * 365
        rec.send_signal(signal.SIGSTOP)
        with open("/dev/kmsg", "w") as kmsg:
            for n in range(5):
                kmsg.write(f"memconsole-test: metrics lag {n}\n")
                kmsg.flush()
        behind = lag()
        assert behind is not None and behind >= 5
        assert sample()[("memconsole_recorder_lag_seconds", ())] >= 0
        rec.send_signal(signal.SIGCONT)
        _wait(lambda: lag() == 0, "the recorder to catch up")
    finally:
        rec.send_signal(signal.SIGCONT)
        rec.terminate()
        rec.wait(10)


def test_unreadable_ring_is_reported(tmp_path: Path, lab_archive: tuple[Path, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "zero.ring").write_bytes(bytes(65536))
    out = tmp_path / "tf"
    out.mkdir()
    rc = main(["metrics", "--archive", str(lab_archive[0]), "--ring",
               str(tmp_path / "zero.ring"), "--textfile", str(out)])
    assert rc == 3 and "ring" in capsys.readouterr().err
    assert _parse((out / TEXTFILE_NAME).read_text())[("memconsole_ring_readable", ())] == 0
