"""``memconsole report --html``: the page of an archive of the lab's real
crashes, rendered by a real headless Chromium (Debian's chromium): a
screenshot is taken, and what the page shows is read back from the DOM
Chromium built (``--dump-dom``)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from labarchive import shared

from conftest import require
from memconsole.cli import main


def chromium(profile: Path) -> list[str]:
    """argv of headless Chromium (root in a container: no sandbox) with its
    profile in *profile*: one per run, as two at once on one profile refuse
    to start ("Failed to create a ProcessSingleton")."""
    exe = shutil.which("chromium")
    require(exe is not None, "chromium is not installed (scripts/bootstrap.sh installs it)")
    assert exe is not None
    return [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={profile}"]


class _Dom(HTMLParser):
    """Text by element id and class, tags and attributes of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[tuple[tuple[tuple[str, dict[str, str | None]], ...], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("meta", "br", "hr", "img", "input", "link"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.texts.append((tuple(self.stack), data))

    def text_in(self, *, id: str | None = None, cls: str | None = None) -> list[str]:
        """The text of each element with *id* or class *cls* (outermost)."""
        out: dict[int, list[str]] = {}
        for stack, data in self.texts:
            for depth, (_, a) in enumerate(stack):
                if (id and a.get("id") == id) or (cls and cls in (a.get("class") or "").split()):
                    key = id_of(stack, depth)
                    out.setdefault(key, []).append(data)
                    break
        return ["".join(v) for v in out.values()]


def id_of(stack: tuple[tuple[str, dict[str, str | None]], ...], depth: int) -> int:
    return id(stack[depth][1])


@pytest.fixture(scope="module")
def lab_page(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    archive, pstore, shared_dir = shared(tmp_path_factory)
    dest = tmp_path_factory.mktemp("page")
    page = dest / "page.html"
    rc = main(["report", "--archive", str(archive), "--pstore", str(pstore),
               "--ring", str(shared_dir / "ring-6.12.bin"), "--html", str(page)])
    assert rc == 0
    return {"dest": dest, "archive": archive, "pstore": pstore, "page": page,
            "dom": _dump(page)}


def _dump(page: Path) -> _Dom:
    done = subprocess.run([*chromium(page.parent / "chromium-dump"), "--dump-dom",
                           page.as_uri()], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<html" in done.stdout
    dom = _Dom()
    dom.feed(done.stdout)
    return dom


def _listed(lab_page: dict[str, object], capsys: pytest.CaptureFixture[str]
            ) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["list", "--archive", str(lab_page["archive"]), "--pstore",
                 str(lab_page["pstore"]), "--json"]) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def test_chromium_renders_the_lab_crashes(lab_page: dict[str, object],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    events = _listed(lab_page, capsys)
    dom = lab_page["dom"]
    assert isinstance(dom, _Dom)
    # The timeline: one row per boot, each saying how it ended.
    rows = [a for tag, a in dom.tags if tag == "tr" and "boot" in (a.get("class") or "")]
    boots = {e["boot"] for e in events}
    assert len(rows) == len(boots) + 1  # + the ring's cleanly stopped boot
    endings = [a["data-ending"] for a in rows]
    assert endings.count("clean") == 1
    assert endings.count("hang or reset") == 2  # both rings' first boot was reset
    # How each boot ended, from list --json's last event of the boot.
    last: dict[object, dict[str, Any]] = {}
    for e in events:
        last[e["boot"]] = e
    want = Counter("hang or reset" if e["sources"] == ["ring"]
                   else "panic" if e["panic_reason"] or any(
                       str(d).startswith("Panic") for d in e["dumps"])
                   else "oops" if e["signature"] else "unknown" for e in last.values())
    assert Counter(endings) - Counter(["clean"]) == want
    assert want["panic"] > 20 and want["hang or reset"] == 2
    boots_text = " ".join(dom.text_in(id="boots") + dom.text_in(id="older-boots"))
    for boot in boots:
        assert boot in boots_text
    # Grouped by signature, with counts that add up to the events.
    counts = [int(t) for t in dom.text_in(cls="count")]
    by_sig: dict[object, int] = {}
    for e in events:
        key = e["signature"] or (e["kind"], e["headline"])
        by_sig[key] = by_sig.get(key, 0) + 1
    assert sorted(counts, reverse=True) == sorted(by_sig.values(), reverse=True)
    sig_text = " ".join(dom.text_in(id="signatures"))
    for e in events:
        if e["signature"]:
            assert e["signature"] in sig_text
    # One section per crash, with title, culprit and the console before it.
    sections = dom.text_in(cls="crash")
    assert len(sections) == len(events)
    null = next(s for s in sections
                if "BUG: unable to handle kernel NULL pointer dereference in crashy_null" in s)
    assert "crashy_null [crashy]" in null  # culprit
    assert "crashy: action=null" in null  # a console line before the report
    assert "crashy_init+0x" in null  # the call trace
    hang = next(s for s in sections if s.lstrip().startswith("hang or reset"))
    assert "memconsole-lab: flood done" in hang
    assert "Crash report" in " ".join(dom.text_in(id="summary")) or dom.text_in(id="summary")


def test_page_fetches_nothing(lab_page: dict[str, object]) -> None:
    dom = lab_page["dom"]
    assert isinstance(dom, _Dom)
    for tag, attrs in dom.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for name in ("src", "href", "srcset", "action", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    html_text = Path(str(lab_page["page"])).read_text()
    assert not re.search(r"url\(|@import|https?://", html_text)


def _png_size_and_colours(png: bytes) -> tuple[int, int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    idat, pos = b"", 8
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return width, height, len(set(raw[::97]))


def test_screenshot(lab_page: dict[str, object]) -> None:
    shot = Path(str(lab_page["dest"])) / "page.png"
    done = subprocess.run([*chromium(shot.parent / "chromium-shot"), "--window-size=1280,2000",
                           f"--screenshot={shot}",
                           Path(str(lab_page["page"])).as_uri()], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    width, height, colours = _png_size_and_colours(shot.read_bytes())
    assert (width, height) == (1280, 2000)
    assert colours > 20  # text, badges and the console: not a blank page


def test_symbolised_trace(lab_page: dict[str, object], tmp_path: Path) -> None:
    from conftest import kernel_for
    from memconsole.errors import LabError
    from memconsole.lab import Lab

    require(shutil.which("addr2line") is not None, "addr2line (binutils) is not installed")
    kernel = kernel_for("6.12")
    try:
        ko = Lab(progress=lambda msg: None).crashy(kernel)
    except LabError as exc:
        require(False, f"cannot build crashy.ko: {exc}")
    page = tmp_path / "sym.html"
    assert main(["report", "--archive", str(lab_page["archive"]), "--pstore",
                 str(lab_page["pstore"]), "--symbols", str(ko), "--html", str(page)]) in (0, 3)
    dom = _dump(page)
    sections = [s for s in dom.text_in(cls="crash") if "crashy_null" in s and "6.12" in s]
    assert sections
    assert re.search(r"crashy_null \(\S*crashy\.c:\d+\)", sections[0]), sections[0][:3000]
    assert "Call trace (symbolised)" in sections[0]


def test_many_boots_keep_every_crash(lab_page: dict[str, object]) -> None:
    """Past OPEN_BOOTS boots and OPEN_CRASHES crashes the older ones are in
    closed <details> (not laid out until opened), none left out."""
    from dataclasses import replace

    from memconsole.archive import Archive
    from memconsole.history import crash_history
    from memconsole.ops.report import OPEN_BOOTS, OPEN_CRASHES, page

    base = crash_history(Archive(Path(str(lab_page["archive"]))), [], None).events
    events = [replace(e, boot=f"{e.boot}.{n}") for n in range(4) for e in base]
    assert len(events) > max(OPEN_BOOTS, OPEN_CRASHES)
    dom = _Dom()
    dom.feed(page(events))
    assert len(dom.text_in(cls="crash")) == len(events)
    rows = [a for tag, a in dom.tags if tag == "tr" and "boot" in (a.get("class") or "")]
    assert len(rows) == len({e.boot for e in events})
    ids = {a.get("id") for tag, a in dom.tags if tag == "details"}
    assert {"older", "older-crashes"} <= ids


def test_page_to_stdout(lab_page: dict[str, object],
                        capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--archive", str(lab_page["archive"]), "--pstore",
                 str(lab_page["pstore"]), "--html", "-"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and out.endswith("</html>\n")
    assert out.count('<section class="crash"') == len(_sections(out))


def _sections(text: str) -> list[str]:
    dom = _Dom()
    dom.feed(text)
    return dom.text_in(cls="crash")
