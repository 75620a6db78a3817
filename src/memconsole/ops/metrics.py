"""Prometheus metrics of one machine, for node_exporter's textfile collector.

:func:`collect_metrics` gathers what the machine knows (the archive's crash
events, the survival canary's results in ``canary.json``, memconsole's ring
and the kernel's newest log record); :func:`families` turns it into metric
families (pure); :func:`exposition` renders them in the Prometheus text
format 0.0.4; :func:`write_textfile` writes the file the way node_exporter
wants it: complete or not at all (a temporary file in the same directory,
fsync, rename, fsync the directory: node_exporter reads ``*.prom`` only, and
the temporary name does not end so).

The metrics, with their labels (docs/operations.md, "Metrics" has the table):
``memconsole_crashes_total`` (kind), ``memconsole_crashes_by_signature_total``
(signature, kind, title), ``memconsole_last_crash_timestamp_seconds``,
``memconsole_archive_problems``; from ``canary.json``
``memconsole_canary_checks_total`` (spec, outcome), ``memconsole_canary_survived``,
``memconsole_canary_last_check_timestamp_seconds`` and
``memconsole_canary_resets_survived_in_a_row`` (spec); with a ring
``memconsole_ring_readable``, ``memconsole_ring_records``, ``memconsole_ring_gaps``,
``memconsole_ring_gap_records`` (reason), ``memconsole_ring_last_record_timestamp_seconds``,
``memconsole_recorder_lag_records`` and ``memconsole_recorder_lag_seconds``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memconsole._common import write_durably
from memconsole.archive import Archive
from memconsole.archive.ring import read_ring
from memconsole.errors import RegionError, RingFormatError
from memconsole.history import CrashEvent, crash_history
from memconsole.ring import RingBoot, RingImage, RingRecord, current_boot_id
from memconsole.ring.recorder import KmsgRecord, parse_kmsg

__all__ = [
    "CANARY_NAME",
    "TEXTFILE_NAME",
    "Family",
    "Inputs",
    "Sample",
    "collect_metrics",
    "exposition",
    "families",
    "kernel_newest",
    "newest_kmsg",
    "write_textfile",
]

#: The file :func:`write_textfile` writes in the textfile directory.
TEXTFILE_NAME = "memconsole.prom"
#: The survival canary's results in the archive (docs/doctor.md).
CANARY_NAME = "canary.json"
_MAX_CANARY = 4 << 20
# The kernel log buffer holds at most a few MiB (CONFIG_LOG_BUF_SHIFT <= 25);
# reading /dev/kmsg stops after this many records whatever happens.
_MAX_KMSG_RECORDS = 1 << 20
_KMSG_RECORD_RE = re.compile(rb"(?m)^[^ \n][^\n]*\n(?: [^\n]*\n)*")


@dataclass(frozen=True)
class Sample:
    """One line of a family: label pairs and the value."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Family:
    """One metric family: its name, ``counter`` or ``gauge``, help text and samples."""

    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Inputs:
    """What :func:`families` turns into metrics.

    Attributes:
        events: the archive's crash events, oldest first.
        problems: how many archive entries had to be skipped to read them.
        canary: ``canary.json`` as loaded, or None when there is none.
        ring: the ring's image, or None when no ring is configured or it
            cannot be read (*ring_error* then says why).
        ring_error: why the configured ring could not be read ("" if it was).
        boot_id: the running boot's id (16 bytes): which ring boot is this one.
        kernel: the kernel's newest log record, or None if unknown.
    """

    events: Sequence[CrashEvent]
    problems: int = 0
    canary: dict[str, Any] | None = None
    ring: RingImage | None = None
    ring_error: str = ""
    ring_configured: bool = False
    boot_id: bytes = b""
    kernel: KmsgRecord | None = None


def _one(name: str, kind: str, text: str, value: float | None) -> list[Family]:
    return [] if value is None else [Family(name, kind, text, (Sample((), value),))]


def _crash_families(events: Sequence[CrashEvent], problems: int) -> list[Family]:
    by_kind = Counter(e.kind for e in events)
    by_sig: Counter[tuple[str, str, str]] = Counter(
        (e.report.signature, e.kind, e.report.title or e.report.headline)
        for e in events if e.report is not None and e.report.signature)
    out = [
        Family("memconsole_crashes_total", "counter",
               "Crash events in the archive by kind (unknown: a hang or reset seen by the ring).",
               tuple(Sample((("kind", k),), n) for k, n in sorted(by_kind.items()))),
        Family("memconsole_crashes_by_signature_total", "counter",
               "Crash events in the archive by bug signature.",
               tuple(Sample((("signature", s), ("kind", k), ("title", t)), n)
                     for (s, k, t), n in sorted(by_sig.items()))),
    ]
    if events:
        out += _one("memconsole_last_crash_timestamp_seconds", "gauge",
                    "When the newest crash event happened, seconds since the epoch.",
                    max(e.time_ns for e in events) / 1e9)
    out += _one("memconsole_archive_problems", "gauge",
                "Archive entries skipped while reading it (each one a warning of memconsole list).",
                problems)
    return out


def _canary_families(canary: dict[str, Any]) -> list[Family]:
    results = [r for r in canary.get("results", []) if isinstance(r, dict)
               and isinstance(r.get("spec"), str) and isinstance(r.get("outcome"), str)]
    counts = Counter((r["spec"], r["outcome"]) for r in results)
    newest = {r["spec"]: r for r in results}
    survived, when, row = [], [], []
    for spec, r in sorted(newest.items()):
        if r["outcome"] in ("survived", "lost", "damaged"):
            survived.append(Sample((("spec", spec),), float(r["outcome"] == "survived")))
        if isinstance(r.get("checked_ns"), int):
            when.append(Sample((("spec", spec),), r["checked_ns"] / 1e9))
    written = canary.get("written")
    for spec, w in sorted(written.items() if isinstance(written, dict) else ()):
        if isinstance(w, dict) and isinstance(w.get("seq"), int) and w["seq"] >= 1:
            # seq is 1, or one more than the surviving previous canary's.
            row.append(Sample((("spec", spec),), w["seq"] - 1))
    return [
        Family("memconsole_canary_checks_total", "counter",
               "Survival canary verdicts recorded in canary.json by outcome.",
               tuple(Sample((("spec", s), ("outcome", o)), n)
                     for (s, o), n in sorted(counts.items()))),
        Family("memconsole_canary_survived", "gauge",
               "1 when the newest canary verdict is survived, 0 when lost or damaged.",
               tuple(survived)),
        Family("memconsole_canary_last_check_timestamp_seconds", "gauge",
               "When the newest canary verdict was made, seconds since the epoch.",
               tuple(when)),
        Family("memconsole_canary_resets_survived_in_a_row", "gauge",
               "Resets the reserved range survived in a row before this boot's canary.",
               tuple(row)),
    ]


def _current(ring: RingImage, boot_id: bytes) -> RingBoot | None:
    for boot in ring.boots:
        if boot.boot == boot_id:
            return boot
    return None


def _ring_families(inputs: Inputs) -> list[Family]:
    if not inputs.ring_configured:
        return []
    out = _one("memconsole_ring_readable", "gauge",
               "1 when the configured ring could be read, 0 when not.",
               float(inputs.ring is not None))
    if inputs.ring is None:
        return out
    boot = _current(inputs.ring, inputs.boot_id)
    records = boot.records if boot is not None else []
    gaps = Counter(g.reason for g in boot.gaps) if boot is not None else Counter()
    out += _one("memconsole_ring_records", "gauge",
                "Records of the running boot in the ring.", len(records))
    out += _one("memconsole_ring_gaps", "gauge",
                "Gaps in the running boot's records in the ring.",
                len(boot.gaps) if boot is not None else 0)
    out.append(Family("memconsole_ring_gap_records", "gauge",
                      "Records of the running boot missing from the ring: overrun (the "
                      "kernel dropped them before the recorder read them) or missing "
                      "(absent or corrupt in the ring).",
                      tuple(Sample((("reason", r),), gaps.get(r, 0))
                            for r in ("missing", "overrun"))))
    stamped = [r.time_ns for r in records if r.time_ns is not None]
    if stamped:
        out += _one("memconsole_ring_last_record_timestamp_seconds", "gauge",
                    "Wall-clock time of the running boot's newest ring record.",
                    max(stamped) / 1e9)
    lag = _lag(records, inputs.kernel)
    if lag is not None:
        out += _one("memconsole_recorder_lag_records", "gauge",
                    "Kernel log records newer than the newest one in the ring.", lag[0])
        out += _one("memconsole_recorder_lag_seconds", "gauge",
                    "Kernel log time between the ring's newest record and the kernel's.",
                    lag[1])
    return out


def _lag(records: Sequence[RingRecord], kernel: KmsgRecord | None
         ) -> tuple[int, float] | None:
    """Records and seconds the ring is behind the kernel's newest record."""
    if kernel is None:
        return None
    logged = [r for r in records if r.source_seq is not None]
    if not logged:
        # Nothing of this boot from the kernel: every record is behind.
        return kernel.seq + 1, kernel.ts_usec / 1e6
    last = max(logged, key=lambda r: r.source_seq or 0)
    behind = max(0, kernel.seq - (last.source_seq or 0))
    seconds = 0.0
    if behind and last.mono_ns is not None:
        seconds = max(0.0, kernel.ts_usec / 1e6 - last.mono_ns / 1e9)
    return behind, seconds


def families(inputs: Inputs) -> list[Family]:
    """The metric families of *inputs* (pure)."""
    out = _crash_families(inputs.events, inputs.problems)
    if inputs.canary is not None:
        out += _canary_families(inputs.canary)
    return out + _ring_families(inputs)


_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def exposition(fams: Iterable[Family]) -> str:
    """The Prometheus text format (version 0.0.4) of *fams*: ``# HELP``,
    ``# TYPE``, one line per sample; label values escaped as the format
    says (backslash, double quote, newline); a family without samples is
    left out."""
    lines: list[str] = []
    for fam in fams:
        if not fam.samples:
            continue
        lines.append(f"# HELP {fam.name} {fam.help.translate(_HELP_ESCAPES)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for s in fam.samples:
            labels = ",".join(f'{k}="{v.translate(_LABEL_ESCAPES)}"' for k, v in s.labels)
            lines.append(f"{fam.name}{{{labels}}} {_value(s.value)}" if labels
                         else f"{fam.name} {_value(s.value)}")
    return "".join(line + "\n" for line in lines)


def write_textfile(directory: Path, text: str, name: str = TEXTFILE_NAME) -> Path:
    """Write *text* as *directory*/*name* atomically and durably (mode 0644:
    node_exporter runs as its own user); return the path."""
    path = directory / name
    write_durably(path, text.encode("utf-8"), mode=0o644)
    return path


def newest_kmsg(stream: bytes) -> KmsgRecord | None:
    """The record with the highest sequence number in *stream*, /dev/kmsg
    records as ``read()`` returns them, one after another (pure)."""
    newest: KmsgRecord | None = None
    for m in _KMSG_RECORD_RE.finditer(stream):
        rec = parse_kmsg(m.group(0))
        if rec is not None and (newest is None or rec.seq > newest.seq):
            newest = rec
    return newest


def kernel_newest(path: str = "/dev/kmsg") -> KmsgRecord | None:
    """The kernel's newest log record, read from /dev/kmsg without blocking
    (every record, one per ``read()``, until none is left); None when it
    cannot be read (not root, no /dev/kmsg)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    newest: KmsgRecord | None = None
    try:
        for _ in range(_MAX_KMSG_RECORDS):
            try:
                raw = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while reading: go on
                    continue
                break
            if not raw:
                break
            rec = parse_kmsg(raw)
            if rec is not None and (newest is None or rec.seq > newest.seq):
                newest = rec
    finally:
        os.close(fd)
    return newest


def _load_canary(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    path = root / CANARY_NAME
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_CANARY + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path}: cannot read it ({exc.strerror})"
    try:
        data = json.loads(raw)
        if len(raw) > _MAX_CANARY or not isinstance(data, dict):
            raise ValueError("not a canary history")
    except ValueError as exc:
        return None, f"{path}: unusable ({exc})"
    return data, None


def collect_metrics(archive: Path, ring: str | None = None,
                    kmsg: str = "/dev/kmsg") -> tuple[list[Family], list[str]]:
    """The metric families of this machine, and one-line warnings for what
    had to be skipped (an archive entry, an unusable ``canary.json``, a ring
    that cannot be read).  Reads the archive at *archive*, its
    ``canary.json``, the ring *ring* (a spec, read-only) and *kmsg*."""
    history = crash_history(Archive(archive), [], None)
    warnings = list(history.warnings)
    canary, problem = _load_canary(archive)
    if problem:
        warnings.append(problem)
    image, ring_error, kernel = None, "", None
    if ring:
        try:
            image = read_ring(ring)
        except (RegionError, RingFormatError) as exc:
            ring_error = f"ring {ring}: {exc}"
            warnings.append(ring_error)
        kernel = kernel_newest(kmsg)
    inputs = Inputs(history.events, len(history.warnings), canary, image, ring_error,
                    bool(ring), current_boot_id(), kernel)
    return families(inputs), warnings
