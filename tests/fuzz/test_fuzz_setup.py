"""Fuzz the setup planner: ``plan()`` on any memory map, any options and
any ``memmap=`` words already on the command line.  It returns a plan or
raises one of its documented errors (ParseError for a map that is not one,
ConfigError for impossible options, SetupError when no RAM satisfies the
rules), never another exception, never a hang; and every plan it returns
keeps its promises: a page-aligned range inside one top-level System RAM
entry, clear of every exclusion it lists, holding ramoops, the ring and the
canary side by side.

Seeded from real memory maps (tests/fixtures/setup/iomem and the lab
guests' /proc/iomem in tests/fixtures/ring, each with its provenance
file), with each fixture kernel's facts (tests/setup/setup_facts.py).  In
the test suite: a few seconds of coverage-guided fuzzing with atheris when
it is installed, and a Hypothesis run of the same function either way.  A
long run (docs/reliability.md)::

    mkdir -p /tmp/setup-corpus
    PYTHONPATH=src python tests/fuzz/test_fuzz_setup.py -seed_corpus /tmp/setup-corpus
    PYTHONPATH=src python tests/fuzz/test_fuzz_setup.py -runs=1000000 \\
        -timeout=10 -rss_limit_mb=1024 /tmp/setup-corpus

The input is ``OPTS(8) WORDLEN WORDS IOMEM``: the eight option bytes pick
the kernel, the sizes, ECC, the method, the ring and an earlier range; WORDS
are command-line words (``memmap=`` ones among them); IOMEM is the map.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import libfuzzer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from memconsole.setup.planner import Options

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
FIXTURES = TESTS / "fixtures"
if str(TESTS / "setup") not in sys.path:
    sys.path.insert(0, str(TESTS / "setup"))

PAGE = 4096
_KIB = 1 << 10


def _maps() -> list[Path]:
    """Every real memory map in the fixtures that has a provenance file."""
    out = []
    for f in sorted((FIXTURES / "setup" / "iomem").glob("*.txt")):
        if f.with_name(f.stem + ".source.md").exists():
            out.append(f)
    out += sorted((FIXTURES / "ring").glob("iomem-*.txt"))
    return out


def seeds() -> list[bytes]:
    """Each real map with a few option sets and the words a machine may have."""
    words = [b"", b"quiet", b"memmap=1M$0x7200000 quiet", b"memmap=64K$0x1ffe0000"]
    out = []
    for f in _maps():
        text = f.read_bytes()
        for n, w in enumerate(words):
            opts = bytes([n, 15, 2, n % 4, n % 3, 1 + 3 * (n & 1), 0, n])  # 1M, 16K
            out.append(opts + bytes([len(w)]) + w + text)
    return out


def _options(b: bytes) -> tuple[str, Options]:
    """(kernel release, planner Options) from the eight option bytes."""
    import setup_facts

    from memconsole.setup.planner import Options

    release = (setup_facts.K61, setup_facts.K612)[b[0] & 1]
    # Sizes: mostly valid (4 KiB multiples, powers of two), sometimes not.
    size = (b[1] + 1) * 64 * _KIB if b[1] < 0xF0 else (b[1] - 0xEF) * 1000
    record = 1 << (12 + b[2] % 6) if b[2] < 0xF8 else b[2] * 100
    ecc = (0, 0, 1, 16, 32, 127, 128, 255)[b[3] % 8]
    method = ("auto", "memmap", "reserve-mem", "bogus")[b[4] % 4 if b[4] >= 0xFC else b[4] % 3]
    ring = None if b[5] % 3 == 0 else (b[5] // 3 + 1) * 64 * _KIB
    previous = None if b[6] == 0 else (b[6] << 24 | b[7] << 16, (b[7] % 16 + 1) << 20)
    return release, Options(size=size, record_size=record, ecc=ecc, ring=ring, method=method,
                            previous=previous)


def one_input(data: bytes) -> None:
    """Plan on one fuzz input; raise only on a real defect."""
    import setup_facts

    from memconsole.errors import ConfigError, ParseError, SetupError
    from memconsole.ring.iomem import parse_iomem
    from memconsole.setup.planner import Method, plan

    if len(data) < 9:
        return
    release, opt = _options(data[:8])
    wlen = data[8]
    words = data[9:9 + wlen].decode("utf-8", "replace")
    iomem = data[9 + wlen:]
    facts = setup_facts.facts(release, cmdline=words)
    try:
        p = plan(iomem, facts, opt)
    except (ParseError, ConfigError, SetupError):
        return
    assert p.kernel == release
    if p.method is Method.RESERVE_MEM:
        assert p.region is None and p.ring is None
        return
    region = p.region
    assert region is not None and p.ramoops is not None
    assert region.start % PAGE == 0 and region.size % PAGE == 0 and region.size > 0
    # Inside one top-level System RAM entry of the map it was given.
    top = [e for e in parse_iomem(iomem) if e.depth == 0 and e.name == "System RAM"]
    assert any(e.start <= region.start and region.end - 1 <= e.end for e in top), (region, top)
    for e in p.exclusions:
        assert region.end <= e.start or e.end <= region.start, (region, e)
    # ramoops, then the ring, then the canary page: side by side, inside.
    parts = [r for r in (p.ramoops, p.ring, p.canary) if r is not None]
    assert parts[0].start == region.start and parts[-1].end == region.end, (parts, region)
    for a, b in itertools.pairwise(parts):
        assert a.end == b.start, (a, b)
    assert p.ramoops.size == p.ramoops_size
    assert (p.ring is None) == (opt.ring is None)
    assert any(w.startswith("memmap=") for w in p.cmdline), p.cmdline


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=8, max_size=8), st.sampled_from(_maps()),
       st.lists(st.sampled_from(["quiet", "memmap=1M$0x7200000", "memmap=16M!0x8000000",
                                 "memmap=64K$0x1ffe0000", "memmap=2G$4G", "memmap=x",
                                 "reserve_mem=1M:4096:oops", "memmap=exactmap"]), max_size=4),
       st.integers(min_value=0, max_value=2000), st.binary(max_size=64))
@example(bytes(8), _maps()[0], [], 0, b"")
def test_any_map_and_options_give_a_sound_plan(opts: bytes, path: Path, words: list[str],
                                              cut: int, junk: bytes) -> None:
    text = path.read_bytes()
    # A real map, cut at some line and with junk spliced in, or whole.
    lines = text.splitlines(keepends=True)
    if cut and lines:
        k = cut % len(lines)
        text = b"".join(lines[:k]) + junk + b"".join(lines[k:])
    w = " ".join(words).encode()
    one_input(opts + bytes([len(w)]) + w + text)


def test_fixture_seeds_give_plans() -> None:
    """The real maps with ordinary options plan (not only raise)."""
    planned = 0
    for seed in seeds():
        one_input(seed)
    import setup_facts

    from memconsole.setup.planner import Options, plan

    for f in _maps():
        try:
            plan(f.read_bytes(), setup_facts.facts(setup_facts.K612), Options())
            planned += 1
        except Exception as exc:  # counted, reported below
            print(f"{f.name}: {exc}")
    assert planned >= len(_maps()) // 2, planned


def test_coverage_guided_fuzzing_finds_nothing(tmp_path: Path) -> None:
    """A few seconds of atheris (coverage-guided, libFuzzer) from the seeds."""
    libfuzzer.short_run(__file__, seeds(), tmp_path)


if __name__ == "__main__":
    libfuzzer.main(seeds, one_input, ["memconsole.ring.iomem", "memconsole.setup.planner"],
                   include=["memconsole"])
