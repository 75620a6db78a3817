"""memconsole.ko on real kernels (Debian 6.1 and 6.12), the module built
against each kernel's headers.

One drill per kernel: six boots of one QEMU process with one CPU (guest RAM
survives each warm reset, as DRAM does).  Every crashing boot loads the
module on ``mem:0x7200000:1M`` and starts the user-space recorder on
``mem:0x7400000:1M`` beside it, then ends one way:

1. a hard lockup: crashcon's ``hardlockup`` prints, disables interrupts,
   prints more (one line at KERN_DEBUG, below the console loglevel) and
   spins; the host resets the guest from the QEMU monitor when the serial
   console shows the last line.  Before that, the module is loaded on
   memory full of random bytes, on a ring of format version 0 and one of
   version 2 (made with the Python format code), and on a ring whose
   primary header is damaged;
2. ``echo b > /proc/sysrq-trigger``: an immediate reset;
3. an oops (NULL dereference; ``oops=panic``);
4. a panic;
5. a clean restart (``reboot -f``);
6. stage 2: both rings copied out, the module loaded again, ``memconsole
   record`` on the module's ring (it steps aside), ``memconsole show
   --ring`` on the module's ring.

Then, for every crashed boot: the module's ring holds the boot's console to
its last line, lines that only a writer in the printk path could have
caught (printed with interrupts off on the only CPU, or after the crash
started), which the recorder's ring of the same boot does not have; every
record the recorder wrote is in the module's ring with the same fields; the
kernel's sequence numbers have no hole; a clean restart ends with a stop
record.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import heavy_kernels, kernel_for

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
KMOD = ROOT / "src" / "memconsole" / "kmod"
GUEST = Path(__file__).resolve().parent / "vm_kmod_guest.py"
MOD = "mem:0x7200000:1M"
REC = "mem:0x7400000:1M"
CMDLINE = ("memmap=1M$0x7200000", "memmap=1M$0x7400000")
HANG = "crashy: hardlockup: spinning with interrupts off"
PY = shlex.quote(sys.executable)  # the lab runs the host's interpreter in the guest
PARAMS = "/sys/module/memconsole/parameters"

#: Lines of each crashed boot that no user-space reader can have read
#: before the end (one CPU: nothing else ran after they were printed).
MODULE_ONLY = {
    1: ["crashy: hardlockup: debug line with interrupts off",
        "crashy: hardlockup: interrupts off, line 1 of 3",
        "crashy: hardlockup: interrupts off, line 3 of 3", HANG],
    2: ["sysrq: Resetting"],
    3: ["BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "Kernel panic - not syncing: Fatal exception", "Rebooting in 1 seconds.."],
    4: ["Kernel panic - not syncing: crashy: requested panic", "Rebooting in 1 seconds.."],
    5: ["reboot: Restarting system"],
}
#: The last log line of each boot in the module's ring.
LAST_LINE = {1: HANG, 2: "sysrq: Resetting", 3: "Rebooting in 1 seconds..",
             4: "Rebooting in 1 seconds..", 5: "reboot: Restarting system"}


def _each_boot(ko: Path) -> str:
    load = f"insmod {shlex.quote(str(ko))} mem_address=0x7200000 mem_size=1M"
    return rf"""
    cat /proc/sys/kernel/random/boot_id > "$OUT/boot_id.$boot"
    {PY} -m memconsole record --ring {REC} > "$OUT/rec.$boot.log" 2>&1 &
    n=0
    until grep -q "recording /dev/kmsg" "$OUT/rec.$boot.log"; do
        n=$((n + 1)); [ $n -gt 900 ] && break; sleep 0.2
    done
    if [ $boot = 1 ]; then
        {PY} {shlex.quote(str(GUEST))} formats {shlex.quote(str(ko))} {MOD} \
            "$OUT/formats.json" > "$OUT/formats.log" 2>&1
    else
        {load} > "$OUT/insmod.$boot" 2>&1
    fi
    echo "<7>memconsole-lab: debug line of boot $boot" > /dev/kmsg
    echo "memconsole-lab: last words of boot $boot" > /dev/kmsg
    n=0
    # Until the recorder has it: its ring is then complete up to here.
    until dd if=/dev/mem bs=4096 skip=$((0x7400000 / 4096)) count=256 2>/dev/null |
          grep -aq "last words of boot $boot"; do
        n=$((n + 1)); [ $n -gt 900 ] && break; sleep 0.2
    done
    for f in {PARAMS}/*; do echo "${{f##*/}}=$(cat $f)"; done > "$OUT/params.$boot"
"""


def _stage2(ko: Path) -> str:
    return rf"""
    {PY} {shlex.quote(str(GUEST))} dump {MOD} "$OUT/module.ring"
    {PY} {shlex.quote(str(GUEST))} dump {REC} "$OUT/recorder.ring"
    cat /proc/sys/kernel/random/boot_id > "$OUT/boot_id.$boot"
    insmod {shlex.quote(str(ko))} mem_address=0x7200000 mem_size=1M > "$OUT/insmod.$boot" 2>&1
    # The recorder on the module's ring steps aside: one ring, one writer.
    mc record --ring {MOD} > "$OUT/aside.out" 2> "$OUT/aside.err"
    echo $? > "$OUT/aside.rc"
    mc show --ring {MOD} --boot all > "$OUT/show.txt" 2> "$OUT/show.err"
    echo $? > "$OUT/show.rc"
    for f in {PARAMS}/*; do echo "${{f##*/}}=$(cat $f)"; done > "$OUT/params.$boot"
"""


def _params(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _boots_of_show(text: str) -> list[list[str]]:
    boots: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("Boot "):
            boots.append([])
        elif boots and line:
            boots[-1].append(line)
    return boots


def _check_formats(steps: list[dict[str, Any]]) -> None:
    by = {s["step"]: s for s in steps}
    assert list(by) == ["garbage", "version 0", "version 2", "damaged primary header"], steps
    expect = {
        "garbage": "formatted: not a memconsole ring: unknown content (first bytes ",
        "version 0": "formatted: ring format version 0; this memconsole reads version 1",
        "version 2": "formatted: ring format version 2; this memconsole reads version 1",
        "damaged primary header": "continued: ",
    }
    for name, prefix in expect.items():
        step = by[name]
        params = step["params"]
        assert isinstance(params, dict)
        assert step["insmod_rc"] == 0, step
        assert params["attach"].startswith(prefix), (name, params["attach"])
        assert params["state"] == "writing" and params["unparsed"] == "0", params
        if name == "damaged primary header":
            # The boot's console is already in the ring: nothing replayed twice.
            assert int(params["records"]) < 10, params
        else:
            assert int(params["records"]) > 100, params  # the boot log replayed
    for name in ("garbage", "version 0", "version 2"):
        ring = by[name]["ring"]
        assert isinstance(ring, dict) and "error" not in ring, (name, ring)
        # A fresh ring: one boot, the module's start record first, its stop
        # record last, none of the old version's records.
        assert ring["boots"] == 1, (name, ring)
        assert ring["first"][0] == "start" and "memconsole.ko" in ring["first"][1], ring
        assert ring["last"] == ["stop", "memconsole.ko: stopped (module unloaded)"], ring
        assert ring["seqs"][0] == 1, ring
        assert not any("record" in t and "version" in t for t in ring["texts"]), ring
    damaged = by["damaged primary header"]
    assert damaged["params"]["attach"].endswith(", primary header repaired"), damaged
    assert damaged["headers_equal"] is True
    before = damaged["ring_before"]
    # It continued the ring the backup header describes, after its last record.
    assert f"last seq {before['seqs'][1]}," in damaged["params"]["attach"], damaged


@pytest.mark.parametrize("release", heavy_kernels("6.12"))
def test_kmod_keeps_the_console_to_the_end(lab, tmp_path, release: str) -> None:  # type: ignore[no-untyped-def]
    from memconsole.lab import Drill

    kernel = kernel_for(release)
    ko = lab.module(kernel, [KMOD / "memconsole.c", KMOD / "Kbuild"], "memconsole")
    drill = Drill(kernel, action="hardlockup", then=("reset", "null", "panic", "reboot"),
                  each_boot=_each_boot(ko), stage2=_stage2(ko), smp=1,
                  extra_cmdline=CMDLINE, monitor_reset_on=HANG, timeout=1800)
    result = lab.run(drill, tmp_path / "drill")
    assert result.boots == 6
    check_drill(result.out_dir)


def check_drill(out_dir: Path) -> None:
    """The assertions, on the files a drill left (rerun them on a kept
    drill directory with ``check_drill(Path(...))``)."""
    from memconsole.ring import RecordType, parse_ring

    def out(name: str) -> str:
        try:
            return (out_dir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    _check_formats(json.loads(out("formats.json") or "[]"))
    for k in range(1, 6):
        params = _params(out(f"params.{k}"))
        assert params.get("state") == "writing", (k, out(f"insmod.{k}"), params)
        assert params["unparsed"] == params["dropped"] == params["lost"] == "0", params
        assert "recording /dev/kmsg into " + REC in out(f"rec.{k}.log"), k

    ids = [out(f"boot_id.{n}").strip() for n in range(1, 7)]
    module = parse_ring((out_dir / "module.ring").read_bytes())
    recorder = parse_ring((out_dir / "recorder.ring").read_bytes())
    mboots = module.ended_boots(None)
    assert [b.id for b in mboots] == ids[:5], [b.id for b in mboots]
    # One sequence of records across the boots: none torn, none missing.
    # (Corrupt candidates are records of the rings formatted over in boot 1:
    # their nonce is no longer the ring's.)
    assert module.duplicates == 0
    assert not any(b.gaps for b in mboots), [b.gaps for b in mboots]
    rboots = {b.id: b for b in recorder.boots}

    for n, boot in enumerate(mboots, start=1):
        records = boot.records
        assert records[0].type == RecordType.START
        assert records[0].text.startswith(b"memconsole.ko 0.1.0: recording the kernel console")
        logs = [r for r in records if r.type == RecordType.LOG]
        # Every kernel record of the boot from the first (seq 0) to the last.
        assert [r.source_seq for r in logs] == list(range(len(logs))), n
        assert logs[0].text.startswith(b"Linux version "), logs[0]
        texts = [r.text.decode(errors="replace") for r in logs]
        assert texts[-1] == LAST_LINE[n], (n, texts[-5:])
        assert f"memconsole-lab: last words of boot {n}" in texts
        assert f"memconsole-lab: debug line of boot {n}" in texts
        assert boot.stopped == (n == 5), (n, records[-1])
        if n == 5:
            assert records[-1].text == b"memconsole.ko: stopped (restart)"

        # The recorder's ring of the same boot: everything it has is in the
        # module's ring, field for field; what only the module can have is not.
        theirs = [r for r in rboots[boot.id].records if r.type == RecordType.LOG]
        assert len(theirs) > 100
        mine = {r.source_seq: r for r in logs}
        for r in theirs:
            m = mine[r.source_seq]
            assert (m.pri, m.text, m.mono_ns, m.boot) == (r.pri, r.text, r.mono_ns, r.boot), \
                (r, m)
            assert r.time_ns is not None and m.time_ns is not None
            assert abs(m.time_ns - r.time_ns) < 100_000_000, (r, m)
            if r.level is not None and r.level < 7:
                assert (m.flags, m.dictionary) == (r.flags, r.dictionary), (r, m)
            else:
                # Below the console loglevel: read from the log buffer, which
                # has no dictionary or fragment flag for it (docs/kmod.md).
                assert m.dictionary == b"" and m.flags == 0, m
        assert any(r.dictionary for r in theirs), "no record with a dictionary compared"
        their_texts = {r.text.decode(errors="replace") for r in theirs}
        for line in MODULE_ONLY[n]:
            assert any(t.startswith(line) for t in texts), (n, line, texts[-8:])
            assert not any(t.startswith(line) for t in their_texts), (n, line)

    # Stage 2: the module continued the ring, and show --ring reads it.
    params = _params(out("params.6"))
    assert params["attach"].startswith("continued: ") and params["state"] == "writing", params
    assert f"last seq {mboots[-1].records[-1].seq}," in params["attach"]
    assert out("show.rc").strip() == "0", out("show.err")
    shown = _boots_of_show(out("show.txt"))
    assert len(shown) == 6, out("show.txt")[:2000]
    for n, lines in enumerate(shown[:5], start=1):
        assert lines[-2].endswith("] " + LAST_LINE[n]) or n == 5, (n, lines[-3:])
        if n == 5:
            assert lines[-2].endswith("-- memconsole.ko: stopped (restart) --"), lines[-3:]
            assert "the recorder stopped cleanly" in lines[-1], lines[-1]
        else:
            assert "without a clean stop" in lines[-1], lines[-1]
    assert re.search(r"\] crashy: hardlockup: interrupts off, line 2 of 3$", "\n".join(shown[0]),
                     re.MULTILINE)
    # One ring, one writer: record on the module's range said so and wrote nothing.
    assert out("aside.rc").strip() == "0", out("aside.err")
    assert out("aside.err") == (f"memconsole record: {MOD} is written by memconsole.ko (state "
                                "writing, /sys/module/memconsole): not recording\n")
    assert not any("memconsole record:" in line for line in shown[5]), shown[5][:5]


# Two CPUs printing at once: two writers flood /dev/kmsg, each alternating
# a line the console gets (level 6) with one it does not (level 7, caught
# up from the log buffer), at least FLOOD pairs each and on until the module
# has been unloaded and loaded again RELOADS times; then a panic (sysrq c).
FLOOD = 1500
RELOADS = 3
# The flood drill's ring: 4 MiB, and each writer stops at FLOOD_CAP lines even
# when the reloads are slow (a loaded host), so that the ring never wraps and
# every kernel sequence number from 0 on can be checked (4 x 6000 records of
# about 90 bytes at most).
FLOOD_CAP = 4 * FLOOD
FLOOD_MOD = "mem:0x7200000:4M"
FLOOD_CMDLINE = ("memmap=4M$0x7200000",)
FLOOD_BOOT = rf"""
    cat /proc/sys/kernel/random/boot_id > "$OUT/boot_id.$boot"
    echo on > /proc/sys/kernel/printk_devkmsg
    insmod {{ko}} mem_address=0x7200000 mem_size=4M > "$OUT/insmod.$boot" 2>&1
    flood() {{
        i=0
        while [ $i -lt {FLOOD} ] || {{ [ ! -e /run/lab-reloaded ] && [ $i -lt {FLOOD_CAP} ]; }}; do
            echo "<6>memconsole-lab: flood $1 $i" > /dev/kmsg
            echo "<7>memconsole-lab: flood $1 $i debug" > /dev/kmsg
            i=$((i + 1))
        done
        echo $i > "$OUT/flood.$1"
    }}
    flood A & a=$!
    flood B & b=$!
    for r in $(seq {RELOADS}); do
        sleep 0.3
        rmmod memconsole
        insmod {{ko}} mem_address=0x7200000 mem_size=4M >> "$OUT/insmod.$boot" 2>&1
    done
    touch /run/lab-reloaded
    wait $a $b
    echo "memconsole-lab: flood done" > /dev/kmsg
    for f in {PARAMS}/*; do echo "${{f##*/}}=$(cat $f)"; done > "$OUT/params.$boot"
"""


@pytest.mark.parametrize("release", heavy_kernels("6.1"))
def test_kmod_two_cpus_flood_reload_panic(lab, tmp_path, release: str) -> None:  # type: ignore[no-untyped-def]
    from memconsole.lab import Drill

    kernel = kernel_for(release)
    ko = lab.module(kernel, [KMOD / "memconsole.c", KMOD / "Kbuild"], "memconsole")
    stage2 = rf"""
    {PY} {shlex.quote(str(GUEST))} dump {FLOOD_MOD} "$OUT/module.ring"
"""
    drill = Drill(kernel, action="sysrq", each_boot=FLOOD_BOOT.replace(
                      "{ko}", shlex.quote(str(ko))),
                  stage2=stage2, smp=2, extra_cmdline=FLOOD_CMDLINE, timeout=1800)
    result = lab.run(drill, tmp_path / "drill")
    assert result.boots == 2
    check_flood(result.out_dir)


def check_flood(out_dir: Path) -> None:
    """Assertions of the two-CPU drill on the files it left."""
    from memconsole.ring import Gap, RecordType, parse_ring

    params = _params((out_dir / "params.1").read_text())
    assert params["state"] == "writing" and params["unparsed"] == "0", params
    module = parse_ring((out_dir / "module.ring").read_bytes())
    (boot,) = module.boots
    assert boot.id == (out_dir / "boot_id.1").read_text().strip()
    assert module.duplicates == 0
    # Every kernel sequence number from 0 to the last is a record or inside
    # an overrun gap record, in order; no ring record is missing.
    expect, lost = 0, 0
    starts = stops = 0
    for entry in boot.entries:
        if isinstance(entry, Gap):
            assert entry.reason == "overrun" and entry.first_source_seq == expect, entry
            expect += entry.count
            lost += entry.count
        elif entry.type == RecordType.LOG:
            assert entry.source_seq == expect, (entry, expect)
            expect += 1
        else:
            starts += entry.type == RecordType.START
            stops += entry.type == RecordType.STOP
    # Loaded, then unloaded and loaded again RELOADS times, each time while
    # both writers were printing (their lines before and after each start).
    assert (starts, stops) == (RELOADS + 1, RELOADS), (starts, stops)
    kinds = ["start" if getattr(e, "type", None) == RecordType.START else
             "flood" if b"memconsole-lab: flood " in getattr(e, "text", b"") else ""
             for e in boot.entries]
    for k, kind in enumerate(kinds):
        if kind == "start" and k > kinds.index("start"):
            assert "flood" in kinds[:k] and "flood" in kinds[k:], k
    logs = [r for r in boot.records if r.type == RecordType.LOG]
    texts = [r.text.decode(errors="replace") for r in logs]
    # Each writer's lines in its own order, each line once, each with its level.
    for writer in "AB":
        seen = []
        for r, t in zip(logs, texts, strict=True):
            m = re.fullmatch(rf"memconsole-lab: flood {writer} (\d+)( debug)?", t)
            if m:
                seen.append((int(m[1]), bool(m[2])))
                assert r.level == (7 if m[2] else 6), r
        assert seen == sorted(set(seen)), writer
        printed = int((out_dir / f"flood.{writer}").read_text())
        assert printed >= FLOOD and len(seen) + lost >= 2 * printed, (writer, len(seen), lost)
    # The two writers' lines interleave: they printed at the same time.
    order = [t[len("memconsole-lab: flood ")] for t in texts if re.match(
        r"memconsole-lab: flood [AB] ", t)]
    assert sum(1 for x, y in itertools.pairwise(order) if x != y) > 10, order[:50]
    assert "memconsole-lab: flood done" in texts
    assert texts[-1] == "Rebooting in 1 seconds..", texts[-5:]
    assert any(t.startswith("Kernel panic - not syncing: sysrq triggered crash") for t in texts)
