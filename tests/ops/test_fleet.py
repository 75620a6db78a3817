"""The fleet path end to end on this machine (docs/fleet.md): ``memconsole
collect`` writes a real crash's entry into a real systemd-journald;
``systemd-journal-upload`` sends that journal to a
``systemd-journal-remote`` listening on loopback; the central journal holds
the entry with every MEMCONSOLE_ field, found with ``journalctl
MEMCONSOLE_SIGNATURE=...``.  Both daemons come from Debian's
systemd-journal-remote package and are started here."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from privjournal import (
    MESSAGE_ID,
    entries,
    env,
    memconsole,
    require_journald,
    value,
    with_journald,
)

from conftest import lab_fixture, require
from memconsole.archive import Archive
from memconsole.ops.journal import archived_events, event_fields

pytestmark = pytest.mark.root

REMOTE = "/lib/systemd/systemd-journal-remote"
UPLOAD = "/lib/systemd/systemd-journal-upload"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_crash_reaches_the_central_journal(tmp_path: Path) -> None:
    require_journald()
    for tool in (REMOTE, UPLOAD):
        require(Path(tool).exists(), f"{tool} is missing (package systemd-journal-remote)")
    pstore, archive = tmp_path / "pstore", tmp_path / "archive"
    lab_fixture("6.12", "list", pstore)

    # 1. The machine: collect (as its unit runs it) into its own journald.
    local = tmp_path / "machine"
    with_journald(local, ["env", "INVOCATION_ID=fleet-test",
                          *memconsole("collect", "--pstore", str(pstore), "--archive",
                                      str(archive))])
    assert (local / "rc").read_text().strip() == "0"
    journal_files = sorted((local / "journal").glob("*.journal"))
    assert journal_files

    # 2. The fleet: journal-remote on loopback, journal-upload from the machine's journal.
    central = tmp_path / "central"
    central.mkdir()
    port = _free_port()
    remote = subprocess.Popen(
        [REMOTE, f"--listen-http=127.0.0.1:{port}", "--split-mode=none",
         f"--output={central / 'remote.journal'}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "remote.log").open("wb"))
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert remote.poll() is None, (tmp_path / "remote.log").read_text()
            assert time.monotonic() < deadline, "journal-remote did not listen"
            time.sleep(0.1)
        upload = subprocess.run(
            [UPLOAD, f"--url=http://127.0.0.1:{port}", "--follow=no",
             f"--save-state={tmp_path / 'upload.state'}",
             *[f"--file={f}" for f in journal_files]],
            capture_output=True, text=True, check=False, timeout=300)
        assert upload.returncode == 0, upload.stderr
    finally:
        remote.terminate()
        remote.wait(30)
    assert "LAST_CURSOR=" in (tmp_path / "upload.state").read_text()  # upload kept its place

    # 3. The central journal: the entry, matched by its signature, every field intact.
    (event,) = archived_events(Archive(archive))
    fields = dict(event_fields(event))
    signature = fields["MEMCONSOLE_SIGNATURE"].decode()
    (entry,) = entries(central, f"MEMCONSOLE_SIGNATURE={signature}")
    assert entry["MESSAGE_ID"] == MESSAGE_ID
    expected = {k for k in fields if k.startswith("MEMCONSOLE_")}
    assert {"MEMCONSOLE_KIND", "MEMCONSOLE_TITLE", "MEMCONSOLE_CULPRIT", "MEMCONSOLE_SIGNATURE",
            "MEMCONSOLE_BOOT", "MEMCONSOLE_REPORT"} <= expected
    assert {k for k in entry if k.startswith("MEMCONSOLE_")} == expected
    for name in expected:
        assert value(entry, name) == fields[name], name
    assert entry["MEMCONSOLE_KIND"] == "list-corruption"
    assert "list_del corruption" in entry["MEMCONSOLE_REPORT"]
    # ...and it is the same crash `memconsole list --json` reports.
    listed = subprocess.run(memconsole("list", "--json", "--archive", str(archive), "--pstore",
                                       str(pstore)), capture_output=True, text=True,
                            check=True, env=env()).stdout
    (obj,) = [json.loads(x) for x in listed.splitlines()]
    assert obj["signature"] == signature and obj["boot"] == entry["MEMCONSOLE_BOOT"]
    # A fleet query by field: journalctl --directory=... MEMCONSOLE_KIND=... finds it too.
    assert len(entries(central, "MEMCONSOLE_KIND=list-corruption")) == 1
