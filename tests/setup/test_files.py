"""The files a plan becomes, and GRUB's escaping, against what Debian's real
grub-mkconfig made of each drop-in variant (tests/fixtures/setup/grub, see
its README for the recipe and what GRUB then passed to the kernel)."""

from __future__ import annotations

import re

import pytest
from setup_facts import FIXTURES, facts, iomem

from memconsole.errors import SetupError
from memconsole.setup.files import (
    BLOCK_BEGIN,
    BLOCK_END,
    check_dropin,
    check_grub_cfg,
    config_block,
    desired_files,
    dropin_text,
    grub_escape,
    grub_words,
    merge_block,
    remove_block,
    sh_double_quote,
)
from memconsole.setup.planner import Options, plan

GRUB = FIXTURES / "grub"
WORD = "memmap=1M$0x7000000"


def _plan(**opts: object):  # type: ignore[no-untyped-def]
    return plan(iomem("qemu-seabios-512M-6.12"), facts(), Options(**opts))  # type: ignore[arg-type]


def test_escaping_levels() -> None:
    assert grub_escape(WORD) == "memmap=1M\\$0x7000000"
    assert sh_double_quote(grub_escape(WORD)) == "memmap=1M\\\\\\$0x7000000"
    with pytest.raises(SetupError, match="characters"):
        grub_escape("quiet; reboot")


def test_dropin_is_the_verified_form() -> None:
    p = _plan()
    text = dropin_text(p).decode()
    line = text.splitlines()[-1]
    assert p.region is not None
    addr = p.region.start
    # Three backslashes before the $, inside double quotes, appended to
    # GRUB_CMDLINE_LINUX: the variant v3 that Debian's grub-mkconfig turned
    # into memmap=1M\$0x7000000 and GRUB into memmap=1M$0x7000000.
    assert line == (f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX memmap=0x101000\\\\\\${addr:#x} '
                    'pstore.backend=ramoops panic=10"')
    v3 = (GRUB / "variants" / "v3-three-backslashes.cfg").read_text()
    assert re.search(r'GRUB_CMDLINE_LINUX="\$GRUB_CMDLINE_LINUX memmap=1M\\\\\\\$0x7000000"', v3)
    check_dropin(text.encode(), p.cmdline)  # the real /bin/sh agrees


@pytest.mark.parametrize("variant", ["v1-bare", "v2-one-backslash"])
def test_a_backslash_too_few_is_refused(variant: str) -> None:
    text = (GRUB / "variants" / f"{variant}.cfg").read_bytes()
    with pytest.raises(SetupError, match=r"refusing to write it|bare"):
        check_dropin(text, [WORD])


@pytest.mark.parametrize("variant", ["v3-three-backslashes", "v4-single-quoted"])
def test_verified_variants_pass(variant: str) -> None:
    check_dropin((GRUB / "variants" / f"{variant}.cfg").read_bytes(), [WORD])


def test_grub_cfg_check_on_real_grub_mkconfig_output() -> None:
    for good in ("v3-three-backslashes", "v4-single-quoted"):
        lines, problems = check_grub_cfg((GRUB / "out" / f"{good}.grub.cfg").read_text(),
                                         [WORD])
        assert lines >= 2 and problems == [], (good, problems)
    # One backslash in the drop-in: grub.cfg has a bare $, GRUB expands $0.
    lines, problems = check_grub_cfg(
        (GRUB / "out" / "v2-one-backslash.grub.cfg").read_text(), [WORD])
    assert lines >= 2 and len(problems) == lines
    assert all("bare '$'" in p for p in problems)
    # No backslash: the shell expanded $0 already; the word is missing.
    _, problems = check_grub_cfg((GRUB / "out" / "v1-bare.grub.cfg").read_text(), [WORD])
    assert problems and all("lacks memmap=1M$0x7000000" in p for p in problems)
    _, problems = check_grub_cfg("menuentry 'x' {\n}\n", [WORD])
    assert problems == ["grub.cfg has no 'linux' line"]


def test_grub_words() -> None:
    assert grub_words("root=/dev/sda ro memmap=1M\\$0x7000000 quiet $vt_handoff") == [
        "root=/dev/sda", "ro", WORD, "quiet", "$vt_handoff"]
    with pytest.raises(SetupError, match="bare"):
        grub_words("memmap=1M$0x7000000")


def test_config_block_keys() -> None:
    p = _plan(ring=2 << 20)
    block = config_block(p).decode().splitlines()
    assert block[0] == BLOCK_BEGIN.decode() and block[-1] == BLOCK_END.decode()
    values = dict(line.split(" = ") for line in block if " = " in line)
    assert list(values) == ["ring", "canary", "ramoops", "method", "panic"]
    assert p.region is not None
    start = p.region.start
    assert values == {"ring": f"mem:{start + (1 << 20):#x}:0x200000",
                      "canary": f"mem:{start + (3 << 20):#x}:4096",
                      "ramoops": f"mem:{start:#x}:0x100000", "method": "memmap", "panic": "10"}
    rm = config_block(plan(iomem("qemu-seabios-512M-6.12"), facts(),
                           Options(method="reserve-mem"))).decode()
    assert "canary = none" in rm and "method = reserve-mem" in rm
    assert "\nramoops = " not in rm and "\nring = " not in rm


def test_block_merge_and_removal() -> None:
    block = config_block(_plan())
    other = b"# someone else's\narchive = /srv/memconsole\n"
    merged = merge_block(other, block)
    assert merged == other + block
    assert merge_block(merged, block) == merged
    newer = config_block(_plan(panic=30))
    assert merge_block(merged, newer) == other + newer
    assert remove_block(merged, block) == other
    assert remove_block(merged, newer) is None       # not what setup wrote
    assert merge_block(b"no newline", block) == b"no newline\n" + block
    assert merge_block(None, block) == block


def test_desired_files() -> None:
    files = {d.path: d for d in desired_files(_plan(), grub=True)}
    assert list(files) == ["/etc/default/grub.d/90-memconsole.cfg",
                           "/etc/modprobe.d/memconsole.conf",
                           "/etc/modules-load.d/memconsole.conf",
                           "/etc/systemd/system/systemd-pstore.service.d/memconsole.conf",
                           "/etc/memconsole.conf"]
    assert files["/etc/memconsole.conf"].content is None
    unit = files["/etc/systemd/system/systemd-pstore.service.d/memconsole.conf"]
    assert b"[Unit]\nAfter=systemd-modules-load.service\n" in (unit.content or b"")
    assert "/etc/default/grub.d/90-memconsole.cfg" not in {
        d.path for d in desired_files(_plan(), grub=False)}
