"""The :class:`Cache` of one root: find a whole entry, install a missing one once."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from savedhub import config
from savedhub._io.atomic import put_folder, write_file
from savedhub.archive import disk_full
from savedhub.cache import _locks
from savedhub.cache._disk import rmtree, unlink, walk_files
from savedhub.cache._layout import (
    CACHEDIR_TAG,
    DESCRIPTOR_SUFFIX,
    MANIFEST_SUFFIX,
    EntryState,
    Layout,
    check_foreign,
    keys_for,
    model_dir,
)
from savedhub.cache._locks import host
from savedhub.client.handles import Handle
from savedhub.errors import CacheWarning

logger = logging.getLogger("savedhub")


@dataclass(frozen=True)
class Installed:
    """What a fetch put into a work folder, for the manifest.

    Attributes:
        url: the URL the archive came from (after mirrors and redirects).
        etag: the server's ETag of the archive, if any.
        archive_sha256: SHA-256 of the compressed archive.
        archive_bytes: its size.
        files: relative path -> size of every extracted file.
        links: relative path -> target of every symbolic link.
    """

    url: str
    etag: str | None
    archive_sha256: str | None
    archive_bytes: int
    files: dict[str, int]
    links: dict[str, str] = field(default_factory=dict)


class Cache(Layout):
    """One cache root. Most code uses the module functions, which pick the
    root from the configuration at call time."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        super().__init__(config.cache_dir(root))

    def _prepare(self) -> None:
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                write_file(tag, CACHEDIR_TAG)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(self.root, exc) from exc
            raise

    # -- reading --------------------------------------------------------

    def find(self, handle: Handle, *, warn: bool = True) -> Path | None:
        """The model folder of a complete entry for ``handle``, or None.

        A damaged entry gives None (and, with ``warn``, a CacheWarning that says
        what is wrong), so the caller fetches it again.
        """
        for key in keys_for(handle):
            state, problem = self.inspect(key)
            if state is EntryState.COMPLETE:
                self._mark_used(key, handle)
                return model_dir(self.entry_path(key))
            if state is EntryState.DAMAGED and warn:
                message = (
                    f"The cached model for {handle.original!r} at {self.entry_path(key)} is "
                    f"damaged: {problem}. Fetching it again."
                )
                logger.warning("%s", message)
                warnings.warn(message, CacheWarning, stacklevel=2)
        return None

    def _mark_used(self, key: str, handle: Handle) -> None:
        manifest = self.sibling(key, MANIFEST_SUFFIX)
        try:
            os.utime(manifest)
        except FileNotFoundError:
            if check_foreign(self.entry_path(key)) is None:
                self._adopt(key, handle)
        except OSError:
            pass  # a read-only cache still serves models

    def _adopt(self, key: str, handle: Handle) -> None:
        """Write a manifest for an entry tensorflow_hub installed, so later damage shows."""
        files, links = walk_files(self.entry_path(key))
        descriptor = self.descriptor_handle(key)
        with contextlib.suppress(OSError):
            self._write_manifest(
                key,
                descriptor or handle.original,
                Installed(
                    url="",
                    etag=None,
                    archive_sha256=None,
                    archive_bytes=0,
                    files=files,
                    links=links,
                ),
                source="tensorflow_hub",
            )

    # -- writing ---------------------------------------------------------

    def _write_manifest(
        self, key: str, handle: str, installed: Installed, *, source: str = "savedhub"
    ) -> None:
        manifest = {
            "format": 1,
            "handle": handle,
            "source": source,
            "url": installed.url,
            "etag": installed.etag,
            "archive_sha256": installed.archive_sha256,
            "archive_bytes": installed.archive_bytes,
            "installed": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": dict(sorted(installed.files.items())),
            "links": dict(sorted(installed.links.items())),
        }
        write_file(self.sibling(key, MANIFEST_SUFFIX), json.dumps(manifest, indent=1))

    def _write_descriptor(self, key: str, handle: str) -> None:
        write_file(
            self.sibling(key, DESCRIPTOR_SUFFIX),
            f"Module: {handle}\nDownload Time: {dt.datetime.now()}\n"
            f"Downloader Hostname: {host()} (PID:{os.getpid()})",
        )

    def install(self, handle: Handle, fetch: Callable[[Path, Path], Installed]) -> Path:
        """Fetch ``handle`` into the cache once, however many processes ask at once.

        ``fetch(work_folder, partial_file)`` fills ``work_folder`` with the
        model (``partial_file`` is where a resumable download keeps its bytes)
        and returns what it installed. It runs at most once per handle across
        processes at a time; the others wait and reuse its result.

        Returns:
            The model folder of the installed (or meanwhile installed) entry.

        Raises:
            CacheLockTimeout: another process kept the entry longer than
                SAVEDHUB_LOCK_TIMEOUT.
            CacheFullError: the disk filled up.
            Whatever ``fetch`` raises; the cache is then left as it was.
        """
        self._prepare()
        key = keys_for(handle)[0]
        with self.entry_lock(key, handle.original):
            found = self.find(handle, warn=False)
            if found is not None:
                logger.info("%s was installed by another process meanwhile", handle.original)
                return found
            with _locks.tfhub_lock(self, key, handle.original):
                found = self.find(handle, warn=False)
                if found is not None:
                    return found
                return self._install_locked(key, handle, fetch)

    def _install_locked(
        self, key: str, handle: Handle, fetch: Callable[[Path, Path], Installed]
    ) -> Path:
        for stale in self.work.glob(f"{key}.*"):
            if stale.is_dir():  # we hold the lock: any work folder of this key is orphaned
                logger.info("Removing %s, left by an interrupted download", stale)
                rmtree(stale)
        work = self.work / f"{key}.{host()}.{os.getpid()}.{secrets.token_hex(4)}"
        partial = self.work / f"{key}.partial"
        try:
            installed = fetch(work, partial)
            final = self.entry_path(key)
            if final.exists() or final.is_symlink():
                self.move_to_trash(key)  # a damaged entry: replace it
            self._write_manifest(key, handle.original, installed)
            self._write_descriptor(key, handle.original)
            # No fsync of the model: should a power cut leave short files behind the
            # rename, the manifest check on the next load sees it and fetches again.
            if not put_folder(work, final):
                # Someone outside our lock (tensorflow_hub) installed it meanwhile.
                logger.info("%s appeared while installing; using it", final)
                self._adopt(key, handle)
            unlink(partial)
            unlink(partial.with_name(partial.name + ".json"))
            return model_dir(final)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(self.root, exc) from exc
            raise
        finally:
            rmtree(work)

    def move_to_trash(self, key: str) -> Path | None:
        """Take an entry out of sight with one rename, then delete it and its files."""
        path = self.entry_path(key)
        trash = self.work / f"trash.{key}.{secrets.token_hex(4)}"
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            trash = None  # type: ignore[assignment]
        for suffix in (MANIFEST_SUFFIX, DESCRIPTOR_SUFFIX):
            unlink(self.sibling(key, suffix))
        if trash is not None:
            rmtree(trash)
        return trash

    # -- locks ------------------------------------------------------------

    def entry_lock(
        self, key: str, handle: str, *, blocking: bool = True
    ) -> contextlib.AbstractContextManager[bool]:
        """Hold the entry's lock; yields False (without holding it) when
        ``blocking`` is False and another process has it.

        Raises:
            CacheLockTimeout: waited longer than SAVEDHUB_LOCK_TIMEOUT.
        """
        return _locks.entry_lock(self, key, handle, blocking=blocking)
