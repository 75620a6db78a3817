"""Crash events into the journal: the native protocol, checked against a
real systemd-journald (root, in a private mount namespace), and the
exactly-once index."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from privjournal import entries, env, memconsole, require_journald, value, with_journald

from conftest import lab_fixture
from memconsole.archive import Archive
from memconsole.cli import main
from memconsole.ops._native import encode
from memconsole.ops.journal import (
    MESSAGE_ID,
    archived_events,
    culprit,
    event_fields,
    read_sent,
    sent_boots,
    title,
)

root = pytest.mark.root


def _collected(tmp_path: Path, *fixtures: tuple[str, str]) -> Path:
    """An archive holding the real records of *fixtures* (release, crash)."""
    archive = tmp_path / "archive"
    for n, (release, action) in enumerate(fixtures):
        pstore = tmp_path / f"pstore{n}"
        lab_fixture(release, action, pstore)
        assert main(["collect", "--pstore", str(pstore), "--archive", str(archive),
                     "--journal", "no"]) == 0
    return archive


# -- the encoding (pure) -------------------------------------------------------

def test_encode_text_and_binary_safe_fields() -> None:
    data = encode([("MESSAGE", b"one line"), ("MEMCONSOLE_REPORT", b"two\nlines\xff")])
    value = b"two\nlines\xff"
    assert data == (b"MESSAGE=one line\n" + b"MEMCONSOLE_REPORT\n"
                    + struct.pack("<Q", len(value)) + value + b"\n")


@pytest.mark.parametrize("name", ["", "_PID", "lower", "1ST", "A-B", "X" * 65])
def test_encode_refuses_names_journald_drops(name: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        encode([(name, b"x")])


def test_fields_of_real_crashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _collected(tmp_path, ("6.12", "null"), ("6.1", "sysrq"))
    events = archived_events(Archive(archive))
    assert main(["list", "--archive", str(archive), "--pstore", str(tmp_path / "pstore0"),
                 "--json"]) == 0
    listed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(events) == len(listed) == 2
    for event, obj in zip(events, listed, strict=True):
        fields = dict(event_fields(event))
        assert fields["MESSAGE_ID"] == MESSAGE_ID.encode()
        assert fields["MEMCONSOLE_KIND"].decode() == obj["kind"]
        assert fields["MEMCONSOLE_SIGNATURE"].decode() == obj["signature"]
        assert fields["MEMCONSOLE_BOOT"].decode() == obj["boot"]
        assert fields["MEMCONSOLE_TITLE"].decode() == title(event)
        assert fields["MEMCONSOLE_HEADLINE"].decode() == obj["headline"]
        assert fields["MEMCONSOLE_RECORDS"].decode().split() == obj["records"]
        assert fields["PRIORITY"] == b"2"  # both panicked
    by_kind = {e.kind: e for e in events}
    null, sysrq = (dict(event_fields(by_kind[k])) for k in ("null-pointer", "panic"))
    # The culprit is the function the signature blames.
    assert null["MEMCONSOLE_CULPRIT"] == b"crashy_null [crashy]"
    assert culprit(by_kind["null-pointer"].report) == "crashy_null [crashy]"
    assert null["MEMCONSOLE_SIGNATURE_BASIS"].split(b"|")[1] == null["MEMCONSOLE_CULPRIT"]
    assert b"BUG: kernel NULL pointer dereference" in null["MEMCONSOLE_REPORT"]
    assert b"sysrq triggered crash" in sysrq["MEMCONSOLE_REPORT"]
    assert sysrq["MEMCONSOLE_PANIC_REASON"] == b"sysrq triggered crash"
    # The report is the dumped lines without their <N> syslog levels.
    assert not null["MEMCONSOLE_REPORT"].startswith(b"<")


# -- against a real journald (root) --------------------------------------------

CLIENT = r"""
import sys
from pathlib import Path
from memconsole.ops._native import encode, send
big = Path(sys.argv[1]).read_bytes()
assert send(encode([("MESSAGE", b"memconsole test: binary"), ("MEMCONSOLE_TEST", b"1"),
                    ("MEMCONSOLE_BLOB", b"two\nlines\xff\x00end")]))
# A datagram larger than the socket's send buffer: only the memfd path carries it.
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
try:
    s.sendto(encode([("MESSAGE", big)]), "/run/systemd/journal/socket")
    raise SystemExit("a plain datagram went through: the memfd path is not tested")
except OSError as exc:
    assert exc.errno == __import__("errno").EMSGSIZE, exc
assert send(encode([("MESSAGE", b"memconsole test: memfd"), ("MEMCONSOLE_TEST", b"2"),
                    ("MEMCONSOLE_BIG", big)]), sndbuf=4096)
"""


@root
def test_native_protocol_reaches_journald(tmp_path: Path) -> None:
    require_journald()
    big = (Path(__file__).parent.parent / "fixtures/lab/6.12/null/pstore/dmesg-ramoops-0"
           ).read_bytes() * 8
    (tmp_path / "big").write_bytes(big)
    with_journald(tmp_path, [sys.executable, "-c", CLIENT, str(tmp_path / "big")])
    assert (tmp_path / "rc").read_text().strip() == "0"
    (binary,) = entries(tmp_path / "journal", "MEMCONSOLE_TEST=1")
    assert value(binary, "MEMCONSOLE_BLOB") == b"two\nlines\xff\x00end"
    (memfd,) = entries(tmp_path / "journal", "MEMCONSOLE_TEST=2")
    assert value(memfd, "MEMCONSOLE_BIG") == big
    assert memfd["MESSAGE"] == "memconsole test: memfd"


@root
def test_collect_writes_each_event_once(tmp_path: Path) -> None:
    require_journald()
    archive = tmp_path / "archive"
    p1, p2 = tmp_path / "p1", tmp_path / "p2"
    lab_fixture("6.12", "null", p1)
    lab_fixture("6.1", "bug", p2)
    mc = " ".join(memconsole("collect", "--archive", str(archive)))
    script = "\n".join([
        # auto, not as a systemd service (no $INVOCATION_ID): nothing is sent
        f"{mc} --pstore {p1}",
        # yes: the archived event goes now, and once only
        f"{mc} --pstore {p1} --journal yes",
        f"{mc} --pstore {p1} --journal yes",
        # auto as the unit runs it: the new crash goes, the first not again
        f"INVOCATION_ID=0123 {mc} --pstore {p2}",
    ])
    proc = with_journald(tmp_path, ["sh", "-c", script])
    assert (tmp_path / "rc").read_text().strip() == "0", proc.stderr
    assert proc.stderr.count("journal: 1 crash event written") == 2, proc.stderr
    got = entries(tmp_path / "journal", f"MESSAGE_ID={MESSAGE_ID}")
    assert [e["MEMCONSOLE_KIND"] for e in got] == ["null-pointer", "bug"]
    events = {dict(event_fields(e))["MEMCONSOLE_EVENT"]: e
              for e in archived_events(Archive(archive))}
    assert len(events) == 2
    for entry in got:
        event = events[value(entry, "MEMCONSOLE_EVENT")]
        for name, data in event_fields(event):
            if name != "MESSAGE":  # says "Boot ..." or "Last boot ...", depending on when
                assert value(entry, name) == data, name
        assert entry["SYSLOG_IDENTIFIER"] == "memconsole"
    sent = json.loads((archive / "journal.json").read_text())
    assert [s["signature"] for s in sent] == [e["MEMCONSOLE_SIGNATURE"] for e in got]
    # Both boots are done: the next collect does not parse their reports again.
    assert sent_boots(Archive(archive), read_sent(Archive(archive))) == \
        set(Archive(archive).boots())
    assert archived_events(Archive(archive), sent_boots(Archive(archive),
                                                        read_sent(Archive(archive)))) == []


@root
def test_without_a_journal_nothing_is_marked_sent(tmp_path: Path) -> None:
    require_journald()
    archive = _collected(tmp_path, ("6.12", "bug"))
    # No journald listens in this namespace's /run/systemd: the event stays unsent.
    no_journal = ("mount -t tmpfs tmpfs /run/systemd 2>/dev/null || "
                  "(mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd); "
                  + " ".join(memconsole("collect", "--archive", str(archive), "--pstore",
                                        str(tmp_path / "pstore0"), "--journal", "yes")))
    import subprocess

    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           no_journal], env=env(), capture_output=True, text=True, check=False,
                          timeout=300)
    assert "journal: no journal listens on /run/systemd/journal/socket" in proc.stderr, \
        proc.stderr
    assert not (archive / "journal.json").exists()
    # With a journal, the next run sends it.
    with_journald(tmp_path / "j", memconsole("collect", "--archive", str(archive), "--pstore",
                                             str(tmp_path / "pstore0"), "--journal", "yes"),
                  env())
    (entry,) = entries(tmp_path / "j" / "journal", f"MESSAGE_ID={MESSAGE_ID}")
    assert entry["MEMCONSOLE_KIND"] == "bug"
