// SPDX-License-Identifier: GPL-2.0
/*
 * crashy - a test module that crashes the kernel on request.
 *
 * Used by the memconsole lab to produce a known kernel report, which must
 * then survive a warm reboot via pstore/ramoops and be collected and
 * explained.  Load it with
 *
 *	insmod crashy.ko action=KIND
 *
 * and the crash happens inside module_init, so the crashing task's comm is
 * "insmod" (except for action=workqueue, which crashes in a kworker).
 *
 * Every action lives in its own noinline function so that RIP (or the call
 * trace) names it: crashy_null, crashy_bug, crashy_warn, ...  None of them
 * take arguments, so gcc has no reason to emit .constprop/.isra clones and
 * the symbol names stay exact.
 *
 * Only APIs present in both Linux 6.1 and 6.12 are used.
 *
 * Notes on the expected reports below:
 *  - On 6.12 (since 6.10) x86 die() headers are prefixed with "Oops: ",
 *    e.g. "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI"; on 6.1 the
 *    same line reads "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI".  Page
 *    faults die with the string "Oops", so 6.12 prints "Oops: Oops: 0000 [#1]"
 *    where 6.1 prints "Oops: 0000 [#1]".  The flags after [#1] (PREEMPT, SMP,
 *    NOPTI/PTI) depend on the kernel config and the emulated CPU.
 *  - The module is GPL (no "P" taint) but out of tree and, on Debian,
 *    unsigned, so the taint flags show "OE".
 *  - Oopses only turn into a panic if the lab boots with panic_on_oops=1
 *    (or oops=panic).
 */

#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/errno.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/preempt.h>
#include <linux/printk.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/types.h>
#include <linux/workqueue.h>

static char *action = "none";
module_param(action, charp, 0444);
MODULE_PARM_DESC(action,
		 "what to do: none, null, bug, warn, divide, gpf, rodata, list, "
		 "softlockup, hung, panic, workqueue");

/* Loads and results go here so the compiler cannot drop them. */
static volatile unsigned long crashy_sink;

/*
 * action=null
 *
 * Expected report:
 *   BUG: kernel NULL pointer dereference, address: 0000000000000000
 *   #PF: supervisor read access in kernel mode
 *   #PF: error_code(0x0000) - not-present page
 *   Oops: 0000 [#1] PREEMPT SMP NOPTI          (6.12: "Oops: Oops: 0000 [#1] ...")
 *   RIP: 0010:crashy_null+0x.../0x... [crashy]
 *
 * The pointer itself is volatile, so gcc can neither see that it is NULL
 * nor turn the load into a trap or elide it.
 */
static noinline void crashy_null(void)
{
	unsigned long *volatile ptr = NULL;

	crashy_sink = *ptr;
}

/*
 * action=bug
 *
 * Expected report:
 *   kernel BUG at <path>/crashy.c:<line>!
 *   invalid opcode: 0000 [#1] PREEMPT SMP NOPTI   (6.12: "Oops: invalid opcode: ...")
 *   RIP: 0010:crashy_bug+0x.../0x... [crashy]
 */
static noinline void crashy_bug(void)
{
	BUG();
}

/*
 * action=warn
 *
 * Expected report:
 *   ------------[ cut here ]------------
 *   crashy: requested warning
 *   WARNING: CPU: N PID: P at <path>/crashy.c:<line> crashy_warn+0x.../0x... [crashy]
 *   RIP: 0010:crashy_warn+0x.../0x... [crashy]
 * and, because the lab boots with panic_on_warn=1:
 *   Kernel panic - not syncing: kernel: panic_on_warn set ...
 * (same text on Debian's 6.1 and 6.12, both have check_panic_on_warn()).
 * Without panic_on_warn the function returns and insmod fails with -EIO.
 */
static noinline void crashy_warn(void)
{
	WARN(1, "crashy: requested warning\n");
}

/*
 * action=divide
 *
 * Expected report:
 *   divide error: 0000 [#1] PREEMPT SMP NOPTI   (6.12: "Oops: divide error: ...")
 *   RIP: 0010:crashy_divide+0x.../0x... [crashy]
 *
 * Both operands are volatile, so gcc cannot fold the division and has to
 * emit a real idiv, which raises #DE.
 */
static noinline void crashy_divide(void)
{
	volatile long dividend = 42;
	volatile long divisor = 0;

	crashy_sink = dividend / divisor;
}

/*
 * action=gpf
 *
 * Expected report:
 *   general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI
 *   (6.12: "Oops: general protection fault, ...")
 *   RIP: 0010:crashy_gpf+0x.../0x... [crashy]
 *
 * 0xdead000000000100 is LIST_POISON1 on Debian's x86-64 kernels (non-canonical).
 */
static noinline void crashy_gpf(void)
{
	unsigned long *volatile ptr = (unsigned long *)0xdead000000000100UL;

	crashy_sink = *ptr;
}

/*
 * action=rodata
 *
 * Expected report:
 *   BUG: unable to handle page fault for address: ffffffffc0......
 *   #PF: supervisor write access in kernel mode
 *   #PF: error_code(0x0003) - permissions violation
 *   Oops: 0003 [#1] PREEMPT SMP NOPTI          (6.12: "Oops: Oops: 0003 [#1] ...")
 *   RIP: 0010:crashy_rodata+0x.../0x... [crashy]
 *
 * crashy_ro_value lives in the module's .rodata, which CONFIG_STRICT_MODULE_RWX
 * maps read-only before module_init runs.
 */
static const unsigned long crashy_ro_value = 0x0123456789abcdefUL;

static noinline void crashy_rodata(void)
{
	volatile unsigned long *ptr = (volatile unsigned long *)&crashy_ro_value;

	*ptr = 0xdeadbeefUL;
}

/*
 * action=list
 *
 * Expected report (CONFIG_DEBUG_LIST on 6.1, CONFIG_LIST_HARDENED +
 * CONFIG_DEBUG_LIST on 6.12, both with CONFIG_BUG_ON_DATA_CORRUPTION=y):
 *   list_del corruption. next->prev should be <entry>, but was <bogus>. (next=<head>)
 *   kernel BUG at lib/list_debug.c:<line>!
 *   invalid opcode: 0000 [#1] PREEMPT SMP NOPTI   (6.12: "Oops: invalid opcode: ...")
 *   RIP: 0010:__list_del_entry_valid.cold+...           (6.1)
 *   RIP: 0010:__list_del_entry_valid_or_report.cold+... (6.12)
 *   Call Trace: ... crashy_list+0x.../0x... [crashy]
 */
static LIST_HEAD(crashy_list_head);
static struct list_head crashy_list_entry;
static struct list_head crashy_list_bogus;

static noinline void crashy_list(void)
{
	list_add(&crashy_list_entry, &crashy_list_head);
	/* Corrupt the neighbour's back pointer: head.prev no longer points at entry. */
	crashy_list_entry.next->prev = &crashy_list_bogus;
	list_del(&crashy_list_entry);
}

/*
 * action=softlockup
 *
 * Expected report (the lab sets softlockup_panic=1 and watchdog_thresh=1 first):
 *   watchdog: BUG: soft lockup - CPU#N stuck for 2s! [insmod:P]
 *   RIP: 0010:crashy_softlockup+0x.../0x... [crashy]
 *   Kernel panic - not syncing: softlockup: hung tasks
 */
static noinline void crashy_softlockup(void)
{
	preempt_disable();
	for (;;)
		cpu_relax();
}

/*
 * action=hung
 *
 * Expected report (lab boots with hung_task_panic=1 hung_task_timeout_secs=3):
 *   INFO: task insmod:P blocked for more than 3 seconds.
 *   "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
 *   task:insmod state:D ...
 *   Call Trace: ... schedule_timeout ... crashy_hung+0x.../0x... [crashy]
 *   Kernel panic - not syncing: hung_task: blocked tasks
 */
static noinline void crashy_hung(void)
{
	for (;;)
		schedule_timeout_uninterruptible(MAX_SCHEDULE_TIMEOUT);
}

/*
 * action=panic
 *
 * Expected report:
 *   Kernel panic - not syncing: crashy: requested panic
 *   Call Trace: ... crashy_panic+0x.../0x... [crashy]
 */
static noinline void crashy_panic(void)
{
	panic("crashy: requested panic");
}

/*
 * action=workqueue
 *
 * Expected report (the oops happens in a kworker, not in insmod):
 *   BUG: kernel NULL pointer dereference, address: 0000000000000000
 *   #PF: supervisor read access in kernel mode
 *   #PF: error_code(0x0000) - not-present page
 *   Oops: 0000 [#1] PREEMPT SMP NOPTI          (6.12: "Oops: Oops: 0000 [#1] ...")
 *   CPU: N PID: P Comm: kworker/N:M ...        (6.12: "CPU: N UID: 0 PID: P Comm: ...")
 *   Workqueue: events crashy_work_fn [crashy]
 *   RIP: 0010:crashy_work_fn+0x.../0x... [crashy]
 *
 * insmod meanwhile waits killably (TASK_KILLABLE is ignored by the hung-task
 * detector on both 6.1 and 6.12), so a lab without panic_on_oops does not
 * get a second, misleading hung-task report about insmod.
 */
static DECLARE_COMPLETION(crashy_work_done);

static noinline void crashy_work_fn(struct work_struct *work)
{
	unsigned long *volatile ptr = NULL;

	crashy_sink = *ptr;
	complete(&crashy_work_done);
}

static DECLARE_WORK(crashy_work, crashy_work_fn);

static noinline int crashy_workqueue(void)
{
	queue_work(system_wq, &crashy_work);
	if (wait_for_completion_killable(&crashy_work_done))
		return -EINTR;
	return 0;
}

static int __init crashy_init(void)
{
	int ret = 0;

	pr_info("crashy: action=%s\n", action);

	if (!strcmp(action, "none")) {
		pr_info("crashy: loaded, not crashing\n");
		return 0;
	} else if (!strcmp(action, "null")) {
		crashy_null();
	} else if (!strcmp(action, "bug")) {
		crashy_bug();
	} else if (!strcmp(action, "warn")) {
		crashy_warn();
	} else if (!strcmp(action, "divide")) {
		crashy_divide();
	} else if (!strcmp(action, "gpf")) {
		crashy_gpf();
	} else if (!strcmp(action, "rodata")) {
		crashy_rodata();
	} else if (!strcmp(action, "list")) {
		crashy_list();
	} else if (!strcmp(action, "softlockup")) {
		crashy_softlockup();
	} else if (!strcmp(action, "hung")) {
		crashy_hung();
	} else if (!strcmp(action, "panic")) {
		crashy_panic();
	} else if (!strcmp(action, "workqueue")) {
		ret = crashy_workqueue();
	} else {
		pr_err("crashy: unknown action '%s'\n", action);
		return -EINVAL;
	}

	/* Only reached if the requested crash did not happen. */
	pr_err("crashy: action=%s returned without crashing\n", action);
	return ret ? ret : -EIO;
}

static void __exit crashy_exit(void)
{
	pr_info("crashy: unloaded\n");
}

module_init(crashy_init);
module_exit(crashy_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("memconsole");
MODULE_DESCRIPTION("Crashes the kernel on request, to test crash-log capture via pstore/ramoops");
