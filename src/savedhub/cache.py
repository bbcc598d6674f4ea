"""The model cache: layout, keys, locks, atomic install, manifests, verify, prune.

On disk (the root is :func:`savedhub.config.cache_dir`)::

    <root>/
      CACHEDIR.TAG                      marks the folder as a cache for backup tools
      <sha1>/                           one model, named by the SHA-1 of the handle,
                                        exactly as tensorflow_hub names it
      <sha1>.descriptor.txt             "Module: <handle>" note (tensorflow_hub's format)
      <sha1>.savedhub.json              manifest: handle, URL, ETag, archive SHA-256,
                                        every file and its size; its mtime = last use
      <sha1>.savedhub.lock              per-entry flock, held while fetching or removing
      <sha1>.savedhub.owner             who holds that lock: pid, host, start time
      <sha1>.lock                       tensorflow_hub's lock file (honoured, and written
                                        while we install so tensorflow_hub waits for us)
      <sha1>.<uuid>.tmp/                tensorflow_hub's own work folders
      .savedhub-work/
        <sha1>.<host>.<pid>.<rand>/     a model being extracted by one process
        <sha1>.partial[.json]           the archive received so far, to resume from
        trash.<sha1>.<rand>/            an entry being deleted

Rules (see DESIGN.md "The cache"):

* Readers take no lock. An entry counts only when its folder exists and every
  file in its manifest is there with the right size; the folder appears by one
  ``rename`` of a fully written work folder, so no reader sees half a model.
* Correctness does not depend on the lock: it only makes N processes that
  want the same handle share one download. A killed holder's ``flock`` is
  released by the kernel, so the next process takes over at once.
* A folder without a manifest was written by ``tensorflow_hub``; it is used
  as is when it looks whole (a graph file, every variables shard), and a
  manifest is then written for it.
* A damaged entry (a file deleted by a ``/tmp`` cleaner, a truncated shard)
  is fetched again with a :class:`~savedhub.errors.CacheWarning`.

Example:
    >>> for entry in list_entries():
    ...     print(entry.handle, entry.size, entry.state.value)
    >>> prune(max_size=10 * 2**30, dry_run=True).freed_bytes
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from savedhub import config, handles
from savedhub.archive import disk_full
from savedhub.errors import CacheLockTimeout, CacheWarning
from savedhub.handles import Handle

logger = logging.getLogger("savedhub")

MANIFEST_SUFFIX = ".savedhub.json"
LOCK_SUFFIX = ".savedhub.lock"
OWNER_SUFFIX = ".savedhub.owner"
TFHUB_LOCK_SUFFIX = ".lock"
DESCRIPTOR_SUFFIX = ".descriptor.txt"
WORK_DIR = ".savedhub-work"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by savedhub.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_KEY = re.compile(r"^[0-9a-f]{40}$")
_TFHUB_TMP = re.compile(r"^([0-9a-f]{40})\.([0-9a-f]+)\.tmp$")
# Half-written small files: tensorflow_hub's "<file>.tmp<uuid>", ours "<file>.<pid>.<hex>.tmp".
_TMP_FILE = re.compile(r"^[0-9a-f]{40}\..*(\.tmp[0-9a-f]{32}|\.\d+\.[0-9a-f]{8}\.tmp)$")
_TMP_FILE_GRACE_SECONDS = 60.0
_GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb")
_SHARD = re.compile(r"^variables\.data-\d+-of-(\d+)$")
_WAIT_LOG_SECONDS = 30.0


def key_for(text: str) -> str:
    """The folder name of a cache key: SHA-1 of its UTF-8 bytes, as tensorflow_hub does."""
    return hashlib.sha1(text.encode("utf8")).hexdigest()


def keys_for(handle: Handle) -> list[str]:
    """Folder names that may hold ``handle``: its canonical key first, then the
    name tensorflow_hub gives the handle exactly as written."""
    keys = [key_for(handle.cache_key)]
    for alias in (handle.original, handles.normalise_url(handle.original)):
        if handle.original.startswith(("http://", "https://")) and key_for(alias) not in keys:
            keys.append(key_for(alias))
    return keys


class EntryState(enum.Enum):
    """What a cache entry's check found."""

    COMPLETE = "complete"  # every file in the manifest is present with its size
    DAMAGED = "damaged"  # files missing or of the wrong size: will be fetched again


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


@dataclass(frozen=True)
class CacheEntry:
    """One model in the cache.

    Attributes:
        key: the folder name (SHA-1 of the handle).
        handle: the handle it was fetched for, when known.
        path: the model folder.
        size: bytes on disk of its files.
        last_used: when it was last resolved (or installed).
        state: COMPLETE or DAMAGED.
        problem: for a damaged entry, what is wrong.
        source: "savedhub", or "tensorflow_hub" for an entry that library wrote.
    """

    key: str
    handle: str | None
    path: Path
    size: int
    last_used: dt.datetime
    state: EntryState
    problem: str | None = None
    source: str = "savedhub"


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` removed (or would remove, with ``dry_run``).

    Attributes:
        removed: the entries removed.
        freed_bytes: their total size.
        reaped: leftovers removed: work folders of dead processes, partial
            downloads, stale lock files, half-deleted entries.
        dry_run: True when nothing was actually deleted.
    """

    removed: list[CacheEntry]
    freed_bytes: int
    reaped: list[Path]
    dry_run: bool


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _walk_files(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    files: dict[str, int] = {}
    links: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if os.path.islink(full):
                links[rel] = os.readlink(full)
            else:
                files[rel] = os.stat(full).st_size
    return files, links


def model_dir(entry_path: Path) -> Path:
    """The SavedModel folder inside an entry: the entry itself, or its only
    sub-folder holding a graph (archives packed with an extra top folder)."""
    if any((entry_path / name).is_file() for name in _GRAPH_FILES):
        return entry_path
    subdirs = [p for p in entry_path.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and any((subdirs[0] / n).is_file() for n in _GRAPH_FILES):
        return subdirs[0]
    return entry_path


def _check_manifest(path: Path, manifest: dict[str, object]) -> str | None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "its manifest lists no files"
    for rel, size in files.items():
        try:
            actual = os.stat(path / rel).st_size
        except FileNotFoundError:
            return f"the file {rel} is missing"
        except NotADirectoryError:
            return f"the file {rel} is missing"
        if actual != size:
            return f"the file {rel} has {actual} bytes where {size} were installed"
    return None


def _check_foreign(path: Path) -> str | None:
    """A plausibility check for a folder tensorflow_hub wrote (it keeps no manifest)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return "the folder is gone"
    except NotADirectoryError:
        return "it is a file, not a folder"
    if not names:
        return "the folder is empty"
    root = model_dir(path)
    if not any((root / name).is_file() for name in _GRAPH_FILES):
        return "it has no saved_model.pb"
    variables = root / "variables"
    if (variables / "variables.index").is_file():
        shards = [m for n in os.listdir(variables) if (m := _SHARD.match(n))]
        if not shards:
            return "variables/variables.index has no data shards beside it"
        expected = int(shards[0].group(1))
        if len(shards) != expected:
            return f"variables/ has {len(shards)} of its {expected} data shards"
    return None


class Cache:
    """One cache root. Most code uses the module functions, which pick the
    root from the configuration at call time."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = config.cache_dir(root)
        self.work = self.root / WORK_DIR

    # -- paths ------------------------------------------------------------

    def entry_path(self, key: str) -> Path:
        return self.root / key

    def _sibling(self, key: str, suffix: str) -> Path:
        return self.root / f"{key}{suffix}"

    def _prepare(self) -> None:
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                _write_atomically(tag, CACHEDIR_TAG)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(self.root, exc) from exc
            raise

    # -- reading --------------------------------------------------------

    def _manifest(self, key: str) -> dict[str, object] | None:
        try:
            data = json.loads(self._sibling(key, MANIFEST_SUFFIX).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def inspect(self, key: str) -> tuple[EntryState | None, str | None]:
        """``(None, None)`` when there is no entry, else its state and problem."""
        path = self.entry_path(key)
        if not path.is_dir():
            return None, None
        manifest = self._manifest(key)
        problem = _check_manifest(path, manifest) if manifest else _check_foreign(path)
        return (EntryState.DAMAGED if problem else EntryState.COMPLETE), problem

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
        manifest = self._sibling(key, MANIFEST_SUFFIX)
        try:
            os.utime(manifest)
        except FileNotFoundError:
            if _check_foreign(self.entry_path(key)) is None:
                self._adopt(key, handle)
        except OSError:
            pass  # a read-only cache still serves models

    def _adopt(self, key: str, handle: Handle) -> None:
        """Write a manifest for an entry tensorflow_hub installed, so later damage shows."""
        files, links = _walk_files(self.entry_path(key))
        descriptor = self._descriptor_handle(key)
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

    def _descriptor_handle(self, key: str) -> str | None:
        try:
            text = self._sibling(key, DESCRIPTOR_SUFFIX).read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("Module: "):
                return line[len("Module: ") :].strip()
        return None

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
        _write_atomically(self._sibling(key, MANIFEST_SUFFIX), json.dumps(manifest, indent=1))

    def _write_descriptor(self, key: str, handle: str) -> None:
        _write_atomically(
            self._sibling(key, DESCRIPTOR_SUFFIX),
            f"Module: {handle}\nDownload Time: {dt.datetime.now()}\n"
            f"Downloader Hostname: {_host()} (PID:{os.getpid()})",
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
            with self._tfhub_lock(key, handle.original):
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
                _rmtree(stale)
        work = self.work / f"{key}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}"
        partial = self.work / f"{key}.partial"
        try:
            installed = fetch(work, partial)
            final = self.entry_path(key)
            if final.exists() or final.is_symlink():
                self._move_to_trash(key)  # a damaged entry: replace it
            self._write_manifest(key, handle.original, installed)
            self._write_descriptor(key, handle.original)
            # No fsync of the model: should a power cut leave short files behind the
            # rename, the manifest check on the next load sees it and fetches again.
            try:
                os.rename(work, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # Someone outside our lock (tensorflow_hub) installed it meanwhile.
                logger.info("%s appeared while installing; using it", final)
                self._adopt(key, handle)
            _unlink(partial)
            _unlink(partial.with_name(partial.name + ".json"))
            return model_dir(final)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(self.root, exc) from exc
            raise
        finally:
            _rmtree(work)

    def _move_to_trash(self, key: str) -> Path | None:
        """Take an entry out of sight with one rename, then delete it and its files."""
        path = self.entry_path(key)
        trash = self.work / f"trash.{key}.{secrets.token_hex(4)}"
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            trash = None  # type: ignore[assignment]
        for suffix in (MANIFEST_SUFFIX, DESCRIPTOR_SUFFIX):
            _unlink(self._sibling(key, suffix))
        if trash is not None:
            _rmtree(trash)
        return trash

    # -- locks ------------------------------------------------------------

    @contextlib.contextmanager
    def entry_lock(self, key: str, handle: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the entry's lock; yields False (without holding it) when
        ``blocking`` is False and another process has it.

        Raises:
            CacheLockTimeout: waited longer than SAVEDHUB_LOCK_TIMEOUT.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self._sibling(key, LOCK_SUFFIX)
        lock = filelock.FileLock(str(lock_path))
        if not self._acquire(lock, lock_path, key, handle, blocking):
            yield False
            return
        owner = self._sibling(key, OWNER_SUFFIX)
        try:
            with contextlib.suppress(OSError):
                _write_atomically(
                    owner,
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "host": _host(),
                            "started": time.time(),
                            "handle": handle,
                        }
                    ),
                )
            yield True
        finally:
            _unlink(owner)
            lock.release()

    def _acquire(
        self, lock: filelock.BaseFileLock, lock_path: Path, key: str, handle: str, blocking: bool
    ) -> bool:
        try:
            lock.acquire(timeout=0)
            return True
        except filelock.Timeout:
            if not blocking:
                return False
        timeout = config.lock_timeout()
        deadline = time.monotonic() + timeout
        while True:
            logger.info(
                "Waiting for %s, which %s is downloading into %s",
                handle,
                self._describe_owner(key),
                self.root,
            )
            remaining = deadline - time.monotonic()
            try:
                lock.acquire(timeout=max(0.0, min(_WAIT_LOG_SECONDS, remaining)))
                return True
            except filelock.Timeout as exc:
                if time.monotonic() >= deadline:
                    raise CacheLockTimeout(
                        f"Gave up waiting for {handle!r} after {timeout:.0f} s: "
                        f"{self._describe_owner(key)} holds {lock_path}. If that process is "
                        "stuck, stop it; or raise SAVEDHUB_LOCK_TIMEOUT.",
                        str(lock_path),
                    ) from exc

    def _describe_owner(self, key: str) -> str:
        try:
            owner = json.loads(self._sibling(key, OWNER_SUFFIX).read_text())
            since = dt.datetime.fromtimestamp(float(owner["started"])).isoformat(
                sep=" ", timespec="seconds"
            )
            return f"process {owner['pid']} on {owner['host']} (since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextlib.contextmanager
    def _tfhub_lock(self, key: str, handle: str) -> Iterator[None]:
        """Honour tensorflow_hub's ``<sha1>.lock`` and hold one in its format while installing.

        tensorflow_hub creates that file exclusively and waits while it exists,
        so writing it makes a tensorflow_hub process sharing the cache wait for us.
        A lock of a dead process on this host is taken over at once; one from
        another host once its download shows no progress for
        SAVEDHUB_LOCK_STALE_SECONDS.
        """
        lock_path = self._sibling(key, TFHUB_LOCK_SUFFIX)
        contents = f"{_host()}.{os.getpid()}.{uuid.uuid4().hex}"
        deadline = time.monotonic() + config.lock_timeout()
        logged = 0.0
        while True:
            try:
                fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read(lock_path)
                if holder is not None and self._tfhub_lock_is_stale(key, lock_path, holder):
                    logger.warning("Taking over %s: its holder %r is gone", lock_path, holder)
                    _unlink(lock_path)
                    continue
                if time.monotonic() >= deadline:
                    raise CacheLockTimeout(
                        f"Gave up waiting for tensorflow_hub's lock {lock_path} on {handle!r} "
                        f"(held by {holder!r}). If no tensorflow_hub process is downloading it, "
                        "delete that file.",
                        str(lock_path),
                    ) from None
                if time.monotonic() - logged > _WAIT_LOG_SECONDS:
                    logger.info(
                        "Waiting for %s, which tensorflow_hub (%s) is downloading", handle, holder
                    )
                    logged = time.monotonic()
                time.sleep(0.2)
                continue
            with os.fdopen(fd, "w") as out:
                out.write(contents)
            break
        try:
            yield
        finally:
            if self._read(lock_path) == contents:
                _unlink(lock_path)

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def _tfhub_lock_is_stale(self, key: str, lock_path: Path, holder: str) -> bool:
        host, _, rest = holder.rpartition(".")
        host, _, pid_text = host.rpartition(".")
        uid = rest
        if host == _host() and pid_text.isdigit():
            return not _pid_alive(int(pid_text))
        newest = 0.0
        for path in (lock_path, self.root / f"{key}.{uid}.tmp"):
            with contextlib.suppress(OSError):
                newest = max(newest, path.stat().st_mtime)
                if path.is_dir():
                    for dirpath, _, filenames in os.walk(path):
                        for name in filenames:
                            with contextlib.suppress(OSError):
                                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
        return time.time() - newest > config.lock_stale_seconds()

    # -- listing and removal -------------------------------------------------

    def entry_keys(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _KEY.match(n) and (self.root / n).is_dir())

    def entry(self, key: str) -> CacheEntry | None:
        state, problem = self.inspect(key)
        if state is None:
            return None
        path = self.entry_path(key)
        manifest = self._manifest(key)
        files = manifest.get("files") if manifest else None
        if isinstance(files, dict) and state is EntryState.COMPLETE:
            size = sum(int(v) for v in files.values())
        else:
            size = sum(_walk_files(path)[0].values())
        stamp_file = self._sibling(key, MANIFEST_SUFFIX) if manifest else path
        try:
            last_used = stamp_file.stat().st_mtime
        except OSError:
            last_used = 0.0
        handle = manifest.get("handle") if manifest else self._descriptor_handle(key)
        source = manifest.get("source", "savedhub") if manifest else "tensorflow_hub"
        return CacheEntry(
            key=key,
            handle=str(handle) if handle else None,
            path=path,
            size=size,
            last_used=dt.datetime.fromtimestamp(last_used),
            state=state,
            problem=problem,
            source=str(source),
        )

    def entries(self) -> list[CacheEntry]:
        found = [self.entry(key) for key in self.entry_keys()]
        return [e for e in found if e is not None]

    def remove_key(self, key: str, *, blocking: bool = True) -> CacheEntry | None:
        """Remove one entry under its lock; None if absent (or busy when not blocking)."""
        entry = self.entry(key)
        if entry is None:
            return None
        with self.entry_lock(key, entry.handle or key, blocking=blocking) as held:
            if not held:
                return None
            # The lock file stays: deleting a flock file others may be waiting on would
            # let two processes hold "the" lock. prune() reaps it once it is unused.
            self._move_to_trash(key)
        return entry

    def leftovers(self) -> list[Path]:
        """Work folders of dead processes, orphaned partials and trash, stale locks."""
        found: list[Path] = []
        if self.work.is_dir():
            for path in self.work.iterdir():
                if self._work_item_is_orphaned(path):
                    found.append(path)
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return found
        for name in names:
            path = self.root / name
            tmp = _TFHUB_TMP.match(name)
            if tmp and path.is_dir():
                lock = self._sibling(tmp.group(1), TFHUB_LOCK_SUFFIX)
                holder = self._read(lock)
                if (
                    holder is None
                    or not holder.endswith(tmp.group(2))
                    or self._tfhub_lock_is_stale(tmp.group(1), lock, holder)
                ):
                    found.append(path)
            elif _TMP_FILE.match(name) and path.is_file():
                with contextlib.suppress(OSError):
                    if time.time() - path.stat().st_mtime > _TMP_FILE_GRACE_SECONDS:
                        found.append(path)
            elif name.endswith(TFHUB_LOCK_SUFFIX) and not name.endswith(LOCK_SUFFIX):
                key = name[: -len(TFHUB_LOCK_SUFFIX)]
                holder = self._read(path)
                if _KEY.match(key) and holder and self._tfhub_lock_is_stale(key, path, holder):
                    found.append(path)
            elif name.endswith((LOCK_SUFFIX, OWNER_SUFFIX, MANIFEST_SUFFIX, DESCRIPTOR_SUFFIX)):
                key = name.split(".", 1)[0]
                if _KEY.match(key) and not self.entry_path(key).exists():
                    tfhub_lock = self._sibling(key, TFHUB_LOCK_SUFFIX)
                    holder = self._read(tfhub_lock)
                    busy = not self._lock_free(key) or (
                        holder is not None
                        and not self._tfhub_lock_is_stale(key, tfhub_lock, holder)
                    )
                    if not busy:  # else it is being installed right now
                        found.append(path)
        return found

    def _lock_free(self, key: str) -> bool:
        path = self._sibling(key, LOCK_SUFFIX)
        if not path.exists():
            return True  # a holder creates the file first; asking must not create it
        lock = filelock.FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        lock.release()
        return True

    def _work_item_is_orphaned(self, path: Path) -> bool:
        name = path.name
        if name.startswith("trash."):
            return True
        key = name.split(".", 1)[0]
        if name.endswith((".partial", ".partial.json")):
            return self._lock_free(key)
        parts = name.split(".")
        if len(parts) >= 4 and parts[-2].isdigit():
            host, pid = ".".join(parts[1:-2]), int(parts[-2])
            if host == _host():
                return not _pid_alive(pid)
            return time.time() - path.stat().st_mtime > config.lock_stale_seconds()
        return False

    def reap(self, paths: list[Path]) -> None:
        for path in paths:
            if path.name.endswith(LOCK_SUFFIX):
                key = path.name.split(".", 1)[0]
                if not self._lock_free(key):
                    continue
            if path.is_dir() and not path.is_symlink():
                _rmtree(path)
            else:
                _unlink(path)


def _resolve_key(handle: str | os.PathLike[str]) -> list[str]:
    text = os.fspath(handle)
    if isinstance(text, str) and _KEY.match(text):
        return [text]
    return keys_for(handles.parse(handle))


def list_entries(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Every model in the cache, each checked against its manifest.

    Example:
        >>> [(e.handle, e.size, e.state.value) for e in list_entries()]
    """
    return Cache(cache_dir).entries()


def verify_entries(
    cache_dir: str | os.PathLike[str] | None = None, *, remove_damaged: bool = False
) -> list[CacheEntry]:
    """Check every entry's files against its manifest (presence and size).

    Args:
        cache_dir: the cache root; default from the configuration.
        remove_damaged: also remove the damaged entries, so the next load
            fetches them again cleanly.

    Returns:
        All entries; the damaged ones have ``state`` DAMAGED and a ``problem``.
    """
    cache = Cache(cache_dir)
    entries = cache.entries()
    if remove_damaged:
        for entry in entries:
            if entry.state is EntryState.DAMAGED:
                cache.remove_key(entry.key)
    return entries


def prune(
    older_than: dt.timedelta | float | None = None,
    max_size: int | None = None,
    dry_run: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> PruneReport:
    """Free space: remove entries unused for ``older_than``, then least recently
    used ones until the cache fits ``max_size`` bytes; always reap leftovers
    (work folders of dead processes, partial downloads, stale locks).

    Entries another process is downloading or removing are skipped.

    Args:
        older_than: a timedelta, or seconds.
        max_size: bytes the remaining entries may take.
        dry_run: only report what would be removed.
        cache_dir: the cache root; default from the configuration.

    Example:
        >>> prune(older_than=dt.timedelta(days=30), max_size=20 * 2**30)
    """
    cache = Cache(cache_dir)
    entries = sorted(cache.entries(), key=lambda e: e.last_used)
    chosen: list[CacheEntry] = []
    if older_than is not None:
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        cutoff = dt.datetime.now() - dt.timedelta(seconds=seconds)
        chosen = [e for e in entries if e.last_used < cutoff]
    if max_size is not None:
        kept = [e for e in entries if e not in chosen]
        total = sum(e.size for e in kept)
        for entry in kept:
            if total <= max_size:
                break
            chosen.append(entry)
            total -= entry.size
    leftovers = cache.leftovers()
    removed: list[CacheEntry] = []
    if dry_run:
        removed = [e for e in chosen if cache._lock_free(e.key)]
    else:
        for entry in chosen:
            if cache.remove_key(entry.key, blocking=False) is not None:
                removed.append(entry)
        cache.reap(leftovers)
    return PruneReport(
        removed=removed,
        freed_bytes=sum(e.size for e in removed),
        reaped=leftovers,
        dry_run=dry_run,
    )


def remove(
    handle: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> list[CacheEntry]:
    """Remove the cached model of ``handle`` (or of a 40-hex entry key).

    Waits for a process that is downloading it. A process that is loading it
    at that moment keeps the files it already opened.

    Returns:
        The entries removed (empty when it was not cached).
    """
    cache = Cache(cache_dir)
    removed = [cache.remove_key(key) for key in _resolve_key(handle)]
    return [e for e in removed if e is not None]


def remove_all(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Remove every entry and every leftover; returns the entries removed."""
    cache = Cache(cache_dir)
    removed = [cache.remove_key(key) for key in cache.entry_keys()]
    cache.reap(cache.leftovers())
    return [e for e in removed if e is not None]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``"500MB"``, ``"10 GiB"``, ``"1.5G"`` or ``"123"``.

    Raises:
        ValueError: the text is not a size.
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 500MB, 10GiB or 123456")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = "kmgt".find(unit[:1]) + 1 if unit[:1] in ("k", "m", "g", "t") else 0
    return int(number * base**power)
