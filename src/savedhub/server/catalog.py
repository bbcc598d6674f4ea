"""What the hub holds: publishers, models, versions and their metadata, read from storage.

Versions are immutable, so a version's metadata is read from storage once
and kept in memory. Listings come from the storage's model index when it
keeps one (:meth:`Storage.model_index`: S3, where walking thousands of
folders per page would cost thousands of requests, and another replica's
publish shows within the index's refresh time); otherwise they are read
fresh from the folders on every call, so models published by another server
in front of the same storage appear at once. A version asked for by name is
always read from storage, so it loads the moment it is published.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from savedhub._wire import VersionRecord, is_valid_version
from savedhub.server import storage as layout
from savedhub.server.names import is_valid_name, latest, version_key
from savedhub.server.readme import MAX_README_BYTES, StoredReadme
from savedhub.server.storage import Storage

logger = logging.getLogger("savedhub")
_LISTED = 20
PUBLISH_HINT = (
    "Publish a model with: savedhub push ./my_model http://HOST/PUBLISHER/MODEL/1 --token TOKEN "
    "(the server needs --tokens-file or SAVEDHUB_SERVE_TOKENS to accept uploads)."
)


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


@dataclass(frozen=True)
class ModelSummary:
    """A model with its versions (natural order, oldest first) and the latest one."""

    publisher: str
    model: str
    versions: list[str]
    latest: VersionRecord

    @property
    def name(self) -> str:
        return f"{self.publisher}/{self.model}"


class Catalog:
    """Reads the storage layout described in :mod:`savedhub.server.storage`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._metadata: dict[tuple[str, str, str], VersionRecord] = {}
        self._files: dict[str, dict[str, int]] = {}
        self._summaries: (
            tuple[Mapping[tuple[str, str], Any], list[tuple[ModelSummary, str]]] | None
        ) = None
        self._lock = threading.Lock()

    def publishers(self) -> list[str]:
        index = self.storage.model_index()
        if index is not None:
            return sorted({p for p, _ in index})
        return self.storage.list_dirs()

    def models(self, publisher: str) -> list[str]:
        index = self.storage.model_index()
        if index is not None:
            return sorted(m for p, m in index if p == publisher)
        return [m for m in self.storage.list_dirs(publisher) if self.versions(publisher, m)]

    def versions(self, publisher: str, model: str) -> list[str]:
        """Published versions of a model, oldest first (folders not named by a
        positive integer are not versions and are left out)."""
        index = self.storage.model_index()
        entry = index.get((publisher, model)) if index is not None else None
        if entry is not None:
            return list(entry.versions)
        found = [
            v
            for v in self.storage.list_dirs(publisher, model)
            if is_valid_version(v) and self.get(publisher, model, v) is not None
        ]
        return sorted(found, key=version_key)

    def cached(self, publisher: str, model: str, version: str) -> VersionRecord | None:
        """A version already read, without touching storage (safe on the event loop)."""
        return self._metadata.get((publisher, model, version))

    def get(self, publisher: str, model: str, version: str) -> VersionRecord | None:
        """A published version, or None (also for names that are not valid)."""
        if not (is_valid_name(publisher) and is_valid_name(model) and is_valid_version(version)):
            return None
        key = (publisher, model, version)
        cached = self._metadata.get(key)
        if cached is not None:
            return cached
        raw = self.storage.read_bytes(publisher, model, version, layout.METADATA)
        if raw is None:
            return None
        try:
            record = VersionRecord.from_json(json.loads(raw))
        except ValueError as exc:  # also JSON that does not parse
            logger.warning("ignoring %s/%s/%s: its %s is %s", *key, layout.METADATA, exc)
            return None
        if (record.publisher, record.model, record.version) != key:
            logger.warning("ignoring %s/%s/%s: its %s names %s", *key, layout.METADATA, record.name)
            return None
        with self._lock:
            self._metadata[key] = record
        return record

    def latest(self, publisher: str, model: str) -> VersionRecord | None:
        if not (is_valid_name(publisher) and is_valid_name(model)):
            return None
        newest = latest(self.versions(publisher, model))
        return self.get(publisher, model, newest) if newest else None

    def files(self, version: VersionRecord) -> dict[str, int]:
        """The files of a version's SavedModel folder (relative path -> size), read once."""
        cached = self._files.get(version.name)
        if cached is None:
            names = (version.publisher, version.model, version.version, layout.FOLDER)
            cached = dict(self.storage.list_files(*names))
            with self._lock:
                self._files[version.name] = cached
        return cached

    def readme(self, version: VersionRecord) -> StoredReadme | None:
        """The start of a version's README (what a page may show) and its size, or None."""
        if not version.readme:
            return None
        parts = (version.publisher, version.model, version.version, layout.README)
        size = self.storage.size(*parts)
        if size is None:
            return None
        with self.storage.open(*parts) as f:
            return StoredReadme(f.read(MAX_README_BYTES), size)

    def summaries(self, query: str = "", publisher: str | None = None) -> list[ModelSummary]:
        """Every model (of one publisher, if given) whose ``publisher/model`` name
        contains ``query`` (case-insensitive), sorted by name."""
        needle = query.strip().lower()
        index = self.storage.model_index()
        if index is not None:
            return [
                s
                for s, name in self._indexed_summaries(index)
                if (publisher is None or s.publisher == publisher)
                and (not needle or needle in name)
            ]
        result = []
        publishers = [publisher] if publisher else self.publishers()
        for pub in publishers:
            if not is_valid_name(pub):
                continue
            for model in self.storage.list_dirs(pub):
                if needle and needle not in f"{pub}/{model}".lower():
                    continue
                versions = self.versions(pub, model)
                newest = latest(versions)
                if newest is None:
                    continue
                record = self.get(pub, model, newest)
                if record is not None:
                    result.append(ModelSummary(pub, model, versions, record))
        return result

    def _indexed_summaries(
        self, index: Mapping[tuple[str, str], Any]
    ) -> list[tuple[ModelSummary, str]]:
        """Every model of ``index``, sorted, with its name in lower case for searches: made
        once per version of the index (sorting 10,000 models on every page would cost a
        page its time)."""
        made = self._summaries
        if made is None or made[0] is not index:
            models = [
                (ModelSummary(p, m, list(entry.versions), entry.latest), f"{p}/{m}".lower())
                for (p, m), entry in sorted(index.items())
            ]
            made = self._summaries = (index, models)
        return made[1]

    def explain_missing(
        self, publisher: str, model: str | None = None, version: str | None = None
    ) -> tuple[str, list[str]]:
        """Why ``publisher/model/version`` is not here, naming what exists at the deepest
        level that matched; and those names (``publisher``, ``p/m`` or ``p/m/v``)."""
        asked = "/".join(n for n in (publisher, model, version) if n is not None)
        for name in (publisher, model, version):
            if name is not None and not is_valid_name(name):
                return f"No model at {asked!r}: {name!r} is not a valid name.", []
        publishers = [p for p in self.publishers() if self.models(p)]
        if not publishers:
            return f"No model {asked!r}: this hub is empty. {PUBLISH_HINT}", []
        if publisher not in publishers:
            shown = _shown(publishers)
            return f"No publisher {publisher!r} on this hub. Publishers here: {shown}.", publishers
        models = [f"{publisher}/{m}" for m in self.models(publisher)]
        if model is None or f"{publisher}/{model}" not in models:
            return f"No model {asked!r}. Models by {publisher!r}: {_shown(models)}.", models
        versions = self.versions(publisher, model)
        available = [f"{publisher}/{model}/{v}" for v in versions]
        shown = _shown(versions)
        return f"No version {version!r} of {publisher}/{model}. Versions: {shown}.", available
