"""``memconsole doctor``: what keeps this machine from keeping its last
words, one check at a time, each with its fix.

Every check reads the live system through a :class:`Paths` prefix (the
root for /etc, /lib and /var, ``procfs`` for /proc, ``sysfs`` for /sys), so
the same code runs on a fake tree made of real captures
(tests/fixtures/doctor).  A check never raises: what it cannot read is a
``warn`` that says so.  The checks, in order (docs/doctor.md has the rules
and where each comes from):

  ramoops         loaded, with a region, the configured one, records of 16 KiB or more
  backend         /sys/module/pstore/parameters/backend is ramoops (only one backend at a time)
  pstore-mount    pstore mounted, so records can be read
  records         records waiting in /sys/fs/pstore (collect has not run?)
  systemd-pstore  whether systemd-pstore can take records before memconsole does
  panic           kernel.panic != 0: a panic reboots, and a warm reboot keeps the RAM
  recorder        a ``memconsole record`` recording into the configured ring
  canary          the survival canary's last result
  reservation     the configured ranges reserved: memmap= on the command line,
                  Reserved in /proc/iomem
  ram-wipe        UEFI asked to wipe RAM at the next boot (MemoryOverwriteRequestControl)
"""

from __future__ import annotations

import enum
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memconsole.config import Config

__all__ = ["CHECKS", "Finding", "Paths", "Status", "run_checks"]

#: A dmesg record zone smaller than this cuts a crash report short (ramoops's
#: default is 4 KiB; the lab's drills use 16 KiB and their reports decode whole).
MIN_RECORD_SIZE = 16 * 1024
_MOR = "MemoryOverwriteRequestControl-e20939be-32d4-41be-a150-897f85d49829"
_UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/lib/systemd/system",
              "lib/systemd/system")
_CONF_DIRS = ("etc/systemd", "run/systemd", "usr/lib/systemd", "lib/systemd")
_GRUB_DROPIN = "/etc/default/grub.d/90-memconsole.cfg"
_MODPROBE = "/etc/modprobe.d/memconsole.conf"


class Status(enum.Enum):
    """A check's verdict."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One line of doctor's report.

    Attributes:
        check: the check's name (one of :data:`CHECKS`).
        status: ok, warn or fail.
        detail: what was found, one sentence with the numbers.
        fix: the command or file that fixes it ("" when nothing needs fixing).
    """

    check: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        """The stable JSON object: check, status, detail, fix."""
        return {"check": self.check, "status": self.status.value, "detail": self.detail,
                "fix": self.fix}


@dataclass(frozen=True)
class Paths:
    """Where the live system is: *root* for files (/etc, /lib, /run,
    /var), *procfs* for /proc, *sysfs* for /sys."""

    root: Path = Path("/")
    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")

    def under(self, path: Path | str) -> Path:
        """An absolute path of the live system, inside *root*."""
        return self.root / str(path).lstrip("/")

    @classmethod
    def of_tree(cls, tree: Path) -> Paths:
        """A captured tree holding ``proc/`` and ``sys/``."""
        return cls(tree, tree / "proc", tree / "sys")


def _read(path: Path, limit: int = 1 << 20) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace").strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _mem(spec: str | None) -> tuple[int, int] | None:
    """``mem:ADDR:SIZE`` -> (address, size); None for anything else."""
    if not spec or not spec.startswith("mem:"):
        return None
    from memconsole._common import parse_size

    _, addr, size = spec.split(":")
    return int(addr, 0), parse_size(size)


def _rng(start: int, size: int) -> str:
    return f"{start:#x}+{size:#x}"


@dataclass
class _Context:
    cfg: Config
    paths: Paths
    now_ns: int
    config_name: str
    _cache: dict[str, Any] = field(default_factory=dict)

    def sys(self, rel: str) -> Path:
        return self.paths.sysfs / rel

    def proc(self, rel: str) -> Path:
        return self.paths.procfs / rel

    def params(self, module: str) -> dict[str, str] | None:
        """A module's parameters, or None when it is not loaded."""
        key = f"params:{module}"
        if key not in self._cache:
            d = self.sys(f"module/{module}/parameters")
            if not d.is_dir():
                self._cache[key] = None
            else:
                values = {}
                for p in sorted(d.iterdir())[:256]:
                    v = _read(p, 4096)
                    if v is not None:
                        values[p.name] = v
                self._cache[key] = values
        result: dict[str, str] | None = self._cache[key]
        return result

    def cmdline(self) -> str:
        return _read(self.proc("cmdline")) or ""

    def boot_id(self) -> str | None:
        text = _read(self.proc("sys/kernel/random/boot_id"), 64)
        try:
            return str(uuid.UUID(text)) if text else None
        except ValueError:
            return None


# -- the checks ----------------------------------------------------------------


def _ramoops(ctx: _Context) -> Finding:
    params = ctx.params("ramoops")
    if params is None:
        return Finding("ramoops", Status.FAIL,
                       "ramoops is not loaded: a crash now leaves no record",
                       f"modprobe ramoops (options in {_MODPROBE}), and a line 'ramoops' in "
                       "/etc/modules-load.d/memconsole.conf so it loads at every boot "
                       "(memconsole setup writes both)")
    addr, size = _int(params.get("mem_address")), _int(params.get("mem_size"))
    record = _int(params.get("record_size"))
    reason = _int(params.get("max_reason"))
    name = params.get("mem_name", "(null)")
    where = (f"region {_rng(addr, size)}" if addr is not None and size else "no region")
    if name not in ("(null)", ""):
        where += f" (reserve_mem {name})"
    detail = f"loaded: {where}, record_size {record}, max_reason {reason}"
    options = (f"options ramoops mem_address=ADDR mem_size=SIZE record_size=0x4000 "
               f"max_reason=2 in {_MODPROBE}, then rmmod ramoops && modprobe ramoops "
               "(after memconsole collect)")
    if not size:
        return Finding("ramoops", Status.FAIL,
                       f"ramoops is loaded without a memory region (mem_size {size})",
                       options.replace("ADDR", "0x...").replace("SIZE", "0x..."))
    want = _mem(ctx.cfg.ramoops)
    if ctx.cfg.method == "reserve-mem":
        # setup writes no ramoops = line for reserve_mem (the kernel picks the
        # address): the module must have found its region by name.
        if name in ("(null)", "") or (want is not None and size != want[1]):
            said = f"reserve_mem of {want[1]:#x} bytes" if want is not None else "reserve_mem"
            return Finding("ramoops", Status.FAIL,
                           f"{detail}; {ctx.config_name} says method = reserve-mem: {said} "
                           "through ramoops.mem_name",
                           "ramoops.mem_name=NAME with reserve_mem=SIZE:4096:NAME on the "
                           "kernel command line (memconsole setup --method reserve-mem)")
    elif want is not None and (addr, size) != want:
        fix = options.replace("ADDR", f"{want[0]:#x}").replace("SIZE", f"{want[1]:#x}")
        return Finding("ramoops", Status.FAIL,
                       f"ramoops uses {_rng(addr or 0, size)}, but {ctx.config_name} says "
                       f"ramoops = {ctx.cfg.ramoops}", fix)
    if record is not None and record < MIN_RECORD_SIZE:
        return Finding("ramoops", Status.WARN,
                       f"{detail}: records of {record} bytes cut a crash report short",
                       f"record_size=0x4000 on the options ramoops line of {_MODPROBE}, then "
                       "rmmod ramoops && modprobe ramoops")
    if reason is not None and 0 <= reason < 2:
        return Finding("ramoops", Status.WARN,
                       f"{detail}: max_reason {reason} records panics only, not oopses",
                       f"max_reason=2 on the options ramoops line of {_MODPROBE}")
    return Finding("ramoops", Status.OK, detail)


def _backend(ctx: _Context) -> Finding:
    if not ctx.sys("module/pstore").is_dir():
        return Finding("backend", Status.FAIL, "this kernel has no pstore (/sys/module/pstore)",
                       "a kernel built with CONFIG_PSTORE=y and CONFIG_PSTORE_RAM=m or y")
    value = _read(ctx.sys("module/pstore/parameters/backend"), 256)
    if value is None:
        return Finding("backend", Status.WARN,
                       "cannot read /sys/module/pstore/parameters/backend", "run as root")
    if value == "ramoops":
        return Finding("backend", Status.OK, "ramoops holds the pstore backend")
    asked = [w.split("=", 1)[1] for w in ctx.cmdline().split() if w.startswith("pstore.backend=")]
    if value in ("(null)", ""):
        why = ("ramoops is loaded but did not register: see dmesg | grep -e pstore -e ramoops"
               if ctx.params("ramoops") is not None else "ramoops is not loaded")
        return Finding("backend", Status.FAIL, f"no pstore backend is registered ({why})",
                       "modprobe ramoops (see the ramoops line)")
    on_cmdline = f"; pstore.backend={asked[-1]} is on the kernel command line" if asked else ""
    fix = ("replace pstore.backend=" + asked[-1] + " by " if asked else "add ") + \
        (f"pstore.backend=ramoops on the kernel command line (GRUB_CMDLINE_LINUX in "
         f"{_GRUB_DROPIN}; memconsole setup writes it), update-grub, reboot")
    return Finding("backend", Status.FAIL,
                   f"{value} holds the pstore backend, and the kernel takes one backend "
                   f"only: ramoops is refused and a crash is not kept in the reserved "
                   f"range{on_cmdline}", fix)


def _mounts(ctx: _Context) -> list[list[str]] | None:
    text = _read(ctx.proc("mounts"))
    return None if text is None else [ln.split() for ln in text.splitlines()[:10_000]]


def _pstore_mount(ctx: _Context) -> Finding:
    mounts = _mounts(ctx)
    if mounts is None:
        return Finding("pstore-mount", Status.WARN, "cannot read /proc/mounts", "")
    points = [m[1] for m in mounts if len(m) > 2 and m[2] == "pstore"]
    if points:
        return Finding("pstore-mount", Status.OK, f"pstore mounted at {', '.join(points)}")
    return Finding("pstore-mount", Status.FAIL,
                   "pstore is not mounted: the records ramoops kept cannot be read",
                   "mount -t pstore pstore /sys/fs/pstore (systemd mounts it at boot; "
                   "without systemd, /etc/fstab: pstore /sys/fs/pstore pstore "
                   "nosuid,nodev,noexec 0 0)")


def _records(ctx: _Context) -> Finding:
    mounts = _mounts(ctx) or []
    if not any(len(m) > 2 and m[2] == "pstore" for m in mounts):
        return Finding("records", Status.WARN, "cannot tell: pstore is not mounted",
                       "see the pstore-mount line")
    try:
        names = sorted(p.name for p in ctx.sys("fs/pstore").iterdir())
    except OSError as exc:
        return Finding("records", Status.WARN, f"cannot list /sys/fs/pstore: {exc.strerror}",
                       "run as root")
    moved = ""
    try:
        n = sum(1 for _ in ctx.paths.under("/var/lib/systemd/pstore").iterdir())
        if n:
            moved = (f"; {n} entries in /var/lib/systemd/pstore (systemd-pstore's copies, "
                     "which memconsole collect reads too)")
    except OSError:
        pass
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return Finding("records", Status.WARN,
                       f"{len(names)} records wait in /sys/fs/pstore ({shown}): collect has "
                       f"not archived them{moved}",
                       "memconsole collect (memconsole-collect.service runs it at every boot: "
                       "systemctl enable memconsole-collect.service)")
    return Finding("records", Status.OK, f"no records waiting in /sys/fs/pstore{moved}")


def _unit_file(ctx: _Context, name: str) -> Path | None:
    for d in _UNIT_DIRS:
        p = ctx.paths.under(d) / name
        if os.path.lexists(p):
            return p
    return None


def _unit_settings(ctx: _Context, name: str, unit: Path) -> dict[str, list[str]]:
    """Key -> values of a unit and its drop-ins (a list for repeated keys)."""
    files = [unit]
    for d in _UNIT_DIRS:
        dropins = ctx.paths.under(d) / f"{name}.d"
        if dropins.is_dir():
            files += sorted(dropins.glob("*.conf"))
    out: dict[str, list[str]] = {}
    for f in files:
        for key, value in _ini(_read(f) or ""):
            out.setdefault(key, []).extend(value.split())
    return out


def _ini(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        yield key.strip(), value.strip()


def _enabled(ctx: _Context, name: str, target: str = "sysinit.target") -> bool:
    return any(os.path.lexists(ctx.paths.under(d) / f"{target}.wants" / name)
               for d in _UNIT_DIRS)


def _pstore_conf(ctx: _Context) -> tuple[str, bool]:
    """systemd-pstore's Storage= and Unlink= (pstore.conf(5): defaults
    external and yes; drop-ins after the main file)."""
    storage, unlink = "external", True
    files = [ctx.paths.under("etc/systemd/pstore.conf")]
    for d in _CONF_DIRS:
        dropins = ctx.paths.under(d) / "pstore.conf.d"
        if dropins.is_dir():
            files += sorted(dropins.glob("*.conf"))
    for f in files:
        for key, value in _ini(_read(f) or ""):
            if key == "Storage" and value:
                storage = value
            elif key == "Unlink" and value:
                unlink = value.lower() in ("yes", "true", "1", "on")
    return storage, unlink


def _systemd_pstore(ctx: _Context) -> Finding:
    name = "systemd-pstore.service"
    if not ctx.paths.under("run/systemd/system").is_dir():
        return Finding("systemd-pstore", Status.OK,
                       "systemd is not running (no /run/systemd/system): systemd-pstore "
                       "does not run")
    unit = _unit_file(ctx, name)
    if unit is None:
        return Finding("systemd-pstore", Status.OK, "systemd-pstore is not installed")
    if unit.is_symlink() and os.readlink(unit) == "/dev/null":
        return Finding("systemd-pstore", Status.OK,
                       "systemd-pstore is masked: memconsole collect alone takes the records")
    if not _enabled(ctx, name):
        return Finding("systemd-pstore", Status.OK, "systemd-pstore is not enabled")
    storage, unlink = _pstore_conf(ctx)
    conf = f"Storage={storage}, Unlink={'yes' if unlink else 'no'}"
    collect = _unit_file(ctx, "memconsole-collect.service")
    first = False
    if collect is not None and _enabled(ctx, "memconsole-collect.service"):
        before = _unit_settings(ctx, "memconsole-collect.service", collect).get("Before", [])
        first = name in before
    if first:
        return Finding("systemd-pstore", Status.OK,
                       f"systemd-pstore is enabled ({conf}); memconsole-collect.service runs "
                       "before it and archives every record first")
    if storage == "none":
        return Finding("systemd-pstore", Status.OK,
                       f"systemd-pstore is enabled with {conf}: it leaves the records alone")
    if storage == "journal" and unlink:
        return Finding("systemd-pstore", Status.FAIL,
                       f"systemd-pstore ({conf}) moves each record into the journal and "
                       "erases it, and memconsole-collect.service does not run before it: "
                       "memconsole never sees those records",
                       "systemctl enable memconsole-collect.service (memconsole setup "
                       "installs it, ordered before systemd-pstore), or Storage=external "
                       "in /etc/systemd/pstore.conf.d/memconsole.conf")
    after = _unit_settings(ctx, name, unit).get("After", [])
    if not any(a in after for a in ("systemd-modules-load.service", "modprobe@ramoops.service")):
        return Finding("systemd-pstore", Status.WARN,
                       f"systemd-pstore ({conf}) is ordered after modprobe@efi_pstore only, "
                       "not after ramoops loads: it may look at /sys/fs/pstore too early "
                       "and leave this boot's records; and memconsole-collect.service is "
                       "not ordered before it",
                       "systemctl enable memconsole-collect.service (memconsole setup "
                       "installs it), or a drop-in /etc/systemd/system/"
                       "systemd-pstore.service.d/memconsole.conf with [Unit] "
                       "After=systemd-modules-load.service")
    return Finding("systemd-pstore", Status.OK,
                   f"systemd-pstore ({conf}) moves records to /var/lib/systemd/pstore, "
                   "where memconsole collect reads them")


def _panic(ctx: _Context) -> Finding:
    value = _int(_read(ctx.proc("sys/kernel/panic"), 64))
    if value is None:
        return Finding("panic", Status.WARN, "cannot read /proc/sys/kernel/panic", "")
    oops = _int(_read(ctx.proc("sys/kernel/panic_on_oops"), 64))
    on_oops = ("; an oops panics too (kernel.panic_on_oops = 1)" if oops
               else "; an oops alone does not (kernel.panic_on_oops = 0; oops=panic makes it)")
    if value == 0:
        n = ctx.cfg.panic if ctx.cfg.panic > 0 else 10
        return Finding("panic", Status.FAIL,
                       "kernel.panic = 0: a panicked machine waits for ever, and the power "
                       "cycle that ends the wait clears the RAM the record is in",
                       f"panic={n} on the kernel command line (memconsole setup adds it), and "
                       f"for this boot: sysctl kernel.panic={n}")
    when = f"{value} s after a panic" if value > 0 else "at once after a panic"
    return Finding("panic", Status.OK, f"kernel.panic = {value}: reboots {when}{on_oops}")


def _recorders(ctx: _Context) -> list[tuple[int, str | None]]:
    """(pid, ring spec or None) of every ``memconsole record`` process."""
    out: list[tuple[int, str | None]] = []
    try:
        pids = [p for p in ctx.paths.procfs.iterdir() if p.name.isdigit()]
    except OSError:
        return out
    for p in sorted(pids, key=lambda q: int(q.name))[:100_000]:
        try:
            args = (p / "cmdline").read_bytes()[:65536].split(b"\0")
        except OSError:
            continue
        words = [a.decode("utf-8", "replace") for a in args if a]
        try:
            i = next(i for i, w in enumerate(words)
                     if (w == "memconsole" and i > 0 and words[i - 1] == "-m")
                     or os.path.basename(w) == "memconsole")
        except StopIteration:
            continue
        rest = words[i + 1:]
        if "record" not in rest[:1]:
            continue
        ring = None
        for j, w in enumerate(rest):
            if w == "--ring" and j + 1 < len(rest):
                ring = rest[j + 1]
            elif w.startswith("--ring="):
                ring = w.split("=", 1)[1]
        if ring is None:
            env = _read(p / "environ") or ""
            ring = next((e.split("=", 1)[1] for e in env.split("\0")
                         if e.startswith("MEMCONSOLE_RING=")), None)
        if ring is None:
            # Neither --ring nor $MEMCONSOLE_RING: record takes ring = from
            # the configuration (cli/_sources.py), the one checked here.
            ring = ctx.cfg.ring
        out.append((int(p.name), ring))
    return out


def _same_ring(a: str | None, b: str) -> bool:
    if a is None:
        return False
    try:
        ma, mb = _mem(a), _mem(b)
    except ValueError:
        return a == b
    return ma == mb if ma is not None and mb is not None else a == b


def _ring_age(ctx: _Context, spec: str) -> str:
    """A few words on the ring's newest record of this boot ("" if unknown)."""
    if spec.startswith("mem:") and ctx.paths.procfs != Path("/proc"):
        return ""
    path = spec if spec.startswith("mem:") else str(ctx.paths.under(spec))
    try:
        from memconsole.ring import parse_ring
        from memconsole.ring.regions import open_region

        with open_region(path) as region:
            image = parse_ring(region.snapshot())
    except Exception as exc:  # any reason the ring cannot be read is only a detail
        return f"; the ring cannot be read ({str(exc)[:120]})"
    me = ctx.boot_id()
    for boot in image.boots:
        if boot.id == me:
            t = boot.last_time_ns
            age = f"{(ctx.now_ns - t) / 1e9:.0f} s ago" if t else "time unknown"
            return f"; {len(boot.records)} records of this boot, the newest {age}"
    return "; NO_RECORDS"


def _kernel_console(ctx: _Context) -> Finding | None:
    """The recorder line when memconsole.ko is loaded or set up: the module
    is then the ring's one writer and the user-space recorder steps aside
    (docs/kmod.md); None when the module plays no part."""
    from memconsole.ring.kconsole import read_params
    from memconsole.setup.kconsole import MODULES_LOAD, check_kernel_console

    if read_params(ctx.paths.sysfs) is None and not ctx.paths.under(MODULES_LOAD).exists():
        return None
    kc = check_kernel_console(ctx.cfg.ring, root=ctx.paths.root, sysfs=ctx.paths.sysfs,
                              procfs=ctx.paths.procfs)
    return Finding("recorder", Status(kc.status), f"kernel console: {kc.detail}", kc.fix)


def _recorder(ctx: _Context) -> Finding:
    module = _kernel_console(ctx)
    if module is not None:
        return module
    ring = ctx.cfg.ring
    if ring is None:
        return Finding("recorder", Status.OK,
                       "no ring configured (ring = none): a hang or a reset without a "
                       "panic leaves no console")
    procs = _recorders(ctx)
    mine = [pid for pid, r in procs if _same_ring(r, ring)]
    fix = ("systemctl enable --now memconsole-record.service (or run memconsole record "
           f"--ring {ring})")
    if not mine:
        others = ", ".join(f"pid {pid} into {r}" for pid, r in procs)
        also = f" (other recorders: {others})" if others else ""
        return Finding("recorder", Status.FAIL,
                       f"no memconsole record is recording into {ring}: a hang or reset "
                       f"now leaves no console{also}", fix)
    age = _ring_age(ctx, ring)
    if age == "; NO_RECORDS":
        return Finding("recorder", Status.WARN,
                       f"memconsole record (pid {mine[0]}) runs, but {ring} holds no record "
                       "of this boot", "check its output (journalctl -u "
                       f"memconsole-record.service); {fix}")
    return Finding("recorder", Status.OK,
                   f"memconsole record (pid {mine[0]}) is recording into {ring}{age}")


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


def _canary(ctx: _Context) -> Finding:
    from memconsole.setup import canary

    spec = ctx.cfg.canary
    if spec is None:
        return Finding("canary", Status.WARN,
                       "no survival canary configured: that this machine keeps the "
                       "reserved range across a reset is not proven",
                       "memconsole setup (it reserves a canary page and sets canary = in "
                       "/etc/memconsole.conf)")
    archive = ctx.paths.under(ctx.cfg.archive)
    history, problem = canary.load_history(archive)
    if problem:
        return Finding("canary", Status.WARN, problem, "memconsole canary")
    last = canary.last_result(history, spec)
    if last is None:
        return Finding("canary", Status.WARN,
                       f"no canary result yet in {archive / canary.HISTORY_NAME}",
                       "memconsole canary at every boot (memconsole-collect.service runs "
                       "it), then reboot once")
    outcome = str(last.get("outcome"))
    detail = str(last.get("detail", ""))
    at = _when(int(last.get("checked_ns", 0)))
    results = [r for r in history.get("results", []) if isinstance(r, dict)
               and r.get("spec") == spec and r.get("outcome") in ("survived", "lost",
                                                                   "damaged")]
    kept = sum(1 for r in results if r.get("outcome") == "survived")
    tally = f" ({kept} of {len(results)} checks survived)" if results else ""
    if outcome in ("lost", "damaged"):
        return Finding("canary", Status.FAIL,
                       f"{outcome} at {at}: {detail}{tally}; a crash record in the range "
                       "would have gone the same way",
                       "reboot warm (reboot, not power off) and run memconsole canary; if "
                       "it is lost again, look for the firmware's memory-wipe and fast-boot "
                       "settings (see the ram-wipe line), or reserve another range "
                       "(memconsole setup)")
    if last.get("boot_id") != ctx.boot_id():
        return Finding("canary", Status.WARN,
                       f"not checked in this boot (last: {outcome} at {at}){tally}",
                       "memconsole canary (memconsole-collect.service runs it at boot)")
    if outcome == "first":
        return Finding("canary", Status.WARN,
                       f"the first canary was written at {at}; the next boot checks it",
                       "reboot (warm), then memconsole doctor again")
    return Finding("canary", Status.OK, f"{detail} (checked {at}){tally}")


def _reservation(ctx: _Context) -> Finding:
    from memconsole.ring.iomem import memmap_ranges, parse_iomem

    ranges: list[tuple[str, int, int]] = []
    for name, spec in (("ramoops", ctx.cfg.ramoops), ("ring", ctx.cfg.ring),
                       ("canary", ctx.cfg.canary)):
        mem = _mem(spec)
        if mem is not None:
            ranges.append((name, *mem))
    params = ctx.params("ramoops") or {}
    addr, size = _int(params.get("mem_address")), _int(params.get("mem_size"))
    if ctx.cfg.ramoops is None and addr and size:
        ranges.insert(0, ("ramoops (loaded)", addr, size))
    cmdline = ctx.cmdline()
    words = cmdline.split()
    memmaps = memmap_ranges(cmdline.encode())
    items = sum(len(w.split(",")) for w in words if w.startswith("memmap="))
    if ctx.cfg.method == "reserve-mem":
        missing = [w for w in ("reserve_mem=", "ramoops.mem_name=")
                   if not any(x.startswith(w) for x in words)]
        if missing:
            return Finding("reservation", Status.FAIL,
                           f"method reserve-mem, but {' and '.join(missing)} not on the "
                           "kernel command line", "memconsole setup --method reserve-mem, "
                           "update-grub, reboot")
        # The reserve_mem region is System RAM the kernel set aside by name, not
        # a memmap= range: only the ring and the canary are checked below.
        ranges = [r for r in ranges if not r[0].startswith("ramoops")]
    if not ranges:
        return Finding("reservation", Status.OK,
                       "nothing to check: no mem: range configured and ramoops not loaded")
    text = _read(ctx.proc("iomem"))
    if text is None:
        return Finding("reservation", Status.WARN, "cannot read /proc/iomem", "")
    top = [e for e in parse_iomem(text.encode()) if e.depth == 0]
    if top and all(e.start == 0 and e.end == 0 for e in top):
        return Finding("reservation", Status.WARN,
                       "/proc/iomem shows no addresses to this user", "run as root")
    problems = []
    for name, start, length in ranges:
        end = start + length
        label = f"{name} {_rng(start, length)}"
        if not _covered([(a, a + s) for a, s in memmaps], start, end):
            problems.append(f"{label} is not in a memmap= range of the kernel command line")
        ram = [e for e in top if e.name == "System RAM" and e.start < end and start <= e.end]
        if ram:
            problems.append(f"{label} lies in System RAM "
                            f"({ram[0].start:#x}-{ram[0].end:#x}): the kernel uses it")
            continue
        reserved = [(e.start, e.end + 1) for e in top if e.name.lower() == "reserved"]
        if not _covered(reserved, start, end):
            problems.append(f"{label} is not shown as Reserved in /proc/iomem")
    if problems:
        lo = min(r[1] for r in ranges)
        hi = max(r[1] + r[2] for r in ranges)
        return Finding("reservation", Status.FAIL, "; ".join(problems),
                       f"memmap={hi - lo:#x}${lo:#x} on the kernel command line (in "
                       f"{_GRUB_DROPIN} written as memmap={hi - lo:#x}\\\\\\${lo:#x}; "
                       "memconsole setup writes it), update-grub, reboot")
    names = ", ".join(f"{n} {_rng(a, s)}" for n, a, s in ranges)
    if items > 4:
        return Finding("reservation", Status.WARN,
                       f"{names}: reserved, but {items} memmap= entries are on the command "
                       "line and the x86 decompressor avoids only 4: KASLR may put the "
                       "kernel on one", "one memmap= entry for ramoops, ring and canary "
                       "together (memconsole setup)")
    return Finding("reservation", Status.OK,
                   f"{names}: reserved (memmap= on the command line, Reserved in /proc/iomem)")


def _covered(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    pos = start
    for lo, hi in sorted(spans):
        if lo > pos:
            break
        pos = max(pos, hi)
    return pos >= end


def _ram_wipe(ctx: _Context) -> Finding:
    if not ctx.sys("firmware/efi").is_dir():
        return Finding("ram-wipe", Status.OK, "BIOS boot: no UEFI memory-overwrite request")
    var = ctx.sys(f"firmware/efi/efivars/{_MOR}")
    try:
        data = var.read_bytes()[:16]
    except FileNotFoundError:
        if not any(True for _ in _listdir(ctx.sys("firmware/efi/efivars"))):
            return Finding("ram-wipe", Status.WARN,
                           "UEFI, but efivarfs is not mounted: cannot tell whether the "
                           "firmware wipes RAM", "mount -t efivarfs efivarfs "
                           "/sys/firmware/efi/efivars")
        return Finding("ram-wipe", Status.OK, "UEFI without MemoryOverwriteRequestControl")
    except OSError as exc:
        return Finding("ram-wipe", Status.WARN, f"cannot read {var.name}: {exc.strerror}", "")
    # efivarfs: 4 bytes of attributes, then the value; bit 0 asks for the wipe
    # (TCG Platform Reset Attack Mitigation Specification).
    if len(data) > 4 and data[4] & 1:
        return Finding("ram-wipe", Status.WARN,
                       f"MemoryOverwriteRequestControl = {data[4]}: the firmware wipes RAM "
                       "at the next boot after an unclean shutdown, a panic reboot included",
                       "see docs/doctor.md (ram-wipe): the canary tells whether this "
                       "firmware does; clearing the variable after boot gives up the "
                       "reset-attack protection")
    value = data[4] if len(data) > 4 else None
    return Finding("ram-wipe", Status.OK, f"MemoryOverwriteRequestControl = {value}: no wipe")


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


_CHECKS: tuple[tuple[str, Callable[[_Context], Finding]], ...] = (
    ("ramoops", _ramoops),
    ("backend", _backend),
    ("pstore-mount", _pstore_mount),
    ("records", _records),
    ("systemd-pstore", _systemd_pstore),
    ("panic", _panic),
    ("recorder", _recorder),
    ("canary", _canary),
    ("reservation", _reservation),
    ("ram-wipe", _ram_wipe),
)
#: The checks' names, in the order they run and print.
CHECKS = tuple(name for name, _ in _CHECKS)

_WORD = re.compile(r"\s+")


def run_checks(cfg: Config, paths: Paths | None = None, now_ns: int | None = None,
               config_name: str = "/etc/memconsole.conf") -> list[Finding]:
    """Every check, in :data:`CHECKS` order, on the system under *paths*.
    Never raises: a check that fails unexpectedly is a ``warn`` saying so."""
    ctx = _Context(cfg, paths or Paths(), time.time_ns() if now_ns is None else now_ns,
                   config_name)
    out = []
    for name, check in _CHECKS:
        try:
            out.append(check(ctx))
        except Exception as exc:  # a check must never take the others down
            out.append(Finding(name, Status.WARN,
                               f"the check itself failed: {_WORD.sub(' ', str(exc))[:200]}",
                               ""))
    return out
