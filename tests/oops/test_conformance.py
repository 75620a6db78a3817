"""Conformance with syzkaller's report parser on its public corpus (bench/conformance.py).

The corpus (google/syzkaller pkg/report/testdata/linux/report, Apache-2.0) is not
part of this repository.  It is read from ``$MEMCONSOLE_SYZKALLER_CORPUS``, else
from ``../shared/corpora/syzkaller-linux-report`` next to the checkout; without it
the test is skipped with the reason, unless ``MEMCONSOLE_FORCE_CORPUS=1`` makes a
missing corpus a failure.

Thresholds (docs/oops.md, "Conformance"): crashes detected in >= 98% of the logs
whose title is a kernel report (syzkaller's own SYZFAIL/SYZFATAL/go runtime
error/unexpected reboot titles are not kernel text), no report in a log without
one, and the culprit equal to syzkaller's in >= 92% of the titles that name a
function.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _corpus() -> Path | None:
    env = os.environ.get("MEMCONSOLE_SYZKALLER_CORPUS")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "corpora" / "syzkaller-linux-report")
    for path in candidates:
        if path.is_dir() and any(p.name.isdigit() for p in path.iterdir()):
            return path
    return None


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance", ROOT / "bench" / "conformance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("conformance", module)
    spec.loader.exec_module(module)
    return module


def test_syzkaller_corpus_thresholds() -> None:
    corpus = _corpus()
    if corpus is None:
        if os.environ.get("MEMCONSOLE_FORCE_CORPUS") == "1":
            pytest.fail("MEMCONSOLE_FORCE_CORPUS=1 but no syzkaller corpus was found")
        pytest.skip("syzkaller's report corpus is not present ($MEMCONSOLE_SYZKALLER_CORPUS or "
                    "../shared/corpora/syzkaller-linux-report next to the checkout)")
    bench = _bench()
    paths = sorted((p for p in corpus.iterdir() if p.name.isdigit() and p.is_file()),
                   key=lambda p: int(p.name))
    fig, _ = bench.run([bench.load(p) for p in paths])
    kernel = fig.titled - fig.not_kernel
    assert fig.detected_kernel >= 0.98 * kernel, (fig.detected_kernel, kernel)
    assert fig.false_positives == 0, fig.disagreements.get("false positive")
    assert fig.culprit_agree >= 0.92 * fig.culprit_cases, (fig.culprit_agree, fig.culprit_cases)
    # Not thresholds of the issue, but guards against a silent slide.
    assert fig.title_agree >= 0.9 * fig.detected, (fig.title_agree, fig.detected)
    assert fig.corrupted_agree >= 0.9 * fig.corrupted_cases


def test_needle_scan_equals_parsing_every_line_on_the_corpus() -> None:
    # The scanner feeds the parser only the lines around needles: on these real logs
    # of every family it must find exactly what feeding every line finds.
    corpus = _corpus()
    if corpus is None:
        pytest.skip("syzkaller's report corpus is not present")
    from memconsole.oops import _scan

    bench = _bench()
    for path in sorted(p for p in corpus.iterdir() if p.name.isdigit()):
        log = bench.load(path).log
        fast = [b.report() for b in _scan.parse_builders(log)]
        full = [b.report() for b in _scan.parse_all_lines(log)]
        assert fast == full, path.name
