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
from savedhub._io.digest import file_sha256
from savedhub.archive import disk_full
from savedhub.cache import _locks
from savedhub.cache._content import ContentCheck
from savedhub.cache._content import record as record_content
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
        sha256: relative path -> hex SHA-256 of every extracted file, taken
            while it was written; empty when unknown.
    """

    url: str
    etag: str | None
    archive_sha256: str | None
    archive_bytes: int
    files: dict[str, int]
    links: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_folder(cls, folder: Path, url: str, etag: str | None = None) -> Installed:
        """What ``folder`` holds, every file hashed: for a fetch that made its files
        some other way than extracting an archive (a conversion, say)."""
        files, links = walk_files(folder)
        return cls(
            url=url,
            etag=etag,
            archive_sha256=None,
            archive_bytes=sum(files.values()),
            files=files,
            links=links,
            sha256={rel: file_sha256(folder / rel) for rel in files},
        )


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
        what is wrong), so the caller fetches it again. With SAVEDHUB_VERIFY=content
        every file is re-hashed first.
        """
        content = config.verify_content()
        for key in keys_for(handle):
            found = self.examine(key, content=content)
            if found is None:
                continue
            if found.problem is None:
                if content and not found.hashed and warn:
                    logger.warning(
                        "SAVEDHUB_VERIFY=content cannot check %s: its cache entry %s carries "
                        "no hashes (tensorflow_hub or an older savedhub wrote it). Once you "
                        "know it is good, record them: savedhub cache verify --rehash",
                        handle.original,
                        self.entry_path(key),
                    )
                self._mark_used(key, handle)
                return model_dir(self.entry_path(key))
            if warn:
                message = (
                    f"The cached model for {handle.original!r} at {self.entry_path(key)} is "
                    f"damaged: {found.problem}. Fetching it again."
                )
                logger.warning("%s", message)
                warnings.warn(message, CacheWarning, stacklevel=2)
        return None

    def inspect(self, key: str, *, content: bool = False) -> tuple[EntryState | None, str | None]:
        """``(None, None)`` when there is no entry, else its state and problem.

        With ``content`` every file is hashed; else only files whose mtime moved.
        """
        found = self.examine(key, content=content)
        if found is None:
            return None, None
        return (EntryState.DAMAGED if found.problem else EntryState.COMPLETE), found.problem

    def examine(self, key: str, *, content: bool = False) -> ContentCheck | None:
        """:meth:`check` the entry, and record the new mtime of files whose bytes
        proved unchanged (a ``touch``, a copy), so they are not hashed again."""
        found = self.check(key, content=content)
        if found is not None and found.retimed and not found.problem:
            self._record_times(key, found.retimed)
        return found

    def _record_times(self, key: str, retimed: dict[str, int]) -> None:
        checked = self.manifest(key)
        # Under the lock, and only if no install replaced the entry meanwhile; when
        # another process holds it (or the cache is read-only) the next load tries again.
        with contextlib.suppress(OSError), self.entry_lock(key, key, blocking=False) as held:
            manifest = self.manifest(key)
            if not held or manifest is None or checked is None:
                return
            if manifest.get("sha256") != checked.get("sha256"):
                return
            mtimes = manifest.get("mtime_ns")
            mtimes = dict(mtimes) if isinstance(mtimes, dict) else {}
            path = self.entry_path(key)
            for rel, mtime_ns in retimed.items():
                if os.stat(path / rel).st_mtime_ns == mtime_ns:
                    mtimes[rel] = mtime_ns
            manifest["mtime_ns"] = dict(sorted(mtimes.items()))
            self._rewrite_manifest(key, manifest)

    def _rewrite_manifest(self, key: str, manifest: dict[str, object]) -> None:
        """Replace the manifest of ``key``, keeping its mtime: the entry's last use."""
        path = self.sibling(key, MANIFEST_SUFFIX)
        try:
            used = path.stat()
        except FileNotFoundError:
            used = None
        write_file(path, json.dumps(manifest, indent=1))
        if used is not None:
            os.utime(path, ns=(used.st_atime_ns, used.st_mtime_ns))

    def record_hashes(self, key: str, handle: str) -> None:
        """Record the SHA-256 and mtime of every file of entry ``key`` from its current
        bytes (an entry tensorflow_hub or an older savedhub wrote). The caller holds
        the entry's lock and has checked that the entry is whole and good.

        Raises:
            OSError: a file vanished or changed while it was being hashed.
        """
        path = self.entry_path(key)
        manifest = self.manifest(key)
        if manifest is None:
            self._adopt(key, handle, strict=True)
            manifest = self.manifest(key)
            assert manifest is not None
        files = manifest.get("files")
        assert isinstance(files, dict)
        before = {rel: os.stat(path / rel).st_mtime_ns for rel in files}
        recorded = record_content(path, {rel: file_sha256(path / rel) for rel in files})
        if recorded["mtime_ns"] != before:
            raise OSError(f"files of {path} changed while they were hashed; run it again")
        manifest.update(recorded)
        manifest["rehashed"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._rewrite_manifest(key, manifest)

    def _mark_used(self, key: str, handle: Handle) -> None:
        manifest = self.sibling(key, MANIFEST_SUFFIX)
        try:
            os.utime(manifest)
        except FileNotFoundError:
            if check_foreign(self.entry_path(key)) is None:
                self._adopt(key, handle.original)
        except OSError:
            pass  # a read-only cache still serves models

    def _adopt(self, key: str, handle: str, *, strict: bool = False) -> None:
        """Write a manifest for an entry tensorflow_hub installed, so later damage shows
        (failures to write it are ignored unless ``strict``)."""
        files, links = walk_files(self.entry_path(key))
        descriptor = self.descriptor_handle(key)
        with contextlib.suppress(*(() if strict else (OSError,))):
            self._write_manifest(
                key,
                descriptor or handle,
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
        self,
        key: str,
        handle: str,
        installed: Installed,
        *,
        source: str = "savedhub",
        folder: Path | None = None,
    ) -> None:
        """Write the manifest of entry ``key``; with ``folder`` (where the files
        are now) it also records their SHA-256 and mtime_ns (see ``_content``)."""
        manifest: dict[str, object] = {
            "format": 2,
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
        if folder is not None and installed.sha256:
            manifest.update(record_content(folder, installed.sha256))
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
            self._write_manifest(key, handle.original, installed, folder=work)
            self._write_descriptor(key, handle.original)
            # No fsync of the model: should a power cut leave short files behind the
            # rename, the manifest check on the next load sees it and fetches again.
            if not put_folder(work, final):
                # Someone outside our lock (tensorflow_hub) installed it meanwhile.
                logger.info("%s appeared while installing; using it", final)
                self._adopt(key, handle.original)
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
