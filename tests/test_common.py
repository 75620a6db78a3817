"""One size grammar for every option that takes a size."""

from __future__ import annotations

from pathlib import Path

import pytest

from memconsole._common import parse_size
from memconsole.cli import main
from memconsole.errors import ConfigError, RegionError
from memconsole.ring.regions import parse_spec

SPELLINGS = [("1M", 1 << 20), ("1MiB", 1 << 20), ("1mb", 1 << 20), ("0x100000", 1 << 20),
             ("1048576", 1 << 20), ("1024K", 1 << 20), ("1024k", 1 << 20), ("64K", 65536),
             ("4096", 4096), ("2MiB", 2 << 20), ("1g", 1 << 30), ("1 M", 1 << 20)]
BAD = ["", "1X", "1Q", "-1", "0x", "1.5M", "M", "1MM", "0x1g0"]


@pytest.mark.parametrize("text, value", SPELLINGS)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", BAD)
def test_parse_size_refuses(bad: str) -> None:
    with pytest.raises(ConfigError, match="bad size"):
        parse_size(bad)


@pytest.mark.parametrize("text, value", SPELLINGS)
def test_ring_spec_takes_the_same_spellings(text: str, value: int) -> None:
    assert parse_spec(f"mem:0x7000000:{text}").size == value


def test_ring_spec_bad_size_is_a_region_error() -> None:
    with pytest.raises(RegionError, match="bad ring spec"):
        parse_spec("mem:0x7000000:1Q")


@pytest.mark.parametrize("text, value", SPELLINGS[:6])
def test_decode_mem_size_takes_the_same_spellings(text: str, value: int, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "img"
    image.write_bytes(bytes(2 << 20))
    # An all-zero image holds no zone; what matters is that the size was
    # accepted (not a usage error) and understood as *value* bytes.
    code = main(["decode", str(image), "--mem-size", text, "--record-size", "4K"])
    err = capsys.readouterr().err
    assert code != 2, err
    assert "usage" not in err and "bad size" not in err


@pytest.mark.parametrize("argv", [
    ["record", "--ring", "RING", "--ring-size", "1Q"],
    ["decode", "IMG", "--mem-size", "1Q"],
    ["decode", "IMG", "--record-size", "lots"],
])
def test_bad_size_is_one_line_and_exit_2(argv: list[str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path / a) if a in ("RING", "IMG") else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "bad size" in err and "Traceback" not in err
    assert not (tmp_path / "RING").exists()
