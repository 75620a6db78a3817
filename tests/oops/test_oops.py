"""Tests for memconsole.oops on real kernel output.

Every report under ``fixtures/reports/`` is real kernel output copied from a
public source named in its sibling ``.source`` file; the expected values in
:data:`CASES` were read off each report by a person: the title is the
family's phrase and the culprit the first frame of the report that is not
machinery (docs/oops.md); a report cut before its culprit's frame has no
culprit.  The QEMU lab's pstore records (``fixtures/lab/<kernel>/<action>/pstore/``,
made by the crash lab, see ``fixtures/lab``) join the same table.  Adding a
fixture is adding one :class:`Expect` line.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memconsole import oops
from memconsole.oops import Kind

FIXTURES = Path(__file__).parent.parent / "fixtures"
REPORTS = FIXTURES / "reports"
LAB = FIXTURES / "lab"


@dataclass(frozen=True)
class Expect:
    """What primary_report() must find in one fixture."""

    path: str  # relative to tests/fixtures
    kind: Kind
    comm: str | None
    pid: int | None
    rip: str | None  # Report.rip.function
    panic_reason: str | None = None
    more: dict[str, Any] = field(default_factory=dict)  # other Report fields
    title: str | None = None  # Report.title
    culprit: str | None = None  # Report.culprit.label(), None when the report names none

    def __str__(self) -> str:
        return self.path


def R(name: str, *args: Any, **kw: Any) -> Expect:
    return Expect(f"reports/{name}.txt", *args, **kw)


CASES: list[Expect] = [
    # --- null pointer ---------------------------------------------------------
    R("null-pointer-2.6.27-i686-syslog", Kind.NULL_POINTER, "Xorg", 8003,
      "radeon_cp_init_ring_buffer",
      more={"cpu": 1, "kernel_release": "2.6.27.9-159.fc10.i686", "time": None, "oops_count": 1},
      title="BUG: unable to handle kernel NULL pointer dereference in radeon_cp_init_ring_buffer",
      culprit="radeon_cp_init_ring_buffer [radeon]"),
    R("null-pointer-3.4-arm-syslog-sunxi", Kind.NULL_POINTER, None, None, "release_resource",
      more={"cpu": 0, "kernel_release": "3.4.90+", "time": 613.708838},
      title="BUG: unable to handle kernel NULL pointer dereference in release_resource",
      culprit="release_resource"),
    R("null-pointer-3.17-arm-shmem", Kind.NULL_POINTER, "systemd-logind", 431, "shmem_getpage_gfp",
      more={"cpu": 1, "kernel_release": "3.17.8-300.fc21.armv7hl", "tainted": ""},
      title="BUG: unable to handle kernel NULL pointer dereference in shmem_getpage_gfp",
      culprit="shmem_getpage_gfp"),
    R("null-pointer-5.2-x86_64-kernlog-bpftrace", Kind.NULL_POINTER, "bpftrace", 5454, "0x0",
      more={"tainted": "DOE", "oops_count": 12, "time": 3846.639479,
            "kernel_release": "5.2.0-2-amd64"},
      title="BUG: unable to handle kernel NULL pointer dereference", culprit=None),
    R("null-pointer-5.4-x86_64-mptcp", Kind.NULL_POINTER, "tokio-runtime-w", 3166,
      "tcp_v4_send_reset",
      more={"tainted": "PO", "cpu": 2},
      title="BUG: unable to handle kernel NULL pointer dereference in tcp_v4_send_reset",
      culprit="tcp_v4_send_reset"),
    R("null-pointer-5.15-x86_64-gentoo-jool", Kind.NULL_POINTER, "python", 10260, "jnla_get_taddr4",
      more={"tainted": "UOT", "kernel_release": "5.15.26-gentoo"},
      title="BUG: unable to handle kernel NULL pointer dereference in jnla_get_taddr4",
      culprit="jnla_get_taddr4 [jool_common]"),
    R("null-pointer-6.8-x86_64-ubuntu-initramfs", Kind.NULL_POINTER, "zpool", 599, "mutex_lock",
      more={"cpu": 17, "tainted": "PO", "kernel_release": "6.8.0-51-generic"},
      title="BUG: unable to handle kernel NULL pointer dereference", culprit=None),
    # --- page fault -------------------------------------------------------------
    R("page-fault-4.4-arm64-rock64", Kind.PAGE_FAULT, "gstglcontext", 709,
      "anon_vma_interval_tree_remove",
      more={"cpu": 1, "kernel_release": "4.4.120-rockchip-ayufan-209"},
      title="BUG: unable to handle kernel paging request in anon_vma_interval_tree_remove",
      culprit="anon_vma_interval_tree_remove"),
    R("page-fault-4.13-x86_64-fatal-in-interrupt", Kind.PAGE_FAULT, "syz-executor5", 12327,
      "0xffffffffffffffff", "Fatal exception in interrupt", more={"tainted": "B", "oops_count": 1},
      title="BUG: unable to handle kernel paging request in __run_timers", culprit="__run_timers"),
    # --- general protection, divide error, invalid opcode -----------------------
    R("general-protection-6.0-x86_64-kasan-decoded", Kind.GENERAL_PROTECTION, "swapper", 1,
      "tdx_fuzz",
      more={"kernel_release": "6.0.0-rc2-g1d588de205f8", "time": None},
      title="general protection fault in tdx_fuzz", culprit="tdx_fuzz"),
    R("divide-error-3.11-x86_64-mptcp", Kind.DIVIDE_ERROR, "swapper/7", 0, "mptcp_ccc_recalc_alpha",
      more={"cpu": 7, "kernel_release": "3.11.10.mptcp+"},
      title="divide error in mptcp_ccc_recalc_alpha", culprit="mptcp_ccc_recalc_alpha"),
    R("divide-error-6.1-x86_64-journal", Kind.DIVIDE_ERROR, "aplay", 1594, "sof_ipc4_pcm_delay",
      more={"time": None},
      title="divide error in sof_ipc4_pcm_delay", culprit="sof_ipc4_pcm_delay [snd_sof]"),
    R("divide-error-6.10-x86_64-oops-prefix", Kind.DIVIDE_ERROR, "NetworkManager", 4968,
      "tcp_tso_segs",
      more={"kernel_release": "6.10.0-200.fc40.x86_64", "time": 434.846554},
      title="divide error in tcp_tso_segs", culprit="tcp_tso_segs"),
    R("invalid-opcode-4.14-x86_64-list-del-no-header", Kind.INVALID_OPCODE, "cc1plus", 8022,
      "__list_del_entry_valid", more={"kernel_release": "4.14.14-gentoo"},
      title="invalid opcode", culprit=None),
    # --- lockups, hung tasks, RCU --------------------------------------------------
    R("soft-lockup-4.0-x86_64-nmi-watchdog", Kind.SOFT_LOCKUP, "pulseaudio", 1580,
      "smp_call_function_many",
      title="BUG: soft lockup in smp_call_function", culprit="smp_call_function_many"),
    R("soft-lockup-4.15-x86_64-no-timestamps-cut-lines", Kind.SOFT_LOCKUP, "pacd", 140354,
      "_raw_spin_unlock_irqrestore", more={"cpu": 51, "tainted": "OE"},
      title="BUG: soft lockup", culprit=None),
    R("hard-lockup-3.8-x86_64-nmi-watchdog", Kind.HARD_LOCKUP, "swapper/0", 0, None,
      more={"cpu": 0, "location": "kernel/watchdog.c:245"},
      title="hard lockup in account_idle_ticks", culprit="account_idle_ticks"),
    R("hung-task-4.16-x86_64-dmesg-T", Kind.HUNG_TASK, "logrotate", 17344, None,
      more={"blocked_task": "logrotate:17344", "kernel_release": "4.16.2-1.el7.elrepo.x86_64"},
      title="INFO: task hung in jbd2_complete_transaction",
      culprit="jbd2_complete_transaction [jbd2]"),
    R("hung-task-4.19-x86_64-several-debian", Kind.HUNG_TASK, "fpmsyncd", 13094, None,
      more={"blocked_task": "fpmsyncd:13094", "tainted": "WE", "reports": 5},
      title="INFO: task hung", culprit=None),
    R("hung-task-6.x-arm64-io-wait", Kind.HUNG_TASK, "udevd", 5612, None,
      more={"blocked_task": "udevd:5612", "tainted": "L"},
      title="INFO: task hung in read_cache_folio", culprit="read_cache_folio"),
    R("hung-task-6.x-x86_64-garbled-comm", Kind.HUNG_TASK,
      "\ufffd\ufffd\ufffd\ufffd\n\ufffd\ufffd \ufffd!\ufffd",
      18088, None,
      title="INFO: task hung in p9_fd_close", culprit="p9_fd_close"),
    R("panic-hung-task-4.2-arm", Kind.HUNG_TASK, "khungtaskd", 27, None, "hung_task: blocked tasks",
      more={"tainted": "PO", "blocked_task": None},
      title="kernel panic: hung_task: blocked tasks", culprit=None),
    R("rcu-stall-6.18-x86_64-journal", Kind.RCU_STALL, "swapper/0", 0, "handle_softirqs",
      more={"kernel_release": "6.18.33"},
      title="INFO: rcu detected stall", culprit=None),
    # --- BUG, WARNING ---------------------------------------------------------------
    R("warning-3.0-i686-dma-debug", Kind.WARNING, "modprobe", 202, None,
      more={"location": "lib/dma-debug.c:800"},
      title="WARNING in check_unmap", culprit="check_unmap"),
    R("warning-3.10-x86_64-irq-remapping", Kind.WARNING, "swapper/0", 1, None,
      more={"location": "drivers/iommu/intel_irq_remapping.c:533"},
      title="WARNING in intel_irq_remapping_supported", culprit="intel_irq_remapping_supported"),
    R("warning-3.17-x86_64-qxl", Kind.WARNING, "Xorg.bin", 1113, None,
      more={"location": "drivers/gpu/drm/qxl/qxl_ttm.c:414", "cpu": 0},
      title="WARNING in qxl_sync_obj_wait", culprit="qxl_sync_obj_wait [qxl]"),
    R("warning-6.x-x86_64-new-format-panic-on-warn", Kind.WARNING, "syz-executor", 5758, "ifs_free",
      "kernel: panic_on_warn set ...", more={"cpu": 1, "location": "fs/iomap/buffered-io.c:295"},
      title="WARNING in ifs_free", culprit="ifs_free"),
    R("lockdep-6.x-x86_64-inconsistent-lock-state", Kind.LOCKDEP, "swapper/1", 0,
      "pv_native_safe_halt",
      title="inconsistent lock state in valid_state", culprit="valid_state"),
    # --- sanitizers -------------------------------------------------------------------
    R("kasan-5.10-x86_64-tempesta-irq", Kind.KASAN, "loop6", 359, None, more={"tainted": "WOE"},
      title="KASAN: use-after-free Read in tfw_http_msg_process_generic",
      culprit="tfw_http_msg_process_generic [tempesta_fw]"),
    R("kasan-6.0-x86_64-no-timestamps", Kind.KASAN, "syz-executor.5", 5060, None,
      title="KASAN: use-after-free Read in ntfs_lookup_inode_by_name",
      culprit="ntfs_lookup_inode_by_name"),
    R("kasan-6.19-x86_64-beegfs-verbose-taint", Kind.KASAN, "venom-agent", 1101, None,
      more={"tainted": "DO", "cpu": 7},
      title="KASAN: slab-use-after-free Read", culprit=None),
    R("ubsan-6.5-arm64-lunatik", Kind.UBSAN, "modprobe", 3151, None,
      more={"location": "/home/ubuntu/lunatik/lua/lstring.c:152:13", "tainted": "POE"},
      title="UBSAN: array-index-out-of-bounds in internshrstr", culprit="internshrstr [lunatik]"),
    R("ubsan-6.5-x86_64-journal-dkms", Kind.UBSAN, "wpa_supplicant", 2591, None, more={"cpu": 14},
      title="UBSAN: array-index-out-of-bounds in HT_caps_handler",
      culprit="HT_caps_handler [8192eu]"),
    # --- corruption -----------------------------------------------------------------------
    R("list-corruption-4.9-x86_64-warning-journal", Kind.LIST_CORRUPTION, "swapper/4", 0, None,
      title="WARNING: corrupted list in netflow_target", culprit="netflow_target"),
    R("list-corruption-4.18-x86_64-rhel-bug", Kind.LIST_CORRUPTION, "kworker/18:2", 119884,
      "__list_add_valid.cold.0", more={"tainted": "WIOE", "location": "lib/list_debug.c:28"},
      title="BUG: corrupted list", culprit=None),
    R("list-corruption-5.5-x86_64-i915-bug", Kind.LIST_CORRUPTION, "Xorg", 3119,
      "__list_del_entry_valid",
      more={"location": "/data/fast/l/k/lib/list_debug.c:53"},
      title="BUG: corrupted list in __i915_active_fence_set", culprit="__i915_active_fence_set"),
    R("list-corruption-5.13-x86_64-localized-journal", Kind.LIST_CORRUPTION, "kswapd0", 148,
      "__list_del_entry_valid.cold",
      title="BUG: corrupted list in __dentry_kill", culprit="__dentry_kill"),
    R("list-corruption-6.x-x86_64-warning-bcachefs", Kind.LIST_CORRUPTION, None, 3920, None,
      more={"location": "lib/list_debug.c:29"},
      title="WARNING: corrupted list", culprit=None),
    R("stack-corruption-6.15-arm64-test-ubsan", Kind.STACK_CORRUPTION, "insmod", 179, None,
      "stack-protector: Kernel stack is corrupted in: "
      "test_ubsan_out_of_bounds+0x158/0x158 [test_ubsan]",
      title="kernel panic: stack is corrupted in test_ubsan_out_of_bounds",
      culprit="test_ubsan_out_of_bounds [test_ubsan]"),
    R("scheduling-while-atomic-3.10-i386", Kind.SCHEDULING_WHILE_ATOMIC, "swapper/0", 0, None,
      more={"tainted": "W"},
      title="BUG: scheduling while atomic", culprit=None),
    R("scheduling-while-atomic-4.4-x86_64-rmmod", Kind.SCHEDULING_WHILE_ATOMIC, "rmmod", 21331,
      None,
      title="BUG: scheduling while atomic", culprit=None),
    # --- kernel mailing list reports (syzbot's title in the .source file) ------------------
    R("kcsan-5.3-x86_64-syzbot-data-race", Kind.KCSAN, "syz-executor.4", 7604, None,
      more={"kernel_release": "5.3.0+"},
      title="KCSAN: data-race in exit_signals / prepare_signal", culprit="exit_signals"),
    R("kmsan-6.12-x86_64-syzbot-uninit-value", Kind.KMSAN, "bch-reclaim/loo", 5854, None,
      title="KMSAN: uninit-value in bch2_inode_v3_validate", culprit="bch2_inode_v3_validate"),
    R("memory-leak-6.19-x86_64-syzbot-three-objects", Kind.MEMORY_LEAK, "dhcpcd", 5478, None,
      more={"reports": 3}, title="memory leak in es58x_open", culprit="es58x_open"),
    R("lockdep-6.13-x86_64-syzbot-circular", Kind.LOCKDEP, "syz.5.1757", 14440, None,
      title="possible deadlock in sctp_sock_migrate", culprit="sctp_sock_migrate"),
    R("refcount-6.16-x86_64-syzbot-irq-warning", Kind.WARNING, "kworker/u8:12", 6673,
      "refcount_warn_saturate",
      more={"workqueue": "events_unbound nsim_dev_trap_report_work", "cpu": 1},
      title="WARNING: refcount bug in delayed_put_task_struct",
      culprit="delayed_put_task_struct"),
    R("warning-6.19-x86_64-syzbot-at-0x0", Kind.WARNING, "kworker/1:4", 5904, "usb_submit_urb",
      more={"location": "drivers/usb/core/urb.c:380", "cpu": 1},
      title="WARNING in cm109_input_open", culprit="cm109_input_open"),
    R("rcu-stall-5.3-x86_64-syzbot-nmi-backtrace", Kind.RCU_STALL, "syz-executor291", 10160,
      "native_queued_spin_lock_slowpath",
      title="INFO: rcu detected stall in ipv6_rcv", culprit="ipv6_rcv"),
    R("ubsan-4.19-arm64-old-format-wext", Kind.UBSAN, "kworker/u16:3", 165, None,
      more={"location": "net/wireless/wext-core.c:525:14", "tainted": "SW"},
      title="UBSAN: undefined-behaviour in wireless_send_event", culprit="wireless_send_event"),
    R("preemptible-5.15-powerpc-paravirt", Kind.BUG, "systemd-udevd", 185, None,
      title="BUG: using smp_processor_id() in preemptible code in rwsem_spin_on_owner",
      culprit="rwsem_spin_on_owner"),
    R("page-fault-5.18-riscv-kmemleak-scan", Kind.PAGE_FAULT, "bash", 134, "scan_block",
      more={"oops_count": 1, "kernel_release": "5.18.0-rc1-next-20220407"},
      title="BUG: unable to handle kernel paging request in scan_block", culprit="scan_block"),
    R("page-fault-6.9-s390x-folio-rmap", Kind.PAGE_FAULT, "pahole", 36783,
      "folio_remove_rmap_ptes", "Fatal exception: panic_on_oops", more={"oops_count": 1},
      title="BUG: unable to handle kernel paging request in folio_remove_rmap_ptes",
      culprit="folio_remove_rmap_ptes"),
    # --- OOM, panics, oopses with their header cut off --------------------------------------
    R("oom-panic-3.10-x86_64-rhel", Kind.OOM, "webservice", 35943, None,
      "Out of memory: system-wide panic_on_oom is enabled",
      title="out of memory: system-wide panic_on_oom is enabled", culprit="read_swap_cache_async"),
    R("panic-sysrq-5.2-arm64-indented", Kind.PANIC, "init", 1, None, "sysrq triggered crash",
      title="kernel panic: sysrq triggered crash", culprit="sysrq_handle_reboot"),
    R("panic-tail-arm64-pstore-levels-openwrt", Kind.PANIC, None, None, None,
      "Oops: Fatal exception",
      title="kernel panic: Oops: Fatal exception", culprit=None),
    R("oops-5.19-arm64-header-missing", Kind.UNKNOWN, "swapper/0", 1, "page_frag_alloc_align",
      more={"oops_count": 1},
      title="Internal error in page_frag_alloc_align", culprit="page_frag_alloc_align"),
    R("oops-6.12-arm64-second-oops-journal", Kind.UNKNOWN, "containerd-shim", 2266,
      "__arch_copy_to_user",
      more={"oops_count": 2, "tainted": "D", "kernel_release": "6.12.20+rpt-rpi-2712"},
      title="Internal error", culprit=None),
]

# The QEMU lab's records: crashy.ko in Debian 6.1 and 6.12 guests, one action
# per directory.  PIDs and kworker numbers depend on the boot, so a recapture
# may change them: LAB_ANY_PID accepts any PID, a comm ending in "/" any suffix.
LAB_ANY_PID = -1
_NULL = "BUG: unable to handle kernel NULL pointer dereference in "
_LAB = {
    # action: (kind, rip function, panic reason in the last dump, comm, title, culprit)
    "null": (Kind.NULL_POINTER, "crashy_null", "Fatal exception", "insmod",
             _NULL + "crashy_null", "crashy_null [crashy]"),
    "bug": (Kind.BUG, "crashy_bug", "Fatal exception", "insmod",
            "kernel BUG in crashy_bug", "crashy_bug [crashy]"),
    "divide": (Kind.DIVIDE_ERROR, "crashy_divide", "Fatal exception", "insmod",
               "divide error in crashy_divide", "crashy_divide [crashy]"),
    "gpf": (Kind.GENERAL_PROTECTION, "crashy_gpf", "Fatal exception", "insmod",
            "general protection fault in crashy_gpf", "crashy_gpf [crashy]"),
    "rodata": (Kind.PAGE_FAULT, "crashy_rodata", "Fatal exception", "insmod",
               "BUG: unable to handle kernel paging request in crashy_rodata",
               "crashy_rodata [crashy]"),
    "list": (Kind.LIST_CORRUPTION, None, "Fatal exception", "insmod",
             "BUG: corrupted list in crashy_list", "crashy_list [crashy]"),
    "warn": (Kind.WARNING, "crashy_warn", "kernel: panic_on_warn set ...", "insmod",
             "WARNING in crashy_warn", "crashy_warn [crashy]"),
    # A stall names the frame above the first dispatch frame (do_one_initcall here):
    # the looping function's RIP is wherever the timer caught it.
    "softlockup": (Kind.SOFT_LOCKUP, "crashy_softlockup", "softlockup: hung tasks", "insmod",
                   "BUG: soft lockup in crashy_init", "crashy_init [crashy]"),
    "hung": (Kind.HUNG_TASK, None, "hung_task: blocked tasks", "insmod",
             "INFO: task hung in crashy_hung", "crashy_hung [crashy]"),
    "panic": (Kind.PANIC, None, "crashy: requested panic", "insmod",
              "kernel panic: crashy: requested panic", "crashy_panic [crashy]"),
    "panic-ecc": (Kind.PANIC, None, "crashy: requested panic", "insmod",
                  "kernel panic: crashy: requested panic", "crashy_panic [crashy]"),
    "sysrq": (Kind.PANIC, None, "sysrq triggered crash", "sh",
              "kernel panic: sysrq triggered crash", "sysrq_handle_crash"),
    "null-then-sysrq": (Kind.NULL_POINTER, "crashy_null", "Fatal exception", "insmod",
                        _NULL + "crashy_null", "crashy_null [crashy]"),
    "workqueue": (Kind.NULL_POINTER, "crashy_work_fn", "Fatal exception", "kworker/",
                  _NULL + "crashy_work_fn", "crashy_work_fn [crashy]"),
}
# The list checker's name changed in 6.6 (lib/list_debug.c).
_LAB_RIPS = {
    "list": {"6.1": "__list_del_entry_valid.cold", "6.12": "__list_del_entry_valid_or_report"},
}


def _lab_cases() -> list[Expect]:
    cases = []
    for version in ("6.1", "6.12"):
        for action, (kind, rip, reason, comm, title, culprit) in _LAB.items():
            dumps = sorted((LAB / version / action / "pstore").glob("dmesg-*"))
            if not dumps:
                continue
            rip = _LAB_RIPS.get(action, {}).get(version, rip)
            tainted = "" if action == "sysrq" else "OE"
            cases.append(Expect(dumps[-1].relative_to(FIXTURES).as_posix(), kind, comm,
                                LAB_ANY_PID, rip, reason, more={"tainted": tainted},
                                title=title, culprit=culprit))
    return cases


ALL_CASES = CASES + _lab_cases()


def _read(rel: str) -> bytes:
    return (FIXTURES / rel).read_bytes()


def _check_spans(text: bytes, reports: list[oops.Report]) -> None:
    """Reports come in the order they start; two reports of one printk context
    (the same caller id, or none; lines with a time stamp and bare lines, which
    user space writes to the console, are different writers) never overlap."""
    starts = [r.start for r in reports]
    assert starts == sorted(starts)
    last_end: dict[tuple[str | None, bool], int] = {}
    for r in reports:
        key = (r.caller, r.time is None)
        assert last_end.get(key, 0) <= r.start <= r.end <= len(text)
        last_end[key] = r.end


# --------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------


def test_every_fixture_has_a_source_and_a_case() -> None:
    texts = sorted(REPORTS.glob("*.txt"))
    assert len(texts) >= 20
    covered = {c.path for c in CASES} | {"reports/no-report-mand-mount-notice-6.x.txt"}
    for text in texts:
        source = text.with_suffix(".source").read_text()
        assert "url: http" in source, text.name
        assert "read: 20" in source, text.name
        assert f"reports/{text.name}" in covered, f"{text.name} has no expectation in CASES"


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_primary_report(case: Expect) -> None:
    text = _read(case.path)
    report = oops.primary_report(text)
    assert report is not None
    assert report.kind is case.kind
    if case.comm is not None and case.comm.endswith("/"):
        assert report.comm is not None and report.comm.startswith(case.comm)
    else:
        assert report.comm == case.comm
    if case.pid == LAB_ANY_PID:
        assert report.pid is not None and report.pid > 0
    else:
        assert report.pid == case.pid
    assert (report.rip.function if report.rip else None) == case.rip
    assert report.panic_reason == case.panic_reason
    for name, value in case.more.items():
        if name == "reports":
            assert len(oops.parse_reports(text)) == value
        else:
            assert getattr(report, name) == value, name
    assert report.title == case.title
    assert (report.culprit.label() if report.culprit else None) == case.culprit
    # The headline is the title with the culprit's module; describe() starts with it.
    module = report.culprit.module if report.culprit else None
    assert report.headline == (f"{report.title} [{module}]" if module and
                               report.title.endswith(str(report.culprit_name)) else report.title)
    sentence = oops.describe(report)
    assert report.headline in sentence or report.headline.startswith("kernel panic")
    if case.panic_reason is not None:
        assert sentence.startswith("kernel panic: ")


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_report_spans(case: Expect) -> None:
    text = _read(case.path)
    reports = oops.parse_reports(text)
    assert reports
    _check_spans(text, reports)
    for r in reports:
        assert text[r.start:r.end].strip()
        assert len(r.call_trace) <= 64
    primary = oops.primary_report(text)
    assert primary is not None
    assert any(r.start == primary.start for r in reports)


def test_no_report_in_notice() -> None:
    # "WARNING: The mand mount option ..." is a pr_warn() notice, not WARN().
    assert oops.parse_reports(_read("reports/no-report-mand-mount-notice-6.x.txt")) == []
    assert oops.primary_report(_read("reports/no-report-mand-mount-notice-6.x.txt")) is None
    assert oops.primary_report(b"") is None


def test_describe_lab_null_pointer() -> None:
    text = _read("lab/6.12/null/pstore/dmesg-ramoops-1")
    report = oops.primary_report(text)
    assert report is not None
    assert oops.describe(report) == (
        "kernel panic: BUG: unable to handle kernel NULL pointer dereference in crashy_null "
        "[crashy], task insmod (pid 164), kernel tainted OE")
    assert report.kernel_release == "6.12.117+deb12-amd64"
    assert report.modules[0] == "crashy"
    assert report.rip == oops.Frame("crashy_null", 0x15, 0x30, "crashy", True, "")
    assert report.oops_count == 1


def test_kind_values() -> None:
    assert [k.value for k in Kind] == [
        "null-pointer", "page-fault", "general-protection", "divide-error", "invalid-opcode",
        "bug", "warning", "soft-lockup", "hard-lockup", "hung-task", "rcu-stall", "kasan",
        "ubsan", "oom", "list-corruption", "stack-corruption", "scheduling-while-atomic",
        "panic", "unknown", "lockdep", "memory-leak", "kmsan", "kcsan", "kfence"]


@pytest.mark.parametrize(("path", "sentence"), [
    ("lab/6.12/hung/pstore/dmesg-ramoops-0",
     "kernel panic: INFO: task hung in crashy_hung [crashy], task insmod (pid 161), "
     "kernel tainted OE"),
    ("lab/6.1/sysrq/pstore/dmesg-ramoops-0",
     "kernel panic: sysrq triggered crash, task sh (pid 104)"),
    ("lab/6.1/softlockup/pstore/dmesg-ramoops-0",
     "kernel panic: BUG: soft lockup in crashy_init [crashy], task insmod (pid 121), "
     "kernel tainted OE"),
    ("lab/6.12/list/pstore/dmesg-ramoops-1",
     "kernel panic: BUG: corrupted list in crashy_list [crashy], task insmod (pid 162), "
     "kernel tainted OE"),
    # Cut after the KASAN machinery frames: the phrase alone (and flagged corrupted).
    ("reports/kasan-6.19-x86_64-beegfs-verbose-taint.txt",
     "KASAN: slab-use-after-free Read, task venom-agent (pid 1101), kernel tainted DO"),
])
def test_describe(path: str, sentence: str) -> None:
    report = oops.primary_report(_read(path))
    assert report is not None
    assert oops.describe(report) == sentence


def test_call_trace_details() -> None:
    report = oops.primary_report(_read("reports/page-fault-4.13-x86_64-fatal-in-interrupt.txt"))
    assert report is not None
    first = report.call_trace[0]
    assert (first.function, first.offset, first.size, first.reliable, first.context) == (
        "call_timer_fn", 0x2b1, 0x630, False, "IRQ")
    after_irq = next(f for f in report.call_trace if f.function == "kmsan_set_origin_inline")
    assert after_irq.context == "TASK"
    report = oops.primary_report(_read("reports/hard-lockup-3.8-x86_64-nmi-watchdog.txt"))
    assert report is not None
    assert report.call_trace[0].context == "NMI"
    assert report.call_trace[0].function == "watchdog_overflow_callback"
    idle = next(f for f in report.call_trace if f.function == "account_idle_ticks")
    assert idle.context == "TASK"
    report = oops.primary_report(_read("reports/null-pointer-3.17-arm-shmem.txt"))
    assert report is not None
    names = [f.function for f in report.call_trace]
    assert names[:2] == ["shmem_getpage_gfp", "generic_perform_write"]
    report = oops.primary_report(_read("reports/ubsan-6.5-arm64-lunatik.txt"))
    assert report is not None
    assert report.call_trace[5].label() == "internshrstr [lunatik]"


def test_interleaved_line_does_not_end_the_trace() -> None:
    # [T6054] prints "loop4: detected capacity change" into [T5758]'s trace.
    report = oops.primary_report(_read("reports/warning-6.x-x86_64-new-format-panic-on-warn.txt"))
    assert report is not None
    names = [f.function for f in report.call_trace]
    assert "ntfs3_kill_sb" in names and "deactivate_locked_super" in names


def test_modules_with_continuation_lines() -> None:
    report = oops.primary_report(_read("reports/warning-3.17-x86_64-qxl.txt"))
    assert report is not None
    assert report.modules[-1] == "pata_acpi"
    assert "qxl" in report.modules
    report = oops.primary_report(_read("reports/soft-lockup-4.0-x86_64-nmi-watchdog.txt"))
    assert report is not None
    assert report.modules[-1] == "video" and "8021q" in report.modules


# --------------------------------------------------------------------------
# primary_report() rules on combinations of real logs
# --------------------------------------------------------------------------


def test_earlier_warning_does_not_explain_a_later_sysrq_panic() -> None:
    text = (_read("reports/warning-3.17-x86_64-qxl.txt")
            + _read("reports/panic-sysrq-5.2-arm64-indented.txt"))
    assert [r.kind for r in oops.parse_reports(text)] == [Kind.WARNING, Kind.PANIC]
    report = oops.primary_report(text)
    assert report is not None
    assert (report.kind, report.panic_reason, report.comm) == (
        Kind.PANIC, "sysrq triggered crash", "init")


def test_earlier_warning_then_fatal_oops() -> None:
    text = (_read("reports/warning-3.10-x86_64-irq-remapping.txt")
            + _read("lab/6.1/null/pstore/dmesg-ramoops-1"))
    report = oops.primary_report(text)
    assert report is not None
    assert (report.kind, report.panic_reason, report.pid) == (
        Kind.NULL_POINTER, "Fatal exception", 121)


def test_fatal_exception_far_after_the_oops() -> None:
    # The oops and its "Fatal exception" separated by more unrelated lines than
    # a report stays open for: the panic line starts a report of its own, and
    # primary_report() still attributes it to the oops.
    oops_text = _read("lab/6.12/null/pstore/dmesg-ramoops-0")
    boot = _read("reports/list-corruption-5.5-x86_64-i915-bug.txt").splitlines(keepends=True)
    boot = boot[:6] * 12
    panic_dump = _read("lab/6.12/null/pstore/dmesg-ramoops-1").splitlines(keepends=True)
    panic_line = next(line for line in panic_dump
                      if b"Kernel panic" in line)
    text = oops_text + b"".join(boot) + panic_line
    kinds = [r.kind for r in oops.parse_reports(text)]
    assert kinds == [Kind.NULL_POINTER, Kind.PANIC]
    report = oops.primary_report(text)
    assert report is not None
    assert (report.kind, report.panic_reason, report.comm) == (
        Kind.NULL_POINTER, "Fatal exception", "insmod")


def test_first_panic_wins() -> None:
    text = (_read("lab/6.1/sysrq/pstore/dmesg-ramoops-0")
            + _read("reports/oom-panic-3.10-x86_64-rhel.txt"))
    report = oops.primary_report(text)
    assert report is not None
    assert report.panic_reason == "sysrq triggered crash"


def test_without_panic_the_last_report() -> None:
    text = (_read("reports/kasan-6.0-x86_64-no-timestamps.txt")
            + _read("reports/divide-error-6.10-x86_64-oops-prefix.txt"))
    report = oops.primary_report(text)
    assert report is not None and report.kind is Kind.DIVIDE_ERROR


def test_reports_never_overlap_around_a_cut_here_line() -> None:
    # Found by fuzzing: a "cut here" line followed by a line the open hung-task
    # report kept, then a new marker; the new report used to start at the cut
    # line, inside the previous report.
    def line(name: str, prefix: bytes) -> bytes:
        return next(x for x in _read(f"reports/{name}.txt").splitlines() if prefix in x)

    lines = [
        line("hung-task-6.x-arm64-io-wait", b"INFO: task udevd"),
        line("warning-3.0-i686-dma-debug", b"cut here"),
        line("null-pointer-3.17-arm-shmem", b"Code: ")[:9],
        line("null-pointer-3.4-arm-syslog-sunxi", b"Unable to handle"),
    ]
    text = b"\n".join(lines)
    reports = oops.parse_reports(text)
    assert [r.kind for r in reports] == [Kind.HUNG_TASK, Kind.NULL_POINTER]
    assert reports[0].end <= reports[1].start
    assert text[reports[1].start:].startswith(b"May 19")


# --------------------------------------------------------------------------
# Line prefixes: the same real report behind every transport
# --------------------------------------------------------------------------


def _bare_lines() -> list[bytes]:
    """The 6.12 lab oops, without its pstore header, levels, stamps."""
    out = []
    for line in _read("lab/6.12/null/pstore/dmesg-ramoops-1").splitlines()[1:]:
        body = line.split(b"] ", 1)[1] if b"] " in line else line
        out.append(body)
    return out


@pytest.mark.parametrize("prefix", [
    lambda i: b"",
    lambda i: b"<4>[%5d.%06d] " % (100 + i // 1000, i % 1000),
    lambda i: b"[%5d.%06d][  T164] " % (100 + i // 1000, i % 1000),
    lambda i: b"[%5d.%06d] [  T164] " % (100 + i // 1000, i % 1000),
    lambda i: b"Jan 12 19:08:41 debian kernel: ",
    lambda i: b"Jan 12 19:08:41 debian kernel: [%5d.%06d] " % (100 + i // 1000, i % 1000),
    lambda i: b"2024-05-01T10:00:00.123456+02:00 debian kernel: ",
    lambda i: b"[%5d.%06d] debian kernel: " % (100 + i // 1000, i % 1000),
    lambda i: b"[Wed Dec 19 03:36:07 2018] ",
    lambda i: b"    [%5d.%06d] " % (100 + i // 1000, i % 1000),
], ids=["none", "pstore", "caller", "caller-space", "syslog", "kern.log", "journal-iso",
        "short-monotonic", "dmesg-T", "indented"])
def test_prefix_variants(prefix: Any) -> None:
    text = b"\n".join(prefix(i) + body for i, body in enumerate(_bare_lines())) + b"\n"
    report = oops.primary_report(text)
    assert report is not None
    assert report.kind is Kind.NULL_POINTER
    assert (report.comm, report.pid, report.tainted) == ("insmod", 164, "OE")
    assert report.rip is not None and report.rip.label() == "crashy_null [crashy]"
    assert report.panic_reason == "Fatal exception"
    assert "crashy_init" in [f.function for f in report.call_trace]


def test_crlf_line_ends() -> None:
    text = _read("reports/divide-error-6.10-x86_64-oops-prefix.txt").replace(b"\n", b"\r\n")
    report = oops.primary_report(text)
    assert report is not None and report.rip is not None
    assert (report.comm, report.rip.function) == ("NetworkManager", "tcp_tso_segs")


# --------------------------------------------------------------------------
# Robustness: never raise, never hang
# --------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from strategies import kernel_log  # noqa: E402

_ALL_LINES = sorted({line for p in REPORTS.glob("*.txt") for line in p.read_bytes().splitlines()})


def _check(text: bytes) -> None:
    reports = oops.parse_reports(text)
    _check_spans(text, reports)
    for r in reports:
        assert isinstance(oops.describe(r), str)
        assert r.title and "\n" not in r.title and len(r.title) <= 120
    primary = oops.primary_report(text)
    if primary is not None:
        oops.describe(primary)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2048))
def test_arbitrary_text(data: str) -> None:
    _check(data.encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_log(_ALL_LINES, max_lines=120, max_cut=300, max_junk=8))
def test_shuffled_real_lines(text: bytes) -> None:
    # Real report lines in any order, cut anywhere, with junk glued on.
    _check(text)


def _elapsed(text: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        oops.parse_reports(text)
        oops.primary_report(text)
        best = min(best, time.perf_counter() - t0)
    return best


def _corpus(size: int) -> bytes:
    blob = b"".join(p.read_bytes() for p in sorted(REPORTS.glob("*.txt")))
    return (blob * (size // len(blob) + 1))[:size]


_ADVERSARIAL = [
    b"INFO: task " + b"a:" * 2000,
    b"WARNING: CPU: 1 PID: 2 at " + b"x:1" * 1000,
    b"BUG: KASAN: " + b"a " * 2000 + b"in",
    b"Oops: " + b"a" * 120 + b": 0000 [#1]" + b" " * 3000,
    b"CPU: 0 PID: 1 Comm: " + b"x " * 2000,
    b"[" + b" " * 3000 + b"1.2]",
    b"Jan 12 19:08:41 " + b"h" * 3000,
    b" [<ffffffff81000000>]" * 150,
    b"Modules linked in:" + b" m" * 1500,
    b"\xff" * 4000,
]


@pytest.mark.parametrize("kind", ["real", "adversarial"])
def test_linear_time(kind: str) -> None:
    """Parsing time grows linearly: 4x the input costs about 4x the time."""
    if kind == "real":
        small, large = _corpus(256 * 1024), _corpus(1024 * 1024)
    else:
        rng = random.Random(1)
        lines = [rng.choice(_ADVERSARIAL) for _ in range(4096)]
        large = b"\n".join(lines)[: 1024 * 1024]
        small = large[: len(large) // 4]
    t_small, t_large = _elapsed(small), _elapsed(large)
    assert len(large) >= 1024 * 1024 - 1
    # 4x input: allow generous noise, but a quadratic parser would take ~16x.
    assert t_large < 8 * t_small + 0.05, (t_small, t_large)
    assert t_large < 30, t_large


# --------------------------------------------------------------------------
# Fields beyond the headline, on the lab records and real reports
# --------------------------------------------------------------------------

_LAB_ACTIONS = sorted(_LAB)


@pytest.mark.parametrize("version", ["6.1", "6.12"])
@pytest.mark.parametrize("action", _LAB_ACTIONS)
def test_lab_header_fields(version: str, action: str) -> None:
    dumps = sorted((LAB / version / action / "pstore").glob("dmesg-*"))
    report = oops.primary_report(dumps[-1].read_bytes())
    assert report is not None
    assert report.kernel_release is not None and report.kernel_release.startswith(version + ".")
    assert report.kernel_build is not None and report.kernel_build.startswith("#1 ")
    assert report.hardware is not None and report.hardware.startswith("QEMU Standard PC")
    # 6.11+ print "CPU: N UID: N PID:"; 6.1 does not.  A hung task's CPU line is
    # khungtaskd's, not the blocked task's: its UID is not taken.
    if report.kind is not Kind.HUNG_TASK:
        assert report.uid == (0 if version == "6.12" else None)
    if action == "sysrq":
        assert (report.tainted, report.taint_flags) == ("", ())
    else:
        assert report.taint_flags[:2] == ("OOT_MODULE", "UNSIGNED_MODULE")
    if report.kind not in (Kind.HUNG_TASK, Kind.PANIC):  # panic() prints no module list
        assert ("crashy", "OE+") in report.module_flags  # "+": still loading
    assert report.kernel_offset is not None  # printed after the panic
    assert report.line > 1
    text = dumps[-1].read_bytes()
    assert text.count(b"\n", 0, report.start) + 1 == report.line
    if report.kind in (Kind.NULL_POINTER, Kind.PAGE_FAULT):
        assert report.fault_info[0].startswith("#PF: supervisor ")
        assert report.error_code == (3 if action == "rodata" else 0)
        assert report.fault_address is not None
    if report.kind is Kind.GENERAL_PROTECTION:
        assert report.fault_address == 0xDEAD000000000100
    if report.rip is not None:
        assert dict(report.registers)["RSP"].startswith("0018:")
        assert report.code is not None
    if report.kind is Kind.SOFT_LOCKUP:
        assert report.duration == 3.0 and report.cpu == 0
    if report.kind is Kind.HUNG_TASK:
        assert report.duration == 3.0
    if action == "workqueue":
        assert report.workqueue == "events crashy_work_fn [crashy]"


def test_arm64_pc_lr_registers_esr() -> None:
    report = oops.primary_report(_read("reports/oops-6.12-arm64-second-oops-journal.txt"))
    assert report is not None
    assert report.lr == oops.Frame("_copy_to_iter", 0xF4, 0x6A8, None, True, "")
    assert report.error_code == 0x96000005  # "Internal error: Oops: 0000000096000005"
    regs = dict(report.registers)
    assert regs["sp"] == "ffffc00084d4bb60" and regs["x29"] == "ffffc00084d4bb60"
    assert regs["pstate"] == "80400009"
    assert report.uid == 0 and report.taint_flags == ("DIE",)
    report = oops.primary_report(_read("reports/page-fault-4.4-arm64-rock64.txt"))
    assert report is not None and report.lr is not None
    assert report.lr.function == "vma_adjust"  # "LR is at vma_adjust+0x214/0x510"


def test_kasan_access_and_verbose_taint() -> None:
    report = oops.primary_report(_read("reports/kasan-6.19-x86_64-beegfs-verbose-taint.txt"))
    assert report is not None
    assert report.access == "Read of size 4 at addr ff110001148d0034 by task venom-agent/1101"
    assert report.fault_address == 0xFF110001148D0034
    assert report.taint_flags == ("DIE", "OOT_MODULE")
    assert report.kernel_build == "#47 PREEMPT(lazy)"


def test_taint_names() -> None:
    from memconsole.oops.taint import TAINT_FLAGS, taint_names

    assert len(TAINT_FLAGS) == 20 and [f.bit for f in TAINT_FLAGS] == list(range(20))
    assert len({f.letter for f in TAINT_FLAGS}) == 20
    assert taint_names("POE") == ("PROPRIETARY_MODULE", "OOT_MODULE", "UNSIGNED_MODULE")
    assert taint_names("JH") == ("FWCTL", "<unknown H>")
    report = oops.primary_report(_read("reports/list-corruption-4.18-x86_64-rhel-bug.txt"))
    assert report is not None
    assert report.taint_flags == ("WARN", "FIRMWARE_WORKAROUND", "OOT_MODULE", "UNSIGNED_MODULE")
    assert report.workqueue == "events _cas_rpool_pre_alloc_do [cas_cache]"


def test_list_message_announces_only_a_report_that_takes_it() -> None:
    def line(name: str, prefix: bytes) -> bytes:
        return next(x for x in _read(name).splitlines() if prefix in x)

    listed = line("reports/list-corruption-5.5-x86_64-i915-bug.txt", b"list_del corruption")
    bug = line("reports/list-corruption-5.5-x86_64-i915-bug.txt", b"kernel BUG at")
    kasan = line("reports/kasan-6.0-x86_64-no-timestamps.txt", b"BUG: KASAN")
    text = listed + b"\n" + bug + b"\n"
    (r,) = oops.parse_reports(text)
    assert (r.kind, r.start, r.line) == (Kind.LIST_CORRUPTION, 0, 1)
    # A KASAN report does not take a list message in: it starts at its own line.
    text = listed + b"\n" + kasan + b"\n"
    (r,) = oops.parse_reports(text)
    assert (r.kind, r.start, r.line) == (Kind.KASAN, len(listed) + 1, 2)
    # Nothing follows the message: no report.
    assert oops.parse_reports(listed + b"\n" + b"x\n" * 10) == []
