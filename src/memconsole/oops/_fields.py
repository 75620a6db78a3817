"""Header and register-dump fields of a crash report (private to :mod:`memconsole.oops`).

:class:`FieldsMixin` is the part of the report builder that reads the lines
between a report's first line and its call trace: task, taint, release,
hardware, faulting function, registers, ``Code:``, modules, workqueue,
fault details and the KASLR offset.  Each pattern names the kernel function
that prints what it matches; every pattern is anchored and bounded, as in
:mod:`memconsole._oops_patterns`.
"""

from __future__ import annotations

import re

from memconsole.oops import _patterns as _p
from memconsole.oops._model import Frame, Kind

__all__ = ["FieldsMixin", "hex_int"]

# lib/dump_stack.c dump_stack_print_info(): "Hardware name: %s".
_HARDWARE = re.compile(rb"\s{0,8}Hardware name: (?P<v>.{1,300})")
# arch/x86/mm/fault.c show_fault_oops() (5.1+): "#PF: supervisor read access in kernel mode",
# "#PF: error_code(0x0000) - not-present page".
_PF = re.compile(rb"\s{0,8}#PF: (?P<v>.{1,200})")
_PF_CODE = re.compile(rb"error_code\(0x(?P<v>[0-9a-f]{1,8})\)")
# arch/arm64/mm/fault.c mem_abort_decode(): "  ESR = 0x0000000096000005".
_ESR = re.compile(rb"\s{0,8}ESR = 0x(?P<v>[0-9a-f]{1,16})")
# kernel/workqueue.c print_worker_info(): "Workqueue: %s %ps".
_WORKQUEUE = re.compile(rb"\s{0,8}Workqueue: (?P<v>.{1,300})")
# arch/x86/kernel/setup.c dump_kernel_offset(): "Kernel Offset: 0x%lx from 0x%lx (relocation
# range: ...)" or "Kernel Offset: disabled"; arm64 arch/arm64/kernel/setup.c the same words.
_KOFFSET = re.compile(rb"\s{0,8}Kernel Offset: 0x(?P<v>[0-9a-f]{1,16}) from")
# mm/kasan/report.c print_error_description(): "Read of size %zu at addr %px by task %s/%d"
# (also "Write of size", 5.x "Read at addr" for KFENCE-style accesses).
_ACCESS = re.compile(
    rb"\s{0,8}(?P<v>(?:Read|Write)(?: of size \d{1,10})? at addr (?P<addr>[0-9a-f]{1,16})"
    rb"(?: by task .{1,80})?)")
# x86 __die_header() GPF: "general protection fault, probably for non-canonical address 0x...".
_GPF_ADDR = re.compile(rb"address (?P<v>0x[0-9a-f]{1,16})")
# mm/kmemleak.c print_unreferenced(): '  comm "%s", pid %d, jiffies %lu'.
_LEAK_TASK = re.compile(rb'\s{0,8}comm "(?P<comm>.{0,64})", pid (?P<pid>\d{1,10}), jiffies')
# The "Code:" line: x86 show_opcodes(), arm64 dump_kernel_instr(), arm dump_instr().
_CODE = re.compile(rb"\s{0,8}Code: (?P<v>.{1,400})")
# arm64 __show_regs(): "lr : %pS"; arm: "LR is at %pS"; powerpc show_regs() "LR [%016lx] %pS";
# riscv show_regs() " ra : %pS".
_LR = re.compile(rb"\s{0,8}(?:lr : |LR is at |LR \[[0-9a-f]{1,16}\] |ra : )(?P<rest>.{1,600})")
# Register dump lines: x86 __show_regs() ("RAX: ... RBX: ...", "FS:  ...(0000) GS:...",
# "CS:  0010 DS: ..."), arm64 ("sp : ...", "x29: ... x28: ...", "pstate: ..."), arm
# ("sp : ...  ip : ...", "r10: ...", "psr: ..."), i386 ("EAX: ...").
_REG_LINE = re.compile(
    rb"\s{0,8}(?:R[A-Z0-9]{1,3}|E[A-Z]{2}|[CDEFGS]S|CR\d|DR\d|PKRU|sp|x\d{1,2}|r\d{1,2}|pstate"
    rb"|psr|ip|fp) ?:")
_REG = re.compile(
    rb"(?P<name>[A-Za-z][A-Za-z0-9_]{0,7}) ?: ?(?P<v>(?:[0-9a-f]{4}:)?[0-9a-f]{2,16})"
    rb"(?:\([0-9a-f]{4}\))?")


# The first byte of every line fields() reads (after indentation): a line
# starting otherwise is skipped at once (most lines of a log).
_FIRST = frozenset(bytes([c]) for c in b"CPNTMRIEeplLsxrifDFGSHWK#")
# ... of the task, taint and module lines (CPU:, Pid:, Process, Tainted:, Not tainted, Modules).
_TASK_LEADS = frozenset(bytes([c]) for c in b"CPTNM")
# The faulting function's lines by first letter: exact (PC is at, NIP [...], Krnl PSW) ...
_IP_EXACT: dict[bytes, tuple[re.Pattern[bytes], ...]] = {
    b"P": (_p.PC_IS_AT,), b"N": (_p.NIP_LINE,), b"K": (_p.PSW_LINE,)}
# ... and the others (IP:, EIP:, EIP is at, pc :, epc :).
_IP_OTHER: dict[bytes, tuple[re.Pattern[bytes], ...]] = {
    b"I": (_p.IP_LINE,), b"E": (_p.IP_LINE, _p.EIP_AT), b"p": (_p.PC_LINE,),
    b"e": (_p.PC_LINE,)}
_LR_LEADS = frozenset((b"l", b"L", b"r"))
# ... of _REG_LINE.
_REG_LEADS = frozenset(bytes([c]) for c in b"RECDFGSPsxrpif")


def hex_int(raw: bytes) -> int | None:
    """``0000000000000000``, ``0x1f``, ``(null)`` -> int or ``None``."""
    s = raw.strip().removeprefix(b"0x")
    if not s or len(s) > 16 or not re.fullmatch(rb"[0-9a-fA-F]+", s):
        return None
    return int(s, 16)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class FieldsMixin:
    """Header, register and trailer fields of a report being built."""

    def __init__(self) -> None:
        self.release: str | None = None
        self.build: str | None = None
        self.cpu: int | None = None
        self.pid: int | None = None
        self.uid: int | None = None
        self.comm: str | None = None
        self.tainted: str | None = None
        self.hardware: str | None = None
        self.rip: Frame | None = None
        self.rip_rank = 0
        self.lr: Frame | None = None
        self.modules: list[str] | None = None
        self.module_flags: list[tuple[str, str]] = []
        self.modules_open = False
        self.fault_address: int | None = None
        self.fault_info: list[str] = []
        self.error_code: int | None = None
        self.die_error: int | None = None
        self.registers: dict[str, str] = {}
        self.user_regs = False
        self.code: str | None = None
        self.workqueue: str | None = None
        self.kernel_offset: int | None = None
        self.duration: float | None = None
        self.access: str | None = None

    def fields(self, body: bytes, before_trace: bool, kind: Kind) -> bool:
        """Take the field *body* carries; return whether it was one."""
        lead = body.lstrip(b" \t")[:1]
        if kind is Kind.MEMORY_LEAK and lead == b"c":
            m = _LEAK_TASK.match(body)
            if m:
                self._take_task(int(m.group("pid")), m.group("comm"))
                return True
        if self.modules_open:
            pass
        elif lead not in _FIRST:
            return False
        else:
            at = body.find(b"+0x", 0, 300)
            if at > 0 and b":" not in body[:at] and b" is at " not in body[:at] and (
                    lead != b"N"):
                return False  # a call trace frame: no field of its own
        if lead not in _TASK_LEADS:
            pass
        elif m := _p.CPU_LINE.match(body) or _p.PID_LINE.match(body):
            d = m.groupdict()
            pid = int(d["pid"])
            # The CPU of another task (khungtaskd printing a hung-task panic) is not ours.
            if self.cpu is None and d.get("cpu") is not None and self.pid in (None, pid):
                self.cpu = int(d["cpu"])
            if d.get("uid") is not None and self.uid is None and self.pid in (None, pid):
                self.uid = int(d["uid"])
            self._take_task(pid, d["comm"])
            self._take_taint(m.group("taint"), m.group("rest"))
            return True
        elif m := _p.ARM_CPU_LINE.match(body):
            if self.cpu is None:
                self.cpu = int(m.group("cpu"))
            self._take_taint(m.group("taint"), m.group("rest"))
            return True
        elif m := _p.TAINT_LINE.match(body):
            verbose = _p.TAINT_VERBOSE.findall(m.group("rest"))
            if verbose:
                if self.tainted is None:
                    self.tainted = "".join(_text(v) for v in verbose if v != b"G")
            else:
                self._take_taint(m.group("taint"), m.group("rest"))
            return True
        elif m := _p.PROCESS_LINE.match(body):
            self._take_task(int(m.group("pid")), m.group("comm"))
            return True
        elif m := _p.MODULES.match(body):
            if self.modules is None:
                self.modules = []
                self.modules_open = self._take_modules(m.group("rest"), first=True)
            return True
        if self.modules_open:
            if body[:1] in (b" ", b"\t") and self.modules is not None:
                self.modules_open = self._take_modules(body, first=False)
                if self.modules_open:
                    return True
            self.modules_open = False
        return self._regs(body, before_trace, lead) or self._details(body, kind, lead)

    def _regs(self, body: bytes, before_trace: bool, lead: bytes) -> bool:
        # Each expression is tried only on lines starting with its first letter.
        if lead == b"R":
            m = _p.RIP_LINE.match(body)
            if m:
                if m.group("cs") not in _p.USER_CS:
                    self._set_rip(m.group("rest"), 2)
                    self.user_regs = False
                else:
                    self.user_regs = True
                return True
        for rx in _IP_EXACT.get(lead, ()):
            m = rx.match(body)
            if m:
                self._set_rip(m.group("rest"), 3)
                return True
        for rx in _IP_OTHER.get(lead, ()):
            m = rx.match(body)
            if m:
                self._set_rip(m.group("rest"), 2)
                m2 = _p.EFLAGS_CPU.match(body)
                if m2 and self.cpu is None:
                    self.cpu = int(m2.group("cpu"))
                return True
        m = _LR.match(body) if lead in _LR_LEADS else None
        if m:
            if self.lr is None:
                raw = _p.parse_frame(m.group("rest"), bare=False)
                if raw is not None and not raw.inline:
                    self.lr = Frame(_text(raw.function), raw.offset, raw.size,
                                    _text(raw.module) if raw.module is not None else None,
                                    raw.reliable, "")
            return True
        m = _CODE.match(body) if lead == b"C" else None
        if m:
            if self.code is None and not self.user_regs:
                self.code = _text(m.group("v")).strip()
            return True
        if before_trace and not self.user_regs and lead in _REG_LEADS and _REG_LINE.match(body):
            regs = self.registers
            for raw_name, raw_value in _REG.findall(body, 0, 400):
                name = raw_name.decode("ascii")  # the expression admits ASCII only
                if name not in regs and len(regs) < 80:
                    regs[name] = raw_value.decode("ascii")
            return True
        return False

    def _details(self, body: bytes, kind: Kind, lead: bytes) -> bool:
        m = _PF.match(body) if lead == b"#" else None
        if m:
            self.fault_info.append(_text(body.strip()))
            c = _PF_CODE.search(m.group("v"))
            if c and self.error_code is None:
                self.error_code = int(c.group("v"), 16)
            return True
        m = _ESR.match(body) if lead == b"E" else None
        if m:
            self.fault_info.append(_text(body.strip()))
            if self.error_code is None:
                self.error_code = int(m.group("v"), 16)
            return True
        m = _HARDWARE.match(body) if lead == b"H" else None
        if m:
            if self.hardware is None:
                self.hardware = _text(m.group("v")).strip()
            return True
        m = _WORKQUEUE.match(body) if lead == b"W" else None
        if m:
            if self.workqueue is None:
                self.workqueue = _text(m.group("v")).strip()
            return True
        m = _KOFFSET.match(body) if lead == b"K" else None
        if m:
            if self.kernel_offset is None:
                self.kernel_offset = int(m.group("v"), 16)
            return True
        if kind is Kind.KASAN and lead in (b"R", b"W"):
            m = _ACCESS.match(body)
            if m:
                if self.access is None:
                    self.access = _text(m.group("v")).strip()
                    self.fault_address = int(m.group("addr"), 16)
                return True
        return False

    def gpf_address(self, body: bytes) -> None:
        """Take the non-canonical address a GPF header names."""
        m = _GPF_ADDR.search(body, 0, 300)
        if m and self.fault_address is None:
            self.fault_address = int(m.group("v"), 16)

    def _set_rip(self, rest: bytes, rank: int) -> None:
        if rank <= self.rip_rank:
            return
        raw = _p.parse_frame(rest, bare=True)
        if raw is None or raw.inline:
            return
        self.rip = Frame(_text(raw.function), raw.offset, raw.size,
                         _text(raw.module) if raw.module is not None else None, raw.reliable, "")
        self.rip_rank = rank

    def _take_task(self, pid: int, comm: bytes) -> None:
        """Fill pid and comm unless a marker named another task already."""
        if self.pid is None:
            self.pid = pid
            self.comm = _text(comm)
        elif self.comm is None and self.pid == pid:
            self.comm = _text(comm)

    def _take_taint(self, taint: bytes, rest: bytes) -> None:
        letters, release, build = _p.parse_taint(taint, rest)
        if self.tainted is None:
            self.tainted = letters
        if self.release is None and release:
            self.release = release
            self.build = build

    def _take_modules(self, rest: bytes, *, first: bool) -> bool:
        """Add module names; return whether a continuation line may follow."""
        assert self.modules is not None
        tokens = rest.split()
        names: list[str] = []
        flags: list[tuple[str, str]] = []
        for tok in tokens:
            if tok.startswith(b"["):  # "[last unloaded: foo]"
                break
            if _p.MODULE_TOKEN.fullmatch(tok) and not _p.HEXWORD.fullmatch(tok):
                name, _, flag = tok.partition(b"(")
                names.append(_text(name))
                if flag:
                    flags.append((_text(name), _text(flag.rstrip(b")"))))
            elif not first:
                return False  # not a module list continuation after all
        room = max(1024 - len(self.modules), 0)
        self.modules.extend(names[:room])
        self.module_flags.extend(flags[:room])
        return bool(tokens) and not rest.rstrip().endswith(b"]")
