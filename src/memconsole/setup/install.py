"""Install and undo setup's files as one transaction.

Rules (docs/setup.md):

* the manifest (``/var/lib/memconsole/setup.json``) keeps, for every file
  setup touched, its content and mode before the first setup and the hash
  of what setup wrote, and the directories setup creates; ``--undo``
  restores those bytes (or removes what setup created), and refuses to
  overwrite a file someone changed since;
* the manifest is committed first, before anything in /etc changes; then
  every new content is written to a staged file beside its target
  (``.NAME.memconsole-new``, fsynced); only when all of them exist are they
  renamed over their targets, and a failure at any point puts back what
  was already renamed: a read-only /etc, a full disk or a failing
  update-grub leave every file as it was;
* a setup or undo killed at any point leaves every file at its final path
  either as it was or as setup writes it, and a manifest from which the
  next ``setup`` finishes the change or ``--undo`` takes it back (staged
  files left by the killed run included); killed before its manifest was
  committed, it changed nothing in /etc (docs/reliability.md);
* a file whose content already is what setup would write is not touched,
  so a second run changes nothing; update-grub runs only when the GRUB
  drop-in changed, and its grub.cfg must carry every parameter exactly.

/etc/memconsole.conf is shared with other writers: setup owns only the
block between ``# BEGIN memconsole setup`` and ``# END memconsole setup``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memconsole._common import fsync_dir, write_durably
from memconsole.errors import SetupError
from memconsole.setup.files import (
    GRUB_DROPIN,
    Desired,
    check_dropin,
    check_grub_cfg,
    merge_block,
    remove_block,
)

__all__ = [
    "MANIFEST",
    "GrubUpdate",
    "Outcome",
    "Step",
    "apply",
    "grub_updater",
    "read_manifest",
    "undo",
]

#: Where setup records what it did (beside the archive's boots/).
MANIFEST = "/var/lib/memconsole/setup.json"
_STAGE_SUFFIX = ".memconsole-new"

#: Runs the boot loader's configuration update; returns the grub.cfg it
#: wrote (to be checked), or None when there is nothing to check.
GrubUpdate = Callable[[], "Path | None"]


@dataclass(frozen=True)
class Outcome:
    """What :func:`apply` or :func:`undo` did.

    Attributes:
        changed: paths written (created or modified).
        removed: paths removed.
        unchanged: paths that already had the right content.
        grub: one sentence about update-grub (run, not needed, not found).
        manifest: the manifest's path ("" when there is none now).
        steps: one sentence per :class:`Step` run (DKMS).
    """

    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    grub: str = ""
    manifest: str = ""
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """An action beyond the files, part of the transaction: :func:`apply`
    runs it after the files are committed (a failure puts them back),
    :func:`undo` before they are restored.  *run* returns one sentence or
    raises :class:`SetupError` having undone its own part; *revert* undoes
    a finished run when a later part fails (best effort)."""

    run: Callable[[], str]
    revert: Callable[[], object] | None = None
    #: Files the step creates or removes (below the root, as "/etc/..."):
    #: their directories get their modification time back at undo, as the
    #: transaction's own do.
    paths: tuple[str, ...] = ()


def _restore_note(failed: Sequence[str]) -> str:
    """What a rollback left: the files it could not restore, or that all were."""
    return (f"could not restore {', '.join(failed)}" if failed
            else "every file was put back as it was")


def _revert(steps: Sequence[Step]) -> None:
    for step in reversed(steps):
        if step.revert is not None:
            with contextlib.suppress(SetupError, OSError):
                step.revert()


@dataclass
class _State:
    """A file as it is now."""

    exists: bool
    content: bytes | None
    mode: int | None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None


@dataclass
class _Op:
    """One change of the transaction."""

    path: str
    target: Path
    new: bytes | None            # None: remove the file
    mode: int
    before: _State
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None
    staged: Path | None = None
    done: bool = False


@dataclass
class _Txn:
    ops: list[_Op] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _state(path: Path) -> _State:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return _State(False, None, None)
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from None
    if not path.is_file() or path.is_symlink():
        raise SetupError(f"{path} is not a regular file: refusing to replace it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from None
    return _State(True, data, st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime_ns)


def _target(root: Path, path: str) -> Path:
    """*path* below *root*, refusing one whose directories leave the root
    through a symbolic link."""
    target = root / path.lstrip("/")
    real_root = root.resolve()
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    real = parent.resolve()
    if real != real_root and real_root not in real.parents:
        raise SetupError(f"{target}: its directory {parent} leads outside {root} ({real})")
    return target


def _dir_times(root: Path, targets: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """The directories whose entries a change of *targets* changes (a
    target's directory, or the nearest existing ancestor of one it
    creates): their modification time and entry names now, so that undo can
    give back the time once the entries are the same again."""
    root_real = root.resolve()
    out: dict[str, dict[str, Any]] = {}
    for target in targets:
        d = target.parent
        while not d.exists() and d != d.parent:
            d = d.parent
        try:
            rel = str(Path("/") / d.resolve().relative_to(root_real))
            st = d.stat()
            out[rel] = {"mtime_ns": st.st_mtime_ns, "names": sorted(os.listdir(d))}
        except (OSError, ValueError):
            continue
    return out


def _restore_dir_times(root: Path, times: dict[str, Any]) -> None:
    """Give each directory of *times* its recorded modification time back
    when it holds exactly the entries it held then (a directory someone else
    changed since keeps its time)."""
    for rel, t in times.items():
        d = root / rel.lstrip("/")
        with contextlib.suppress(OSError, KeyError, TypeError):
            if d.is_dir() and not d.is_symlink() and sorted(os.listdir(d)) == t["names"]:
                os.utime(d, ns=(d.stat().st_atime_ns, int(t["mtime_ns"])))


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of the last setup below *root*, or None."""
    path = root / MANIFEST.lstrip("/")
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read the setup manifest {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(
            data.get("files"), list):
        raise SetupError(f"{path} is not a memconsole setup manifest (version 1)")
    return data


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def _unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def _missing(directory: Path) -> list[Path]:
    """*directory* and its ancestors that do not exist, deepest first."""
    missing = []
    d = directory
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing


def _staged(target: Path) -> Path:
    return target.with_name(f".{target.name}{_STAGE_SUFFIX}")


def _write_staged(path: Path, data: bytes, mode: int, mtime_ns: int | None) -> None:
    """Write *data* to the staged file *path* (a stale one of a killed run
    is replaced) and fsync it.  No temporary of its own: what a kill leaves
    is *path*, which the next setup or undo removes."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def _mkdirs(txn: _Txn, directory: Path, mode: int = 0o755) -> None:
    for d in reversed(_missing(directory)):
        d.mkdir(mode=mode)
        os.chmod(d, mode)  # mkdir's mode passes through the umask
        txn.dirs.append(d)


def _stage(txn: _Txn) -> None:
    """Write every new content to a temporary file beside its target."""
    for op in txn.ops:
        if op.new is None:
            continue
        _mkdirs(txn, op.target.parent)
        op.staged = _staged(op.target)
        try:
            _write_staged(op.staged, op.new, op.mode, op.mtime_ns)
            if op.uid is not None and op.gid is not None and os.geteuid() == 0:
                os.chown(op.staged, op.uid, op.gid)
            os.chmod(op.staged, op.mode)  # os.open's mode passes through the umask
        except OSError as exc:
            # Name the file being installed, not its temporary twin.
            raise OSError(exc.errno, exc.strerror, str(op.target)) from None


def _commit(txn: _Txn) -> None:
    for op in txn.ops:
        if op.new is None:
            if op.before.exists:
                op.target.unlink()
        else:
            assert op.staged is not None
            os.replace(op.staged, op.target)
            op.staged = None
        fsync_dir(op.target.parent)
        op.done = True


def _rollback(txn: _Txn) -> list[str]:
    """Put back what was committed, remove what was staged; return the
    paths that could not be put back."""
    failed = []
    for op in reversed(txn.ops):
        with contextlib.suppress(OSError):
            if op.staged is not None:
                op.staged.unlink(missing_ok=True)
        if not op.done:
            continue
        try:
            if op.before.exists and op.before.content is not None:
                write_durably(op.target, op.before.content, mtime_ns=op.before.mtime_ns,
                              mode=op.before.mode or 0o644)
                if (op.before.uid is not None and op.before.gid is not None
                        and os.geteuid() == 0):
                    os.chown(op.target, op.before.uid, op.before.gid)
                os.chmod(op.target, op.before.mode or 0o644)
            else:
                op.target.unlink(missing_ok=True)
        except OSError:
            failed.append(op.path)
    for d in reversed(txn.dirs):
        with contextlib.suppress(OSError):
            d.rmdir()
    return failed


def _run(txn: _Txn, what: str) -> None:
    """Stage and commit *txn*; on failure roll back and raise SetupError."""
    try:
        _stage(txn)
    except OSError as exc:
        _rollback(txn)
        raise SetupError(f"cannot {what}: {exc.filename or ''}: {exc.strerror}; nothing was "
                         "changed") from None
    try:
        _commit(txn)
    except OSError as exc:
        failed = _rollback(txn)
        tail = _restore_note(failed)
        raise SetupError(f"cannot {what}: {exc.filename or ''}: {exc.strerror}; {tail}") from None


def grub_updater(root: Path) -> tuple[GrubUpdate | None, str]:
    """How to regenerate grub.cfg for *root*: a callable (None when it
    cannot be run from here) and a sentence naming it."""
    if root.resolve() != Path("/"):
        return None, (f"update-grub not run for --root {root}: run 'chroot {root} update-grub' "
                      "(or that system's grub-mkconfig) before booting it")
    for argv in (["update-grub"], ["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]):
        exe = shutil.which(argv[0], path="/usr/sbin:/sbin:/usr/bin:/bin")
        if exe is None:
            continue

        def run(argv: list[str] = [exe, *argv[1:]]) -> Path | None:  # noqa: B006
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=600)
            if proc.returncode != 0:
                raise SetupError(f"{' '.join(argv)} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip().splitlines()[-1:] or ''}")
            return Path("/boot/grub/grub.cfg")

        return run, " ".join(argv)
    return None, ("neither update-grub nor grub-mkconfig found: regenerate the boot loader's "
                  "configuration yourself so the kernel gets the parameters")


def _grub(txn: _Txn, update: GrubUpdate | None, how: str, words: tuple[str, ...] | None,
          what: str) -> str:
    """Run update-grub after a committed change of the drop-in and check its
    grub.cfg; on failure roll everything back, regenerate, raise."""
    if not any(op.path == GRUB_DROPIN for op in txn.ops):
        return "update-grub not needed: the GRUB drop-in did not change"
    if update is None:
        return how
    try:
        cfg = update()
        if cfg is not None and words is not None:
            try:
                text = cfg.read_text(errors="replace")
            except OSError as exc:
                raise SetupError(f"cannot read {cfg}: {exc.strerror}") from None
            lines, problems = check_grub_cfg(text, words)
            if problems:
                raise SetupError(f"{cfg}: {problems[0]}" + (
                    f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            return f"ran {how}: all {lines} kernel lines of {cfg} carry the parameters"
        return f"ran {how}"
    except SetupError as exc:
        failed = _rollback(txn)
        with contextlib.suppress(SetupError):
            update()
        tail = (f"could not restore {', '.join(failed)}" if failed else
                "every file was put back as it was and grub.cfg regenerated")
        raise SetupError(f"{what}: {exc}; {tail}") from None


def _op(root: Path, path: str, new: bytes | None, mode: int, before: _State,
        original: _State | None = None) -> _Op:
    keep = original or before
    return _Op(path, _target(root, path), new, keep.mode if keep.exists and keep.mode else mode,
               before, keep.uid, keep.gid,
               keep.mtime_ns if original is not None and new == original.content else None)


def apply(root: Path, desired: list[Desired], record: dict[str, Any],
          update: GrubUpdate | None, update_how: str,
          grub_words: tuple[str, ...] | None = None, steps: Sequence[Step] = ()) -> Outcome:
    """Make the files below *root* what *desired* says, recording *record*
    (the plan, as JSON) in the manifest; run *steps* once the files are
    committed; run *update* when the GRUB drop-in changed and check its
    grub.cfg for *grub_words*."""
    manifest_path = MANIFEST
    old = read_manifest(root)
    old_files = {f["path"]: f for f in old["files"]} if old else {}
    txn = _Txn()
    unchanged = []
    entries = []
    for d in desired:
        before = _state(_target(root, d.path))
        prev = old_files.pop(d.path, None)
        if d.block is not None:
            new = merge_block(before.content, d.block)
        else:
            assert d.content is not None
            new = d.content
        if d.role == "grub":
            check_dropin(new, grub_words or ())
        original = before if prev is None else _State(
            prev["existed"], _unb64(prev["original"]), prev["mode"], prev.get("uid"),
            prev.get("gid"), prev.get("mtime_ns"))
        entries.append({"path": d.path, "role": d.role, "existed": original.exists,
                        "original": _b64(original.content), "mode": original.mode,
                        "uid": original.uid, "gid": original.gid,
                        "mtime_ns": original.mtime_ns, "written_sha256": _sha(new),
                        "block": d.block.decode() if d.block is not None else None})
        if before.exists and before.content == new:
            unchanged.append(d.path)
            continue
        txn.ops.append(_op(root, d.path, new, d.mode, before))
    # Files an earlier setup wrote that this plan no longer needs: put back.
    for path, prev in old_files.items():
        before = _state(_target(root, path))
        original = _State(prev["existed"], _unb64(prev["original"]), prev["mode"],
                          prev.get("uid"), prev.get("gid"), prev.get("mtime_ns"))
        if before.content != original.content or before.exists != original.exists:
            if _sha(before.content) != prev["written_sha256"]:
                raise SetupError(f"{path} changed since the last setup: put it back as "
                                 f"the manifest {MANIFEST} records, or remove it; nothing "
                                 "was changed")
            txn.ops.append(_op(root, path, original.content, original.mode or 0o644, before,
                               original))
    if not txn.ops and old is not None:
        return Outcome(unchanged=tuple(unchanged), manifest=manifest_path,
                       grub="update-grub not needed: nothing changed",
                       steps=tuple(step.run() for step in steps))
    # The manifest is renamed first: undo treats a file whose content is
    # still the original as already restored.
    mpath = _target(root, manifest_path)
    mbefore = _state(mpath)
    txn.ops.insert(0, _Op(manifest_path, mpath, b"", 0o600, mbefore))
    # The manifest's own directory and the steps' files count too: undo
    # removes them as well.
    times = _dir_times(root, [op.target for op in txn.ops]
                       + [_target(root, p) for step in steps for p in step.paths])
    manifest = {"version": 1, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "plan": record, "files": entries,
                "dirs": sorted({*(old or {}).get("dirs", [])}),
                # The first setup's record wins: undo goes back to before it.
                "dir_times": {**times, **(old or {}).get("dir_times", {})}}
    try:
        _run_with_manifest(root, txn, manifest, "install the configuration")
    except SetupError:
        _restore_dir_times(root, times)
        raise
    done: list[Step] = []
    notes: list[str] = []
    try:
        for step in steps:
            notes.append(step.run())
            done.append(step)
    except SetupError as exc:
        _revert(done)
        failed = _rollback(txn)
        _restore_dir_times(root, times)
        tail = _restore_note(failed)
        raise SetupError(f"setup rolled back: {exc}; {tail}") from None
    try:
        grub = _grub(txn, update, update_how, grub_words, "setup rolled back")
    except SetupError:
        _revert(done)
        _restore_dir_times(root, times)
        raise
    return Outcome(changed=tuple(op.path for op in txn.ops[1:] if op.new is not None),
                   removed=tuple(op.path for op in txn.ops[1:] if op.new is None),
                   unchanged=tuple(unchanged), grub=grub, manifest=manifest_path,
                   steps=tuple(notes))


def _run_with_manifest(root: Path, txn: _Txn, manifest: dict[str, Any], what: str) -> None:
    """Commit the manifest (which lists the directories setup creates, for
    undo), then stage the files, then commit them.  The manifest comes
    first so that a kill at any later point leaves one that names every
    file and directory the killed run may have touched."""
    mop, files = txn.ops[0], txn.ops[1:]
    root_real = root.resolve()
    created = [d for op in files if op.new is not None for d in _missing(op.target.parent)]
    try:
        # The archive's directory is private (mode 0700, as collect makes it).
        _mkdirs(txn, mop.target.parent, 0o700)
        manifest["dirs"] = sorted({*manifest["dirs"], *(
            "/" + str(d.resolve().relative_to(root_real)) for d in [*txn.dirs, *created])})
        mop.new = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        _stage(_Txn([mop]))
        _commit(_Txn([mop]))
        _stage(_Txn(files, txn.dirs))
    except OSError as exc:
        _rollback(txn)
        raise SetupError(f"cannot {what}: {exc.filename or ''}: {exc.strerror}; nothing was "
                         "changed") from None
    try:
        _commit(_Txn(files))
    except OSError as exc:
        failed = _rollback(txn)
        tail = _restore_note(failed)
        raise SetupError(f"cannot {what}: {exc.filename or ''}: {exc.strerror}; {tail}") from None


def undo(root: Path, update: GrubUpdate | None, update_how: str,
         steps: Sequence[Step] = ()) -> Outcome:
    """Put every file the last setup touched back as it was before the
    first setup (remove the ones it created), then the manifest; *steps*
    run first, once the files are known to be restorable (a failing step
    leaves every file as it is).  The directories setup created go, and
    each directory gets its time back, before the manifest is removed, so
    that an undo killed at any point is finished by the next one; only the
    manifest's own directory is removed after it."""
    old = read_manifest(root)
    mpath = _target(root, MANIFEST)
    if old is None:
        # A setup killed before it committed its manifest changed nothing in
        # /etc; its staged manifest may be left.
        with contextlib.suppress(OSError):
            _staged(mpath).unlink(missing_ok=True)
        return Outcome(grub="nothing to undo: no setup manifest "
                       f"({root / MANIFEST.lstrip('/')})")
    txn = _Txn()
    conflicts = []
    for f in old["files"]:
        target = _target(root, f["path"])
        # What a killed setup or undo staged and did not rename.
        with contextlib.suppress(OSError):
            _staged(target).unlink(missing_ok=True)
        before = _state(target)
        original = _unb64(f["original"])
        if before.exists == f["existed"] and before.content == original:
            continue
        if _sha(before.content) == f["written_sha256"]:
            new = original if f["existed"] else None
        elif f.get("block") and before.content is not None:
            # A shared file someone else changed since: take out only our block.
            new = remove_block(before.content, f["block"].encode())
            if new is None:
                conflicts.append(f["path"])
                continue
            if not f["existed"] and not new.strip():
                new = None
        else:
            conflicts.append(f["path"])
            continue
        txn.ops.append(_Op(f["path"], target, new, f["mode"] or 0o644, before, f.get("uid"),
                           f.get("gid"), f.get("mtime_ns") if new == original else None))
    if conflicts:
        raise SetupError(f"changed since setup: {', '.join(conflicts)}: their content before "
                         f"setup is in {MANIFEST} (base64 'original'); nothing was changed")
    notes = tuple(step.run() for step in steps)
    _run(txn, "undo the configuration")
    # update-grub before the manifest goes: a failure puts the files back,
    # and the manifest still describes them.
    grub = _grub(txn, update, update_how, None, "undo rolled back")
    times = old.get("dir_times") or {}
    mdirs = {mpath.parent, *mpath.parent.parents}
    dirs = sorted(old.get("dirs", []), key=len, reverse=True)
    for d in dirs:
        if _target(root, d) not in mdirs:
            with contextlib.suppress(OSError):
                _target(root, d).rmdir()
    _restore_dir_times(root, times)
    try:
        mpath.unlink(missing_ok=True)
        fsync_dir(mpath.parent)
    except OSError as exc:
        raise SetupError(f"cannot remove {MANIFEST}: {exc.strerror}; every file was put back "
                         "as it was: run 'memconsole setup --undo' again") from None
    for d in dirs:
        if _target(root, d) in mdirs:
            with contextlib.suppress(OSError):
                _target(root, d).rmdir()
    _restore_dir_times(root, times)
    return Outcome(changed=tuple(op.path for op in txn.ops if op.new is not None),
                   removed=tuple(op.path for op in txn.ops if op.new is None),
                   grub=grub, steps=notes)
