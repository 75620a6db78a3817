"""The kernel functions that report, check, lock, wait, allocate or copy on behalf
of the code that crashed (private to :mod:`memconsole.oops`).

One table, one home: the culprit of a report (:mod:`memconsole.oops._culprit`),
and through it the title, the headline, the sentence and the signature, skip
exactly the functions listed here.  Each row is a category, the kernel files
that define its functions, and a regular expression matched with
``re.fullmatch`` against a normalised function name (:func:`normalize_function`:
no ``__pfx_``/``__cfi_`` prefix, no compiler clone suffix).  Names are anchored:
``get_user`` does not hide ``sget_userns``.  docs/oops.md prints this table
(generated from it by ``tests/oops/test_machinery.py``, so it cannot drift).

``entry`` functions (system call and interrupt entry, kernel threads) are not
skipped when the culprit is chosen: a bug can sit right above them, and the
stall rule needs them as anchors.  They are skipped as callers in the
signature, whose names they would make kernel-version dependent.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import NamedTuple

__all__ = [
    "CLONE_SUFFIX", "HUNG_ANCHORS", "HUNG_SKIP", "MACHINERY", "STALL_ANCHORS", "SYSCALL_PREFIXES",
    "Category", "Row", "category", "is_hung_skip", "is_machinery", "is_stall_anchor",
    "normalize_function", "strip_syscall",
]


class Category(str, enum.Enum):
    """Why a function is not the culprit."""

    REPORTING = "reporting"
    """Prints a report, traps BUG()/WARN(), runs the oops and panic paths."""
    SANITIZER = "sanitizer"
    """A sanitizer or debug check: it detects, its caller is guilty."""
    INTERRUPT = "interrupt"
    """Timer, watchdog and NMI machinery that interrupted the culprit to report it."""
    LOCKING = "locking"
    """lockdep and the lock primitives."""
    SCHEDULING = "scheduling"
    """The scheduler and the ways to wait and sleep."""
    ALLOCATION = "allocation"
    """Allocators and their free paths."""
    COPY = "copy"
    """Copies, string functions, I/O accessors, checksums."""
    THUNK = "thunk"
    """Compiler-generated call trampolines."""
    CONTAINER = "container"
    """Generic containers (rb-trees, klists) a bug rarely lives in."""
    TEARDOWN = "teardown"
    """Teardown helpers that trip checks on their callers' behalf."""
    ENTRY = "entry"
    """System call, interrupt and kernel thread entry (not skipped for the culprit)."""


class Row(NamedTuple):
    """One row of :data:`MACHINERY`."""

    category: Category
    files: str
    """The kernel files that define the functions."""
    pattern: str
    """Regular expression over the normalised function name (``re.fullmatch``)."""


_R, _S, _I, _L = Category.REPORTING, Category.SANITIZER, Category.INTERRUPT, Category.LOCKING
_W, _A, _C = Category.SCHEDULING, Category.ALLOCATION, Category.COPY

MACHINERY: tuple[Row, ...] = (
    # -- reporting ---------------------------------------------------------------------------
    Row(_R, "lib/dump_stack.c", r"_*dump_stack(?:_lvl|_print_info)?"),
    Row(_R, "arch/x86/kernel/dumpstack.c, arch/*/kernel/process.c",
        r"show_stack|show_trace_log_lvl|show_regs|__show_regs|show_regs_print_info"),
    Row(_R, "arch/*/kernel/stacktrace.c, kernel/stacktrace.c",
        r"dump_backtrace\w*|unwind_backtrace|walk_stackframe|arch_stack_walk"
        r"|stack_trace_save(?:_tsk)?|stack_trace_consume_entry"),
    Row(_R, "kernel/panic.c, mm/page_alloc.c warn_alloc()",
        r"_*warn(?:_slowpath_fmt|_slowpath_null|_alloc|_bogus_irq_restore)?|warn_slowpath\w*"
        r"|__warn_printk"),
    Row(_R, "kernel/panic.c", r"_*v?panic\w*|nmi_panic|check_panic_on_warn|__stack_chk_fail"),
    Row(_R, "lib/bug.c, arch/x86/kernel/traps.c, arch/*/kernel/traps.c",
        r"report_bug|__report_bug|fixup_bug|handle_bug|bug_handler|do_trap|do_error_trap"
        r"|_?do_trap_\w+|\w+_trap"),
    Row(_R, "arch/x86/kernel/traps.c, arch/x86/include/asm/idtentry.h",
        r"(?:asm_)?exc_\w+|do_invalid_op|invalid_op|do_divide_error|divide_error"
        r"|do_general_protection|general_protection|do_int3\w*"),
    Row(_R, "arch/x86/kernel/dumpstack.c, arch/x86/mm/fault.c",
        r"_*die|oops_end|oops_begin|page_fault_oops|kernelmode_fixup_or_oops|no_context"
        r"|_*bad_area\w*|do_(?:user|kern)_addr_fault|_*do_page_fault|handle_page_fault"
        r"|spurious_kernel_fault"),
    Row(_R, "arch/arm64/mm/fault.c, arch/arm64/kernel/traps.c, arch/arm64/kernel/entry-common.c",
        r"die_kernel_fault|_*do_kernel_fault|do_translation_fault|do_bad_area|do_mem_abort"
        r"|el1_abort|el1h_64_sync(?:_handler)?|el1_dbg|brk_handler|call_break_hook|early_brk64"
        r"|bug_brk_handler|arm64_notify_die|do_debug_exception|do_el1_\w+|el1_sync\w*"
        r"|el1_undef|el1_inv"),
    Row(_R, "arch/arm/mm/fault.c, arch/arm/kernel/traps.c, arch/arm/mm/alignment.c",
        r"do_DataAbort|do_PrefetchAbort|do_undefinstr|baddataabort|do_alignment"),
    Row(_R, "arch/powerpc/kernel/traps.c, arch/powerpc/mm/fault.c",
        r"program_check_exception|program_check_common|bad_page_fault|__bad_page_fault"
        r"|_exception\w*|do_page_fault_common"),
    Row(_R, "arch/riscv/kernel/traps.c, arch/s390/kernel/traps.c, arch/s390/mm/fault.c",
        r"do_trap_break|do_trap_ecall_\w+|handle_exception|do_report_trap|__do_pgm_check"
        r"|pgm_check_handler|do_no_context|report_user_fault|do_exception|do_dat_exception"
        r"|handle_fault_error"),
    Row(_R, "kernel/panic.c, kernel/printk/printk.c, lib/hexdump.c, drivers/base/core.c",
        r"print_tainted|get_taint|print_modules|print_hex_dump|hex_dump_to_buffer|\w*printk\w*"
        r"|_*dev_(?:info|notice|warn|err|alert|crit|emerg|printk)"),
    Row(_R, "lib/vsprintf.c, mm/util.c",
        r"v?s?n?printf|v?scnprintf|k?v?asprintf|va_format|pointer|string|\w+_string"),
    # -- sanitizers and debug checks ---------------------------------------------------------
    Row(_S, "mm/kasan/report.c, mm/kasan/generic.c, mm/kasan/shadow.c",
        r"_*kasan_\w+|_*asan_\w+|kasan\w*|check_memory_region\w*|print_address_description\w*"
        r"|print_report|end_report|start_report|describe_object\w*|print_error_description"),
    Row(_S, "mm/kasan/hw_tags.c, mm/kasan/sw_tags.c",
        r"_*hwasan_\w+|kasan_tag_\w+|tag_check\w*|kernel_fault"),
    Row(_S, "mm/kmsan/report.c, mm/kmsan/instrumentation.c", r"_*kmsan_\w+|_*msan_\w+|kmsan\w*"),
    Row(_S, "kernel/kcsan/core.c, kernel/kcsan/report.c", r"_*tsan_\w+|kcsan_\w+"),
    Row(_S, "mm/kfence/core.c, mm/kfence/report.c", r"kfence_\w+"),
    Row(_S, "lib/ubsan.c", r"_*ubsan_\w+"),
    Row(_S, "kernel/kcov.c", r"_*sanitizer_cov_\w+|check_kcov_mode"),
    Row(_S, "mm/usercopy.c, mm/slub.c",
        r"_*check_heap_object|_*check_object_size|check_object|check_bytes_and_report"
        r"|usercopy_abort|usercopy_warn|check_stack_object"),
    Row(_S, "lib/string_helpers.c", r"__fortify_report|fortify_panic|__fortify_panic"),
    Row(_S, "lib/debugobjects.c, kernel/time/timer.c, kernel/workqueue.c",
        r"debug_object\w*|debug_print_object|debug_check_no_obj_freed|timer_is_static_object"
        r"|work_is_static_object|timer_fixup_\w+|work_fixup_\w+"),
    Row(_S, "lib/list_debug.c, include/linux/list.h",
        r"_*list_(?:add|del)\w*|list_replace\w*|list_move\w*|list_splice\w*|__list_\w*valid\w*"),
    Row(_S, "lib/refcount.c, include/linux/kref.h, lib/ref_tracker.c",
        r"refcount_\w+|kref_\w+|ref_tracker\w*"),
    Row(_S, "include/asm-generic/rwonce.h, arch/x86/mm/physaddr.c, include/linux/seqlock.h",
        r"read_word_at_a_time|(?:read|write)_once_\w*nocheck|__phys_addr|__virt_addr_valid"
        r"|_*seqprop_assert|assertfail"),
    Row(_S, "fs/buffer.c (WARN_ON_ONCE(!buffer_uptodate()): the caller's bug)",
        r"mark_buffer_dirty"),
    # -- the timer, watchdog and NMI paths that interrupt the culprit to report it -----------
    Row(_I, "kernel/watchdog.c, kernel/watchdog_perf.c (watchdog_hld.c before 6.7), "
            "kernel/hung_task.c",
        r"watchdog_timer_fn|watchdog_overflow_callback|watchdog_hardlockup_check|watchdog"
        r"|check_hung_uninterruptible_tasks|check_hung_task|khungtaskd"),
    Row(_I, "kernel/time/hrtimer.c, kernel/time/tick-sched.c, kernel/time/tick-common.c, "
            "kernel/time/timer.c",
        r"_*hrtimer_run_queues|hrtimer_interrupt|tick_sched_handle|tick_sched_timer"
        r"|tick_nohz_handler|tick_handle_periodic|tick_periodic|update_process_times"),
    Row(_I, "arch/x86/kernel/apic/apic.c, arch/arm64/kernel/irq.c, drivers/irqchip/irq-gic*.c, "
            "drivers/clocksource/arm_arch_timer.c",
        r"local_apic_timer_interrupt|smp_apic_timer_interrupt|apic_timer_interrupt"
        r"|gic_handle_irq|handle_domain_irq|generic_handle_domain_irq|arch_timer_handler_\w+"
        r"|handle_percpu_devid_irq|__handle_irq_event_percpu|handle_irq_event\w*"),
    Row(_I, "kernel/rcu/tree.c, kernel/rcu/tree_stall.h, kernel/sched/core.c",
        r"rcu_sched_clock_irq|rcu_pending|rcu_check_callbacks|print_cpu_stall"
        r"|print_other_cpu_stall|check_cpu_stall|rcu_dump_cpu_stacks|dump_cpu_task"
        r"|sched_show_task|rcu_check_gp_start_stall"),
    Row(_I, "lib/nmi_backtrace.c, arch/x86/kernel/nmi.c, arch/x86/kernel/apic/hw_nmi.c, "
            "kernel/events/core.c, arch/x86/events/core.c, arch/x86/events/intel/core.c",
        r"nmi_cpu_backtrace\w*|nmi_trigger_cpumask_backtrace|arch_trigger_cpumask_backtrace"
        r"|trigger_\w*backtrace\w*|nmi_handle|default_do_nmi|do_nmi|exc_nmi|end_repeat_nmi"
        r"|asm_exc_nmi|_*perf_event_overflow|perf_event_nmi_handler|handle_pmi_common"
        r"|intel_pmu_handle_irq|amd_pmu_handle_irq|x86_pmu_handle_irq"),
    # -- locking ---------------------------------------------------------------------------
    Row(_L, "kernel/locking/lockdep.c",
        r"_*lock_acquire\w*|_*lock_release|lock_acquired|lock_contended|lock_downgrade|lock_sync"
        r"|mark_lock\w*|mark_held_locks|reacquire_held_locks|_*lockdep_\w+|lockdep\w*"
        r"|validate_chain|check_prev_add|check_noncircular|print_\w*_bug"
        r"|print_unlock_imbalance_bug|find_held_lock|register_lock_class|look_up_lock_class"
        r"|lock_class\w*|debug_check_no_locks_\w+|debug_show_held_locks|hlock_class|print_lock\w*"),
    Row(_L, "kernel/locking/spinlock.c, spinlock_debug.c, qspinlock.c, qrwlock.c",
        r"_*raw_(?:spin|read|write)_(?:lock|trylock|unlock)\w*"
        r"|do_raw_(?:spin|read|write)_(?:lock|trylock|unlock)\w*"
        r"|\w*(?:spin|read|write)_(?:lock|trylock|unlock)\w*"
        r"|queued_(?:spin|read|write)_lock_slowpath|native_queued_spin_lock_slowpath"
        r"|__pv_queued_spin_lock_slowpath|spin_bug|spin_dump|rwlock_bug|raw_spin_rq_\w+"),
    Row(_L, "kernel/locking/mutex.c, kernel/locking/ww_mutex.h",
        r"_*mutex_\w+|mutex_\w+|_*ww_mutex_\w+"),
    Row(_L, "kernel/locking/rtmutex.c, rtmutex_api.c, rwbase_rt.c",
        r"_*rt_mutex_\w+|rt_spin_\w+|rwbase_\w+"),
    Row(_L, "kernel/locking/rwsem.c, semaphore.c, percpu-rwsem.c",
        r"_*down|_*down_(?:read|write|interruptible|killable|timeout|trylock|common)\w*"
        r"|_*up_(?:read|write)\w*|_*up|rwsem_\w+|__rwsem_\w+|percpu_(?:down|up)_\w+"
        r"|percpu_rwsem_\w+"),
    Row(_L, "kernel/locking/osq_lock.c, mutex.c",
        r"osq_(?:lock|unlock)|owner_on_cpu|mutex_spin_on_owner|rwsem_spin_on_owner"),
    Row(_L, "kernel/softirq.c, kernel/trace/trace_preemptirq.c",
        r"_*local_bh_(?:enable|disable)\w*|(?:trace|lockdep)_(?:hard|soft)irqs?_\w+"
        r"|trace_hardirqs_\w+"),
    Row(_L, "include/linux/atomic/atomic-instrumented.h, lib/dec_and_lock.c, "
            "include/asm-generic/bitops/instrumented-atomic.h, kernel/sched/wait.c",
        r"_*atomic(?:64|_long)?_(?:dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)\w*"
        r"|arch_atomic\w*|(?:set|clear|change|test)_bit\w*|test_and_(?:set|clear|change)_bit\w*"
        r"|__wake_up\w*"),
    Row(_L, "include/trace/perf.h, include/trace/trace_events.h (lock tracepoints)",
        r"perf_trace_\w+|trace_event_raw_event_\w+"),
    Row(_L, "kernel/rcu/srcutree.c, kernel/rcu/tree_plugin.h",
        r"_*srcu_read_(?:lock|unlock)\w*|cleanup_srcu_struct|_*rcu_read_(?:lock|unlock)\w*"),
    Row(_L, "kernel/time/timer.c, net/core/sock.c, mm/filemap.c",
        r"lock_timer_base|_*timer_delete_sync|_*try_to_del_timer_sync|\w*del_timer\w*"
        r"|_*mod_timer|sk_stop_timer_sync|lock_sock_nested|lock_page|unlock_page|__lock_page\w*"
        r"|folio_unlock"),
    # -- scheduling and waiting ------------------------------------------------------------
    Row(_W, "kernel/sched/core.c, kernel/time/sleep_timeout.c (kernel/time/timer.c before "
            "6.13), arch/x86/kernel/process_64.c",
        r"_*schedule|schedule_(?:timeout|hrtimeout|preempt_disabled|idle)\w*|preempt_schedule\w*"
        r"|_*cond_resched\w*|_*might_(?:sleep|resched|fault)|might_fault|__cant_sleep"
        r"|schedule_debug|__schedule_bug|context_switch|__switch_to\w*|finish_task_switch\w*"
        r"|io_schedule\w*"),
    Row(_W, "kernel/sched/completion.c, kernel/sched/wait.c, kernel/sched/wait_bit.c, "
            "mm/filemap.c, kernel/time/sleep_timeout.c",
        r"_*wait_for_completion\w*|do_wait_for_common|_*wait_for_common\w*|complete|complete_all"
        r"|finish_wait|prepare_to_wait\w*|_*wait_event\w*|_*wait_on_bit\w*"
        r"|out_of_line_wait_on_bit\w*|bit_wait\w*|folio_wait\w*|wait_on_page\w*|msleep\w*"
        r"|usleep_range\w*"),
    Row(_W, "lib/smp_processor_id.c, kernel/sched/core.c",
        r"check_preemption_disabled|debug_smp_processor_id|__this_cpu_preempt_check"
        r"|preempt_count_(?:add|sub)"),
    Row(_W, "kernel/workqueue.c, kernel/kthread.c",
        r"_*flush_work\w*|_*cancel_work\w*|cancel_delayed_work\w*|try_to_grab_pending"
        r"|_*flush_workqueue|drain_workqueue|destroy_workqueue|_*queue_work\w*"
        r"|_*queue_delayed_work\w*|insert_work|kthread_stop\w*"),
    # -- allocation and freeing --------------------------------------------------------------
    Row(_A, "mm/slub.c, mm/slab_common.c, mm/util.c, mm/vmalloc.c",
        r"_*kmalloc\w*|_*kzalloc\w*|_*kcalloc\w*|_*kvmalloc\w*|_*kvzalloc\w*|_*vmalloc\w*"
        r"|_*vzalloc\w*|krealloc\w*|\w+_kmalloc|_*do_kmalloc\w*|kmalloc_slab|_*kmem_cache_\w+"
        r"|_*slab_\w+|allocate_slab|new_slab|___slab_alloc|__slab_alloc\w*|_*kfree\w*|kvfree\w*"
        r"|kfree_skb\w*|vfree\w*|vunmap\w*"),
    Row(_A, "mm/page_alloc.c, mm/mempolicy.c, mm/filemap.c",
        r"_*free_pages\w*|_*alloc_pages\w*|alloc_page\w*|_*alloc_frozen_pages\w*"
        r"|get_page_from_freelist|_*folio_alloc\w*|filemap_alloc_folio\w*|__filemap_get_folio"
        r"|find_or_create_page|pagecache_get_page|grab_cache_page_write_begin"
        r"|do_read_cache_folio|read_cache_page\w*|_*get_free_pages"),
    Row(_A, "mm/oom_kill.c, mm/page_alloc.c, mm/memcontrol.c (the path an OOM report is "
            "printed from)",
        r"check_panic_on_oom|out_of_memory|pagefault_out_of_memory|dump_header|oom_kill_process"
        r"|__alloc_pages_may_oom|__alloc_pages_slowpath|__alloc_pages_nodemask"
        r"|mem_cgroup_out_of_memory|try_charge\w*|obj_cgroup_charge|mem_cgroup_oom"
        r"|__mem_cgroup_charge|charge_memcg"),
    Row(_A, "mm/util.c, mm/percpu.c, mm/mempool.c, mm/kmemleak.c, lib/idr.c, lib/xarray.c",
        r"kmemdup\w*|memdup_user\w*|kstrdup\w*|kstrndup|_*alloc_percpu\w*|pcpu_alloc\w*"
        r"|mempool_\w+|kmemleak_\w+|create_object\w*|ida_free|ida_alloc\w*|idr_get\w*"
        r"|xas_(?:start|load|find)\w*"),
    # -- copying, strings, I/O accessors, checksums ------------------------------------------
    Row(_C, "lib/string.c, arch/x86/lib/memcpy_64.S, memset_64.S, memmove_64.S",
        r"_*(?:mem|str)(?:cpy|set|move|cmp|chr|len|nlen|str|nstr|ncmp|ncpy|lcpy|scpy|cat|ncat"
        r"|dup|ndup|rchr|chrnul)\w*|memcpy_\w+|memset_\w+|memmove_\w+"),
    Row(_C, "lib/usercopy.c, lib/iov_iter.c, arch/x86/lib/copy_user_64.S, getuser.S, putuser.S, "
            "arch/arm64/lib/copy_to_user.S",
        r"_*copy_(?:to|from)_user\w*|raw_copy_(?:to|from)_user|copy_user_\w+"
        r"|__arch_copy_(?:to|from)_user|__arch_clear_user"
        r"|rep_movs_alternative|\w*copy_(?:to|from)_iter\w*|copy_page_(?:to|from)_iter\w*"
        r"|copy_folio_to_iter|copyin|copyout|_*(?:get|put)_user\w*|strncpy_from_user"
        r"|strnlen_user|_*clear_user\w*|extract_(?:user|iter)_to_sg"),
    Row(_C, "include/asm-generic/io.h, arch/x86/include/asm/io.h",
        r"(?:__raw_)?(?:read|write)[bwlq]|(?:io)?read(?:8|16|32)|(?:io)?write(?:8|16|32)"
        r"|logic_(?:in|out)\w*"),
    Row(_C, "lib/crc32.c, lib/crc-itu-t.c", r"crc\d+\w*|crc_itu_t\w*"),
    # -- trampolines, containers, teardown -------------------------------------------------
    Row(Category.THUNK, "arch/x86/lib/retpoline.S",
        r"_*x86_indirect_thunk_\w+|_*x86_return_thunk|__x86_indirect_call_thunk_\w+"),
    Row(Category.CONTAINER, "lib/rbtree.c, lib/klist.c, include/linux/rhashtable.h",
        r"_*rb_\w+|_*klist_\w+|rhashtable_lookup\w*"),
    Row(Category.TEARDOWN, "lib/kobject.c, drivers/base/core.c, drivers/base/devres.c, "
                           "fs/sysfs/file.c, net/core/dev.c, drivers/usb/core/urb.c, fs/inode.c, "
                           "fs/dcache.c, mm/truncate.c",
        r"_*kobject_\w+|add_uevent_var|get_device_parent"
        r"|device_(?:add|del|unregister|destroy|release|for_each_child|remove_file)\w*|put_device"
        r"|devres_release_all|\w*sysfs_remove\w*|hwrng_unregister|i2c_del_adapter"
        r"|__unregister_client|rollback_registered\w*|unregister_netdev\w*|tty_unregister_device"
        r"|dummy_urb_enqueue|usb_kill_urb|usb_kill_anchored_urbs|usb_control_msg"
        r"|usb_hcd_submit_urb|usb_submit_urb|_*iput|iput_final|ihold|drop_nlink|fast_dput|dput"
        r"|truncate_inode_pages_range|find_lock_entries"),
    # -- entry: candidates for the culprit, never callers in the signature -------------------
    Row(Category.ENTRY, "arch/x86/entry/entry_64.S, arch/x86/entry/common.c (syscall_64.c "
                        "6.14+), kernel/entry/common.c, arch/x86/kernel/process.c, "
                        "arch/x86/include/asm/idtentry.h",
        r"entry_SYSCALL_64\w*|entry_SYSENTER_compat\w*|entry_INT80_compat|do_syscall_64"
        r"|do_fast_syscall_32|do_int80_syscall_32|x64_sys_call|syscall_exit_to_user_mode\w*"
        r"|exit_to_user_mode\w*|ret_from_fork\w*|ret_from_intr|common_interrupt"
        r"|asm_common_interrupt|asm_sysvec_\w+|_*sysvec_\w+|irq_exit_rcu|__irq_exit_rcu"
        r"|irq_exit|irqentry_exit\w*|system_call_fastpath|tracesys\w*"),
    Row(Category.ENTRY, "arch/arm64/kernel/entry-common.c, syscall.c, arch/arm/kernel/"
                        "entry-*.S, arch/riscv/kernel/entry.S, kernel/softirq.c, "
                        "kernel/kthread.c, kernel/workqueue.c, kernel/sched/idle.c",
        r"el0_svc\w*|el0t_64_sync\w*|el1h_64_irq\w*|invoke_syscall|ret_fast_syscall|__irq_svc"
        r"|__irq_usr|ret_from_exception|handle_softirqs|_*do_softirq\w*|kthread|worker_thread"
        r"|smpboot_thread_fn|start_secondary|cpu_startup_entry|do_idle|secondary_start_kernel"),
)

#: syzkaller's syscall wrapper prefixes (pkg/report/linux.go), plus the riscv, s390 and
#: powerpc wrappers (arch/*/include/asm/syscall_wrapper.h).
SYSCALL_PREFIXES = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
    "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_", "__riscv_",
    "__s390x_", "__s390_", "__powerpc_",
)
#: gcc/clang clone suffixes: ``.cold``, ``.constprop.0``, ``.isra.0``, ``.part.0``, ``.llvm.N``.
CLONE_SUFFIX = (r"(?:\.(?:cold|constprop|isra|part|llvm|lto_priv|clone|localalias)"
                r"(?:\.\d+)?)+$")
#: Frames that dispatch work (syzkaller's linuxStallAnchorFrames): the culprit of a stall
#: is the frame just above the first of them.  ``do_one_initcall`` (init/main.c) is
#: memconsole's: a stall in module init then names the module's function on every kernel.
STALL_ANCHORS = (
    r"process_one_work", r"do_syscall_", r"do_fast_syscall_", r"sysenter_dispatch",
    r"tracesys_phase2", r"el0_svc_handler", r"invoke_syscall", r"ret_fast_syscall",
    r"netif_receive_skb", r"do_softirq", r"call_timer_fn", r"_run_timers", r"run_timer_softirq",
    r"hrtimer_run", r"run_ksoftirqd", r"smpboot_thread_fn", r"^kthread$", r"start_secondary",
    r"cpu_startup_entry", r"ret_from_fork", r"vfs_write", r"vfs_read", r"vfs_iter_read",
    r"vfs_iter_write", r"do_iter_read", r"do_iter_write", r"call_read_iter", r"call_write_iter",
    r"new_sync_read", r"new_sync_write", r"vfs_ioctl", r"ksys_ioctl", r"compat_ioctl",
    r"compat_sys_ioctl", r"blkdev_driver_ioctl", r"blkdev_ioctl", r"do_iter_readv_writev",
    r"^call_mmap", r"mmap_region", r"do_mmap", r"do_dentry_open", r"vfs_open", r"^sock_sendmsg",
    r"^sock_recvmsg", r"^sock_release", r"^__sock_release", r"^setsockopt$",
    r"kernel_setsockopt", r"sock_common_setsockopt", r"^listen$", r"kernel_listen",
    r"sk_common_release", r"^sock_mmap", r"^accept$", r"kernel_accept", r"^sock_do_ioctl",
    r"^sock_ioctl", r"^compat_sock_ioctl", r"^nfnetlink_rcv_msg", r"^rtnetlink_rcv_msg",
    r"^netlink_dump", r"^(?:sys_)?(?:socketpair|connect|ioctl)", r"__do_fault", r"do_page_fault",
    r"^page_fault$", r"__fput", r"task_work_run", r"exit_to_usermode", r"smp_call_function",
    r"tasklet_action", r"tasklet_hi_action", r"^do_one_initcall$",
)
#: A hung task blocked in one of these is "hung in" the second name (syzkaller's
#: linuxHangTaskFrameExtractor); ``""`` keeps the frame's own name.
HUNG_ANCHORS = (("rtnl_lock", ""), ("synchronize_rcu", "synchronize_rcu"),
                ("synchronize_srcu", "synchronize_rcu"), ("synchronize_net", "synchronize_rcu"),
                ("synchronize_sched", "synchronize_rcu"))
#: Otherwise the first frame matching none of these (substrings) is where it hangs.
HUNG_SKIP = (r"sched", r"_lock", r"_slowlock", r"down", r"rwsem", r"completion", r"kthread",
             r"wait", r"synchronize", r"context_switch", r"__switch_to", r"cancel_delayed_work",
             r"rcu_barrier")


_Rows = tuple[tuple[Category, re.Pattern[str]], ...]


@functools.cache
def _compiled() -> tuple[re.Pattern[str], re.Pattern[str], _Rows]:
    skipped = "|".join(f"(?:{r.pattern})" for r in MACHINERY if r.category is not Category.ENTRY)
    entry = "|".join(f"(?:{r.pattern})" for r in MACHINERY if r.category is Category.ENTRY)
    rows = tuple((r.category, re.compile(r.pattern)) for r in MACHINERY)
    return re.compile(skipped), re.compile(entry), rows


@functools.cache
def _clone() -> re.Pattern[str]:
    return re.compile(CLONE_SUFFIX)


@functools.cache
def _anchors() -> tuple[re.Pattern[str], re.Pattern[str]]:
    return re.compile("|".join(STALL_ANCHORS)), re.compile("|".join(HUNG_SKIP))


@functools.lru_cache(maxsize=16384)
def normalize_function(name: str) -> str:
    """A function name without build-dependent decoration:
    ``__list_del_entry_valid.cold.12`` -> ``__list_del_entry_valid``,
    ``__pfx_qux`` -> ``qux``; a C++ name of the simplest mangled form
    (``_Z8fakeNameiii``) is the name itself, as a demangler prints it without
    parameters."""
    if name.startswith(("__pfx_", "__cfi_")):
        name = name[6:]
    if name.startswith("_Z") and name[2:3].isdigit():
        digits = len(name) - len(name[2:].lstrip("0123456789")) - 2
        length = int(name[2:2 + digits])
        if 0 < length <= len(name) - 2 - digits:
            name = name[2 + digits:2 + digits + length]
    return _clone().sub("", name) if "." in name else name


@functools.lru_cache(maxsize=16384)
def strip_syscall(name: str) -> str:
    """syzkaller's rule: the shortest name left by removing one wrapper prefix
    (``__x64_sys_rmdir`` -> ``sys_rmdir``, ``__se_sys_mremap`` -> ``mremap``)."""
    best = name
    for prefix in SYSCALL_PREFIXES:
        if name.startswith(prefix) and len(name) - len(prefix) < len(best):
            best = name[len(prefix):]
    return best


@functools.lru_cache(maxsize=16384)
def is_machinery(name: str, *, entry: bool = False) -> bool:
    """Whether the normalised function *name* is machinery, never the culprit;
    with *entry*, entry functions count too (signature callers)."""
    skipped, entries, _ = _compiled()
    return bool(skipped.fullmatch(name) or (entry and entries.fullmatch(name)))


@functools.lru_cache(maxsize=16384)
def category(name: str) -> Category | None:
    """The category of the normalised function *name*, ``None`` for ordinary code."""
    for cat, pattern in _compiled()[2]:
        if pattern.fullmatch(name):
            return cat
    return None


@functools.lru_cache(maxsize=16384)
def is_stall_anchor(name: str) -> bool:
    """Whether *name* dispatches work (:data:`STALL_ANCHORS`, searched as syzkaller does)."""
    return _anchors()[0].search(name) is not None


@functools.lru_cache(maxsize=16384)
def is_hung_skip(name: str) -> bool:
    """Whether a hung task is not "hung in" *name* (:data:`HUNG_SKIP`)."""
    return _anchors()[1].search(name) is not None
