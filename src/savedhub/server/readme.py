"""A version's README as the hub shows it: bounded, rendered once, off the event loop.

Markdown costs time per token: markdown-it needs about 6 s for 256 KiB of a
table with one-character cells, and 9 s for 1 MB, during which a page renderer
on the event loop would stall every other request. So the hub

* shows at most :data:`MAX_README_BYTES` of a README (cut at a line end, with a
  note saying the rest is in the archive);
* renders tables only when the shown text has at most :data:`MAX_TABLE_CELLS`
  cell separators (``|``); past that the text is shown without table layout;
* renders each version's README once, in a worker thread, and keeps the HTML in
  a bounded in-memory cache (versions are immutable, so it never goes stale);
  concurrent first views of one version wait for a single render, and renders
  of different versions take turns.

Publishers are told at upload time (:func:`readme_warnings`) when their README
is past either limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from savedhub._io.units import human_size

MAX_README_BYTES = 64 * 1024
MAX_TABLE_CELLS = 5000
# Rendered HTML kept in memory, across all versions (the least recently shown go first).
CACHED_HTML_BYTES = 32 * 2**20


@lru_cache(maxsize=2)
def _markdown(tables: bool) -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("strikethrough")
    return md.enable("table") if tables else md


def render_markdown(text: str, *, tables: bool = True) -> str:
    """Safe HTML for Markdown: raw HTML in the source is shown as text."""
    return str(_markdown(tables).render(text))


def render_inline(text: str) -> str:
    """Safe HTML for one line of Markdown (a model's summary on its card)."""
    return str(_markdown(True).renderInline(text))


@dataclass(frozen=True)
class ShownReadme:
    """What the page shows of a README: its HTML and, if it was cut or simplified, why."""

    html: str
    note: str = ""


@dataclass(frozen=True)
class StoredReadme:
    """The start of a stored README (at most :data:`MAX_README_BYTES`) and its full size."""

    head: bytes
    size: int


def _shown_text(readme: StoredReadme) -> str:
    """The text shown: all of it, or its head cut at the last line end."""
    head = readme.head[:MAX_README_BYTES]
    if readme.size > len(head) and (line_end := head.rfind(b"\n")) > 0:
        head = head[: line_end + 1]
    return head.decode("utf-8", errors="replace")


def render_readme(readme: StoredReadme) -> ShownReadme:
    """Render a stored README within the limits in the module docstring."""
    text = _shown_text(readme)
    tables = text.count("|") <= MAX_TABLE_CELLS
    notes = []
    if readme.size > MAX_README_BYTES:
        notes.append(
            f"This README is {human_size(readme.size)}; the hub shows its first "
            f"{human_size(MAX_README_BYTES)}. The whole file is in the model's archive."
        )
    if not tables:
        notes.append(
            f"Its tables have more than {MAX_TABLE_CELLS} cells, so they are shown as text."
        )
    return ShownReadme(render_markdown(text, tables=tables), " ".join(notes))


def read_head(path: Path) -> StoredReadme:
    """The part of a README file the hub would show, without reading more of it."""
    with open(path, "rb") as f:
        return StoredReadme(f.read(MAX_README_BYTES), path.stat().st_size)


def readme_warnings(readme: StoredReadme) -> list[dict[str, str]]:
    """Lint-style warnings for a README past the hub's display limits, for the publisher."""
    warnings = []
    if readme.size > MAX_README_BYTES:
        warnings.append(
            {
                "severity": "warning",
                "code": "readme-too-long",
                "message": f"README.md is {human_size(readme.size)}; model pages show only its "
                f"first {human_size(MAX_README_BYTES)}. Move long material to another file.",
            }
        )
    if _shown_text(readme).count("|") > MAX_TABLE_CELLS:
        warnings.append(
            {
                "severity": "warning",
                "code": "readme-table-too-large",
                "message": f"README.md's tables have more than {MAX_TABLE_CELLS} cells; model "
                "pages show them as plain text. Split or shorten them.",
            }
        )
    return warnings


class ReadmeCache:
    """Rendered READMEs by version name, rendered at most once at a time per version."""

    def __init__(self, max_bytes: int = CACHED_HTML_BYTES) -> None:
        self.max_bytes = max_bytes
        self._shown: OrderedDict[str, ShownReadme] = OrderedDict()
        self._held = 0
        self._rendering: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        # One render at a time: rendering is pure Python, so parallel renders gain nothing
        # under the GIL and only take more of it from the event loop's thread.
        self._render_slot = threading.Lock()

    def _lookup(self, key: str) -> ShownReadme | None:
        with self._lock:
            shown = self._shown.get(key)
            if shown is not None:
                self._shown.move_to_end(key)
            return shown

    def get(self, key: str, load: Callable[[], StoredReadme | None]) -> ShownReadme | None:
        """The README of version ``key``, rendering what ``load()`` returns on a miss.

        Blocks (call it from a worker thread): a miss renders, and a second caller
        for the same key waits for that render instead of starting another.
        """
        shown = self._lookup(key)
        if shown is not None:
            return shown
        with self._lock:
            render_lock = self._rendering.setdefault(key, threading.Lock())
        try:
            with render_lock:
                shown = self._lookup(key)
                if shown is not None:
                    return shown
                stored = load()
                if stored is None:
                    return None
                with self._render_slot:
                    shown = render_readme(stored)
                self._keep(key, shown)
                return shown
        finally:
            with self._lock:
                self._rendering.pop(key, None)

    def _keep(self, key: str, shown: ShownReadme) -> None:
        with self._lock:
            self._shown[key] = shown
            self._held += len(shown.html)
            while self._held > self.max_bytes and len(self._shown) > 1:
                _, evicted = self._shown.popitem(last=False)
                self._held -= len(evicted.html)
