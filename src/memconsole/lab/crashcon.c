// SPDX-License-Identifier: GPL-2.0
/*
 * crashcon - console tests for the memconsole lab: a hard lockup with the
 * last lines printed with interrupts off, and a printk benchmark.
 *
 *	insmod crashcon.ko action=hardlockup
 *	insmod crashcon.ko action=bench count=2000 keep=memconsole
 *
 * Built beside crashy.ko from the same Kbuild.  These actions are not in
 * crashy.c on purpose: tests/test_symbolize.py maps the call-site offsets of
 * reports recorded from crashy.ko (tests/fixtures/lab) to lines of a
 * freshly built crashy.ko, so crashy_init() must keep its machine code.
 *
 * Only APIs present in both Linux 6.1 and 6.12 are used, except the walk
 * over the console list, which 6.2 turned from a linked list into an hlist
 * (one LINUX_VERSION_CODE test).
 */

#include <linux/console.h>
#include <linux/errno.h>
#include <linux/init.h>
#include <linux/irqflags.h>
#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/types.h>
#include <linux/version.h>

static char *action = "none";
module_param(action, charp, 0444);
MODULE_PARM_DESC(action, "what to do: none, hardlockup, bench");

static unsigned int count = 2000;
module_param(count, uint, 0444);
MODULE_PARM_DESC(count, "action=bench: messages to print");

static char *keep = "memconsole";
module_param(keep, charp, 0444);
MODULE_PARM_DESC(keep, "action=bench: the one console left enabled (others stopped)");

/*
 * action=hardlockup
 *
 * Interrupts off, then spin: the CPU runs nothing else, not the timer
 * interrupt, so neither watchdog on it reports anything (the NMI watchdog
 * needs a PMU, which QEMU's TCG does not give).  The lines printed after
 * local_irq_disable() reach the consoles synchronously, from this context;
 * on a one-CPU machine no user-space program can read them before the
 * reset.  Expected output, then silence:
 *   crashy: hardlockup: disabling interrupts on CPU N
 *   crashy: hardlockup: debug line with interrupts off     (KERN_DEBUG)
 *   crashy: hardlockup: interrupts off, line 1 of 3
 *   ... line 3 of 3
 *   crashy: hardlockup: spinning with interrupts off
 */
static noinline void crashcon_hardlockup(void)
{
	int i;

	pr_emerg("crashy: hardlockup: disabling interrupts on CPU %d\n", raw_smp_processor_id());
	local_irq_disable();
	printk(KERN_DEBUG "crashy: hardlockup: debug line with interrupts off\n");
	for (i = 1; i <= 3; i++)
		pr_emerg("crashy: hardlockup: interrupts off, line %d of 3\n", i);
	pr_emerg("crashy: hardlockup: spinning with interrupts off\n");
	for (;;)
		cpu_relax();
}

/*
 * action=bench (not a crash)
 *
 * The cost of printk() with the consoles the kernel has: every console but
 * the one named by keep= is stopped (console_stop()), count messages of
 * about 80 bytes are printed at KERN_INFO, timed with ktime_get_ns(), and
 * the consoles are started again (they then print the backlog).  With
 * keep=memconsole and memconsole.ko not loaded, no console prints: the
 * cost of storing a message and of the console loop with nothing to call.
 * Prints:
 *   crashy: bench: N messages in T ns, P ns per message, consoles: LIST
 */
#define CRASHCON_MAX_CONSOLES 16

static noinline int crashcon_bench(void)
{
	struct console *stopped[CRASHCON_MAX_CONSOLES], *con;
	char names[128] = "";
	int n = 0, i;
	u64 t0, t;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	console_list_lock();
#else
	console_lock();
#endif
	for_each_console(con) {
		if (!(con->flags & CON_ENABLED))
			continue;
		if (!strcmp(con->name, keep))
			snprintf(names + strlen(names), sizeof(names) - strlen(names), " %s%d",
				 con->name, con->index);
		else if (n < CRASHCON_MAX_CONSOLES)
			stopped[n++] = con;
	}
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	console_list_unlock();
#else
	console_unlock();
#endif
	for (i = 0; i < n; i++)
		console_stop(stopped[i]);
	t0 = ktime_get_ns();
	for (i = 0; i < count; i++)
		pr_info("crashy: bench message %6d of %6u: ..................................\n",
			i, count);
	t = ktime_get_ns() - t0;
	for (i = 0; i < n; i++)
		console_start(stopped[i]);
	pr_info("crashy: bench: %u messages in %llu ns, %llu ns per message, consoles:%s\n",
		count, t, count ? div_u64(t, count) : 0, names[0] ? names : " none");
	return 0;
}

static int __init crashcon_init(void)
{
	pr_info("crashy: action=%s\n", action);
	if (!strcmp(action, "none"))
		return 0;
	if (!strcmp(action, "hardlockup"))
		crashcon_hardlockup();
	if (!strcmp(action, "bench"))
		return crashcon_bench();
	pr_err("crashy: unknown action '%s'\n", action);
	return -EINVAL;
}

static void __exit crashcon_exit(void)
{
}

module_init(crashcon_init);
module_exit(crashcon_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("memconsole");
MODULE_DESCRIPTION("Console tests for the memconsole lab: hard lockup, printk benchmark");
