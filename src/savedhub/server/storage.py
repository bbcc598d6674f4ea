"""Where the hub keeps its models: a small interface, a local folder, and fsspec
(S3 has its own implementation, :mod:`savedhub.server.s3`).

The layout is the same on every backend::

    ROOT/
      <publisher>/
        <model>/
          <version>/
            model.tar.gz        the archive clients download
            model.tar.gz.sha256 its SHA-256, as ``<hex>  model.tar.gz``
            metadata.json       signatures, variables, sizes, created time (written last)
            README.md           optional documentation shown on the model page
            saved_model/        the extracted model, for clients that read in place

A version exists once its ``metadata.json`` does. Publishing is atomic: a
local root renames a finished folder into place (``rename`` refuses a
non-empty target, so of two concurrent uploads exactly one wins); an fsspec
root first claims the version with an exclusive create (``mode="xb"``), then
copies the files and writes ``metadata.json`` last.

Every path segment is checked again here (:func:`segments`), so even a bug
in a caller cannot make storage read or write outside the root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from savedhub._io.atomic import put_folder
from savedhub.errors import StorageError as StorageError  # re-exported
from savedhub.errors import VersionExistsError as VersionExistsError
from savedhub.server.names import is_valid_name
from savedhub.server.scratch import LazyScratch

ARCHIVE = "model.tar.gz"
DIGEST = "model.tar.gz.sha256"
METADATA = "metadata.json"
README = "README.md"
FOLDER = "saved_model"
_CLAIM = "claim.json"
# Filesystems whose paths TensorFlow's own tf.io.gfile reads, so a client may load in place.
_TF_READABLE_PROTOCOLS = ("gs", "gcs", "s3", "hdfs")


def segments(parts: tuple[str, ...]) -> tuple[str, ...]:
    """``parts`` unchanged if each is a valid name, else ValueError (never leave the root)."""
    for part in parts:
        if not is_valid_name(part):
            raise ValueError(f"refusing storage path segment {part!r}")
    return parts


@runtime_checkable
class Storage(Protocol):
    """What the server needs from a place that holds models.

    ``parts`` are path segments below the root (publisher, model, version,
    file name), each already a valid name.
    """

    description: str

    def list_dirs(self, *parts: str) -> list[str]:
        """Sorted names of the folders directly under ``parts`` ([] if none)."""
        ...

    def read_bytes(self, *parts: str) -> bytes | None:
        """The whole content of a small file, or None if it does not exist."""
        ...

    def size(self, *parts: str) -> int | None:
        """The size of a file in bytes, or None if it does not exist."""
        ...

    def open(self, *parts: str) -> IO[bytes]:
        """A seekable binary reader of a file (raises FileNotFoundError)."""
        ...

    def scratch_dir(self) -> Path | None:
        """A local folder for staging uploads (same filesystem as the root), or None for
        the system temp folder."""
        ...

    def publish(
        self, staging: Path, publisher: str, model: str, version: str, upload: Any = None
    ) -> None:
        """Make the finished folder ``staging`` the version, atomically (``upload``: what
        :meth:`begin_upload` returned, holding the archive already sent).

        Raises:
            VersionExistsError: that version already exists or is being published.
        """
        ...

    def folder_url(self, *parts: str) -> str | None:
        """Where TensorFlow can read the folder in place (``gs://...``), or None if it
        cannot (a local root: the hub serves the files itself, never its own paths)."""
        ...

    def list_files(self, *parts: str) -> list[tuple[str, int]]:
        """Every file in the folder ``parts`` and below: ``(relative POSIX path, size)``,
        sorted ([] if there is no such folder)."""
        ...

    def open_in(self, relative: str, *parts: str) -> IO[bytes]:
        """A seekable reader of ``relative`` (a path :meth:`list_files` gave) in the folder
        ``parts`` (raises FileNotFoundError, also for a path leaving the folder)."""
        ...

    def begin_upload(self, publisher: str, model: str, version: str) -> Any:
        """Somewhere to stream the archive while it arrives (``add``, ``part_ready``,
        ``send_part``, ``discard``), handed back to :meth:`publish`; None when the
        storage takes the archive from the staging folder."""
        ...

    def model_index(self) -> Mapping[tuple[str, str], Any] | None:
        """Every model at once -- ``(publisher, model)`` to an entry with ``versions``
        and ``latest`` -- kept by the storage so that a page costs no listing; None
        when the catalog should walk the folders."""
        ...

    def download_url(self, *parts: str, filename: str) -> str | None:
        """A URL the client may fetch the file from directly (a presigned URL), or None."""
        ...

    def check(self) -> str | None:
        """None when the storage answers, else what is wrong (for ``/healthz``)."""
        ...


class _WalkedStorage:
    """What a storage without an index, direct downloads or streamed uploads answers."""

    def begin_upload(self, publisher: str, model: str, version: str) -> Any:
        return None

    def model_index(self) -> Mapping[tuple[str, str], Any] | None:
        return None

    def download_url(self, *parts: str, filename: str) -> str | None:
        return None


class LocalStorage(_WalkedStorage):
    """A folder on this machine (the default)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.description = str(self.root)
        self._scratch = LazyScratch(self.root / ".incoming")

    def _path(self, *parts: str) -> Path:
        return self.root.joinpath(*segments(parts))

    def list_dirs(self, *parts: str) -> list[str]:
        try:
            entries = list(os.scandir(self._path(*parts)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            e.name for e in entries if is_valid_name(e.name) and e.is_dir(follow_symlinks=False)
        )

    def read_bytes(self, *parts: str) -> bytes | None:
        try:
            return self._path(*parts).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def size(self, *parts: str) -> int | None:
        try:
            return self._path(*parts).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open(self, *parts: str) -> IO[bytes]:
        return self._path(*parts).open("rb")

    def scratch_dir(self) -> Path:
        return self._scratch.path()

    def publish(
        self, staging: Path, publisher: str, model: str, version: str, upload: Any = None
    ) -> None:
        final = self._path(publisher, model, version)
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (final.parent.parent, final.parent):
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                folder.chmod(0o755)  # readable by a web server or other users, whatever the umask
        if staging.resolve().parent != self.scratch_dir():
            # rename(2) is only atomic within one filesystem: bring the folder next to the root.
            staging = Path(shutil.move(staging, self.scratch_dir() / staging.name))
        try:
            published = put_folder(staging, final)  # of two uploads, the first wins
        except OSError as exc:
            raise StorageError(f"could not publish into {final}: {exc}") from exc
        if not published:
            raise VersionExistsError(
                f"{publisher}/{model}/{version} already exists in {self.description}"
            )

    def folder_url(self, *parts: str) -> str | None:
        return None

    def check(self) -> str | None:
        if self.root.is_dir() and os.access(self.root, os.R_OK | os.X_OK):
            return None
        return f"{self.root} is not a readable folder"

    def list_files(self, *parts: str) -> list[tuple[str, int]]:
        top = self._path(*parts).resolve()
        found = []
        for folder, _, names in os.walk(top):  # links to folders are not followed
            for name in names:
                path = Path(folder, name)
                real = path.resolve()
                if real.is_relative_to(top) and real.is_file():
                    found.append((path.relative_to(top).as_posix(), real.stat().st_size))
        return sorted(found)

    def open_in(self, relative: str, *parts: str) -> IO[bytes]:
        top = self._path(*parts).resolve()
        path = top.joinpath(relative).resolve()
        if not path.is_relative_to(top):
            raise FileNotFoundError(f"{relative!r} is not inside the folder")
        return path.open("rb")


class FsspecStorage(_WalkedStorage):
    """Any fsspec filesystem (``s3://bucket/hub``, ``gs://bucket/hub``, ``memory://hub``).

    The server stays stateless: everything lives in the object store. Publishing
    claims the version with an exclusive create, which object stores such as S3
    and GCS honour with conditional writes; a server killed mid-publish leaves
    the claim behind, and the version stays unpublished until an operator removes
    ``<version>/claim.json``.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        import fsspec  # type: ignore[import-untyped]

        self.fs, path = fsspec.core.url_to_fs(url, **storage_options)
        self.base = path.rstrip("/")
        protocol = self.fs.protocol
        self.protocol = protocol if isinstance(protocol, str) else protocol[0]
        self.description = url
        self._claim_lock = threading.Lock()
        self._scratch = LazyScratch(Path(tempfile.gettempdir()) / "savedhub-incoming")

    def _path(self, *parts: str) -> str:
        return "/".join((self.base, *segments(parts)))

    def list_dirs(self, *parts: str) -> list[str]:
        try:
            entries = self.fs.ls(self._path(*parts), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = (
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1]
            for e in entries
            if e.get("type") == "directory"
        )
        return sorted(n for n in names if is_valid_name(n))

    def read_bytes(self, *parts: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(*parts)))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def size(self, *parts: str) -> int | None:
        try:
            info = self.fs.info(self._path(*parts))
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def open(self, *parts: str) -> IO[bytes]:
        return self.fs.open(self._path(*parts), "rb")  # type: ignore[no-any-return]

    def scratch_dir(self) -> Path:
        return self._scratch.path()

    def publish(
        self, staging: Path, publisher: str, model: str, version: str, upload: Any = None
    ) -> None:
        target = self._path(publisher, model, version)
        name = f"{publisher}/{model}/{version}"
        if self.fs.exists(f"{target}/{METADATA}"):
            raise VersionExistsError(f"{name} already exists in {self.description}")
        claim = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        try:
            # The backend's exclusive create decides between servers; the lock makes it
            # exact between threads of this one even where the backend checks, then writes.
            with self._claim_lock, self.fs.open(f"{target}/{_CLAIM}", "xb") as f:
                f.write(claim.encode())
        except FileExistsError as exc:
            raise VersionExistsError(
                f"{name} is already published or being published in {self.description}"
            ) from exc
        try:
            for path in sorted(staging.rglob("*")):
                rel = path.relative_to(staging).as_posix()
                if path.is_file() and rel != METADATA:
                    self.fs.put_file(str(path), f"{target}/{rel}")
            self.fs.put_file(str(staging / METADATA), f"{target}/{METADATA}")
        except Exception as exc:
            raise StorageError(f"could not publish {name} into {self.description}: {exc}") from exc

    def check(self) -> str | None:
        try:
            self.fs.ls(self.base)
        except FileNotFoundError:
            return None  # an empty root: nothing published yet
        except Exception as exc:
            return f"{self.description} is not reachable: {exc}"
        return None

    def folder_url(self, *parts: str) -> str | None:
        if self.protocol not in _TF_READABLE_PROTOCOLS:
            return None
        scheme = "gs" if self.protocol == "gcs" else self.protocol
        return f"{scheme}://{self._path(*parts)}"

    def list_files(self, *parts: str) -> list[tuple[str, int]]:
        top = self._path(*parts).strip("/") + "/"
        try:
            found = self.fs.find(self._path(*parts), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            (str(name).lstrip("/")[len(top) :], int(info["size"]))
            for name, info in found.items()
            if info.get("type") == "file" and str(name).lstrip("/").startswith(top)
        )

    def open_in(self, relative: str, *parts: str) -> IO[bytes]:
        if any(part in ("", ".", "..") for part in relative.split("/")):
            raise FileNotFoundError(f"{relative!r} is not inside the folder")
        return self.fs.open(f"{self._path(*parts)}/{relative}", "rb")  # type: ignore[no-any-return]


def open_storage(location: str | os.PathLike[str], **s3_options: Any) -> Storage:
    """A storage for a local path, an ``s3://`` bucket (:class:`~savedhub.server.s3.S3Storage`,
    given ``s3_options``), or another fsspec URL (``gs://``, ``memory://``...).

    Example:
        >>> open_storage("/srv/hub").description
        '/srv/hub'
    """
    text = os.fspath(location)
    if text.startswith("s3://"):
        from savedhub.server.s3 import S3Storage  # boto3 only when asked for

        return S3Storage(text, **s3_options)
    if "://" in text and not text.startswith("file://"):
        return FsspecStorage(text)
    return LocalStorage(text.removeprefix("file://"))
