"""Looking after a cache root: list and verify entries, remove them, prune, reap leftovers."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from savedhub import config
from savedhub.cache._disk import rmtree, unlink, walk_files
from savedhub.cache._layout import (
    DESCRIPTOR_SUFFIX,
    KEY,
    LOCK_SUFFIX,
    MANIFEST_SUFFIX,
    OWNER_SUFFIX,
    TFHUB_LOCK_SUFFIX,
    EntryState,
    keys_for,
)
from savedhub.cache._locks import host, lock_free, pid_alive, read_text, tfhub_lock_is_stale
from savedhub.cache._store import Cache
from savedhub.client import handles
from savedhub.errors import InvalidHandleError

_TFHUB_TMP = re.compile(r"^([0-9a-f]{40})\.([0-9a-f]+)\.tmp$")
# Half-written small files: tensorflow_hub's "<file>.tmp<uuid>", ours "<file>.<pid>.<hex>.tmp".
_TMP_FILE = re.compile(r"^[0-9a-f]{40}\..*(\.tmp[0-9a-f]{32}|\.\d+\.[0-9a-f]{8}\.tmp)$")
_TMP_FILE_GRACE_SECONDS = 60.0


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
        hashed: whether its manifest records the SHA-256 of every file (entries
            written by tensorflow_hub or an older savedhub do not, until
            :func:`rehash`).
        damaged_files: for a damaged entry, the files missing, resized or changed.
        bytes_hashed: bytes read to check it (all of them with ``content``).
    """

    key: str
    handle: str | None
    path: Path
    size: int
    last_used: dt.datetime
    state: EntryState
    problem: str | None = None
    source: str = "savedhub"
    hashed: bool = False
    damaged_files: tuple[str, ...] = ()
    bytes_hashed: int = 0


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


# -- listing ----------------------------------------------------------------


def entry_keys(cache: Cache) -> list[str]:
    """The keys of every entry folder under the root, sorted."""
    try:
        names = os.listdir(cache.root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if KEY.match(n) and (cache.root / n).is_dir())


def entry(cache: Cache, key: str, *, content: bool = False) -> CacheEntry | None:
    """The entry ``key``, checked against its manifest (with ``content``, every
    file re-hashed); None when absent."""
    found = cache.examine(key, content=content)
    if found is None:
        return None
    state = EntryState.DAMAGED if found.problem else EntryState.COMPLETE
    path = cache.entry_path(key)
    manifest = cache.manifest(key)
    files = manifest.get("files") if manifest else None
    if isinstance(files, dict) and state is EntryState.COMPLETE:
        size = sum(int(v) for v in files.values())
    else:
        size = sum(walk_files(path)[0].values())
    stamp_file = cache.sibling(key, MANIFEST_SUFFIX) if manifest else path
    try:
        last_used = stamp_file.stat().st_mtime
    except OSError:
        last_used = 0.0
    handle = manifest.get("handle") if manifest else cache.descriptor_handle(key)
    source = manifest.get("source", "savedhub") if manifest else "tensorflow_hub"
    return CacheEntry(
        key=key,
        handle=str(handle) if handle else None,
        path=path,
        size=size,
        last_used=dt.datetime.fromtimestamp(last_used),
        state=state,
        problem=found.problem,
        source=str(source),
        hashed=found.hashed,
        damaged_files=found.files,
        bytes_hashed=found.bytes_hashed,
    )


def entries(cache: Cache, *, content: bool = False) -> list[CacheEntry]:
    """Every entry under the root."""
    found = [entry(cache, key, content=content) for key in entry_keys(cache)]
    return [e for e in found if e is not None]


# -- removal ----------------------------------------------------------------


def remove_key(cache: Cache, key: str, *, blocking: bool = True) -> CacheEntry | None:
    """Remove one entry under its lock; None if absent (or busy when not blocking)."""
    found = entry(cache, key)
    if found is None:
        return None
    with cache.entry_lock(key, found.handle or key, blocking=blocking) as held:
        if not held:
            return None
        # The lock file stays: deleting a flock file others may be waiting on would
        # let two processes hold "the" lock. prune() reaps it once it is unused.
        cache.move_to_trash(key)
    return found


def leftovers(cache: Cache) -> list[Path]:
    """Work folders of dead processes, orphaned partials and trash, stale locks."""
    found: list[Path] = []
    if cache.work.is_dir():
        for path in cache.work.iterdir():
            if _work_item_is_orphaned(cache, path):
                found.append(path)
    try:
        names = os.listdir(cache.root)
    except FileNotFoundError:
        return found
    for name in names:
        path = cache.root / name
        tmp = _TFHUB_TMP.match(name)
        if tmp and path.is_dir():
            lock = cache.sibling(tmp.group(1), TFHUB_LOCK_SUFFIX)
            holder = read_text(lock)
            if (
                holder is None
                or not holder.endswith(tmp.group(2))
                or tfhub_lock_is_stale(cache, tmp.group(1), lock, holder)
            ):
                found.append(path)
        elif _TMP_FILE.match(name) and path.is_file():
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _TMP_FILE_GRACE_SECONDS:
                    found.append(path)
        elif name.endswith(TFHUB_LOCK_SUFFIX) and not name.endswith(LOCK_SUFFIX):
            key = name[: -len(TFHUB_LOCK_SUFFIX)]
            holder = read_text(path)
            if KEY.match(key) and holder and tfhub_lock_is_stale(cache, key, path, holder):
                found.append(path)
        elif name.endswith((LOCK_SUFFIX, OWNER_SUFFIX, MANIFEST_SUFFIX, DESCRIPTOR_SUFFIX)):
            key = name.split(".", 1)[0]
            if KEY.match(key) and not cache.entry_path(key).exists():
                tfhub_lock = cache.sibling(key, TFHUB_LOCK_SUFFIX)
                holder = read_text(tfhub_lock)
                busy = not lock_free(cache, key) or (
                    holder is not None and not tfhub_lock_is_stale(cache, key, tfhub_lock, holder)
                )
                if not busy:  # else it is being installed right now
                    found.append(path)
    return found


def _work_item_is_orphaned(cache: Cache, path: Path) -> bool:
    name = path.name
    if name.startswith("trash."):
        return True
    key = name.split(".", 1)[0]
    if name.endswith((".partial", ".partial.json")):
        return lock_free(cache, key)
    parts = name.split(".")
    if len(parts) >= 4 and parts[-2].isdigit():
        host_name, pid = ".".join(parts[1:-2]), int(parts[-2])
        if host_name == host():
            return not pid_alive(pid)
        return time.time() - path.stat().st_mtime > config.lock_stale_seconds()
    return False


def reap(cache: Cache, paths: list[Path]) -> None:
    """Delete ``paths`` (from :func:`leftovers`), skipping a lock file taken meanwhile."""
    for path in paths:
        if path.name.endswith(LOCK_SUFFIX):
            key = path.name.split(".", 1)[0]
            if not lock_free(cache, key):
                continue
        if path.is_dir() and not path.is_symlink():
            rmtree(path)
        else:
            unlink(path)


# -- the module API ---------------------------------------------------------


def _resolve_key(cache: Cache, handle: str | os.PathLike[str]) -> list[str]:
    text = os.fspath(handle)
    if isinstance(text, str) and KEY.match(text):
        return [text]
    parsed = handles.parse(handle)
    if parsed.kind is handles.HandleKind.HUGGING_FACE:
        return [e.key for e in entries(cache) if _converts(e.handle, parsed)]
    return keys_for(parsed)


def _converts(recorded: str | None, handle: handles.Handle) -> bool:
    """Whether an entry recorded as ``hf://ORG/NAME@SHA`` is a conversion ``handle`` names.

    The entry's key also holds the converter's version, which the user does not
    type, so ``hf://`` handles are matched by the name each entry records: a
    commit names its conversions, a bare ``hf://ORG/NAME`` every commit's.
    """
    if recorded is None or not recorded.startswith(f"{handles.HF_SCHEME}://"):
        return False
    try:
        entry = handles.parse(recorded)
    except InvalidHandleError:  # a manifest edited by hand: not a conversion we made
        return False
    if entry.location != handle.location:
        return False
    return handle.revision is None or handle.revision.lower() == (entry.revision or "").lower()


def list_entries(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Every model in the cache, each checked against its manifest.

    Example:
        >>> [(e.handle, e.size, e.state.value) for e in list_entries()]
    """
    return entries(Cache(cache_dir))


def verify_entries(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    remove_damaged: bool = False,
    content: bool = True,
) -> list[CacheEntry]:
    """Check every entry's files against its manifest: presence, size and, with
    ``content``, their bytes (each file re-hashed against the SHA-256 recorded
    when it was installed, which finds bit rot and edits that kept size and
    modification time).

    Entries without hashes (written by tensorflow_hub or an older savedhub)
    are checked by size, and have ``hashed`` False: :func:`rehash` records
    hashes of their current bytes once you know they are good.

    To fetch damaged entries again at once (``savedhub cache verify --repair``)::

        for item in verify_entries(remove_damaged=True):
            if item.state is EntryState.DAMAGED and item.handle:
                savedhub.resolve(item.handle)

    Args:
        cache_dir: the cache root; default from the configuration.
        remove_damaged: also remove the damaged entries, so the next load
            fetches them again cleanly.
        content: re-hash every file (reads the whole cache); False checks
            sizes and modification times only, as a load does.

    Returns:
        All entries; the damaged ones have ``state`` DAMAGED, a ``problem``
        and their ``damaged_files``.
    """
    cache = Cache(cache_dir)
    found = entries(cache, content=content)
    if remove_damaged:
        for item in found:
            if item.state is EntryState.DAMAGED:
                remove_key(cache, item.key)
    return found


def rehash(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Record SHA-256 hashes for the entries that carry none, from their current bytes.

    Entries written by tensorflow_hub or an older savedhub have no hashes, so
    a change that keeps a file's size goes unseen. Call this once you know
    they are good (their models load and give the numbers you expect): from
    then on, loads and :func:`verify_entries` measure every change against
    these bytes. Damaged entries, and entries another process is working on,
    are left as they are.

    Example:
        >>> [e.handle for e in verify_entries() if not e.hashed]
        ['https://tfhub.dev/google/nnlm-en-dim128/2']
        >>> [e.hashed for e in rehash()]
        [True]

    Returns:
        The entries that got hashes, as they are now.
    """
    cache = Cache(cache_dir)
    done: list[CacheEntry] = []
    for key in entry_keys(cache):
        item = entry(cache, key)
        if item is None or item.hashed or item.state is not EntryState.COMPLETE:
            continue
        with cache.entry_lock(key, item.handle or key, blocking=False) as held:
            if not held or cache.inspect(key)[0] is not EntryState.COMPLETE:
                continue
            cache.record_hashes(key, item.handle or key)
        now = entry(cache, key)
        if now is not None:
            done.append(now)
    return done


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
    by_use = sorted(entries(cache), key=lambda e: e.last_used)
    chosen: list[CacheEntry] = []
    if older_than is not None:
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        cutoff = dt.datetime.now() - dt.timedelta(seconds=seconds)
        chosen = [e for e in by_use if e.last_used < cutoff]
    if max_size is not None:
        kept = [e for e in by_use if e not in chosen]
        total = sum(e.size for e in kept)
        for item in kept:
            if total <= max_size:
                break
            chosen.append(item)
            total -= item.size
    found = leftovers(cache)
    removed: list[CacheEntry] = []
    if dry_run:
        removed = [e for e in chosen if lock_free(cache, e.key)]
    else:
        for item in chosen:
            if remove_key(cache, item.key, blocking=False) is not None:
                removed.append(item)
        reap(cache, found)
    return PruneReport(
        removed=removed,
        freed_bytes=sum(e.size for e in removed),
        reaped=found,
        dry_run=dry_run,
    )


def remove(
    handle: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> list[CacheEntry]:
    """Remove the cached model of ``handle`` (or of a 40-hex entry key).

    An ``hf://ORG/NAME@SHA`` handle removes that commit's conversions; a bare
    ``hf://ORG/NAME`` removes every commit's.

    Waits for a process that is downloading it. A process that is loading it
    at that moment keeps the files it already opened.

    Returns:
        The entries removed (empty when it was not cached).
    """
    cache = Cache(cache_dir)
    removed = [remove_key(cache, key) for key in _resolve_key(cache, handle)]
    return [e for e in removed if e is not None]


def remove_all(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Remove every entry and every leftover; returns the entries removed."""
    cache = Cache(cache_dir)
    removed = [remove_key(cache, key) for key in entry_keys(cache)]
    reap(cache, leftovers(cache))
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
