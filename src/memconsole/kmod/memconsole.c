// SPDX-License-Identifier: GPL-2.0
/*
 * memconsole - the kernel console, written into memconsole's persistent ring.
 *
 * A console driver that appends every kernel message, synchronously and in
 * any context the console path allows, as a record of memconsole's ring
 * format version 1 (docs/ring.md) to a reserved physical range that
 * survives a warm reset.  It writes the same records as the user-space
 * recorder (`memconsole record`), so `memconsole show --ring` and
 * `collect --ring` read what it wrote unchanged.  docs/kmod.md has the
 * write-path argument, the parameters and the DKMS installation.
 *
 *	insmod memconsole.ko mem_address=0x7200000 mem_size=1M
 *	insmod memconsole.ko mem_name=memconsole	(6.11+: reserve_mem=)
 *
 * What the console receives: the console is registered CON_EXTENDED, so the
 * kernel formats each record for it exactly as for a /dev/kmsg reader
 * (kernel/printk/printk.c: info_print_ext_header() and msg_print_ext_body(),
 * called from console_emit_next_record() on 6.1 and from
 * printk_get_next_message() on 6.12):
 *
 *	"<pri>,<seq>,<ts_usec>,<flag>[,...];<text with \xNN escapes>\n"
 *	" SUBSYSTEM=...\n DEVICE=...\n"
 *
 * which carries the level, the kernel's record sequence number and the
 * printk time stamp.  A non-extended console would get "[    1.234567] text"
 * with neither level nor sequence number.
 *
 * The kernel hands a console only the records below console_loglevel.  The
 * records it skipped (a jump in the sequence numbers) are read from the log
 * buffer with kmsg_dump_get_line() before the record that follows them, and
 * again at every kmsg dump (oops, panic, emergency restart, shutdown), unless
 * all_levels=0.  Records the log buffer no longer holds become a gap record.
 *
 * Only APIs present in both Linux 6.1 and 6.12 are used unconditionally;
 * Kbuild detects reserve_mem_find_by_name() and struct kmsg_dump_detail in
 * the kernel's headers.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/console.h>
#include <linux/crc32.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/hardirq.h>
#include <linux/init.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/kernel.h>
#include <linux/kmsg_dump.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/notifier.h>
#include <linux/panic_notifier.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/types.h>
#include <linux/uuid.h>
#include <linux/vmalloc.h>

#define MC_VERSION "0.1.0"

/* Ring format version 1: docs/ring.md, src/memconsole/ring/format.py. */
#define RING_MAGIC "MCONRING"
#define RING_VERSION 1
#define HEADER_SIZE 64
#define DATA_OFFSET (2 * HEADER_SIZE)
#define RING_ALIGN 8
#define MIN_REGION 4096
#define REC_MAGIC 0x52434d1eU /* "\x1eMCR" stored little-endian */
#define REC_HEADER_SIZE 64
#define MAX_RECORD (64 * 1024)
#define PRI_UNKNOWN 0xffff
#define SEQ_UNKNOWN U64_MAX
#define TIME_UNKNOWN S64_MIN

enum { REC_LOG = 1, REC_GAP = 2, REC_START = 3, REC_STOP = 4 };
enum { FLAG_CONT = 0x01, FLAG_TRUNCATED = 0x02, FLAG_DICT = 0x04 };

struct mc_header {
	char magic[8];
	__le16 version;
	__le16 header_size;
	__le32 flags;
	__le64 region_size;
	__le64 data_offset;
	__le64 data_size;
	__le32 nonce;
	__le32 align;
	__le64 created_ns;
	__le32 reserved;
	__le32 crc32;		/* of bytes 0..59 */
} __packed;

struct mc_rec {
	__le32 magic;
	__le32 crc;		/* of bytes 8..size-1, seeded with the nonce */
	__le32 size;
	__le16 pri;
	u8 type;
	u8 flags;
	__le64 seq;
	u8 boot[16];
	__le64 source_seq;
	__le64 mono_ns;
	__le64 time_ns;
} __packed;

static_assert(sizeof(struct mc_header) == HEADER_SIZE);
static_assert(sizeof(struct mc_rec) == REC_HEADER_SIZE);

/* -- parameters ----------------------------------------------------------- */

static unsigned long mem_address;
static unsigned long mem_size;
static char *mem_name;
static unsigned int mem_type;
static bool all_levels = true;

static int mc_set_size(const char *val, const struct kernel_param *kp)
{
	char *end;
	unsigned long long v = memparse(val, &end);

	if (end == val || (*end && *end != '\n'))
		return -EINVAL;
	*(unsigned long *)kp->arg = v;
	return 0;
}

static int mc_get_hex(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%#lx\n", *(unsigned long *)kp->arg);
}

static const struct kernel_param_ops mc_size_ops = {
	.set = mc_set_size,
	.get = mc_get_hex,
};

module_param_cb(mem_address, &mc_size_ops, &mem_address, 0444);
MODULE_PARM_DESC(mem_address, "physical start of the reserved range (memmap=SIZE$ADDR)");
module_param_cb(mem_size, &mc_size_ops, &mem_size, 0444);
MODULE_PARM_DESC(mem_size, "size of the range (K/M/G suffixes allowed)");
module_param(mem_name, charp, 0444);
MODULE_PARM_DESC(mem_name, "name of a reserve_mem= region (kernels with reserve_mem, 6.11+)");
module_param(mem_type, uint, 0444);
MODULE_PARM_DESC(mem_type, "0: write-combined mapping (default), 1: uncached");
module_param(all_levels, bool, 0444);
MODULE_PARM_DESC(all_levels,
		 "also record messages above console_loglevel, from the log buffer (default Y)");

/* -- state ---------------------------------------------------------------- */

static struct {
	void __iomem *base;	/* the whole region */
	u8 __iomem *data;	/* its data area */
	void *vaddr;		/* vmap() address to release, or NULL (ioremap) */
	phys_addr_t phys;
	u64 size;
	u64 data_size;
	u32 nonce;
	u32 max_record;
	u64 seq;		/* ring seq of the newest record */
	u64 pos;		/* data-area offset of the next record */
	u64 next_kseq;		/* first kernel seq this boot not yet in the ring */
	u8 boot[16];
	bool stopped;
} mc;

/*
 * Serialises every write to the ring.  Legacy consoles are already called
 * one at a time under console_lock, but a panic breaks that lock, the kmsg
 * dumper and module load/unload write too, and panic() can run in NMI.
 */
static DEFINE_RAW_SPINLOCK(mc_lock);
static int mc_owner = -1;	/* CPU holding mc_lock, for the NMI/oops path */
static bool mc_panicking;	/* set by the panic notifier: other CPUs stopped */

/* Staging buffers, used only under mc_lock: no allocation on the write path. */
static u8 mc_body[MAX_RECORD];
static char mc_line[8192];

static atomic_long_t st_records;	/* records written by this load */
static atomic_long_t st_caught_up;	/* of which: read from the log buffer */
static atomic_long_t st_lost;		/* kernel records lost (gap records) */
static atomic_long_t st_dropped;	/* console writes given up: lock busy */
static atomic_long_t st_broken;		/* times the lock was broken in panic */
static atomic_long_t st_unparsed;	/* messages in neither expected format */
static char mc_attach[200] = "not attached";
static char mc_region[64] = "";

static int mc_get_stat(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%ld\n", atomic_long_read(kp->arg));
}

static int mc_get_str(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%s\n", (const char *)kp->arg);
}

static int mc_get_state(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%s\n", !mc.base ? "detached" :
			 READ_ONCE(mc.stopped) ? "stopped" : "writing");
}

static int mc_get_u64(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%llu\n", READ_ONCE(*(u64 *)kp->arg));
}

static int mc_get_boot(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%pUb\n", mc.boot);
}

static int mc_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

#define MC_RO_OPS(name, getter) \
	static const struct kernel_param_ops name = { .set = mc_set_ro, .get = getter }
MC_RO_OPS(mc_stat_ops, mc_get_stat);
MC_RO_OPS(mc_str_ops, mc_get_str);
MC_RO_OPS(mc_state_ops, mc_get_state);
MC_RO_OPS(mc_u64_ops, mc_get_u64);
MC_RO_OPS(mc_boot_ops, mc_get_boot);

module_param_cb(state, &mc_state_ops, NULL, 0444);
MODULE_PARM_DESC(state, "writing, stopped (a stop record was written) or detached");
module_param_cb(region, &mc_str_ops, mc_region, 0444);
MODULE_PARM_DESC(region, "the ring as memconsole names it (mem:ADDR:SIZE)");
module_param_cb(attach, &mc_str_ops, mc_attach, 0444);
MODULE_PARM_DESC(attach, "what the module found at load: continued or formatted, and why");
module_param_cb(boot_id, &mc_boot_ops, NULL, 0444);
MODULE_PARM_DESC(boot_id, "the boot id every record carries");
module_param_cb(records, &mc_stat_ops, &st_records, 0444);
MODULE_PARM_DESC(records, "records written since the module was loaded");
module_param_cb(caught_up, &mc_stat_ops, &st_caught_up, 0444);
MODULE_PARM_DESC(caught_up, "log records read from the log buffer, not from the console");
module_param_cb(lost, &mc_stat_ops, &st_lost, 0444);
MODULE_PARM_DESC(lost, "kernel records lost before they could be written (in gap records)");
module_param_cb(dropped, &mc_stat_ops, &st_dropped, 0444);
MODULE_PARM_DESC(dropped, "console writes given up because the ring was busy");
module_param_cb(broken_locks, &mc_stat_ops, &st_broken, 0444);
MODULE_PARM_DESC(broken_locks, "times a panic broke the ring lock of a stopped CPU");
module_param_cb(unparsed, &mc_stat_ops, &st_unparsed, 0444);
MODULE_PARM_DESC(unparsed, "messages in neither expected format (kept as text)");
module_param_cb(last_seq, &mc_u64_ops, &mc.seq, 0444);
MODULE_PARM_DESC(last_seq, "ring sequence number of the newest record");
module_param_cb(next_kernel_seq, &mc_u64_ops, &mc.next_kseq, 0444);
MODULE_PARM_DESC(next_kernel_seq, "first kernel log sequence number not yet in the ring");

/* -- the ring lock ------------------------------------------------------------ */

/* How long the NMI/oops path waits for the lock before giving up on it. */
#define MC_SPIN_US 10000

/*
 * Take mc_lock with interrupts off; false if the message must be given up.
 *
 * Normal context spins: holders keep the lock for one record (or one
 * catch-up).  In NMI or while an oops is in progress the holder may be
 * this CPU (we interrupted it) or a CPU that will never run again, so the
 * lock is only tried, for up to MC_SPIN_US.  After the panic notifier has
 * run, every other CPU is stopped: a holder on another CPU (or on this one,
 * interrupted by the NMI that panicked) will never release it, and the
 * lock is broken.  An oops in our own write (the holder is this CPU, not in
 * NMI) gives up rather than run the same code again.
 */
static bool mc_lock_get(unsigned long *flags)
{
	int cpu, i;

	if (!in_nmi() && !oops_in_progress) {
		raw_spin_lock_irqsave(&mc_lock, *flags);
		WRITE_ONCE(mc_owner, raw_smp_processor_id());
		return true;
	}
	local_irq_save(*flags);
	cpu = raw_smp_processor_id();
	for (i = 0;; i++) {
		if (raw_spin_trylock(&mc_lock))
			goto locked;
		if (READ_ONCE(mc_owner) == cpu || i >= MC_SPIN_US)
			break;
		udelay(1);
	}
	if (READ_ONCE(mc_panicking) && (READ_ONCE(mc_owner) != cpu || in_nmi())) {
		raw_spin_lock_init(&mc_lock);
		if (!raw_spin_trylock(&mc_lock))
			goto give_up;
		atomic_long_inc(&st_broken);
		goto locked;
	}
give_up:
	local_irq_restore(*flags);
	atomic_long_inc(&st_dropped);
	return false;
locked:
	WRITE_ONCE(mc_owner, cpu);
	return true;
}

static void mc_lock_put(unsigned long flags)
{
	WRITE_ONCE(mc_owner, -1);
	raw_spin_unlock_irqrestore(&mc_lock, flags);
}

/* -- records ---------------------------------------------------------------- */

/* zlib.crc32(data, crc): the Linux CRC-32 without the pre/post inversion. */
static u32 zcrc(u32 crc, const void *p, size_t len)
{
	return ~crc32_le(~crc, p, len);
}

static s64 mc_wall_offset(void)
{
	/* As the recorder: wall clock minus CLOCK_MONOTONIC, plus the stamp. */
	return (s64)ktime_get_real_fast_ns() - (s64)ktime_get_mono_fast_ns();
}

/*
 * Append one record (docs/ring.md, "Crash consistency"), under mc_lock.
 *
 * Order of stores: zero the tail when the record does not fit before the
 * end (then wrap to 0); zero the 4 magic bytes at the record's offset;
 * bytes 4..size-1 (CRC, header fields, body); the magic.  wmb() between
 * the steps makes a write-combined mapping keep that order (x86 WC stores
 * may be reordered until a fence; an uncached mapping keeps program
 * order anyway), and the last one drains the write-combining buffers, so
 * the record is in memory when this returns.
 *
 * The ring state (seq, pos) is updated before the stores: a panic that
 * breaks the lock of a CPU stopped in here continues after this record,
 * whose magic is then missing, and the reader counts one missing record.
 */
static void mc_put(u8 type, u16 pri, u8 flags, u64 kseq, s64 mono, s64 wall,
		   const void *body, u32 len)
{
	struct mc_rec h;
	u32 room = mc.max_record - REC_HEADER_SIZE;
	u32 size, crc;
	u64 pos, n;
	u8 __iomem *p;

	if (len > room) {
		len = room;
		flags |= FLAG_TRUNCATED;
	}
	size = REC_HEADER_SIZE + len;
	n = ALIGN(size, RING_ALIGN);
	pos = mc.pos;
	if (pos + n > mc.data_size) {
		/* No record older than the wrap point survives past it. */
		memset_io(mc.data + pos, 0, mc.data_size - pos);
		wmb();
		pos = 0;
	}
	h.magic = 0;
	h.size = cpu_to_le32(size);
	h.pri = cpu_to_le16(pri);
	h.type = type;
	h.flags = flags;
	h.seq = cpu_to_le64(mc.seq + 1);
	memcpy(h.boot, mc.boot, sizeof(h.boot));
	h.source_seq = cpu_to_le64(kseq);
	h.mono_ns = cpu_to_le64((u64)mono);
	h.time_ns = cpu_to_le64((u64)wall);
	crc = zcrc(mc.nonce, (u8 *)&h + 8, REC_HEADER_SIZE - 8);
	crc = zcrc(crc, body, len);
	h.crc = cpu_to_le32(crc);

	WRITE_ONCE(mc.seq, mc.seq + 1);
	mc.pos = pos + n;

	p = mc.data + pos;
	writel(0, p);
	wmb();
	memcpy_toio(p + 4, (u8 *)&h + 4, REC_HEADER_SIZE - 4);
	memcpy_toio(p + REC_HEADER_SIZE, body, len);
	wmb();
	writel(REC_MAGIC, p);
	wmb();
	atomic_long_inc(&st_records);
}

static void mc_note(u8 type, const char *text)
{
	mc_put(type, PRI_UNKNOWN, 0, SEQ_UNKNOWN, ktime_get_mono_fast_ns(),
	       ktime_get_real_fast_ns(), text, strlen(text));
}

/* Kernel records first..first+count-1 are gone (a /dev/kmsg EPIPE for the recorder). */
static void mc_gap(u64 first, u64 count, s64 mono)
{
	__le64 c = cpu_to_le64(count);

	mc_put(REC_GAP, PRI_UNKNOWN, 0, first, mono, ktime_get_real_fast_ns(), &c, sizeof(c));
	atomic_long_add(count, &st_lost);
}

/* A kernel record: gap first if sequence numbers were skipped. */
static void mc_log(u64 kseq, u16 pri, u8 flags, s64 mono, const void *body, u32 len)
{
	if (kseq > mc.next_kseq)
		mc_gap(mc.next_kseq, kseq - mc.next_kseq, mono);
	mc_put(REC_LOG, pri, flags, kseq, mono,
	       mono == TIME_UNKNOWN ? TIME_UNKNOWN : mc_wall_offset() + mono, body, len);
	WRITE_ONCE(mc.next_kseq, kseq + 1);
}

/* -- what the console receives --------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Undo the \xNN escaping of msg_add_ext_text() into dst (at most room
 * bytes), as the recorder's unescape() does; return the bytes stored and
 * set *cut when they did not all fit.
 */
static u32 unescape(u8 *dst, u32 room, const char *s, u32 len, bool *cut)
{
	u32 i = 0, n = 0;
	int hi, lo;

	while (i < len) {
		u8 c = s[i];

		if (c == '\\' && i + 3 < len && s[i + 1] == 'x' &&
		    (hi = hexval(s[i + 2])) >= 0 && (lo = hexval(s[i + 3])) >= 0) {
			c = hi << 4 | lo;
			i += 4;
		} else {
			i++;
		}
		if (n == room) {
			*cut = true;
			break;
		}
		dst[n++] = c;
	}
	return n;
}

static bool parse_u64(const char *s, const char *end, u64 *out)
{
	u64 v = 0;

	if (s == end)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9' || v > (U64_MAX - 9) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return true;
}

struct mc_ext {
	u64 pri, seq, usec;
	u8 flags;
	const char *text;	/* escaped, up to the first '\n' */
	u32 text_len;
	const char *more;	/* the " KEY=VALUE\n" lines after it */
	u32 more_len;
};

/*
 * Parse "pri,seq,ts_usec,flags[,...];text\n KEY=VALUE\n..." as the
 * recorder's parse_kmsg() does (Documentation/ABI/testing/dev-kmsg):
 * fields after the flags are ignored, the prefix is at most 200 bytes.
 */
static bool parse_ext(const char *s, u32 len, struct mc_ext *e)
{
	const char *semi = memchr(s, ';', min_t(u32, len, 201));
	const char *f[4], *p, *end, *nl;
	int i;

	if (!semi)
		return false;
	f[0] = s;
	for (i = 1, p = s; i < 4; i++) {
		p = memchr(p, ',', semi - p);
		if (!p)
			return false;
		f[i] = ++p;
	}
	if (!parse_u64(f[0], f[1] - 1, &e->pri) || !parse_u64(f[1], f[2] - 1, &e->seq) ||
	    !parse_u64(f[2], f[3] - 1, &e->usec) || e->pri > PRI_UNKNOWN ||
	    e->usec > S64_MAX / 1000)
		return false;
	e->flags = (f[3] < semi && (*f[3] == 'c' || *f[3] == '+')) ? FLAG_CONT : 0;
	end = s + len;
	e->text = semi + 1;
	nl = memchr(e->text, '\n', end - e->text);
	e->text_len = (nl ? nl : end) - e->text;
	e->more = nl ? nl + 1 : end;
	e->more_len = end - e->more;
	return true;
}

/*
 * The record body as the recorder builds it: the unescaped text, and when
 * the continuation lines give a non-empty dictionary, "\0" and the lines
 * without their leading space joined by "\n" (kept as /dev/kmsg prints
 * them); then cut to the largest record.
 */
static u32 ext_body(const struct mc_ext *e, u8 *flags)
{
	u32 room = mc.max_record - REC_HEADER_SIZE;
	const char *p, *end = e->more + e->more_len;
	u32 n, lines = 0, dict_len = 0;
	bool cut = false;

	for (p = e->more; p < end;) {
		const char *nl = memchr(p, '\n', end - p);
		const char *stop = nl ? nl : end;

		if (*p == ' ' && stop > p) {
			dict_len += (lines ? 1 : 0) + (stop - p - 1);
			lines++;
		}
		p = stop + 1;
	}
	n = unescape(mc_body, room, e->text, e->text_len, &cut);
	if (dict_len) {
		*flags |= FLAG_DICT;
		lines = 0;
		for (p = e->more; p < end && !cut;) {
			const char *nl = memchr(p, '\n', end - p);
			const char *stop = nl ? nl : end;

			if (*p == ' ' && stop > p) {
				u32 want = 1 + (stop - p - 1);

				if (want > room - n) {
					want = room - n;
					cut = true;
				}
				if (want) {
					mc_body[n] = lines ? '\n' : '\0';
					memcpy(mc_body + n + 1, p + 1, want - 1);
					n += want;
				}
				lines++;
			}
			p = stop + 1;
		}
	}
	if (cut)
		*flags |= FLAG_TRUNCATED;
	return n;
}

/*
 * A line of kmsg_dump_get_line(syslog=true): record_print_text() puts the
 * same prefix "<pri>[    1.234567] " before every line of the record.
 * Returns false when the line does not start with "<pri>".
 */
static bool parse_syslog_line(const char *s, u32 len, u16 *pri, s64 *mono, u32 *body_len,
			      u8 *flags)
{
	u32 room = mc.max_record - REC_HEADER_SIZE;
	const char *p = s + 1, *end = s + len, *line;
	u64 v, sec, usec;
	u32 plen, n = 0;

	if (len < 3 || s[0] != '<')
		return false;
	line = memchr(p, '>', min_t(u32, len - 1, 6));
	if (!line || !parse_u64(p, line, &v) || v > PRI_UNKNOWN)
		return false;
	*pri = v;
	p = line + 1;
	*mono = TIME_UNKNOWN;
	if (p < end && *p == '[') {
		/* print_time(): "[%5lu.%06lu]", seconds and microseconds */
		const char *dot = memchr(p, '.', min_t(long, end - p, 24));
		const char *close = dot ? memchr(dot, ']', min_t(long, end - dot, 8)) : NULL;
		const char *q = p + 1;

		while (q < end && *q == ' ')
			q++;
		if (close && close - dot == 7 && parse_u64(q, dot, &sec) &&
		    parse_u64(dot + 1, close, &usec) && sec < S64_MAX / NSEC_PER_SEC) {
			*mono = sec * NSEC_PER_SEC + usec * NSEC_PER_USEC;
			p = close + 1;
			if (p < end && *p == ' ')
				p++;
		}
	}
	plen = p - s;
	if (s[len - 1] == '\n')
		end--;
	/* Every line of the record has the same prefix: drop it. */
	for (line = s; line <= end;) {
		const char *nl = memchr(line, '\n', end - line);
		const char *stop = nl ? nl : end;
		const char *t = line;
		u32 k, want;

		if ((u32)(stop - line) >= plen && !memcmp(line, s, plen))
			t = line + plen;
		want = (line != s) + (stop - t);
		k = min(want, room - n);
		if (k < want)
			*flags |= FLAG_TRUNCATED;
		if (k && line != s) {
			mc_body[n++] = '\n';
			k--;
		}
		memcpy(mc_body + n, t, k);
		n += k;
		if (!nl || n == room)
			break;
		line = nl + 1;
	}
	*body_len = n;
	return true;
}

/*
 * Write the kernel records [mc.next_kseq, upto) that are still in the log
 * buffer: the ones the console was not given (above console_loglevel), or
 * lost to a busy lock.  What the buffer no longer has becomes a gap before
 * the next record.  Bounded: every step moves the iterator forward.
 */
static void mc_catch_up(u64 upto)
{
	struct kmsg_dump_iter it = { .cur_seq = mc.next_kseq, .next_seq = upto };
	size_t len;
	unsigned int guard;

	if (!all_levels)
		return;
	for (guard = 0; guard < (1U << 20) && mc.next_kseq < upto; guard++) {
		u64 kseq;
		s64 mono;
		u16 pri;
		u32 blen;
		u8 flags = 0;

		it.cur_seq = mc.next_kseq;
		if (!kmsg_dump_get_line(&it, true, mc_line, sizeof(mc_line), &len))
			break;
		kseq = it.cur_seq - 1;
		if (kseq >= upto)
			break;
		if (len >= sizeof(mc_line) - 1)
			flags |= FLAG_TRUNCATED;
		if (!parse_syslog_line(mc_line, len, &pri, &mono, &blen, &flags)) {
			/* Not "<pri>...": keep the line as it is. */
			atomic_long_inc(&st_unparsed);
			mc_log(kseq, PRI_UNKNOWN, flags, TIME_UNKNOWN, mc_line, len);
			continue;
		}
		mc_log(kseq, pri, flags, mono, mc_body, blen);
		atomic_long_inc(&st_caught_up);
	}
}

static void mc_write(struct console *con, const char *s, unsigned int len)
{
	unsigned long irqflags;
	struct mc_ext e;
	u8 flags;
	u32 n;

	if (!mc_lock_get(&irqflags))
		return;
	if (mc.stopped)
		goto out;
	if (!parse_ext(s, len, &e)) {
		/* Not the extended format: a "** N printk messages dropped **" line first? */
		const char *nl = memchr(s, '\n', len);

		if (!nl || !parse_ext(nl + 1, len - (nl + 1 - s), &e)) {
			bool cut = false;

			atomic_long_inc(&st_unparsed);
			n = unescape(mc_body, mc.max_record - REC_HEADER_SIZE, s,
				     len && s[len - 1] == '\n' ? len - 1 : len, &cut);
			mc_put(REC_LOG, PRI_UNKNOWN, cut ? FLAG_TRUNCATED : 0, SEQ_UNKNOWN,
			       ktime_get_mono_fast_ns(), ktime_get_real_fast_ns(), mc_body, n);
			goto out;
		}
	}
	if (e.seq < mc.next_kseq)
		goto out;	/* already in the ring (replay, or caught up earlier) */
	if (e.seq > mc.next_kseq)
		mc_catch_up(e.seq);
	flags = e.flags;
	n = ext_body(&e, &flags);
	mc_log(e.seq, e.pri, flags, e.usec * 1000, mc_body, n);
out:
	mc_lock_put(irqflags);
}

static struct console mc_console = {
	.name = "memconsole",
	.write = mc_write,
	/*
	 * EXTENDED: /dev/kmsg format (level, seq); PRINTBUFFER: replay the log
	 * buffer from its oldest record; ENABLED: enabled without console=, as
	 * pstore and netconsole are; ANYTIME: safe on a CPU going offline.
	 */
	.flags = CON_EXTENDED | CON_PRINTBUFFER | CON_ENABLED | CON_ANYTIME,
	.index = 0,
};

/* -- kmsg dump, panic, shutdown ---------------------------------------------- */

static void mc_dumped(enum kmsg_dump_reason reason)
{
	unsigned long irqflags;

	if (!mc_lock_get(&irqflags))
		return;
	if (!mc.stopped) {
		/* Everything still in the log buffer, whatever the console got. */
		mc_catch_up(U64_MAX);
		if (reason == KMSG_DUMP_SHUTDOWN) {
			mc_note(REC_STOP, system_state == SYSTEM_POWER_OFF ?
				"memconsole.ko: stopped (power off)" :
				system_state == SYSTEM_HALT ?
				"memconsole.ko: stopped (halt)" :
				"memconsole.ko: stopped (restart)");
			WRITE_ONCE(mc.stopped, true);
		}
	}
	mc_lock_put(irqflags);
}

#ifdef MEMCONSOLE_HAVE_KMSG_DUMP_DETAIL
static void mc_dump(struct kmsg_dumper *dumper, struct kmsg_dump_detail *detail)
{
	mc_dumped(detail->reason);
}
#else
static void mc_dump(struct kmsg_dumper *dumper, enum kmsg_dump_reason reason)
{
	mc_dumped(reason);
}
#endif

/*
 * kmsg_dump() runs on oops (oops_exit), panic (after the other CPUs are
 * stopped), emergency_restart() (sysrq b) and, with max_reason SHUTDOWN,
 * in kernel_restart/halt/power_off after their last message.  Only the
 * clean shutdown writes a stop record.
 */
static struct kmsg_dumper mc_dumper = {
	.dump = mc_dump,
	.max_reason = KMSG_DUMP_SHUTDOWN,
};

static int mc_panic(struct notifier_block *nb, unsigned long event, void *msg)
{
	WRITE_ONCE(mc_panicking, true);
	return NOTIFY_DONE;
}

static struct notifier_block mc_panic_nb = {
	.notifier_call = mc_panic,
	.priority = INT_MAX,
};

/* -- attach ------------------------------------------------------------------ */

enum { HDR_OK, HDR_EMPTY, HDR_FOREIGN, HDR_DAMAGED, HDR_VERSION, HDR_GEOMETRY };

/* One header copy, checked as ring/format.py _check_copy() does; why says what is wrong. */
static int check_copy(const struct mc_header *h, int at, u64 size, char *why, size_t wn)
{
	const u8 *raw = (const u8 *)h;
	u64 off = le64_to_cpu(h->data_offset), dsz = le64_to_cpu(h->data_size);

	if (memcmp(h->magic, RING_MAGIC, 8)) {
		if (!memchr_inv(raw, 0, HEADER_SIZE)) {
			scnprintf(why, wn, "region is empty (all zero)");
			return HDR_EMPTY;
		}
		if (!memcmp(raw, "DBGC", 4))
			scnprintf(why, wn, "not a memconsole ring: ramoops persistent_ram zone "
				  "(signature DBGC)");
		else
			scnprintf(why, wn, "not a memconsole ring: unknown content (first bytes "
				  "%8phN)", raw);
		return HDR_FOREIGN;
	}
	if (zcrc(0, raw, HEADER_SIZE - 4) != le32_to_cpu(h->crc32)) {
		scnprintf(why, wn, "ring header at %d is damaged (checksum mismatch)", at);
		return HDR_DAMAGED;
	}
	if (le16_to_cpu(h->version) != RING_VERSION) {
		scnprintf(why, wn, "ring format version %u; this memconsole reads version %u",
			  le16_to_cpu(h->version), RING_VERSION);
		return HDR_VERSION;
	}
	if (le16_to_cpu(h->header_size) != HEADER_SIZE || le32_to_cpu(h->align) != RING_ALIGN ||
	    off < DATA_OFFSET || off % RING_ALIGN || dsz % RING_ALIGN ||
	    dsz < REC_HEADER_SIZE * 4 || off > size || dsz > size - off) {
		scnprintf(why, wn, "ring header geometry (data %llu+%llu, region %llu) does not "
			  "fit the %llu-byte region", off, dsz, le64_to_cpu(h->region_size), size);
		return HDR_GEOMETRY;
	}
	return HDR_OK;
}

static void mc_format(void)
{
	struct mc_header h = {};

	memcpy(h.magic, RING_MAGIC, sizeof(h.magic));
	h.version = cpu_to_le16(RING_VERSION);
	h.header_size = cpu_to_le16(HEADER_SIZE);
	h.region_size = cpu_to_le64(mc.size);
	h.data_offset = cpu_to_le64(DATA_OFFSET);
	h.data_size = cpu_to_le64((mc.size - DATA_OFFSET) & ~(u64)(RING_ALIGN - 1));
	h.nonce = cpu_to_le32(get_random_u32());
	h.align = cpu_to_le32(RING_ALIGN);
	h.created_ns = cpu_to_le64(ktime_get_real_ns());
	h.crc32 = cpu_to_le32(zcrc(0, &h, HEADER_SIZE - 4));
	/* Primary, then backup: a torn format leaves one copy old or invalid. */
	memcpy_toio(mc.base, &h, HEADER_SIZE);
	wmb();
	memcpy_toio(mc.base + HEADER_SIZE, &h, HEADER_SIZE);
	wmb();
}

/*
 * Scan the data area as ring/format.py scan_records() does and continue after
 * the record with the highest seq (Ring.__init__): the next record goes
 * right after it, with seq + 1; the next kernel record after the highest
 * kernel seq this boot already has in the ring.  Returns the number of
 * valid records and counts corrupt candidates.
 */
static u64 mc_scan(u64 *corrupt)
{
	u64 end = mc.data_size, limit = min_t(u64, MAX_RECORD, end);
	u64 pos = 0, found = 0, last_off = 0, last_size = 0, best = 0;
	bool have_last = false, have_kseq = false;
	struct mc_rec h;

	*corrupt = 0;
	mc.seq = 0;
	while (pos + REC_HEADER_SIZE <= end) {
		u32 size;

		if (readl(mc.data + pos) != REC_MAGIC) {
			pos += RING_ALIGN;
			continue;
		}
		memcpy_fromio(&h, mc.data + pos, REC_HEADER_SIZE);
		size = le32_to_cpu(h.size);
		if (size < REC_HEADER_SIZE || size > limit || size > end - pos) {
			(*corrupt)++;
			pos += RING_ALIGN;
			continue;
		}
		memcpy_fromio(mc_body, mc.data + pos + REC_HEADER_SIZE, size - REC_HEADER_SIZE);
		if (zcrc(zcrc(mc.nonce, (u8 *)&h + 8, REC_HEADER_SIZE - 8), mc_body,
			 size - REC_HEADER_SIZE) != le32_to_cpu(h.crc)) {
			(*corrupt)++;
			pos += RING_ALIGN;
			continue;
		}
		found++;
		if (!have_last || le64_to_cpu(h.seq) > mc.seq) {
			have_last = true;
			mc.seq = le64_to_cpu(h.seq);
			last_off = pos;
			last_size = size;
		}
		if (!memcmp(h.boot, mc.boot, 16) && le64_to_cpu(h.source_seq) != SEQ_UNKNOWN &&
		    (h.type == REC_LOG || h.type == REC_GAP)) {
			u64 top = le64_to_cpu(h.source_seq);

			if (h.type == REC_GAP && size >= REC_HEADER_SIZE + 8)
				top += le64_to_cpup((__le64 *)mc_body) - 1;
			if (!have_kseq || top > best) {
				have_kseq = true;
				best = top;
			}
		}
		pos += ALIGN(size, RING_ALIGN);
	}
	mc.pos = have_last ? last_off + ALIGN(last_size, RING_ALIGN) : 0;
	if (mc.pos >= end)
		mc.pos = 0;
	mc.next_kseq = have_kseq ? best + 1 : 0;
	return found;
}

/* Validate the header as Ring.attach() does; format when it is not usable. */
static void mc_attach_ring(void)
{
	struct mc_header copy[2];
	char why[160], why2[160];
	int problem, good = 0;
	u64 records, corrupt;

	memcpy_fromio(copy, mc.base, sizeof(copy));
	problem = check_copy(&copy[0], 0, mc.size, why, sizeof(why));
	if (problem == HDR_DAMAGED || problem == HDR_GEOMETRY) {
		if (check_copy(&copy[1], HEADER_SIZE, mc.size, why2, sizeof(why2)) == HDR_OK) {
			problem = HDR_OK;
			good = 1;
		}
	}
	if (problem == HDR_OK && le64_to_cpu(copy[good].region_size) != mc.size) {
		scnprintf(why, sizeof(why), "ring was formatted for %llu bytes, region has %llu",
			  le64_to_cpu(copy[good].region_size), mc.size);
		problem = HDR_GEOMETRY;
	}
	if (problem != HDR_OK) {
		mc_format();
		memcpy_fromio(copy, mc.base, sizeof(copy));
		good = 0;
	} else if (memcmp(&copy[0], &copy[1], HEADER_SIZE)) {
		/* One copy is damaged: repair it from the good one. */
		memcpy_toio(mc.base + (1 - good) * HEADER_SIZE, &copy[good], HEADER_SIZE);
		wmb();
	}
	mc.nonce = le32_to_cpu(copy[good].nonce);
	mc.data = (u8 __iomem *)mc.base + le64_to_cpu(copy[good].data_offset);
	mc.data_size = le64_to_cpu(copy[good].data_size);
	mc.max_record = min_t(u64, MAX_RECORD, (mc.data_size / 4) & ~(u64)(RING_ALIGN - 1));
	records = mc_scan(&corrupt);
	if (problem != HDR_OK)
		scnprintf(mc_attach, sizeof(mc_attach), "formatted: %s", why);
	else
		scnprintf(mc_attach, sizeof(mc_attach),
			  "continued: %llu records, last seq %llu, %llu corrupt%s", records,
			  mc.seq, corrupt, good ? ", primary header repaired" : "");
}

/* -- mapping ------------------------------------------------------------------ */

/* As fs/pstore/ram_core.c: vmap() memory the kernel has pages for, else ioremap. */
static int mc_map(phys_addr_t start, u64 size)
{
	if (pfn_valid(start >> PAGE_SHIFT)) {
		unsigned int i, count = size >> PAGE_SHIFT;
		pgprot_t prot = mem_type ? pgprot_noncached(PAGE_KERNEL) :
				pgprot_writecombine(PAGE_KERNEL);
		struct page **pages = kmalloc_array(count, sizeof(*pages), GFP_KERNEL);

		if (!pages)
			return -ENOMEM;
		for (i = 0; i < count; i++)
			pages[i] = pfn_to_page((start >> PAGE_SHIFT) + i);
		/* VM_IOREMAP keeps kcore and vread() off it, as ramoops does. */
		mc.vaddr = vmap(pages, count, VM_MAP | VM_IOREMAP, prot);
		kfree(pages);
		if (!mc.vaddr)
			return -ENOMEM;
		mc.base = (void __iomem __force *)mc.vaddr;
		return 0;
	}
	if (!request_mem_region(start, size, "memconsole"))
		return -EBUSY;
	mc.base = mem_type ? ioremap(start, size) : ioremap_wc(start, size);
	if (!mc.base) {
		release_mem_region(start, size);
		return -ENOMEM;
	}
	return 0;
}

static void mc_unmap(void)
{
	if (mc.vaddr) {
		vunmap(mc.vaddr);
	} else if (mc.base) {
		iounmap(mc.base);
		release_mem_region(mc.phys, mc.size);
	}
	mc.base = NULL;
	mc.vaddr = NULL;
}

/* The running boot's /proc/sys/kernel/random/boot_id, as the recorder reads it. */
static int mc_read_boot_id(void)
{
	struct file *f = filp_open("/proc/sys/kernel/random/boot_id", O_RDONLY, 0);
	char buf[40] = "";
	loff_t pos = 0;
	ssize_t n;
	uuid_t id;

	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_read(f, buf, sizeof(buf) - 1, &pos);
	filp_close(f, NULL);
	if (n < UUID_STRING_LEN)
		return n < 0 ? n : -EINVAL;
	buf[UUID_STRING_LEN] = '\0';
	if (uuid_parse(buf, &id))
		return -EINVAL;
	memcpy(mc.boot, id.b, sizeof(mc.boot));
	return 0;
}

static int mc_find_region(void)
{
	if (mem_name && *mem_name) {
#ifdef MEMCONSOLE_HAVE_RESERVE_MEM
		phys_addr_t start, size;

		if (!reserve_mem_find_by_name(mem_name, &start, &size)) {
			pr_err("no reserve_mem region named %s\n", mem_name);
			return -ENOENT;
		}
		mem_address = start;
		mem_size = size;
#else
		pr_err("mem_name=%s: this kernel has no reserve_mem (6.11+); use mem_address "
		       "and mem_size\n", mem_name);
		return -EOPNOTSUPP;
#endif
	}
	if (!mem_size) {
		pr_err("no region: give mem_address and mem_size (memmap=SIZE$ADDR), or mem_name\n");
		return -EINVAL;
	}
	if (!PAGE_ALIGNED(mem_address) || !PAGE_ALIGNED(mem_size) || mem_size < MIN_REGION) {
		pr_err("region %#lx+%#lx: start and size must be page-aligned, size at least %d\n",
		       mem_address, mem_size, MIN_REGION);
		return -EINVAL;
	}
	if (mem_type > 1) {
		pr_err("mem_type=%u: 0 (write-combined) or 1 (uncached)\n", mem_type);
		return -EINVAL;
	}
	return 0;
}

static int __init mc_init(void)
{
	char note[160];
	unsigned long irqflags;
	int err;

	err = mc_find_region();
	if (err)
		return err;
	err = mc_read_boot_id();
	if (err) {
		pr_err("cannot read /proc/sys/kernel/random/boot_id (error %d)\n", err);
		return err;
	}
	mc.phys = mem_address;
	mc.size = mem_size;
	err = mc_map(mc.phys, mc.size);
	if (err) {
		pr_err("cannot map %#lx+%#lx (error %d)\n", mem_address, mem_size, err);
		return err;
	}
	scnprintf(mc_region, sizeof(mc_region), "mem:%#lx:%#lx", mem_address, mem_size);
	mc_attach_ring();
	pr_info("%s %s\n", mc_region, mc_attach);

	scnprintf(note, sizeof(note), "memconsole.ko " MC_VERSION
		  ": recording the kernel console into %s", mc_region);
	raw_spin_lock_irqsave(&mc_lock, irqflags);
	mc_note(REC_START, note);
	raw_spin_unlock_irqrestore(&mc_lock, irqflags);

	atomic_notifier_chain_register(&panic_notifier_list, &mc_panic_nb);
	err = kmsg_dump_register(&mc_dumper);
	if (err) {
		pr_err("cannot register the kmsg dumper (error %d)\n", err);
		atomic_notifier_chain_unregister(&panic_notifier_list, &mc_panic_nb);
		mc_unmap();
		return err;
	}
	register_console(&mc_console);
	return 0;
}

static void __exit mc_exit(void)
{
	unsigned long irqflags;

	unregister_console(&mc_console);
	kmsg_dump_unregister(&mc_dumper);
	atomic_notifier_chain_unregister(&panic_notifier_list, &mc_panic_nb);
	raw_spin_lock_irqsave(&mc_lock, irqflags);
	if (!mc.stopped) {
		mc_catch_up(U64_MAX);
		mc_note(REC_STOP, "memconsole.ko: stopped (module unloaded)");
		mc.stopped = true;
	}
	raw_spin_unlock_irqrestore(&mc_lock, irqflags);
	mc_unmap();
}

module_init(mc_init);
module_exit(mc_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("memconsole");
MODULE_DESCRIPTION("Kernel console into memconsole's persistent ring in reserved memory");
MODULE_VERSION(MC_VERSION);
