"""memconsole's own ring, end to end on real kernels (Debian 6.1 and 6.12).

One drill per kernel, four boots of one QEMU process (guest RAM survives
each warm reset, as DRAM does):

1. recorders on a memmap-reserved /dev/mem range and on /dev/pmem0, then
   ``echo b > /proc/sysrq-trigger``: an immediate reset, no panic, no dump;
2. the same, then a soft lockup without softlockup_panic; once the ring
   holds the lockup report the host resets the guest from the QEMU monitor;
3. the same, then 4000 kernel messages while the /dev/mem recorder is
   stopped (SIGSTOP), so it meets a real /dev/kmsg overrun; then a panic
   (sysrq c), which ramoops also dumps;
4. stage 2: ``show --ring`` on both rings, ``collect --ring``, ``list``,
   ``show``.

The console each crashed boot had (``dmesg`` taken just before its end, the
oracle) must come back from both rings, line for line and in order; pstore
must be empty after the reset and after the lockup; the three boots must be
three boots; ``list`` must show a hang or reset for boots 1 and 2 and one
event with both sources for boot 3.
"""

from __future__ import annotations

import json
import re
import shlex
import sys

import pytest

from conftest import heavy_kernels, kernel_for

pytestmark = pytest.mark.vm

MEM = "mem:0x7200000:1M"
PMEM = "/dev/pmem0"
CMDLINE = ("memmap=1M$0x7200000", "memmap=128M!0x8000000")
LOCKUP_SEEN = "memconsole-lab: ring holds the lockup"

PY = shlex.quote(sys.executable)  # the lab runs the host's interpreter in the guest

EACH_BOOT = rf"""
    ls -A /sys/fs/pstore > "$OUT/pstore.$boot.ls" 2>&1
    modprobe -a nd_e820 nd_pmem 2> "$OUT/modprobe.$boot.err"
    {PY} -m memconsole record --ring {MEM} > "$OUT/rec-mem.$boot.log" 2>&1 &
    echo $! > "$OUT/rec-mem.$boot.pid"
    {PY} -m memconsole record --ring {PMEM} --ring-size 1M > "$OUT/rec-pmem.$boot.log" 2>&1 &
    n=0
    until grep -q "recording /dev/kmsg" "$OUT/rec-mem.$boot.log" &&
          grep -q "recording /dev/kmsg" "$OUT/rec-pmem.$boot.log"; do
        n=$((n + 1)); [ $n -gt 900 ] && break; sleep 0.2
    done
    echo "memconsole-lab: last words of boot $boot" > /dev/kmsg
    sleep 2
    dmesg > "$OUT/dmesg.$boot.txt"
    if [ $boot = 3 ]; then
        # A real /dev/kmsg overrun: stop the mem: recorder, write far more
        # than the kernel's log buffer holds (level 7: not on the console),
        # let it go on.
        echo on > /proc/sys/kernel/printk_devkmsg
        kill -STOP $(cat "$OUT/rec-mem.$boot.pid")
        i=0
        while [ $i -lt 4000 ]; do
            echo "<7>memconsole-lab: flood $i ........................................" > /dev/kmsg
            i=$((i + 1))
        done
        kill -CONT $(cat "$OUT/rec-mem.$boot.pid")
        echo "memconsole-lab: flood done" > /dev/kmsg
        sleep 3
    fi
    if [ $boot = 2 ]; then
        (
            n=0
            until dd if={PMEM} bs=64K count=16 2>/dev/null | grep -aq "soft lockup"; do
                n=$((n + 1)); [ $n -gt 900 ] && break; sleep 0.2
            done
            sleep 2
            echo "{LOCKUP_SEEN}"
        ) &
    fi
"""

FIRMWARE_RANGE = "mem:0x1ffe0000:64K"   # SeaBIOS's e820 "Reserved": the ACPI tables
# Cached: the kernel maps this range write-back (SeaBIOS keeps the ACPI
# tables there), and PAT refuses an uncached (O_SYNC) mapping of it (EAGAIN).
_FIRMWARE_SHA = (
    "import hashlib, mmap, os; fd = os.open('/dev/mem', os.O_RDONLY); "
    "m = mmap.mmap(fd, 65536, mmap.MAP_SHARED, mmap.PROT_READ, offset=0x1ffe0000); "
    "print(hashlib.sha256(m[:]).hexdigest())")

# Two at a time (the guest has two CPUs; each command is mostly Python start-up).
# First what must be refused without touching anything: a record whose
# source is missing (the mem: ring is read afterwards), a watchdog (opening
# /dev/watchdog starts softdog), a block device that is not pmem (brd's
# /dev/ram0), and a firmware-reserved range that no memmap= set aside.
STAGE2 = rf"""
    ls -A /sys/fs/pstore > "$OUT/pstore.$boot.ls" 2>&1
    modprobe -a nd_e820 nd_pmem
    modprobe softdog soft_margin=600
    modprobe brd rd_nr=1 rd_size=4096
    {PY} -c "{_FIRMWARE_SHA}" > "$OUT/fw-before.sha"
    (mc record --ring {MEM} --source /nonexistent > "$OUT/bad-source.err" 2>&1
     echo $? > "$OUT/bad-source.rc") &
    mc record --ring /dev/watchdog > "$OUT/wdog-record.err" 2>&1
    echo $? > "$OUT/wdog-record.rc"
    wait
    (mc show --ring /dev/watchdog > /dev/null 2> "$OUT/wdog-show.err"
     echo $? > "$OUT/wdog-show.rc") &
    mc record --ring /dev/ram0 > "$OUT/ram0.err" 2>&1
    echo $? > "$OUT/ram0.rc"
    wait
    cat /sys/class/watchdog/watchdog0/state > "$OUT/wdog.state"
    (mc record --ring {FIRMWARE_RANGE} > "$OUT/fw-record.err" 2>&1
     echo $? > "$OUT/fw-record.rc") &
    mc show --ring {FIRMWARE_RANGE} > /dev/null 2> "$OUT/fw-show.err"
    echo $? > "$OUT/fw-show.rc"
    wait
    {PY} -c "{_FIRMWARE_SHA}" > "$OUT/fw-after.sha"
    (mc show --ring {MEM} --boot all > "$OUT/show-mem.txt" 2> "$OUT/show-mem.err"
     echo $? > "$OUT/show-mem.rc") &
    mc show --ring {PMEM} --boot all --json > "$OUT/show-pmem.jsonl" 2> "$OUT/show-pmem.err"
    echo $? > "$OUT/show-pmem.rc"
    wait
    mc collect --ring {MEM} --json > "$OUT/collect.json" 2> "$OUT/collect.err"
    echo $? > "$OUT/collect.rc"
    mc list --json > "$OUT/list.json" 2> "$OUT/list.err" &
    mc show > "$OUT/show.txt" 2> "$OUT/show.err"
    mc show --full > "$OUT/show-full.txt" 2> "$OUT/show-full.err"
    wait
"""

_STAMP = re.compile(r"^\[ *\d+\.\d{6}\] ")


def _boots_of_show(text: str) -> list[list[str]]:
    """``show --boot all`` text split into boots (header line dropped)."""
    boots: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("Boot "):
            boots.append([])
        elif boots and line:
            boots[-1].append(line)
    return boots


def _printable_log_lines(dmesg: str) -> list[str]:
    return [ln for ln in dmesg.splitlines()
            if _STAMP.match(ln) and ln.isascii() and ln.isprintable()]


def _assert_in_order(expected: list[str], got: list[str], what: str) -> None:
    it = iter(got)
    for line in expected:
        assert any(line == g for g in it), f"{what}: {line!r} missing or out of order"


@pytest.mark.parametrize("release", heavy_kernels("6.12"))
def test_ring_survives_reset_lockup_and_panic(lab, tmp_path, release: str) -> None:  # type: ignore[no-untyped-def]
    from memconsole.lab import Drill

    drill = Drill(kernel_for(release), action="reset", then=("lockup", "sysrq"),
                  each_boot=EACH_BOOT, stage2=STAGE2, smp=2, extra_cmdline=CMDLINE,
                  monitor_reset_on=LOCKUP_SEEN, timeout=1800)
    result = lab.run(drill, tmp_path / "drill")
    out = result.output
    assert result.boots == 4
    for boot in (1, 2, 3):
        assert "recording /dev/kmsg into " + MEM in out(f"rec-mem.{boot}.log"), boot
        assert "recording /dev/kmsg into " + PMEM in out(f"rec-pmem.{boot}.log"), boot
    # No panic, no dump: pstore is empty after the reset and after the lockup.
    assert out("pstore.2.ls").strip() == "" and out("pstore.3.ls").strip() == ""
    assert "dmesg-ramoops-0" in out("pstore.4.ls")

    # Refused, each with one line, and nothing touched: the watchdog never
    # started, the firmware range is unchanged, the mem: ring is read below.
    for name, why in (("bad-source", "cannot open source /nonexistent: No such file"),
                      ("wdog-record", "/dev/watchdog: a character device (10:130), not a "
                       "regular file or a pmem block device"),
                      ("wdog-show", "/dev/watchdog: a character device (10:130)"),
                      ("ram0", "/dev/ram0: a block device (1:0, ram0), but not a pmem device"),
                      ("fw-record", "no memmap=0x10000$0x1ffe0000 (or wider) on the kernel "
                       "command line reserves it; the firmware's map shows 'Reserved' "
                       "(0x1ffe0000-0x1fffffff): writing it could corrupt memory"),
                      ("fw-show", "device memory can change when read: not reading it")):
        assert out(f"{name}.rc").strip() == "1", (name, out(f"{name}.err"))
        err = out(f"{name}.err").splitlines()
        assert len(err) == 1 and why in err[0], (name, err)
    assert out("wdog.state").strip() == "inactive", out("wdog.state")
    assert out("fw-before.sha").strip() and out("fw-before.sha") == out("fw-after.sha")

    # Both rings give back the console of all three boots, each boot up to its end.
    assert out("show-mem.rc").strip() == "0", out("show-mem.err")
    mem_boots = _boots_of_show(out("show-mem.txt"))
    assert len(mem_boots) == 3, out("show-mem.txt")[:2000]
    pmem = [json.loads(x) for x in out("show-pmem.jsonl").splitlines()]
    assert out("show-pmem.rc").strip() == "0", out("show-pmem.err")
    pmem_ids = list(dict.fromkeys(o["boot"] for o in pmem))
    assert len(pmem_ids) == 3
    for n, lines in enumerate(mem_boots, start=1):
        oracle = _printable_log_lines(out(f"dmesg.{n}.txt"))
        assert oracle and "] Linux version " in oracle[0], "dmesg lost the boot's start"
        _assert_in_order(oracle, lines, f"boot {n} in {MEM}")
        texts = [o["text"].split("\n")[0] for o in pmem
                 if o["boot"] == pmem_ids[n - 1] and "text" in o]
        _assert_in_order([_STAMP.sub("", ln) for ln in oracle], texts, f"boot {n} in {PMEM}")
        assert f"memconsole-lab: last words of boot {n}" in "\n".join(lines)
        assert "without a clean stop" in lines[-1], lines[-3:]
        gaps = [ln for ln in lines if ln.startswith("[... ")]
        if n < 3:
            assert not gaps, f"gap in boot {n}: {gaps}"
    # Boot 3: the stopped recorder saw /dev/kmsg overrun (EPIPE) and says how
    # many records the kernel overwrote; both rings end with the last message.
    (gap,) = [ln for ln in mem_boots[2] if ln.startswith("[... ")]
    m = re.match(r"\[\.\.\. (\d+) records lost by the source \(overrun\)", gap)
    assert m, gap
    lost = int(m[1])
    assert 100 < lost < 4000, gap
    flood = [ln for ln in mem_boots[2] if "memconsole-lab: flood " in ln]
    assert "memconsole-lab: flood done" in flood[-1]
    # The gap is exactly the oldest flood messages, the ones the kernel overwrote.
    assert flood[0].endswith(f"flood {lost} ........................................"), flood[0]
    assert len(flood) == 4001 - lost, (len(flood), lost)
    pmem3 = [o for o in pmem if o["boot"] == pmem_ids[2]]
    assert any(o.get("text") == "memconsole-lab: flood done" for o in pmem3)
    lockup = "\n".join(mem_boots[1])
    assert re.search(r"watchdog: BUG: soft lockup - CPU#\d+ stuck for \d+s!", lockup)
    lockup_pmem = [o["text"] for o in pmem if o["boot"] == pmem_ids[1] and "text" in o]
    assert any("soft lockup" in t for t in lockup_pmem)

    # collect archives the three ring boots; list has three events.
    assert out("collect.rc").strip() == "0", out("collect.err")
    collected = [json.loads(x) for x in out("collect.json").splitlines()]
    ring_rows = [c for c in collected if c.get("ring_boot")]
    assert [c["status"] for c in ring_rows] == ["archived"] * 3, collected
    assert [c["ring_boot"] for c in ring_rows] == pmem_ids
    events = [json.loads(x) for x in out("list.json").splitlines()]
    assert [e["kind"] for e in events] == ["unknown", "unknown", "panic"], events
    for e, n in zip(events[:2], (1, 2), strict=True):
        assert e["headline"].startswith("hang or reset: console ended at "), e
        assert e["sources"] == ["ring"] and e["records"] == ["console-ring"]
        assert e["ring"]["boot"] == pmem_ids[n - 1]
    assert 'with "memconsole-lab: last words of boot 1"' in events[0]["headline"]
    # The lockup boot's headline names the report its console ended with.
    assert "last kernel report: BUG: soft lockup" in events[1]["headline"], events[1]
    panic = events[2]
    assert panic["panic_reason"] == "sysrq triggered crash"
    assert panic["sources"] == ["pstore", "ring"], panic
    assert panic["records"] == ["dmesg-ramoops-0", "console-ring"]
    assert panic["ring"]["boot"] == pmem_ids[2]
    show = out("show.txt")
    assert " ended in a kernel panic: " in show.splitlines()[0]
    # The summary names the ring console; --full prints it after the pstore log.
    assert "lines and the console-ring console): memconsole show --full" in show, show[-400:]
    full = out("show-full.txt")
    assert "--- console-ring (memconsole ring, boot " + pmem_ids[2] in full, full[:2000]
    assert "memconsole-lab: last words of boot 3" in full
