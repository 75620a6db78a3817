"""The report family table and the machinery table (memconsole.oops._families,
memconsole.oops._machinery): their invariants, their documentation, and the
fixtures that exercise them.

docs/oops.md prints both tables between generated markers; this test renders
them from the code and fails when the document differs (run it with
``MEMCONSOLE_WRITE_DOCS=1`` to rewrite the generated parts).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from memconsole import oops
from memconsole.oops import _families, _machinery
from memconsole.oops._model import Kind

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "oops.md"
REPORTS = ROOT / "tests" / "fixtures" / "reports"
ALL_FAMILIES = (*_families.FAMILIES, *_families.PANIC_FAMILIES, _families.STANDALONE_PANIC,
                _families.DIE)


def test_family_rows_are_well_formed() -> None:
    ids = [f.id for f in ALL_FAMILIES]
    assert len(ids) == len(set(ids)), "family ids are unique"
    for f in ALL_FAMILIES:
        assert isinstance(f.kind, Kind)
        assert f.kernel, f.id
        assert f.pattern.groups >= 0  # compiles
        assert not f.skip or f.skip_re is not None
        fields = set(re.findall(r"{(\w+)}", f.title))
        assert fields <= {"c", "c2", "access", "lvl", "tail", "what", "reason"} | set(
            re.findall(r"\?P<(\w+)>", f.start.decode())), (f.id, fields)
        assert f.id in _families.STACKLESS or f.sources or f.corrupt or "{c}" not in f.title


def test_machinery_rows_are_anchored_and_cite_files() -> None:
    for row in _machinery.MACHINERY:
        assert row.files
        re.compile(row.pattern)
    assert _machinery.is_machinery("__list_del_entry_valid_or_report")
    assert not _machinery.is_machinery("sget_userns")  # syzkaller's "get_user" substring
    assert not _machinery.is_machinery("test_kmalloc_aligned_oob_write")
    assert not _machinery.is_machinery("do_syscall_64")
    assert _machinery.is_machinery("do_syscall_64", entry=True)
    assert _machinery.category("_raw_spin_lock_irqsave") is _machinery.Category.LOCKING
    assert _machinery.category("crashy_null") is None
    assert _machinery.strip_syscall("__x64_sys_rmdir") == "sys_rmdir"
    assert _machinery.strip_syscall("SyS_pause") == "pause"
    assert _machinery.normalize_function("_Z8fakeNameiii") == "fakeName"


def _sources() -> list[tuple[Path, dict[str, str]]]:
    out = []
    for txt in sorted(REPORTS.glob("*.txt")):
        fields = {}
        for line in txt.with_suffix(".source").read_text().splitlines():
            key, _, value = line.partition(": ")
            fields[key] = value
        out.append((txt, fields))
    return out


@pytest.mark.parametrize(("path", "fields"),
                         [s for s in _sources() if "syzbot title" in s[1]],
                         ids=lambda v: v.stem if isinstance(v, Path) else "")
def test_title_equals_syzbots_own(path: Path, fields: dict[str, str]) -> None:
    # syzbot's mail subject is syzkaller's title for the very report in the fixture
    # (" (2)" counts repeats of a title on the dashboard).
    expected = re.sub(r" \(\d+\)$", "", fields["syzbot title"])
    report = oops.parse_reports(path.read_bytes())[0]
    assert report.title == expected


# The families of the issue (and the architectures), each with the fixtures that
# carry it: every one must be among the project's own fixtures.
_COVERAGE = {
    "page fault / NULL": {"null", "paging", "arm-null", "arm-fault", "s390-fault"},
    "general protection fault": {"gpf"},
    "kernel BUG": {"kernel-bug", "list-bug"},
    "WARNING": {"warning", "w-refcount", "w-list"},
    "KASAN": {"kasan", "kasan-free"},
    "KMSAN": {"kmsan"},
    "KCSAN": {"kcsan"},
    "UBSAN": {"ubsan", "ubsan-old"},
    "kmemleak": {"memory-leak", "memleak-syz"},
    "lockdep": {"circular", "inconsistent"},
    "RCU stall": {"rcu-stall"},
    "hung task": {"hung"},
    "soft lockup": {"soft-lockup"},
    "hard lockup": {"hard-lockup"},
    "list corruption": {"list-bug", "w-list"},
    "refcount": {"w-refcount"},
    "scheduling while atomic": {"sched-atomic"},
    "smp_processor_id in preemptible": {"preemptible"},
    "panic without an oops": {"panic"},
    "stack corruption": {"stackprot", "stack-corrupted"},
}


def test_every_family_of_the_issue_has_a_fixture() -> None:
    seen = {r.family for p in REPORTS.glob("*.txt") for r in oops.parse_reports(p.read_bytes())}
    lab = ROOT / "tests" / "fixtures" / "lab"
    seen |= {r.family for p in lab.glob("*/*/pstore/dmesg-*")
             for r in oops.parse_reports(p.read_bytes())}
    missing = {name for name, ids in _COVERAGE.items() if not ids & seen}
    assert not missing, missing
    # Both WARNING forms: __warn()'s 3.10+ "CPU: N PID: N at" and the 6.19+ "file:line at".
    texts = [p.read_bytes() for p in REPORTS.glob("warning-*.txt")]
    assert any(b"WARNING: CPU: " in t for t in texts)
    assert any(re.search(rb"WARNING: \S+:\d+ at 0x0, CPU#", t) for t in texts)
    assert any(re.search(rb"WARNING: \S+:\d+ at \w+\+0x", t) for t in texts)


@pytest.mark.parametrize(("arch", "marker"), [
    ("x86_64", rb"RIP: 0010:"), ("arm64", rb"\bpc : "), ("arm", rb"PC is at "),
    ("powerpc", rb"\[c0[0-9a-f]{14}\] \[c0[0-9a-f]{14}\] "), ("riscv", rb"\bepc : "),
    ("s390", rb"Krnl PSW : "),
])
def test_every_architecture_has_a_fixture(arch: str, marker: bytes) -> None:
    assert any(re.search(marker, p.read_bytes()) for p in REPORTS.glob("*.txt")), arch


# --------------------------------------------------------------------------
# docs/oops.md: the generated tables
# --------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_machinery() -> str:
    lines = ["| category | kernel files | functions (a regular expression over the whole name) |",
             "|---|---|---|"]
    for row in _machinery.MACHINERY:
        lines.append(f"| {row.category.value} | {_cell(row.files)} | `{_cell(row.pattern)}` |")
    return "\n".join(lines)


def render_families() -> str:
    lines = ["| family | kind | title | culprit from | kernel source of the start line |",
             "|---|---|---|---|---|"]
    for f in ALL_FAMILIES:
        sources = ", ".join(s.value for s in f.sources) or "-"
        if f.fallback:
            sources += "; else " + ", ".join(s.value for s in f.fallback)
        if f.pick is not _families.Pick.FIRST:
            sources += f" ({f.pick.value} rule)"
        lines.append(f"| `{f.id}` | {f.kind.value} | `{_cell(f.title)}` | {sources} | "
                     f"{_cell(f.kernel)} |")
    return "\n".join(lines)


@pytest.mark.parametrize(("name", "render"), [("machinery", render_machinery),
                                              ("families", render_families)])
def test_docs_print_the_tables(name: str, render: object) -> None:
    assert callable(render)
    begin = f"<!-- {name} table: generated from the code by tests/oops/test_families.py -->"
    end = f"<!-- end of the {name} table -->"
    doc = DOC.read_text()
    assert begin in doc and end in doc, f"docs/oops.md lacks the {name} table markers"
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    wanted = f"{head}{begin}\n{render()}\n{end}{tail}"
    if doc != wanted and os.environ.get("MEMCONSOLE_WRITE_DOCS") == "1":
        DOC.write_text(wanted)
        doc = wanted
    assert doc == wanted, f"docs/oops.md: the {name} table is stale (MEMCONSOLE_WRITE_DOCS=1)"
