"""The survival canary: proof that this machine keeps the reserved range
across a reset, before a real crash depends on it.

At every boot ``memconsole canary`` reads the canary page (the last page of
the range ``memconsole setup`` reserved; ``canary = mem:ADDR:4096`` in
/etc/memconsole.conf), judges what the previous boot left there
(:class:`Outcome`), records the answer durably in the archive
(``canary.json``, :func:`record`), then writes this boot's canary
(:func:`write`).  The page layout is in docs/doctor.md, byte by byte:

* a 64-byte header: magic ``MCCANARY``, version, header and page size, the
  writing boot's id (``/proc/sys/kernel/random/boot_id``), its wall-clock
  time, a count of boots survived in a row, a CRC-32;
* the rest of the page filled from SHA-256 of the boot id, so a page that
  kept its header but lost bits elsewhere (decaying DRAM, a stray write) is
  told from an intact one.

:func:`encode_page` and :func:`parse_page` are pure; the rest is I/O.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memconsole._common import write_durably
from memconsole.errors import ConfigError, MemconsoleError

__all__ = [
    "HEADER",
    "HISTORY_NAME",
    "MAGIC",
    "PAGE_SIZE",
    "VERSION",
    "Canary",
    "CanaryRun",
    "Check",
    "Outcome",
    "PageState",
    "assess",
    "encode_page",
    "expected_fill",
    "last_result",
    "last_written",
    "load_history",
    "next_seq",
    "parse_page",
    "read_boot_id",
    "read_page",
    "record",
    "run",
    "write",
]

MAGIC = b"MCCANARY"
VERSION = 1
#: The canary page.
PAGE_SIZE = 4096
#: magic, version, header size, page size, boot id, time_ns, seq, reserved
#: (8 + 4 bytes), CRC-32 of the 60 bytes before it.
HEADER = struct.Struct("<8sHHI16sQQQII")
assert HEADER.size == 64
#: The results file in the archive.
HISTORY_NAME = "canary.json"
#: Results kept in it (the oldest go first).
MAX_RESULTS = 200
_FILL_TAG = b"memconsole canary fill"


class Outcome(enum.Enum):
    """What the previous boot's canary became."""

    #: The page holds the previous boot's canary, header and fill intact.
    SURVIVED = "survived"
    #: A canary was written by an earlier boot and the page holds none now:
    #: cleared (all zero: firmware, a cold start) or overwritten.
    LOST = "lost"
    #: The page holds a canary whose header or fill no longer checks: the
    #: range kept most of its bits but not all.
    DAMAGED = "damaged"
    #: No canary, and none is known to have been written: nothing to judge yet.
    FIRST = "first"
    #: The page holds this boot's own canary: it was checked and written
    #: already in this boot.
    THIS_BOOT = "this-boot"


class PageState(enum.Enum):
    """What a page holds, judged from its bytes alone."""

    EMPTY = "empty"        # all zero
    FOREIGN = "foreign"    # not zero, no canary magic
    DAMAGED = "damaged"    # the magic, but the header does not check
    VALID = "valid"        # a canary whose header checks (the fill may differ)


@dataclass(frozen=True)
class Canary:
    """A parsed canary page.

    Attributes:
        state: what the page holds.
        boot_id: the writing boot's id (16 bytes), for a valid header.
        time_ns: when it was written (wall clock, ns since the epoch).
        seq: 1 for a first canary, one more for each boot it survived in a row.
        changed: bytes of the fill that differ from what the writer put there
            (0 for an intact page), for a valid header.
        nonzero: non-zero bytes in the page (what an overwrite left).
        detail: why a damaged page is damaged.
    """

    state: PageState
    boot_id: bytes = b""
    time_ns: int = 0
    seq: int = 0
    changed: int = 0
    nonzero: int = 0
    detail: str = ""

    @property
    def boot(self) -> str:
        """The writing boot's id as text (``""`` when unknown)."""
        return str(uuid.UUID(bytes=self.boot_id)) if len(self.boot_id) == 16 else ""


def expected_fill(boot_id: bytes, length: int) -> bytes:
    """The bytes after the header: SHA-256 of the tag, the boot id and a
    little-endian 32-bit block counter, block after block, cut to *length*."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(_FILL_TAG + boot_id + counter.to_bytes(4, "little")).digest()
        counter += 1
    return bytes(out[:length])


def encode_page(boot_id: bytes, time_ns: int, seq: int, page_size: int = PAGE_SIZE) -> bytes:
    """A canary page for boot *boot_id* (16 bytes)."""
    if len(boot_id) != 16:
        raise ConfigError(f"a boot id is 16 bytes, not {len(boot_id)}")
    if page_size < HEADER.size:
        raise ConfigError(f"a canary page needs {HEADER.size} bytes, not {page_size}")
    head = HEADER.pack(MAGIC, VERSION, HEADER.size, page_size, boot_id, time_ns, seq, 0, 0, 0)
    crc = zlib.crc32(head[:60])
    return head[:60] + crc.to_bytes(4, "little") + expected_fill(boot_id, page_size - HEADER.size)


def parse_page(page: bytes | memoryview) -> Canary:
    """Judge a page's bytes (pure).  Never raises for any content."""
    data = bytes(page)
    nonzero = len(data) - data.count(0)
    if nonzero == 0:
        return Canary(PageState.EMPTY)
    if len(data) < HEADER.size or data[:8] != MAGIC:
        return Canary(PageState.FOREIGN, nonzero=nonzero)
    _magic, version, hsize, psize, boot, t_ns, seq, _r1, _r2, crc = HEADER.unpack_from(data)
    if zlib.crc32(data[:60]) != crc:
        return Canary(PageState.DAMAGED, nonzero=nonzero,
                      detail=f"header CRC {crc:#010x}, computed {zlib.crc32(data[:60]):#010x}")
    if version != VERSION or hsize != HEADER.size:
        return Canary(PageState.DAMAGED, nonzero=nonzero,
                      detail=f"version {version}, header size {hsize}: not a format this "
                      f"memconsole writes (version {VERSION})")
    if not HEADER.size <= psize <= len(data):
        return Canary(PageState.DAMAGED, nonzero=nonzero,
                      detail=f"page size {psize} does not fit the {len(data)} bytes read")
    fill = data[HEADER.size:psize]
    want = expected_fill(boot, len(fill))
    changed = sum(1 for a, b in zip(fill, want, strict=True) if a != b) if fill != want else 0
    return Canary(PageState.VALID, boot, t_ns, seq, changed, nonzero)


@dataclass(frozen=True)
class Check:
    """One canary judged at this boot.

    Attributes:
        spec: the canary's region (``mem:ADDR:4096`` or a file).
        boot_id: the boot that checked (text).
        checked_ns: when (wall clock, ns).
        outcome: the verdict.
        detail: one sentence for a person.
        previous: the canary found (for SURVIVED, DAMAGED, THIS_BOOT), or
            the canary known to have been written (for LOST), or None.
    """

    spec: str
    boot_id: str
    checked_ns: int
    outcome: Outcome
    detail: str
    previous: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``canary.json`` and ``canary --json``."""
        return {"spec": self.spec, "boot_id": self.boot_id, "checked_ns": self.checked_ns,
                "outcome": self.outcome.value, "detail": self.detail,
                "previous": self.previous}


def _when(time_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time_ns / 1e9))


def assess(spec: str, page: Canary, boot_id: bytes, written: dict[str, Any] | None,
           now_ns: int) -> Check:
    """The verdict on *page* for the boot *boot_id*, given what the archive
    says was written last (*written*: ``boot_id``, ``time_ns``, ``seq``, or
    None).  Pure."""
    me = str(uuid.UUID(bytes=boot_id))
    found = ({"boot_id": page.boot, "time_ns": page.time_ns, "seq": page.seq}
             if page.state is PageState.VALID else None)
    if page.state is PageState.VALID and page.boot_id == boot_id:
        if page.changed:
            return Check(spec, me, now_ns, Outcome.DAMAGED,
                         f"this boot's canary changed in {page.changed} bytes since it was "
                         "written: something else writes the range", found)
        return Check(spec, me, now_ns, Outcome.THIS_BOOT,
                     f"this boot's canary is in place (written {_when(page.time_ns)})", found)
    if page.state is PageState.VALID:
        fill = PAGE_SIZE - HEADER.size
        if page.changed:
            return Check(spec, me, now_ns, Outcome.DAMAGED,
                         f"the canary of boot {page.boot} ({_when(page.time_ns)}) kept its "
                         f"header but {page.changed} of {fill} other bytes changed: the range "
                         "is not kept whole", found)
        row = f", {page.seq} resets in a row" if page.seq > 1 else ""
        return Check(spec, me, now_ns, Outcome.SURVIVED,
                     f"the canary of boot {page.boot} ({_when(page.time_ns)}) survived{row}",
                     found)
    if page.state is PageState.DAMAGED:
        return Check(spec, me, now_ns, Outcome.DAMAGED,
                     f"the page holds a damaged canary ({page.detail}): the range is not "
                     "kept whole", written)
    what = ("cleared (all zero)" if page.state is PageState.EMPTY
            else f"overwritten ({page.nonzero} non-zero bytes, no canary)")
    if written and written.get("boot_id") not in (None, me):
        return Check(spec, me, now_ns, Outcome.LOST,
                     f"the canary of boot {written['boot_id']} "
                     f"({_when(int(written.get('time_ns', 0)))}) was lost: the page was {what}",
                     written)
    return Check(spec, me, now_ns, Outcome.FIRST,
                 f"no earlier canary to check (the page was {what}); this boot writes the "
                 "first", None)


# -- I/O ---------------------------------------------------------------------


def read_boot_id(procfs: Path = Path("/proc")) -> bytes:
    """This boot's id from ``<procfs>/sys/kernel/random/boot_id``."""
    path = procfs / "sys/kernel/random/boot_id"
    try:
        return uuid.UUID(path.read_text(encoding="ascii").strip()).bytes
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read this boot's id from {path}: {exc}") from exc


def read_page(spec: str) -> Canary:
    """Read and parse the canary page of *spec* (``mem:ADDR:SIZE`` through
    /dev/mem, with the reserved-range rules of
    :func:`memconsole.ring.regions.open_region`, or a file; a missing file
    is an empty page)."""
    from memconsole.ring.regions import open_region

    if not spec.startswith("mem:") and not os.path.lexists(spec):
        return Canary(PageState.EMPTY)
    with open_region(spec) as region:
        if region.size < HEADER.size:
            raise ConfigError(f"{spec}: {region.size} bytes, too small for a canary page")
        return parse_page(region.buf[:min(region.size, PAGE_SIZE)])


def write(spec: str, boot_id: bytes, seq: int, now_ns: int | None = None) -> dict[str, Any]:
    """Write this boot's canary into *spec*; return what was written
    (``boot_id``, ``time_ns``, ``seq``).  The fill goes first and the
    header last, so a write cut short never reads back as a canary."""
    from memconsole.ring.regions import open_region

    now_ns = time.time_ns() if now_ns is None else now_ns
    with open_region(spec, write=True, create_size=PAGE_SIZE) as region:
        size = min(region.size, PAGE_SIZE)
        if size < HEADER.size:
            raise ConfigError(f"{spec}: {region.size} bytes, too small for a canary page")
        page = encode_page(boot_id, now_ns, seq, size)
        region.buf[HEADER.size:size] = page[HEADER.size:]
        region.flush(HEADER.size, size - HEADER.size)
        region.buf[:HEADER.size] = page[:HEADER.size]
        region.flush(0, HEADER.size)
    return {"boot_id": str(uuid.UUID(bytes=boot_id)), "time_ns": now_ns, "seq": seq}


def load_history(archive: Path) -> tuple[dict[str, Any], str | None]:
    """``canary.json`` of *archive*: ``{"version", "written", "results"}``,
    and a warning when the file exists but cannot be used (it is then
    started afresh)."""
    empty: dict[str, Any] = {"version": 1, "written": {}, "results": []}
    path = archive / HISTORY_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return empty, None
    except OSError as exc:
        return empty, f"{path}: cannot read it ({exc.strerror}); starting a new one"
    try:
        data = json.loads(raw)
        if (not isinstance(data, dict) or not isinstance(data.get("written"), dict)
                or not isinstance(data.get("results"), list)):
            raise ValueError("not a canary history")
    except ValueError as exc:
        return empty, f"{path}: unusable ({exc}); starting a new one"
    return data, None


def record(archive: Path, checks: list[Check], written: dict[str, dict[str, Any]]) -> None:
    """Add *checks* (except :attr:`Outcome.THIS_BOOT`, which says nothing
    new) and the canaries *written* (by spec) to ``canary.json``, durably,
    holding the archive's lock (a ``collect`` may run beside)."""
    from memconsole.archive import Archive

    arch = Archive(archive)
    arch.prepare()
    with arch.lock(wait=60):
        data, _ = load_history(archive)
        data["results"] = (data["results"] + [c.to_json() for c in checks
                                              if c.outcome is not Outcome.THIS_BOOT]
                           )[-MAX_RESULTS:]
        data["written"].update(written)
        data["version"] = 1
        try:
            write_durably(archive / HISTORY_NAME,
                          (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise MemconsoleError(f"cannot write {archive / HISTORY_NAME}: "
                                  f"{exc.strerror}") from exc


def last_written(history: dict[str, Any], spec: str) -> dict[str, Any] | None:
    """What the archive says was written last into *spec*."""
    entry = history.get("written", {}).get(spec)
    return entry if isinstance(entry, dict) else None


def next_seq(check: Check) -> int:
    """The ``seq`` of this boot's canary after *check*: one more than the
    previous canary's when it survived, else 1."""
    if check.outcome in (Outcome.SURVIVED, Outcome.THIS_BOOT) and check.previous:
        with contextlib.suppress(TypeError, ValueError):
            base = int(check.previous.get("seq", 0))
            return base + 1 if check.outcome is Outcome.SURVIVED else base
    return 1



def last_result(history: dict[str, Any], spec: str) -> dict[str, Any] | None:
    """The newest recorded result for *spec* in *history*."""
    for entry in reversed(history.get("results", [])):
        if isinstance(entry, dict) and entry.get("spec") == spec:
            return entry
    return None


@dataclass(frozen=True)
class CanaryRun:
    """What :func:`run` did for one canary.

    Attributes:
        spec: the canary's region.
        check: the verdict on the page as found (None with ``check=False``).
        recorded: the result of this boot in ``canary.json`` for *spec*
            (the one just made, or, for :attr:`Outcome.THIS_BOOT`, the one
            made earlier in this boot), or None.
        written: the canary written now, or None.
        error: why this canary could not be read or written ("" if it was).
    """

    spec: str
    check: Check | None
    recorded: dict[str, Any] | None
    written: dict[str, Any] | None
    error: str = ""

    @property
    def outcome(self) -> str | None:
        """The verdict that counts: this boot's recorded one, else the check's."""
        if self.recorded is not None:
            return str(self.recorded.get("outcome"))
        return self.check.outcome.value if self.check is not None else None

    @property
    def failed(self) -> bool:
        """The previous boot's canary was lost or damaged, or an error."""
        return bool(self.error) or self.outcome in (Outcome.LOST.value, Outcome.DAMAGED.value)


def run(specs: list[str], archive: Path, boot_id: bytes, *, check: bool = True,
        write_new: bool = True, keep: bool = True, now_ns: int | None = None
        ) -> tuple[list[CanaryRun], list[str]]:
    """Check each canary, record the verdicts, write this boot's canaries.

    *check*: judge the page (and, with *keep*, record the verdict).
    *write_new*: write this boot's canary (not when the page already holds
    it).  *keep*: record in ``canary.json`` (``--check`` alone records
    nothing).  Returns one :class:`CanaryRun` per spec and the warnings
    (an unusable ``canary.json``).  An unreadable page is that canary's
    ``error``; the others go on.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    history, warning = load_history(archive)
    warnings = [warning] if warning else []
    me = str(uuid.UUID(bytes=boot_id))
    runs: list[CanaryRun] = []
    checks: list[Check] = []
    written: dict[str, dict[str, Any]] = {}
    for spec in specs:
        verdict: Check | None = None
        try:
            if check or write_new:
                page = read_page(spec)
                verdict = assess(spec, page, boot_id, last_written(history, spec), now_ns)
            new = None
            if write_new and (verdict is None or verdict.outcome is not Outcome.THIS_BOOT):
                seq = next_seq(verdict) if (verdict is not None and check) else 1
                new = write(spec, boot_id, seq, now_ns)
                written[spec] = new
        except MemconsoleError as exc:
            runs.append(CanaryRun(spec, verdict, None, None, str(exc)))
            continue
        recorded = None
        if verdict is not None and check:
            if verdict.outcome is Outcome.THIS_BOOT:
                prev = last_result(history, spec)
                recorded = prev if prev is not None and prev.get("boot_id") == me else None
            elif keep:
                checks.append(verdict)
                recorded = verdict.to_json()
        runs.append(CanaryRun(spec, verdict if check else None, recorded, new))
    if keep and (checks or written):
        record(archive, checks, written)
    return runs, warnings
