"""The hub on an S3-compatible object store (AWS S3, MinIO, Ceph, R2): ``s3://bucket/prefix``.

The bucket holds all state, so any number of identical ``savedhub serve``
processes can serve it and any of them may die at any moment. Layout below
the prefix::

    P/M/V/metadata.json          the commit: written last, with If-None-Match: *
    P/M/V/.<upload>/model.tar.gz the version's files, under the id of the upload
    P/M/V/.<upload>/model.tar.gz.sha256, README.md, saved_model/...
    .savedhub/index.json.gz      every model (:mod:`savedhub.server.s3index`)
    .savedhub/uploads/<upload>   one marker per upload under way (its target, refreshed)

An upload writes its files under its own id, so uploads of one version never
touch each other's objects; the archive goes up as a multipart upload while it
arrives. It then commits by creating ``metadata.json`` with ``If-None-Match: *``
(the id in the object's ``x-amz-meta-upload``): the store lets exactly one
upload create it, the others get 409 and delete their files. A version is
visible once its ``metadata.json`` exists, and every file it names is in place
by then. A server killed mid-upload leaves a marker that nobody refreshes; after
``debris_age`` seconds any replica deletes that upload's files and aborts its
multipart upload.

The client is boto3: the client S3 users already run, configured the way they
configure it (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_PROFILE``, ``~/.aws/config``), with conditional writes,
multipart uploads, ranged GETs and presigned URLs. It is the ``[s3]`` extra and is
imported only when an ``s3://`` root is opened.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from savedhub._wire import VersionRecord, is_valid_version
from savedhub.errors import StorageError, VersionExistsError
from savedhub.server.names import is_valid_name
from savedhub.server.s3index import DEFAULT_REFRESH_SECONDS, CatalogIndex, Entries
from savedhub.server.s3objects import (
    PART_BYTES,
    MultipartWriter,
    RangedReader,
    error_code,
    is_missing,
)
from savedhub.server.scratch import LazyScratch
from savedhub.server.storage import ARCHIVE, METADATA, segments

logger = logging.getLogger("savedhub")

DEFAULT_DEBRIS_AGE = 900.0
DEFAULT_PRESIGN_SECONDS = 900
_HIDDEN = ".savedhub"
_UPLOAD_META = "upload"
_COMMIT_CONFLICTS = ("PreconditionFailed", "412")
_RETRYABLE_CONFLICT = ("ConditionalRequestConflict", "409")
_PARALLEL_PUTS = 4


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (prefix "" for none).

    Example:
        >>> parse_s3_url("s3://models/hub")
        ('models', 'hub/')
    """
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket or url == rest:
        raise ValueError(f"not an S3 location: {url!r}; use s3://BUCKET or s3://BUCKET/PREFIX")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def make_client() -> Any:
    """A boto3 S3 client configured from the environment and AWS config files, as the
    AWS CLI is (``AWS_ENDPOINT_URL`` points it at MinIO, Ceph, R2 or a test server)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", config=config)


class ArchiveUpload:
    """One upload's objects in the store, from its first byte to its commit or its end."""

    def __init__(self, storage: S3Storage, publisher: str, model: str, version: str) -> None:
        self.storage = storage
        self.names = (publisher, model, version)
        self.id = secrets.token_hex(12)
        self.folder = f"{storage.key(*self.names)}/.{self.id}"
        storage.mark(self)
        self.archive = MultipartWriter(storage.client, storage.bucket, f"{self.folder}/{ARCHIVE}")
        self._finished = False

    def add(self, chunk: bytes) -> None:
        """Buffer a piece of the archive (:meth:`send_part` when ``part_ready``)."""
        self.archive.add(chunk)

    @property
    def part_ready(self) -> bool:
        return self.archive.part_ready

    def send_part(self) -> None:
        self.archive.send_part()

    def discard(self) -> None:
        """Remove everything this upload wrote (it failed, or lost the race)."""
        if self._finished:
            return
        self._finished = True
        try:
            self.storage.remove_upload(self.id, self.folder, self.archive.upload_id)
        except Exception as exc:  # the janitor removes it later
            logger.warning("could not remove the upload %s yet: %s", self.id, exc)

    def done(self) -> None:
        self._finished = True
        self.storage.unmark(self)


class S3Storage:
    """A hub root in an S3 bucket (see the module docstring for the layout and commit).

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: a boto3 S3 client (default: from the environment, :func:`make_client`).
        catalog_refresh: seconds a replica trusts its copy of the catalog index.
        debris_age: seconds after its last sign of life an upload counts as abandoned.
        presign_seconds: how long a presigned download URL stays valid.
    """

    def __init__(
        self,
        url: str,
        *,
        client: Any = None,
        catalog_refresh: float = DEFAULT_REFRESH_SECONDS,
        debris_age: float = DEFAULT_DEBRIS_AGE,
        presign_seconds: int = DEFAULT_PRESIGN_SECONDS,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.description = url
        self.client = client if client is not None else make_client()
        self.requests: Counter[str] = Counter()
        self.client.meta.events.register("before-call.s3", self._count)
        self.debris_age = debris_age
        self.presign_seconds = presign_seconds
        self.index = CatalogIndex(
            self.client,
            self.bucket,
            f"{self.prefix}{_HIDDEN}/index.json.gz",
            self._walk_records,
            catalog_refresh,
        )
        self._uploads: dict[str, ArchiveUpload] = {}
        self._committed: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._scratch = LazyScratch(Path(tempfile.gettempdir()) / "savedhub-incoming")
        self._janitor: threading.Thread | None = None

    def _count(self, model: Any, **_: Any) -> None:
        self.requests[model.name] += 1

    # -- keys ----------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` below the prefix, as written (no upload folder)."""
        return self.prefix + "/".join(segments(parts))

    def _upload_of(self, publisher: str, model: str, version: str) -> str | None:
        """The id of the upload that committed a version (read once: versions are immutable)."""
        names = (publisher, model, version)
        found = self._committed.get(names)
        if found is None:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(*names, METADATA))
            except Exception as exc:
                if is_missing(exc):
                    return None
                raise
            found = self._remember(names, head.get("Metadata", {}))
        return found

    def _remember(self, names: tuple[str, str, str], metadata: dict[str, str]) -> str | None:
        found = metadata.get(_UPLOAD_META)
        if found is not None:
            with self._lock:
                self._committed[names] = found
        return found

    def _file_key(self, *parts: str) -> str | None:
        """The key of a file of a published version (``P, M, V, name...``), or of
        ``metadata.json`` itself; None when the version is not published."""
        segments(parts)
        if len(parts) < 4 or parts[3] == METADATA and len(parts) == 4:
            return self.key(*parts)
        upload = self._upload_of(*parts[:3])
        if upload is None:
            return None
        return f"{self.key(*parts[:3])}/.{upload}/" + "/".join(parts[3:])

    # -- the Storage interface -------------------------------------------------

    def list_dirs(self, *parts: str) -> list[str]:
        prefix = self.key(*parts) + "/" if parts else self.prefix
        names = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if is_valid_name(name):
                    names.append(name)
        return sorted(names)

    def read_bytes(self, *parts: str) -> bytes | None:
        key = self._file_key(*parts)
        if key is None:
            return None
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise
        if len(parts) == 4 and parts[3] == METADATA:
            self._remember(parts[:3], answer.get("Metadata", {}))
        return bytes(answer["Body"].read())

    def size(self, *parts: str) -> int | None:
        key = self._file_key(*parts)
        if key is None:
            return None
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    def open(self, *parts: str) -> IO[bytes]:
        key = self._file_key(*parts)
        size = self.size(*parts) if key is not None else None
        if key is None or size is None:
            raise FileNotFoundError("/".join(parts))
        return RangedReader(self.client, self.bucket, key, size)  # type: ignore[return-value]

    def scratch_dir(self) -> Path:
        self.start_janitor()
        return self._scratch.path()

    def begin_upload(self, publisher: str, model: str, version: str) -> ArchiveUpload:
        """Start writing a version's archive to the store (a marker, a multipart upload)."""
        try:
            return ArchiveUpload(self, publisher, model, version)
        except Exception as exc:
            raise StorageError(f"could not start an upload in {self.description}: {exc}") from exc

    def publish(
        self,
        staging: Path,
        publisher: str,
        model: str,
        version: str,
        upload: Any = None,
    ) -> None:
        names = (publisher, model, version)
        name = "/".join(names)
        if upload is None:
            upload = self.begin_upload(*names)
        try:
            if not upload.archive.started:  # the archive is on disk only: send it now
                with open(staging / ARCHIVE, "rb") as f:
                    while chunk := f.read(PART_BYTES):
                        upload.add(chunk)
                        upload.send_part()
            upload.archive.complete()
            files = [
                p
                for p in sorted(staging.rglob("*"))
                if p.is_file() and p.relative_to(staging).as_posix() not in (ARCHIVE, METADATA)
            ]
            with ThreadPoolExecutor(_PARALLEL_PUTS) as pool:
                list(pool.map(lambda p: self._put_file(p, staging, upload.folder), files))
            metadata = (staging / METADATA).read_bytes()
            record = json.loads(metadata)
            self._commit(names, metadata, upload.id)
        except VersionExistsError:
            upload.discard()
            raise
        except Exception as exc:
            upload.discard()
            raise StorageError(f"could not publish {name} into {self.description}: {exc}") from exc
        with self._lock:
            self._committed[names] = upload.id
        try:
            self.index.add(VersionRecord.from_json(record))
        except Exception as exc:  # published all the same; the janitor lists it later
            logger.warning("%s is published but not yet in the catalog index: %s", name, exc)
            return
        try:
            upload.done()
        except Exception as exc:  # the janitor finds the version committed and drops the marker
            logger.warning("could not remove the marker of the upload of %s: %s", name, exc)

    def _put_file(self, path: Path, staging: Path, folder: str) -> None:
        from boto3.s3.transfer import TransferConfig

        key = f"{folder}/{path.relative_to(staging).as_posix()}"
        # Large files go up in parts, two at a time: with _PARALLEL_PUTS files at once the
        # buffers stay under 4 x 2 x 8 MiB whatever the model's size.
        config = TransferConfig(max_concurrency=2, multipart_chunksize=PART_BYTES)
        self.client.upload_file(str(path), self.bucket, key, Config=config)

    def _commit(self, names: tuple[str, str, str], metadata: bytes, upload: str) -> None:
        for _ in range(5):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key(*names, METADATA),
                    Body=metadata,
                    ContentType="application/json",
                    Metadata={_UPLOAD_META: upload},
                    IfNoneMatch="*",
                )
                return
            except Exception as exc:
                code = error_code(exc)
                if code in _COMMIT_CONFLICTS:
                    raise VersionExistsError(
                        f"{'/'.join(names)} already exists in {self.description}"
                    ) from exc
                if code not in _RETRYABLE_CONFLICT:  # S3: a concurrent write, try again
                    raise
        raise StorageError(f"the store kept reporting conflicts for {'/'.join(names)}")

    def folder_url(self, *parts: str) -> str | None:
        key = self._file_key(*parts)
        return f"s3://{self.bucket}/{key}" if key is not None else None

    def list_files(self, *parts: str) -> list[tuple[str, int]]:
        key = self._file_key(*parts)
        if key is None:
            return []
        top = key + "/"
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=top
        )
        for page in pages:
            for item in page.get("Contents", []):
                found.append((item["Key"][len(top) :], int(item["Size"])))
        return sorted(found)

    def open_in(self, relative: str, *parts: str) -> IO[bytes]:
        if any(part in ("", ".", "..") for part in relative.split("/")):
            raise FileNotFoundError(f"{relative!r} is not inside the folder")
        key = self._file_key(*parts)
        if key is None:
            raise FileNotFoundError("/".join(parts))
        full = f"{key}/{relative}"
        try:
            size = int(self.client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])
        except Exception as exc:
            if is_missing(exc):
                raise FileNotFoundError(relative) from exc
            raise
        return RangedReader(self.client, self.bucket, full, size)  # type: ignore[return-value]

    def model_index(self) -> Entries:
        return self.index.entries()

    def download_url(self, *parts: str, filename: str) -> str | None:
        """A presigned GET of a version's file, valid ``presign_seconds``, that the store
        answers with Range support; None when the version is not published."""
        key = self._file_key(*parts)
        if key is None:
            return None
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=self.presign_seconds,
            )
        )

    def check(self) -> str | None:
        """None when the bucket answers, else why not."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            return f"s3://{self.bucket} is not reachable: {exc}"
        return None

    # -- uploads under way and what dead ones left -----------------------------

    def _marker_key(self, upload: str) -> str:
        return f"{self.prefix}{_HIDDEN}/uploads/{upload}.json"

    def mark(self, upload: ArchiveUpload) -> None:
        """Say (and keep saying, see :meth:`start_janitor`) that ``upload`` is alive."""
        with self._lock:
            self._uploads[upload.id] = upload
        self._write_marker(upload)

    def _write_marker(self, upload: ArchiveUpload) -> None:
        body = {"target": "/".join(upload.names), "host": socket.gethostname(), "pid": os.getpid()}
        self.client.put_object(
            Bucket=self.bucket, Key=self._marker_key(upload.id), Body=json.dumps(body).encode()
        )

    def unmark(self, upload: ArchiveUpload) -> None:
        with self._lock:
            self._uploads.pop(upload.id, None)
        self.client.delete_object(Bucket=self.bucket, Key=self._marker_key(upload.id))

    def remove_upload(self, upload: str, folder: str, multipart: str | None) -> None:
        """Delete an upload's objects, its multipart upload and its marker."""
        if multipart is None:
            found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=f"{folder}/")
            multiparts = [(u["Key"], u["UploadId"]) for u in found.get("Uploads", [])]
        else:
            multiparts = [(f"{folder}/{ARCHIVE}", multipart)]
        for key, multipart_id in multiparts:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=multipart_id
                )
            except Exception as exc:
                if error_code(exc) not in ("NoSuchUpload", "404"):
                    raise
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{folder}/"
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
        with self._lock:
            self._uploads.pop(upload, None)
        self.client.delete_object(Bucket=self.bucket, Key=self._marker_key(upload))

    def collect_debris(self) -> int:
        """Finish or remove uploads whose markers nobody refreshed for ``debris_age``
        seconds: list a committed one in the index, delete the files of the others.
        Returns how many were handled."""
        cutoff = time.time() - self.debris_age
        handled = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{_HIDDEN}/uploads/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                upload = item["Key"].rsplit("/", 1)[-1].removesuffix(".json")
                if upload in self._uploads or item["LastModified"].timestamp() > cutoff:
                    continue
                self._collect(upload, item["Key"])
                handled += 1
        return handled

    def _collect(self, upload: str, marker: str) -> None:
        try:
            raw = self.client.get_object(Bucket=self.bucket, Key=marker)["Body"].read()
        except Exception as exc:
            if is_missing(exc):
                return  # another replica collected it first
            raise
        publisher, model, version = json.loads(raw)["target"].split("/")
        names = (publisher, model, version)
        if self._upload_of(*names) == upload:  # committed, then its server died
            record = self.read_bytes(*names, METADATA)
            if record is not None:
                self.index.add(VersionRecord.from_json(json.loads(record)))
            self.client.delete_object(Bucket=self.bucket, Key=marker)
            logger.info("listed %s, published by a server that then stopped", "/".join(names))
            return
        self.remove_upload(upload, f"{self.key(*names)}/.{upload}", None)
        logger.info("removed an abandoned upload of %s", "/".join(names))

    def start_janitor(self) -> None:
        """Keep this process's markers fresh and collect debris, in a daemon thread."""
        with self._lock:
            if self._janitor is not None:
                return
            self._janitor = threading.Thread(
                target=self._tend, name="savedhub-s3-janitor", daemon=True
            )
        self._janitor.start()

    def _tend(self) -> None:
        # Markers are refreshed six times per debris_age (an object store's clock may
        # round to the second), so a live upload's marker is never near the age limit.
        beat = max(0.1, min(60.0, self.debris_age / 6))
        for round_number in itertools.count():
            for upload in list(self._uploads.values()):
                try:
                    self._write_marker(upload)
                except Exception as exc:
                    logger.warning("could not refresh the marker of an upload: %s", exc)
            if round_number % 3 == 0:
                try:
                    self.collect_debris()
                except Exception as exc:
                    logger.warning("could not collect abandoned uploads: %s", exc)
            time.sleep(beat)

    def _walk_records(self) -> Iterator[VersionRecord]:
        """Every published version's record, by listing the bucket (builds the index once)."""
        for publisher in self.list_dirs():
            for model in self.list_dirs(publisher):
                for version in self.list_dirs(publisher, model):
                    if not is_valid_version(version):
                        continue
                    raw = self.read_bytes(publisher, model, version, METADATA)
                    if raw is None:
                        continue
                    try:
                        yield VersionRecord.from_json(json.loads(raw))
                    except ValueError as exc:
                        logger.warning("not listing %s/%s/%s: %s", publisher, model, version, exc)
