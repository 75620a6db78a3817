"""``collect`` never loses a record, never follows a planted link, and says
what it did per file: reproducers for the defects a hostile probe found
(issue 8), on real records (tests/fixtures/lab)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import memconsole
from conftest import lab_fixture
from memconsole.cli import main

#: The source tree of the memconsole under test (child processes run it too).
SRC = Path(memconsole.__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse: a usage error
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def mc(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """memconsole in a child process (raw bytes out)."""
    return subprocess.run([sys.executable, "-m", "memconsole", *argv], capture_output=True,
                          timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


def index(archive: Path) -> dict[str, list[dict[str, object]]]:
    """Boot directory -> its records.json entries."""
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted(archive.glob("boots/*/records.json"))}


def indexed_hashes(archive: Path) -> list[str]:
    return sorted(str(e["sha256"]) for entries in index(archive).values() for e in entries)


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def boot_of(path: Path) -> str:
    from datetime import datetime, timezone

    ns = path.stat().st_mtime_ns
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# -- 1. erase exactly the archived file ---------------------------------------------


def test_a_subdirectory_record_erases_only_itself(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """p/sub/NAME and p/NAME: each is erased by its own path, and the one whose
    copy failed (its boot's index is damaged) stays, reported "not erased"."""
    p, archive = tmp_path / "p", tmp_path / "a"
    lab_fixture("6.1", "panic", p)                      # p/dmesg-ramoops-0
    lab_fixture("6.12", "sysrq", p / "sub")             # p/sub/dmesg-ramoops-0
    top, sub = p / "dmesg-ramoops-0", p / "sub" / "dmesg-ramoops-0"
    top_bytes = top.read_bytes()
    bad = archive / "boots" / boot_of(top)
    bad.mkdir(parents=True)
    (bad / "records.json").write_text("[{]")           # the top record's copy will fail
    rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive),
                       "--json")
    rows = {r["path"]: r for r in map(json.loads, out.splitlines())}
    assert rows[str(top)]["status"] == "failed" and rows[str(top)]["erased"] is False
    assert rows[str(sub)]["status"] == "archived" and rows[str(sub)]["erased"] is True
    assert top.read_bytes() == top_bytes, "a record whose copy failed was erased"
    assert not sub.exists()
    assert f"cannot archive dmesg-ramoops-0 in {bad}" in err and "(not erased)" in err
    assert rc == 3
    # The two files of the same name in two directories, both archivable: both erased.
    lab_fixture("6.1", "panic", tmp_path / "q")
    lab_fixture("6.12", "sysrq", tmp_path / "q" / "sub")
    rc, out, err = run(capsys, "collect", "--pstore", str(tmp_path / "q"),
                       "--archive", str(tmp_path / "a2"), "--json")
    assert rc == 0, err
    assert [r["erased"] for r in map(json.loads, out.splitlines())] == [True, True]
    assert os.listdir(tmp_path / "q") == ["sub"] and os.listdir(tmp_path / "q" / "sub") == []


@pytest.mark.root
def test_full_disk_never_erases_the_record_that_failed(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The older record (in p/sub) fits the archive's tmpfs, the newer one of
    the same name (p/) does not: p/sub's file is the one erased, p/'s stays."""
    p, archive = tmp_path / "p", tmp_path / "a"
    lab_fixture("6.1", "panic", p / "sub")
    lab_fixture("6.12", "sysrq", p)
    top, sub = p / "dmesg-ramoops-0", p / "sub" / "dmesg-ramoops-0"
    top_bytes = top.read_bytes()
    archive.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "memconsole-test", str(archive)],
                   check=True)
    try:
        rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive),
                           "--json")
    finally:
        subprocess.run(["umount", str(archive)], check=True)
    rows = {r["path"]: r for r in map(json.loads, out.splitlines())}
    assert rows[str(sub)]["status"] == "archived" and rows[str(top)]["status"] == "failed"
    assert top.exists() and top.read_bytes() == top_bytes, "the record whose copy failed was erased"
    assert not sub.exists()
    assert rows[str(sub)]["erased"] is True and rows[str(top)]["erased"] is False
    assert "archive disk is full (not erased)" in err and rc == 3


def test_same_bytes_twice_each_file_erased_by_its_path(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    p, archive = tmp_path / "p", tmp_path / "a"
    names = lab_fixture("6.1", "null", p)
    lab_fixture("6.1", "null", p / "copy")
    rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive),
                       "--json")
    assert rc == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert sorted(r["status"] for r in rows) == ["archived"] * 2 + ["duplicate"] * 2
    assert all(r["erased"] for r in rows)
    assert os.listdir(p) == ["copy"] and os.listdir(p / "copy") == []
    assert len(indexed_hashes(archive)) == len(names)


# -- 2. one lock for the whole collect ------------------------------------------------


def test_a_second_collect_is_busy_then_waits(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from memconsole.archive import Archive

    p, root = tmp_path / "p", tmp_path / "a"
    names = lab_fixture("6.12", "bug", p)
    archive = Archive(root)
    archive.prepare()
    held = archive.lock()
    t0 = time.monotonic()
    rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(root),
                       "--wait", "0.4")
    assert rc == 75 and out == ""
    assert time.monotonic() - t0 >= 0.4
    assert err.count("\n") == 1 and "is busy: another collect holds" in err
    assert sorted(os.listdir(p)) == names and index(root) == {}
    threading.Timer(0.5, held.release).start()
    t0 = time.monotonic()
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(root),
                     "--wait", "20")
    assert rc == 0, err
    assert 0.4 <= time.monotonic() - t0 < 20
    assert os.listdir(p) == [] and len(indexed_hashes(root)) == len(names)
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(root),
                     "--wait", "-1")
    assert rc == 2 and "bad --wait" in err


def test_concurrent_collects_index_each_record_once(tmp_path: Path) -> None:
    """Two collects started together over the same records, many times: each
    record is indexed once, and none is erased that no index lists."""
    rounds = 8
    for n in range(rounds):
        p, archive = tmp_path / f"p{n}", tmp_path / f"a{n}"
        lab_fixture("6.1", "null", p)
        lab_fixture("6.12", "gpf", p / "b")
        lab_fixture("6.1", "sysrq", p / "c")
        originals = sorted(sha(f) for f in p.rglob("*") if f.is_file())
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        procs = [subprocess.Popen([sys.executable, "-m", "memconsole", "collect", "--pstore",
                                   str(p), "--archive", str(archive)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for _ in range(2)]
        codes = sorted(proc.wait(60) for proc in procs)
        assert codes in ([0, 0], [0, 4]), [proc.stderr.read() for proc in procs if proc.stderr]
        for proc in procs:
            if proc.stderr:
                proc.stderr.close()
        assert indexed_hashes(archive) == originals
        assert [f for f in p.rglob("*") if f.is_file()] == []


# -- 3. an interrupted collect is finished, not split -----------------------------


def _spread(p: Path, seconds: float) -> None:
    """Move the later record of a two-record crash *seconds* later (as a kernel
    that wrote its Panic dump a few seconds after the Oops dump would)."""
    first, second = sorted(p.iterdir(), key=lambda f: f.stat().st_mtime_ns)
    ns = first.stat().st_mtime_ns + int(seconds * 1e9)
    os.utime(second, ns=(ns, ns))


@pytest.mark.parametrize("seconds", [1.5, 40.0])
def test_rerun_completes_the_interrupted_boot(tmp_path: Path, seconds: float,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Oops#1 archived (and erased) by a collect that then died, Panic#2 still in
    pstore: the rerun puts Panic#2 into the same boot directory, one crash."""
    p, archive, aside = tmp_path / "p", tmp_path / "a", tmp_path / "aside"
    lab_fixture("6.12", "null", p)
    _spread(p, seconds)
    oops_rec, panic_rec = sorted(p.iterdir(), key=lambda f: f.stat().st_mtime_ns)
    first_boot, second_boot = boot_of(oops_rec), boot_of(panic_rec)
    assert first_boot != second_boot
    aside.mkdir()
    os.rename(panic_rec, aside / panic_rec.name)
    assert run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))[0] == 0
    os.rename(aside / panic_rec.name, panic_rec)
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))
    assert rc == 0, err
    assert list(index(archive)) == [first_boot]
    rc, out, _ = run(capsys, "list", "--pstore", str(p), "--archive", str(archive), "--json")
    (event,) = [json.loads(x) for x in out.splitlines()]
    assert event["dumps"] == ["Oops#1", "Panic#2"] and event["kind"] == "null-pointer"


def test_list_joins_pending_records_to_their_archived_boot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, archive, aside = tmp_path / "p", tmp_path / "a", tmp_path / "aside"
    lab_fixture("6.1", "list", p)
    _spread(p, 3)
    _, later = sorted(p.iterdir(), key=lambda f: f.stat().st_mtime_ns)
    aside.mkdir()
    os.rename(later, aside / later.name)
    run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))
    os.rename(aside / later.name, later)
    rc, out, _ = run(capsys, "list", "--pstore", str(p), "--archive", str(archive), "--json")
    assert rc == 0
    (event,) = [json.loads(x) for x in out.splitlines()]
    assert event["dumps"] == ["Oops#1", "Panic#2"]


def test_leftover_temporary_files_are_removed(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """What write_durably leaves when its process is killed mid-write (the same
    names, made by a child killed with SIGKILL while writing) is removed by the
    next collect, and only that."""
    p, archive = tmp_path / "p", tmp_path / "a"
    names = lab_fixture("6.1", "bug", p)
    assert run(capsys, "collect", "--pstore", str(p), "--archive", str(archive), "--keep")[0] == 0
    (boot,) = index(archive)
    bdir = archive / "boots" / boot
    child = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time\n"
         "from pathlib import Path\n"
         "from memconsole._common import write_durably\n"
         "os.fsync = lambda fd: (print('writing', flush=True), time.sleep(60))\n"
         "for d in sys.argv[1:]: \n"
         "    os.fork() or write_durably(Path(d) / 'records.json', b'x' * 100)\n"
         "time.sleep(60)\n", str(bdir), str(archive), str(archive / "boots")],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(SRC)},
        start_new_session=True)
    assert child.stdout is not None
    said = b""
    while said.count(b"writing") < 3:
        chunk = os.read(child.stdout.fileno(), 100)
        assert chunk, said
        said += chunk
    os.killpg(child.pid, 9)
    child.wait()
    left = [f for f in archive.rglob(".*.tmp*")]
    assert len(left) == 3
    keep = bdir / ".not-mine.tmp"
    keep.write_text("x")
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))
    assert rc == 0, err
    assert "removed 3 temporary files an interrupted collect left" in err
    assert list(archive.rglob(".*.tmp*")) == [keep]
    assert sorted(os.listdir(bdir)) == [".not-mine.tmp", *names, "records.json"]


# -- 4. a damaged boot of the archive is skipped ------------------------------------


def test_a_damaged_old_boot_is_skipped_with_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "a"
    lab_fixture("6.1", "bug", tmp_path / "old")
    assert run(capsys, "collect", "--pstore", str(tmp_path / "old"),
               "--archive", str(archive))[0] == 0
    (old_boot,) = index(archive)
    (archive / "boots" / old_boot / "records.json").write_bytes(b"\x00garbage")
    p = tmp_path / "p"
    names = lab_fixture("6.12", "null", p)
    rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive),
                       "--json")
    assert rc == 3
    assert [x for x in err.splitlines() if old_boot in x] == [
        x for x in err.splitlines() if "unreadable index" in x]
    assert len([x for x in err.splitlines() if "unreadable index" in x]) == 1
    assert os.listdir(p) == []
    assert [json.loads(x)["status"] for x in out.splitlines()] == ["archived"] * len(names)
    for cmd in (["list", "--json"], ["show"]):
        rc, out, err = run(capsys, *cmd, "--pstore", str(p), "--archive", str(archive))
        assert rc == 3 and out, err  # partial: one boot skipped
        assert err.count("\n") == 1 and "unreadable index" in err and old_boot in err
    rc, out, _ = run(capsys, "list", "--json", "--pstore", str(p), "--archive", str(archive))
    assert [json.loads(x)["kind"] for x in out.splitlines()] == ["null-pointer"]


# -- 5. new directories are durable before anything is erased ----------------------


def _record_file_ops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record, in order, every fsync (the path of the fd), mkdir, rename
    (``replace-from`` then ``replace``, absolute paths) and unlink."""
    events: list[tuple[str, str]] = []
    real_fsync, real_mkdir, real_replace, real_unlink = os.fsync, os.mkdir, os.replace, os.unlink

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def mkdir(path: str | Path, mode: int = 0o777, *a: object, **k: object) -> None:
        real_mkdir(path, mode, *a, **k)  # type: ignore[arg-type]
        events.append(("mkdir", os.path.abspath(path)))

    def replace(src: str | Path, dst: str | Path, *a: object, **k: object) -> None:
        events.append(("replace-from", os.path.abspath(src)))
        real_replace(src, dst, *a, **k)  # type: ignore[arg-type]
        events.append(("replace", os.path.abspath(dst)))

    def unlink(path: str | Path, *a: object, **k: object) -> None:
        events.append(("unlink", os.path.abspath(path)))
        real_unlink(path, *a, **k)  # type: ignore[arg-type]

    for name, fake in (("fsync", fsync), ("mkdir", mkdir), ("replace", replace),
                       ("unlink", unlink)):
        monkeypatch.setattr(os, name, fake)
    return events


def test_new_directories_are_fsynced_before_an_erase(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    p, archive = tmp_path / "p", tmp_path / "x" / "y" / "archive"
    lab_fixture("6.12", "null", p)
    events = _record_file_ops(monkeypatch)
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))
    monkeypatch.undo()
    assert rc == 0, err
    first_erase = next(i for i, (what, path) in enumerate(events)
                       if what == "unlink" and path.startswith(str(p)))
    made = [path for what, path in events[:first_erase] if what == "mkdir"]
    assert {str(tmp_path / "x"), str(archive), str(archive / "boots")} <= set(made)
    assert any(m.startswith(str(archive / "boots") + "/") for m in made)
    for d in made:
        made_at = events.index(("mkdir", d))
        assert ("fsync", os.path.dirname(d)) in events[made_at:first_erase], (
            f"{d} was not fsynced into its parent before a record was erased")


def test_every_record_is_durable_before_its_erase_one_directory_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The records of one boot share their fsyncs (Archive.store_all): each
    record file is fsynced and renamed, then the index is, then the boot
    directory once; every pstore file is erased only after all of that."""
    p, archive = tmp_path / "p", tmp_path / "archive"
    names = lab_fixture("6.12", "null", p)
    assert len(names) == 2  # a dump in two parts: one boot, one batch
    events = _record_file_ops(monkeypatch)
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))
    monkeypatch.undo()
    assert rc == 0, err
    assert os.listdir(p) == []
    (boot, recs), = index(archive).items()
    bdir = str(archive / "boots" / boot)
    for rec in recs:
        erased = events.index(("unlink", str(p / str(rec["original"]))))
        put = events.index(("replace", f"{bdir}/{rec['name']}"))
        tmp = events[put - 1][1]
        assert ("fsync", tmp) in events[:put - 1], f"{rec['name']} renamed before its fsync"
        put_index = max(i for i, e in enumerate(events[:erased])
                        if e == ("replace", f"{bdir}/records.json"))
        assert put < put_index < events.index(("fsync", bdir), put_index) < erased, (
            f"{rec['original']} erased before its copy, the index and {bdir} were durable")
    assert events.count(("fsync", bdir)) == 1, "one directory fsync for the boot's records"
    assert sum(1 for what, _ in events if what == "fsync") <= len(recs) + 6


# -- 6. records bigger than any backend writes --------------------------------------


@pytest.mark.parametrize("size", [(64 << 20) + 1, 2 << 30, (5 << 30) + 12345])
def test_huge_sparse_record_is_refused_unread(tmp_path: Path, size: int,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    p, archive = tmp_path / "p", tmp_path / "a"
    names = lab_fixture("6.1", "panic", p)
    big = p / "dmesg-ramoops-7"
    with big.open("wb") as f:
        f.truncate(size)
    tracemalloc.start()
    try:
        rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive),
                           "--json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak} bytes allocated for a {size}-byte sparse file"
    assert rc == 3
    assert big.stat().st_size == size, "the refused record was erased"
    lines = [x for x in err.splitlines() if str(big) in x]
    assert lines == [f"memconsole collect: {big}: {size} bytes, more than the {64 << 20}-byte "
                     "record cap (no pstore backend writes records that large): not read, "
                     "skipping (not erased)"]
    rows = {r["path"]: r for r in map(json.loads, out.splitlines())}
    assert rows[str(big)]["status"] == "unreadable" and rows[str(big)]["skip"] == "too-large"
    assert sorted(os.listdir(p)) == ["dmesg-ramoops-7"]
    assert [e["original"] for es in index(archive).values() for e in es] == names


def test_max_record_size_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p"
    names = lab_fixture("6.12", "panic", p)  # 27 KiB of text
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(tmp_path / "a"),
                     "--max-record-size", "16K")
    assert rc == 1 and "more than the 16384-byte record cap" in err
    assert sorted(os.listdir(p)) == names
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(tmp_path / "a"),
                     "--max-record-size", "1Q")
    assert rc == 2 and "bad size" in err


# -- 7. the archive never follows a planted symlink ---------------------------------


def test_archive_root_symlink_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    p, target = tmp_path / "p", tmp_path / "elsewhere"
    names = lab_fixture("6.1", "null", p)
    target.mkdir()
    (tmp_path / "a").symlink_to(target)
    rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(tmp_path / "a"))
    assert rc == 1 and out == ""
    assert err == (f"memconsole collect: {tmp_path / 'a'}: a symbolic link (to {target}): the "
                   "archive never follows one; remove it, or give the real directory\n")
    assert os.listdir(target) == [] and sorted(os.listdir(p)) == names


@pytest.mark.parametrize("planted", ["boots", "boot-dir", "lock"])
def test_planted_archive_directory_symlinks_are_refused(
        tmp_path: Path, planted: str, capsys: pytest.CaptureFixture[str]) -> None:
    p, archive, target = tmp_path / "p", tmp_path / "a", tmp_path / "elsewhere"
    names = lab_fixture("6.12", "panic", p)
    target.mkdir()
    archive.mkdir(mode=0o700)
    if planted == "boots":
        (archive / "boots").symlink_to(target)
    elif planted == "lock":
        (archive / ".lock").symlink_to(target / "lockfile")
    else:
        (archive / "boots").mkdir()
        (archive / "boots" / boot_of(p / names[0])).symlink_to(target)
    rc, _, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))
    assert rc == 1
    assert ": a symbolic link" in err and "never follows" in err
    assert os.listdir(target) == [], "something was written through the symlink"
    assert sorted(os.listdir(p)) == names


def test_planted_index_symlink_is_not_trusted(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A records.json symlinked to a file that claims the pending record is
    archived: followed, the record would be erased without a copy."""
    p, archive = tmp_path / "p", tmp_path / "a"
    names = lab_fixture("6.1", "warn", p)
    rec = p / names[0]
    bdir = archive / "boots" / "20250101T000000Z"
    bdir.mkdir(parents=True)
    lie = tmp_path / "lie.json"
    lie.write_text(json.dumps([{
        "boot": bdir.name, "name": names[0], "original": names[0], "sha256": sha(rec),
        "mtime_ns": 0, "size": 1, "source": "x", "collected_ns": 0}]))
    (bdir / "records.json").symlink_to(lie)
    original = rec.read_bytes()
    rc, out, err = run(capsys, "collect", "--pstore", str(p), "--archive", str(archive),
                       "--json")
    assert rc == 3, err
    assert f"{bdir / 'records.json'}: a symbolic link (to {lie})" in err
    (row,) = [json.loads(x) for x in out.splitlines()]
    assert row["status"] == "archived" and row["boot"] != bdir.name
    assert Path(row["archived_as"]).read_bytes() == original
    assert not rec.exists()
    assert lie.read_text().count("sha256") == 1, "the planted index was written"


def test_archived_record_symlink_is_not_read(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    p, archive = tmp_path / "p", tmp_path / "a"
    lab_fixture("6.1", "panic", p)
    assert run(capsys, "collect", "--pstore", str(p), "--archive", str(archive))[0] == 0
    (boot,) = index(archive)
    path = archive / "boots" / boot / "dmesg-ramoops-0"
    secret = tmp_path / "secret"
    secret.write_text("Oops#1 Part1\nnot a record of this machine\n")
    path.unlink()
    path.symlink_to(secret)
    _, out, err = run(capsys, "list", "--archive", str(archive), "--pstore", str(p))
    (line,) = [x for x in err.splitlines() if "symbolic link" in x]
    assert line.startswith(f"memconsole list: {path}: a symbolic link (to {secret})")
    assert line.endswith("; record skipped")
    assert "not a record of this machine" not in out


# -- 8. non-regular files in pstore ---------------------------------------------------


def test_non_regular_files_are_skipped_with_a_line_each(tmp_path: Path) -> None:
    p, archive = tmp_path / "p", tmp_path / "a"
    names = lab_fixture("6.12", "null", p)
    elsewhere = tmp_path / "real-record"
    lab_fixture("6.1", "panic", elsewhere)
    os.mkfifo(p / "dmesg-ramoops-5")
    (p / "dmesg-ramoops-6").symlink_to(elsewhere / "dmesg-ramoops-0")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(p / "dmesg-ramoops-7"))
    (p / "sub" / "deeper").mkdir(parents=True)
    os.mkfifo(p / "sub" / "console-ramoops-0")
    specials = ["dmesg-ramoops-5", "dmesg-ramoops-6", "dmesg-ramoops-7", "sub/console-ramoops-0",
                "sub/deeper"]
    if os.geteuid() == 0:
        os.mknod(p / "dmesg-ramoops-8", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        specials.append("dmesg-ramoops-8")
    try:
        proc = mc("collect", "--pstore", str(p), "--archive", str(archive), timeout=30)
    finally:
        sock.close()
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    for name in specials:
        (line,) = [x for x in err.splitlines() if f"{p / name}:" in x]
        assert line.endswith("not a record: not opened, skipping (not erased)"), line
    assert "a FIFO" in err and "a symbolic link" in err and "a socket" in err
    assert all(os.path.lexists(p / name) for name in specials)
    assert (elsewhere / "dmesg-ramoops-0").exists()
    archived = sorted(str(e["original"]) for es in index(archive).values() for e in es)
    assert archived == names


# -- 9. --json never carries a lone surrogate ---------------------------------------


def test_json_of_a_non_utf8_name_is_strict_utf8(tmp_path: Path) -> None:
    p, archive = tmp_path / "p", tmp_path / "a"
    lab_fixture("6.1", "panic", p)
    name = b"dmesg-ramoops\xff\xfe-3"
    os.rename(p / "dmesg-ramoops-0", os.path.join(os.fsencode(p), name))
    proc = mc("collect", "--pstore", str(p), "--archive", str(archive), "--json")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")   # strict: no lone surrogate was encoded
    assert "\\ud" not in text
    (row,) = [json.loads(x) for x in text.splitlines()]
    assert row["path"].endswith("dmesg-ramoops\\xff\\xfe-3") and row["erased"] is True
    assert os.listdir(p) == []
    (boot,) = index(archive)
    assert name in os.listdir(os.fsencode(archive / "boots" / boot))


# -- 10. messages ------------------------------------------------------------------------


def test_an_archive_that_cannot_be_created_is_one_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p"
    names = lab_fixture("6.1", "null", p)
    lab_fixture("6.12", "null", p / "more")
    (tmp_path / "file").write_text("not a directory")
    rc, out, err = run(capsys, "collect", "--pstore", str(p),
                       "--archive", str(tmp_path / "file" / "archive"))
    assert rc == 1 and out == ""
    assert err == (f"memconsole collect: cannot create archive {tmp_path / 'file' / 'archive'}: "
                   "Not a directory\n")
    assert sorted(os.listdir(p)) == [*names, "more"]


# -- 11/14. collect is a library function and loads no report parser ---------------


def test_collect_library_reports_and_never_prints(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from memconsole.archive import Archive
    from memconsole.archive.collect import Outcome, collect
    from memconsole.pstore import PstoreSource, SkipKind

    p = tmp_path / "p"
    names = lab_fixture("6.1", "null", p)
    os.mkfifo(p / "fifo")
    report = collect([PstoreSource(p, True)], Archive(tmp_path / "a"))
    assert capsys.readouterr() == ("", "")
    by_name = {Path(e.path).name: e for e in report.entries}
    assert by_name["fifo"].outcome is Outcome.UNREADABLE
    assert by_name["fifo"].skip is SkipKind.NOT_REGULAR
    for name in names:
        assert by_name[name].outcome is Outcome.ARCHIVED and by_name[name].erased
    assert not report.complete and report.count(Outcome.ARCHIVED) == 2
    again = collect([PstoreSource(p, True)], Archive(tmp_path / "a"), keep=True)
    assert [e.outcome for e in again.entries] == [Outcome.UNREADABLE]


def test_collect_imports_no_report_parser(tmp_path: Path) -> None:
    lab_fixture("6.12", "null", tmp_path / "p")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "memconsole", "collect", "--pstore",
         str(tmp_path / "p"), "--archive", str(tmp_path / "a")], capture_output=True,
        text=True, check=False, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")]
    assert "memconsole.archive.collect" in modules
    assert [m for m in modules if m.startswith(("memconsole.oops", "memconsole.history"))] == []


def test_archive_imports_only_store_layers() -> None:
    """archive -> pstore, ring, render, errors, _common (docs/architecture.md)."""
    import ast

    allowed = ("memconsole.archive", "memconsole.pstore", "memconsole.ring",
               "memconsole.render", "memconsole.errors", "memconsole._common")
    for path in (SRC / "memconsole" / "archive").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("memconsole") and name != "memconsole":
                    assert name.startswith(allowed), f"{path.name} imports {name}"
