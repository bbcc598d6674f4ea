"""The catalog index of a hub on S3: one object listing every model, shared by all replicas.

Listing a bucket folder by folder costs a request per publisher and per model,
so with thousands of models a page would wait on thousands of requests. The
index is one gzip-compressed JSON object, ``.savedhub/index.json.gz``::

    {"format": 1, "models": {"acme/mul": {"versions": ["1", "2"], "latest": {...}}}}

(``latest`` is the newest version's ``metadata.json`` record without its signatures
and warnings, which pages do not show). Each publish adds
its version with a compare-and-swap: read the index and its ETag, write it back
with ``If-Match`` (``If-None-Match: *`` when there is none yet), and start over
if another replica wrote in between. Each replica keeps the parsed index in
memory and asks the store at most once per ``refresh`` seconds whether it
changed (a conditional GET, 304 when it did not): a model published through one
replica appears on every other within ``refresh`` seconds, and a page costs at
most one small store request.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from savedhub._wire import VersionRecord
from savedhub.server.names import version_key
from savedhub.server.s3objects import error_code, is_missing

logger = logging.getLogger("savedhub")

INDEX_FORMAT = 1
DEFAULT_REFRESH_SECONDS = 2.0
_CONFLICTS = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_MAX_TRIES = 50
# A page lists a model by its newest version's name, size, date and summary: the index keeps
# the rest of the record (signatures, lint warnings: kilobytes a model) in metadata.json only.
_NOT_ON_CARDS = ("info", "warnings")


@dataclass(frozen=True)
class IndexedModel:
    """A model as the index lists it: its versions (oldest first) and the newest one."""

    versions: list[str]
    latest: VersionRecord


Entries = dict[tuple[str, str], IndexedModel]


def _parse(raw: bytes) -> tuple[dict[str, Any], Entries]:
    document = json.loads(gzip.decompress(raw))
    if document.get("format") != INDEX_FORMAT:
        raise ValueError(f"unknown catalog index format {document.get('format')!r}")
    entries: Entries = {}
    for name, entry in document["models"].items():
        publisher, model = name.split("/")
        entries[(publisher, model)] = IndexedModel(
            list(entry["versions"]), VersionRecord.from_json(entry["latest"])
        )
    return document, entries


def _document(records: Iterable[VersionRecord]) -> dict[str, Any]:
    document: dict[str, Any] = {"format": INDEX_FORMAT, "models": {}}
    for record in records:
        _add(document, record)
    return document


def _add(document: dict[str, Any], record: VersionRecord) -> bool:
    """Put ``record`` in ``document``; False if it was there already."""
    entry = document["models"].setdefault(
        f"{record.publisher}/{record.model}", {"versions": [], "latest": None}
    )
    if record.version in entry["versions"]:
        return False
    entry["versions"] = sorted([*entry["versions"], record.version], key=version_key)
    if entry["versions"][-1] == record.version:
        card = record.to_json()
        for bulky in _NOT_ON_CARDS:
            card.pop(bulky, None)
        entry["latest"] = card
    return True


class CatalogIndex:
    """The index object at ``s3://bucket/key``, cached here for ``refresh`` seconds.

    ``walk`` yields every published version's record by listing the bucket: it
    builds the index the first time (a bucket filled before the index existed).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        walk: Callable[[], Iterable[VersionRecord]],
        refresh: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self._client, self._bucket, self.key = client, bucket, key
        self._walk = walk
        self.refresh = refresh
        self._etag: str | None = None
        self._entries: Entries | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def entries(self) -> Entries:
        """Every model, as of at most ``refresh`` seconds ago (the index is made if missing)."""
        with self._lock:
            if self._entries is not None and time.monotonic() - self._checked < self.refresh:
                return self._entries
            self._revalidate()
            assert self._entries is not None
            return self._entries

    def _revalidate(self) -> None:
        extra = {"IfNoneMatch": self._etag} if self._etag and self._entries is not None else {}
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self.key, **extra)
        except Exception as exc:
            if error_code(exc) in ("304", "NotModified"):
                self._checked = time.monotonic()
                return
            if not is_missing(exc):
                raise
            self._create()
            return self._revalidate()
        _, self._entries = _parse(answer["Body"].read())
        self._etag = answer["ETag"]
        self._checked = time.monotonic()

    def _create(self) -> None:
        """Build the index by walking the bucket, unless another replica is first."""
        document = _document(self._walk())
        try:
            self._put(document, {"IfNoneMatch": "*"})
            logger.info("built the catalog index of %d model(s)", len(document["models"]))
        except Exception as exc:
            if error_code(exc) not in _CONFLICTS:
                raise

    def add(self, record: VersionRecord) -> None:
        """List a just-published version, whatever other replicas write at the same time."""
        for attempt in range(_MAX_TRIES):
            try:
                answer = self._client.get_object(Bucket=self._bucket, Key=self.key)
            except Exception as exc:
                if not is_missing(exc):
                    raise
                self._create()  # the walk finds the version just committed
                continue
            document, _ = _parse(answer["Body"].read())
            if not _add(document, record):
                return
            try:
                self._put(document, {"IfMatch": answer["ETag"]})
            except Exception as exc:
                if error_code(exc) not in _CONFLICTS:
                    raise
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # another replica won
                continue
            with self._lock:
                self._checked = float("-inf")  # this replica shows it at once
            return
        raise TimeoutError(f"could not update the catalog index after {_MAX_TRIES} tries")

    def _put(self, document: dict[str, Any], condition: dict[str, str]) -> None:
        text = json.dumps(document, separators=(",", ":")).encode()
        body = gzip.compress(text, compresslevel=5, mtime=0)  # 9 costs twice the time
        self._client.put_object(
            Bucket=self._bucket,
            Key=self.key,
            Body=body,
            ContentType="application/gzip",
            **condition,
        )
