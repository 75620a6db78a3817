"""The package's shape, checked: import directions point inward, no module
imports another sub-package's private modules, and there is no import cycle
(lazy imports inside functions and typing-only imports count too).

docs/architecture.md draws the same rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "memconsole"
TESTS = ROOT / "tests"

#: Which parts of the package each part may import.  A part is a sub-package
#: or a top-level module; ``memconsole`` itself (the tiny root ``__init__``)
#: may be imported by anyone.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_common": {"errors"},
    "render": {"errors", "_common"},
    "config": {"errors", "_common"},
    "pstore": {"errors", "_common"},
    "oops": {"errors", "_common"},
    "ring": {"errors", "_common"},
    "ramoops": {"pstore", "errors", "_common"},
    "archive": {"pstore", "ring", "render", "errors", "_common"},
    "history": {"pstore", "oops", "ring", "archive", "errors", "_common"},
    "setup": {"pstore", "ramoops", "ring", "archive", "history", "render", "config", "errors",
              "_common"},
    "ops": {"pstore", "oops", "ring", "archive", "history", "render", "config", "errors",
            "_common"},
    "lab": {"errors", "_common"},
    "cli": {"*"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(module: str) -> bool:
    return (SRC.parent / module.replace(".", "/") / "__init__.py").exists()


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported memconsole module) for every import in *path*,
    wherever it stands (module level, functions, ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "memconsole":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "memconsole":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # ``from memconsole.ring import format`` imports a module.
                if (_is_package(target) and ((SRC.parent / sub.replace(".", "/")).with_suffix(
                        ".py").exists() or _is_package(sub))):
                    yield node.lineno, sub
                else:
                    yield node.lineno, target


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "memconsole"


def _private(module: str) -> bool:
    """A module below a sub-package whose name starts with ``_``."""
    parts = module.split(".")
    return len(parts) > 2 and any(p.startswith("_") for p in parts[2:])


def _sources() -> list[tuple[Path, str]]:
    return [(p, _module_name(p)) for p in sorted(SRC.rglob("*.py"))]


def test_every_part_is_known() -> None:
    parts = {_part(m) for _, m in _sources()} - {"memconsole"}
    unknown = parts - set(ALLOWED)
    assert not unknown, f"add {sorted(unknown)} to ALLOWED and docs/architecture.md"


def test_import_directions() -> None:
    bad = []
    for path, module in _sources():
        part = _part(module)
        allowed = ALLOWED.get(part, set())
        for line, target in _imports(path, module):
            tpart = _part(target)
            if tpart in (part, "memconsole") or "*" in allowed or tpart in allowed:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: {part} -> {target}")
    assert not bad, "imports against the allowed directions:\n" + "\n".join(bad)


def test_no_private_module_of_another_part() -> None:
    bad = []
    for path, module in _sources():
        for line, target in _imports(path, module):
            if _private(target) and _part(target) != _part(module):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    # Tests belong to the part whose directory they are in (tests/ring/...);
    # a fuzz harness to the part it names (tests/fuzz/test_fuzz_ring.py).
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS)
        owner = rel.parts[0] if len(rel.parts) > 1 else ""
        if owner == "fuzz" and path.stem.startswith("test_fuzz_"):
            owner = path.stem.removeprefix("test_fuzz_")
        for line, target in _imports(path, "tests." + ".".join(rel.with_suffix("").parts)):
            if _private(target) and _part(target) != owner:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    assert not bad, "private modules imported from outside their sub-package:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path, module in _sources():
        graph.setdefault(module, set())
        for _line, target in _imports(path, module):
            if target != module:
                graph[module].add(target)
    # Tarjan's strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_top_level_is_small() -> None:
    top = [p.name for p in SRC.glob("*.py")]
    assert len(top) <= 12, top


@pytest.mark.parametrize("probe", ["memconsole.ring.format", "memconsole.history"])
def test_checker_sees_edges(probe: str) -> None:
    # The checker itself must find imports, or every test above passes vacuously.
    edges = {t for p, m in _sources() for _l, t in _imports(p, m)}
    assert probe in edges
