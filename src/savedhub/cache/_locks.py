"""Per-entry locks: our flock with its owner note, and tensorflow_hub's ``<sha1>.lock`` files.

The flock only makes N processes that want the same handle share one
download; a killed holder's flock is released by the kernel. tensorflow_hub's
lock is a file created exclusively, so a dead holder leaves it behind: it is
taken over when its process is gone (same host) or its download shows no
progress for SAVEDHUB_LOCK_STALE_SECONDS (another host).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import filelock

from savedhub import config
from savedhub._io.atomic import write_file
from savedhub.cache._disk import unlink
from savedhub.cache._layout import LOCK_SUFFIX, OWNER_SUFFIX, TFHUB_LOCK_SUFFIX, Layout
from savedhub.errors import CacheLockTimeout

logger = logging.getLogger("savedhub")

_WAIT_LOG_SECONDS = 30.0


def host() -> str:
    """This machine's name, as lock holders and work folders record it."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_text(path: Path) -> str | None:
    """A lock file's contents, or None when it is gone or not text."""
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def entry_lock(layout: Layout, key: str, handle: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the entry's lock; yields False (without holding it) when
    ``blocking`` is False and another process has it.

    Raises:
        CacheLockTimeout: waited longer than SAVEDHUB_LOCK_TIMEOUT.
    """
    layout.root.mkdir(parents=True, exist_ok=True)
    lock_path = layout.sibling(key, LOCK_SUFFIX)
    lock = filelock.FileLock(str(lock_path))
    if not _acquire(layout, lock, lock_path, key, handle, blocking):
        yield False
        return
    owner = layout.sibling(key, OWNER_SUFFIX)
    try:
        with contextlib.suppress(OSError):
            write_file(
                owner,
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": host(),
                        "started": time.time(),
                        "handle": handle,
                    }
                ),
            )
        yield True
    finally:
        unlink(owner)
        lock.release()


def _acquire(
    layout: Layout,
    lock: filelock.BaseFileLock,
    lock_path: Path,
    key: str,
    handle: str,
    blocking: bool,
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
            _describe_owner(layout, key),
            layout.root,
        )
        remaining = deadline - time.monotonic()
        try:
            lock.acquire(timeout=max(0.0, min(_WAIT_LOG_SECONDS, remaining)))
            return True
        except filelock.Timeout as exc:
            if time.monotonic() >= deadline:
                raise CacheLockTimeout(
                    f"Gave up waiting for {handle!r} after {timeout:.0f} s: "
                    f"{_describe_owner(layout, key)} holds {lock_path}. If that process is "
                    "stuck, stop it; or raise SAVEDHUB_LOCK_TIMEOUT.",
                    str(lock_path),
                ) from exc


def _describe_owner(layout: Layout, key: str) -> str:
    try:
        owner = json.loads(layout.sibling(key, OWNER_SUFFIX).read_text())
        since = dt.datetime.fromtimestamp(float(owner["started"])).isoformat(
            sep=" ", timespec="seconds"
        )
        return f"process {owner['pid']} on {owner['host']} (since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def lock_free(layout: Layout, key: str) -> bool:
    """Whether no process holds the entry's flock right now (without creating its file)."""
    path = layout.sibling(key, LOCK_SUFFIX)
    if not path.exists():
        return True  # a holder creates the file first; asking must not create it
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return False
    lock.release()
    return True


@contextlib.contextmanager
def tfhub_lock(layout: Layout, key: str, handle: str) -> Iterator[None]:
    """Honour tensorflow_hub's ``<sha1>.lock`` and hold one in its format while installing.

    tensorflow_hub creates that file exclusively and waits while it exists,
    so writing it makes a tensorflow_hub process sharing the cache wait for us.
    A lock of a dead process on this host is taken over at once; one from
    another host once its download shows no progress for
    SAVEDHUB_LOCK_STALE_SECONDS.
    """
    lock_path = layout.sibling(key, TFHUB_LOCK_SUFFIX)
    contents = f"{host()}.{os.getpid()}.{uuid.uuid4().hex}"
    deadline = time.monotonic() + config.lock_timeout()
    logged = 0.0
    while True:
        try:
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_text(lock_path)
            if holder is not None and tfhub_lock_is_stale(layout, key, lock_path, holder):
                logger.warning("Taking over %s: its holder %r is gone", lock_path, holder)
                unlink(lock_path)
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
        if read_text(lock_path) == contents:
            unlink(lock_path)


def tfhub_lock_is_stale(layout: Layout, key: str, lock_path: Path, holder: str) -> bool:
    """Whether tensorflow_hub's lock ``holder`` ("<host>.<pid>.<uid>") is abandoned."""
    host_name, _, rest = holder.rpartition(".")
    host_name, _, pid_text = host_name.rpartition(".")
    uid = rest
    if host_name == host() and pid_text.isdigit():
        return not pid_alive(int(pid_text))
    newest = 0.0
    for path in (lock_path, layout.root / f"{key}.{uid}.tmp"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.stat().st_mtime)
            if path.is_dir():
                for dirpath, _, filenames in os.walk(path):
                    for name in filenames:
                        with contextlib.suppress(OSError):
                            newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
    return time.time() - newest > config.lock_stale_seconds()
