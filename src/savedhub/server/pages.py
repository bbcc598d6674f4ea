"""The hub's HTML: server-rendered Jinja2 templates (autoescaped) and one stylesheet.

README files are rendered by :mod:`savedhub.server.readme` (markdown-it in
CommonMark mode with raw HTML turned off, so a README can format text and link,
but never inject markup or script; ``javascript:``-style links are refused by
markdown-it's link check), within size limits, once per version.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2

from savedhub._io.units import human_size
from savedhub._wire import VersionRecord
from savedhub.server.catalog import ModelSummary
from savedhub.server.names import latest as latest_version
from savedhub.server.readme import ShownReadme, render_inline

_HERE = Path(__file__).parent
STYLESHEET = (_HERE / "static" / "style.css").read_text()


MODELS_PER_PAGE = 100


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class TensorRow:
    name: str
    dtype: str
    shape: str


@dataclass(frozen=True)
class SignatureView:
    name: str
    inputs: list[TensorRow]
    outputs: list[TensorRow]


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "unknown rank"
    dims = ["None" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


def _tensor_rows(specs: Any) -> list[TensorRow]:
    if isinstance(specs, dict):
        items = sorted(specs.items())
    else:
        items = [(s.get("name", ""), s) for s in specs or []]
    return [
        TensorRow(str(name), str(spec.get("dtype", "?")), _shape_text(spec.get("shape")))
        for name, spec in items
    ]


def signature_views(info: Mapping[str, Any]) -> list[SignatureView]:
    """The signatures in a version's description, ready for the page."""
    signatures = info.get("signatures") or {}
    if isinstance(signatures, dict):
        items = sorted(signatures.items())
    else:
        items = [(s.get("name", ""), s) for s in signatures]
    return [
        SignatureView(str(name), _tensor_rows(sig.get("inputs")), _tensor_rows(sig.get("outputs")))
        for name, sig in items
    ]


def _when(created: str) -> str:
    """``2026-11-26T00:38:18+00:00`` -> ``2026-11-26 00:38 UTC``."""
    return created[:16].replace("T", " ") + (" UTC" if created.endswith("+00:00") else "")


def _facts(version: VersionRecord) -> list[tuple[str, str]]:
    info = version.info
    facts = [("Version", version.version), ("Published", _when(version.created))]
    if version.format_name:
        facts.append(("Format", version.format_name))
    if "variables" in info:
        trainable = info.get("trainable_variables")
        extra = f" ({trainable:,} trainable)" if trainable is not None else ""
        facts.append(("Variables", f"{info['variables']:,}{extra}"))
    if "variable_bytes" in info:
        facts.append(("Variable size", human_size(float(info["variable_bytes"]))))
    facts.append(("Archive", human_size(version.archive_size)))
    facts.append(("Unpacked", human_size(float(version.extracted_size))))
    return facts


@dataclass(frozen=True)
class _Card:
    publisher: str
    model: str
    versions: list[str]
    latest: VersionRecord
    size: str
    summary: str


def page_number(text: str | None) -> int:
    """The ``?page=`` asked for: a positive integer, else 1."""
    return int(text) if text and text.isdigit() and 0 < int(text) < 10**9 else 1


def render_index(
    summaries: list[ModelSummary],
    query: str,
    base_url: str,
    *,
    publisher: str | None = None,
    empty: bool = False,
    page: int = 1,
) -> str:
    """The front page (or one publisher's page): models grouped by publisher,
    :data:`MODELS_PER_PAGE` at a time (``page`` counts from 1), so a hub of thousands
    of models renders a page in the time of a hundred."""
    pages_total = max(1, -(-len(summaries) // MODELS_PER_PAGE))
    page = min(page, pages_total)
    shown = summaries[(page - 1) * MODELS_PER_PAGE : page * MODELS_PER_PAGE]
    groups: dict[str, list[_Card]] = {}
    for s in shown:
        summary = render_inline(s.latest.summary)
        groups.setdefault(s.publisher, []).append(
            _Card(
                s.publisher,
                s.model,
                s.versions,
                s.latest,
                human_size(s.latest.archive_size),
                summary,
            )
        )
    return (
        _environment()
        .get_template("index.html")
        .render(
            title=publisher or "Models",
            query=query,
            base_url=base_url,
            publisher=publisher,
            empty=empty,
            summaries=summaries,
            groups=[{"publisher": p, "models": cards} for p, cards in groups.items()],
            page=page,
            pages_total=pages_total,
            page_link=lambda n: (
                "?" + urllib.parse.urlencode({**({"q": query} if query else {}), "page": n})
            ),
        )
    )


def render_model(
    version: VersionRecord, versions: list[str], readme: ShownReadme | None, base_url: str
) -> str:
    """A model's page, for one of its versions."""
    url = f"{base_url}/{version.publisher}/{version.model}/{version.version}"
    return (
        _environment()
        .get_template("model.html")
        .render(
            title=f"{version.publisher}/{version.model}",
            v=version,
            url=url,
            versions=versions,
            latest=latest_version(versions),
            readme_html=readme.html if readme else "",
            readme_note=readme.note if readme else "",
            signatures=signature_views(version.info),
            facts=_facts(version),
        )
    )


def render_error(status: int, message: str, available: list[str]) -> str:
    """An error page that says what went wrong and links what exists."""
    return (
        _environment()
        .get_template("error.html")
        .render(
            title=f"{status}",
            status=status,
            reason=HTTPStatus(status).phrase,
            message=message,
            available=available,
        )
    )
