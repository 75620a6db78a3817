"""Turn report frames into source lines, as scripts/decode_stacktrace.sh does.

Given what the crashed kernel was built from (``--symbols``: a vmlinux with
debug info, a ``System.map``, a module tree such as ``/lib/modules/<release>``
or a build directory, single ``.ko`` files, or a debug root such as
``/usr/lib/debug`` with ``boot/vmlinux-<release>`` and
``lib/modules/<release>/``), :func:`symbolize` fills :attr:`Frame.source` of
the faulting function, the link register and every call trace frame:

* ``func+0xoff/0xsize [module]``: ``func``'s address in the module's ``.ko``
  (an ELF relocatable file: the symbol's value is an offset into its own
  section, ``.text``, ``.init.text`` for module_init code, ``.text.unlikely``...)
  plus the offset is looked up in that section (``addr2line -j SECTION``);
  a kernel image function's address comes from the vmlinux symbol table;
* the printed size must equal the symbol's size, else the binary is not the
  one that crashed and the frame is left alone (with a note);
* a return address (every call trace frame) is looked up one byte earlier,
  so the line is that of the call, not of the instruction after it, as gdb
  does; the faulting address (``RIP``, ``pc``) is looked up as printed;
* ``addr2line -f -i`` gives the inlined chain, innermost first;
* a raw ``0xffffffff...`` frame (no symbol printed) becomes ``func+off/size``
  from the vmlinux symbols or ``System.map``, after subtracting the KASLR
  offset of the report's ``Kernel Offset:`` line.

binutils' ``addr2line`` does the DWARF work: one process per object file
for all its addresses, which is faster than a Python DWARF reader on a
vmlinux and exact (it applies a module's relocations per section).
"""

from __future__ import annotations

import bisect
import dataclasses
import mmap
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from memconsole.errors import ConfigError, ParseError
from memconsole.oops._model import Frame, Report, SourceLine

__all__ = ["ElfSymbol", "SymbolTable", "Symbols", "find_symbols", "read_elf_symbols",
           "read_system_map", "symbolize"]

_ELF_MAGIC = b"\x7fELF"
_ET_REL = 1
_STT_NOTYPE = 0
_STT_FUNC = 2
_SHF_EXECINSTR = 0x4
_SHT_SYMTAB = 2
_MAX_MODULE_FILES = 50000
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


@dataclass(frozen=True)
class ElfSymbol:
    """A function symbol."""

    name: str
    value: int
    """Link address (vmlinux) or offset into *section* (a ``.ko``)."""
    size: int
    """Size in bytes; 0 when unknown (System.map)."""
    section: str
    """The section it lives in (``.text``, ``.init.text``...); ``""`` for System.map."""
    span: int | None = None
    """Distance to the next symbol of the section, ``None`` for the last one: the
    size ``%pS`` prints, since kallsyms knows no sizes (kernel/kallsyms.c
    get_symbol_pos())."""

    def fits(self, printed: int | None) -> bool:
        """Whether a frame that printed ``/0x<printed>`` can be this symbol."""
        if printed is None:
            return True
        if printed in (self.size, self.span):
            return True
        return self.span is None and printed >= self.size


@dataclass
class SymbolTable:
    """The function symbols of one object file or System.map."""

    path: str
    relocatable: bool
    """True for a module (ELF ``ET_REL``): values are section offsets."""
    by_name: dict[str, list[ElfSymbol]] = field(default_factory=dict)
    _sorted: list[tuple[int, ElfSymbol]] = field(default_factory=list)

    def add(self, sym: ElfSymbol) -> None:
        """Add one symbol."""
        self.by_name.setdefault(sym.name, []).append(sym)
        self._sorted.append((sym.value, sym))

    def finish(self) -> None:
        """Compute each symbol's span and sort for address lookups."""
        syms = sorted((s for _, s in self._sorted), key=lambda s: (s.section, s.value))
        spanned = []
        for i, sym in enumerate(syms):
            nxt = next((t.value for t in syms[i + 1:i + 64]
                        if t.section == sym.section and t.value > sym.value), None)
            spanned.append(dataclasses.replace(sym, span=nxt - sym.value if nxt else None))
        self.by_name = {}
        for sym in spanned:
            self.by_name.setdefault(sym.name, []).append(sym)
        self._sorted = sorted(((s.value, s) for s in spanned), key=lambda t: t[0])

    def lookup(self, name: str, size: int | None) -> ElfSymbol | None:
        """The symbol *name* a frame printing size *size* can be; ``None`` when
        there is none or more than one."""
        cands = [s for s in self.by_name.get(name, []) if s.fits(size)]
        return cands[0] if len(cands) == 1 else None

    def at(self, address: int) -> tuple[ElfSymbol, int, int] | None:
        """``(symbol, offset, size)`` of the function holding *address* (vmlinux / System.map)."""
        keys = [v for v, _ in self._sorted]
        i = bisect.bisect_right(keys, address) - 1
        if i < 0:
            return None
        sym = self._sorted[i][1]
        size = sym.span or sym.size
        off = address - sym.value
        if not size or off >= size:  # past the last symbol or its end: not this function
            return None
        return sym, off, size


def read_system_map(data: bytes, path: str = "System.map") -> SymbolTable:
    """Parse ``System.map`` text (``ffffffff81000000 T _stext`` per line): text symbols."""
    table = SymbolTable(path, relocatable=False)
    for line in data.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[1] not in (b"t", b"T", b"w", b"W"):
            continue
        try:
            value = int(parts[0], 16)
        except ValueError:
            continue
        table.add(ElfSymbol(parts[2].decode("utf-8", "replace"), value, 0, ""))
    table.finish()
    return table


def read_elf_symbols(data: bytes | mmap.mmap, path: str = "") -> SymbolTable:
    """The function symbols of an ELF file (``.symtab``).  Raises :class:`ParseError`
    when *data* is not an ELF file or its headers point outside it."""
    n = len(data)
    if n < 64 or data[:4] != _ELF_MAGIC:
        raise ParseError(f"{path}: not an ELF file")
    cls, enc = data[4], data[5]
    end = "<" if enc == 1 else ">"
    if cls == 2:
        e_type, = struct.unpack_from(end + "H", data, 16)
        shoff, = struct.unpack_from(end + "Q", data, 40)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 58)
        sh_fmt, sym_fmt = end + "IIQQQQIIQQ", end + "IBBHQQ"
    elif cls == 1:
        e_type, = struct.unpack_from(end + "H", data, 16)
        shoff, = struct.unpack_from(end + "I", data, 32)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 46)
        sh_fmt, sym_fmt = end + "IIIIIIIIII", end + "IIIBBH"
    else:
        raise ParseError(f"{path}: unknown ELF class {cls}")
    if shentsize < struct.calcsize(sh_fmt) or shoff + shnum * shentsize > n or shnum > 65535:
        raise ParseError(f"{path}: section headers at {shoff} (x{shnum}) exceed {n} bytes")
    secs = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]

    def blob(i: int) -> bytes:
        off, size = secs[i][4], secs[i][5]
        if off + size > n:
            raise ParseError(f"{path}: section {i} at {off}+{size} exceeds {n} bytes")
        return bytes(data[off:off + size])

    def cstr(table: bytes, at: int) -> str:
        stop = table.find(b"\0", at)
        return table[at:stop if stop >= 0 else len(table)].decode("utf-8", "replace")

    names = blob(shstrndx) if shstrndx < shnum else b""
    sec_names = [cstr(names, s[0]) for s in secs]
    table = SymbolTable(path, relocatable=e_type == _ET_REL)
    for i, s in enumerate(secs):
        if s[1] != _SHT_SYMTAB or s[6] >= shnum:
            continue
        symtab, strtab = blob(i), blob(s[6])
        size = struct.calcsize(sym_fmt)
        for k in range(len(symtab) // size):
            if cls == 2:
                st_name, info, _, shndx, value, sz = struct.unpack_from(sym_fmt, symtab, k * size)
            else:
                st_name, value, sz, info, _, shndx = struct.unpack_from(sym_fmt, symtab, k * size)
            if info & 0xF not in (_STT_NOTYPE, _STT_FUNC) or not 0 < shndx < shnum:
                continue
            if not secs[shndx][2] & _SHF_EXECINSTR:  # sh_flags: code only
                continue
            name = cstr(strtab, st_name)
            if not name or name.startswith(("$", ".L")):  # arm mapping symbols, local labels
                continue
            table.add(ElfSymbol(name, value, sz, sec_names[shndx]))
    table.finish()
    return table


@dataclass
class Symbols:
    """What :func:`symbolize` can use (see :func:`find_symbols`)."""

    vmlinux: Path | None = None
    vmlinux_symbols: SymbolTable | None = None
    system_map: SymbolTable | None = None
    modules: dict[str, Path] = field(default_factory=dict)
    """Module name (``-`` as ``_``) -> its ``.ko`` file (maybe compressed)."""
    _module_tables: dict[str, tuple[Path, SymbolTable] | None] = field(default_factory=dict)
    _tmp: list[str] = field(default_factory=list)

    def module(self, name: str) -> tuple[Path, SymbolTable] | None:
        """The (uncompressed path, symbols) of module *name*, loaded once."""
        key = name.replace("-", "_")
        if key not in self._module_tables:
            self._module_tables[key] = None
            path = self.modules.get(key)
            if path is not None:
                plain = self._uncompressed(path)
                if plain is not None:
                    self._module_tables[key] = (plain, read_elf_symbols(plain.read_bytes(),
                                                                        str(path)))
        return self._module_tables[key]

    def _uncompressed(self, path: Path) -> Path | None:
        name = path.name
        if name.endswith(".ko"):
            return path
        if path.suffix not in (".xz", ".gz"):
            return None  # .zst: no decompressor in the standard library
        # Imported here: show imports this module and most runs read no module file.
        import gzip
        import lzma
        import tempfile

        fd, tmp = tempfile.mkstemp(suffix=".ko", prefix="memconsole-")
        raw = path.read_bytes()
        data = lzma.decompress(raw) if path.suffix == ".xz" else gzip.decompress(raw)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        self._tmp.append(tmp)
        return Path(tmp)

    def close(self) -> None:
        """Remove temporary decompressed modules."""
        for tmp in self._tmp:
            with _suppress_oserror():
                os.unlink(tmp)
        self._tmp.clear()


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return isinstance(exc[1], OSError)


def _module_name(path: Path) -> str:
    name = path.name
    for suffix in _MODULE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def _add_file(sym: Symbols, path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(18)
    if any(path.name.endswith(s) for s in _MODULE_SUFFIXES[1:]):
        sym.modules.setdefault(_module_name(path), path)
    elif head[:4] == _ELF_MAGIC:
        if head[16] == _ET_REL:
            sym.modules.setdefault(_module_name(path), path)
        elif sym.vmlinux is None:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                sym.vmlinux_symbols = read_elf_symbols(mm, str(path))
            sym.vmlinux = path
    elif sym.system_map is None:
        table = read_system_map(path.read_bytes(), str(path))
        if not table.by_name:
            raise ConfigError(f"--symbols {path}: not an ELF file, module or System.map")
        sym.system_map = table


def _walk_modules(sym: Symbols, root: Path) -> None:
    seen = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            seen += 1
            if seen > _MAX_MODULE_FILES:
                return
            if any(name.endswith(s) for s in _MODULE_SUFFIXES):
                sym.modules.setdefault(_module_name(Path(name)), Path(dirpath) / name)


def find_symbols(paths: Sequence[Path], release: str | None = None) -> Symbols:
    """Collect symbol sources from *paths* (files or directories), preferring
    files of kernel *release* in debug roots and module trees.  Raises
    :class:`ConfigError` for a path that does not exist or is not usable."""
    sym = Symbols()
    for p in paths:
        if not p.exists():
            raise ConfigError(f"--symbols {p}: does not exist")
        if p.is_file():
            _add_file(sym, p)
            continue
        boot, mods = p / "boot", p / "lib" / "modules"
        if boot.is_dir() or mods.is_dir():  # a debug root: /usr/lib/debug
            cands = sorted(boot.glob(f"vmlinux-{release}" if release else "vmlinux-*"))
            if cands:
                _add_file(sym, cands[-1])
            rel = mods / release if release and (mods / release).is_dir() else mods
            _walk_modules(sym, rel)
        elif release and (p / release).is_dir():  # /lib/modules
            _walk_modules(sym, p / release)
        else:
            for name in ("vmlinux", f"System.map-{release}" if release else "", "System.map"):
                if name and (p / name).is_file():
                    _add_file(sym, p / name)
            _walk_modules(sym, p)
    return sym


_A2L_LOC = re.compile(r"(?P<file>.*?):(?P<line>\d+|\?)(?: \(discriminator \d+\))?$")


def _addr2line(path: Path, section: str | None, addresses: Iterable[int],
               tool: str) -> dict[int, tuple[SourceLine, ...]]:
    """Run addr2line once for *addresses* in *path* (in *section*, for a module)."""
    addrs = sorted(set(addresses))
    if not addrs:
        return {}
    argv = [tool, "-e", str(path), "-f", "-i", "-a"]
    if section:
        argv += ["-j", section]
    argv += [f"0x{a:x}" for a in addrs]
    import subprocess  # here: show imports this module, addr2line runs rarely

    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False,
                             timeout=300).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {tool}: {exc} (install binutils)") from exc
    result: dict[int, list[tuple[str, str, int | None]]] = {}
    current: list[tuple[str, str, int | None]] | None = None
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("0x") and " " not in line:
            current = result.setdefault(int(line, 16), [])
            i += 1
            continue
        if current is not None and i + 1 < len(lines):
            m = _A2L_LOC.match(lines[i + 1])
            if m:
                num = int(m.group("line")) if m.group("line").isdigit() else None
                current.append((line, m.group("file"), num or None))
            i += 2
            continue
        i += 1
    return {a: tuple(SourceLine(f, file, num, k < len(chain) - 1)
                     for k, (f, file, num) in enumerate(chain))
            for a, chain in result.items() if any(n is not None for _, _, n in chain)}


def _resolve_raw(frame: Frame, sym: Symbols, kaslr: int) -> Frame:
    """A raw-address kernel frame as ``func+off/size`` from vmlinux or System.map."""
    if frame.module is not None or not frame.function.startswith("0x"):
        return frame
    table = sym.vmlinux_symbols or sym.system_map
    if table is None:
        return frame
    try:
        addr = int(frame.function, 16) - kaslr
    except ValueError:
        return frame
    hit = table.at(addr)
    if hit is None:
        return frame
    s, off, size = hit
    return dataclasses.replace(frame, function=s.name, offset=off, size=size or None)


def symbolize(report: Report, symbols: Symbols, addr2line: str = "addr2line"
              ) -> tuple[Report, list[str]]:
    """Return *report* with source lines for its frames, and notes on frames
    that could not be symbolised (wrong build, missing module...)."""
    kaslr = report.kernel_offset or 0
    frames: list[tuple[str, Frame, bool]] = []  # (slot, frame, is return address)
    if report.rip is not None:
        frames.append(("rip", _resolve_raw(report.rip, symbols, kaslr), False))
    if report.lr is not None:
        frames.append(("lr", _resolve_raw(report.lr, symbols, kaslr), False))
    frames += [(str(i), _resolve_raw(f, symbols, kaslr), True)
               for i, f in enumerate(report.call_trace)]
    notes: list[str] = []
    wanted: dict[tuple[Path, str | None], set[int]] = {}
    where: dict[int, tuple[Path, str | None, int]] = {}
    for n, (_, f, ret) in enumerate(frames):
        if f.offset is None or f.function.startswith("0x"):
            continue
        if f.module is not None:
            mod = symbols.module(f.module)
            if mod is None:
                if f.module.replace("-", "_") not in symbols.modules:
                    notes.append(f"{f.label()}: no {f.module}.ko among the symbols")
                continue
            path, table = mod
        elif symbols.vmlinux is not None and symbols.vmlinux_symbols is not None:
            path, table = symbols.vmlinux, symbols.vmlinux_symbols
        else:
            continue
        s = table.lookup(f.function, f.size)
        if s is None:
            if table.by_name.get(f.function):
                notes.append(f"{f.label()}: size 0x{f.size or 0:x} differs from {path.name}'s "
                             f"symbol: a different build, not symbolised")
            continue
        addr = s.value + f.offset - (1 if ret and f.offset > 0 else 0)
        section = s.section if table.relocatable else None
        wanted.setdefault((path, section), set()).add(addr)
        where[n] = (path, section, addr)
    found: dict[tuple[Path, str | None], dict[int, tuple[SourceLine, ...]]] = {
        key: _addr2line(key[0], key[1], addrs, addr2line) for key, addrs in wanted.items()}
    out: dict[str, Frame] = {}
    for n, (slot, f, _) in enumerate(frames):
        if n in where:
            path, section, addr = where[n]
            f = dataclasses.replace(f, source=found[(path, section)].get(addr, ()))
        out[slot] = f
    trace = tuple(out[str(i)] for i in range(len(report.call_trace)))
    new = dataclasses.replace(report, rip=out.get("rip"), lr=out.get("lr"), call_trace=trace)
    return new, notes
