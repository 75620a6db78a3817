"""What the atheris harnesses share: the suite's short coverage-guided run
of a harness file from its seeds, and the libFuzzer entry point that
writes the seed corpus (``-seed_corpus DIR``) or fuzzes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def write_seeds(corpus: Path, seeds: Sequence[bytes]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds):
        (corpus / f"seed-{n}").write_bytes(seed)


def short_run(harness: str, seeds: Sequence[bytes], tmp_path: Path) -> None:
    """A few seconds of atheris on *harness* (a file whose ``__main__`` is
    :func:`main`) from *seeds*: it ends cleanly and leaves no crash file."""
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"
    write_seeds(corpus, seeds)
    import memconsole

    src = Path(memconsole.__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, harness, "-max_total_time=8", "-timeout=10", "-rss_limit_mb=1024",
         f"-artifact_prefix={tmp_path}/", str(corpus)], capture_output=True, text=True,
        timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(src)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr and not list(tmp_path.glob("crash-*"))


def main(seeds: Callable[[], Sequence[bytes]], one_input: Callable[[bytes], None],
         modules: Sequence[str], include: list[str] | None = None) -> None:
    """libFuzzer entry point: ``-seed_corpus DIR`` writes the seeds, else
    *modules* are imported instrumented and *one_input* is fuzzed."""
    import importlib

    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if "-seed_corpus" in sys.argv:
        write_seeds(Path(sys.argv[-1]), seeds())
        return
    with atheris.instrument_imports(include=include):
        for name in modules:
            importlib.import_module(name)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
