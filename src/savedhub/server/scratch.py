"""Where uploads in progress are staged, and reaping what crashed servers left there.

Each server process stages its uploads in a session folder of its own,
``<scratch root>/session-<pid>-<random>/``, and holds an exclusive ``flock``
on the session's ``.lock`` file for as long as it runs. The kernel drops that
lock when the process dies, however it dies (SIGKILL, OOM killer, power cut),
so a server starting on the same root removes every session whose lock it can
take: those belong to a dead server. A live server on the same root keeps its
lock, so its uploads in flight are never touched.

A session is made under a temporary name, locked, then renamed into place, so
a starting server never sees a session that is not yet locked. Entries of any
other shape (loose files from older versions, half-made sessions) are removed
once a day old.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger("savedhub")

SESSION_PREFIX = "session-"
LOCK_FILE = ".lock"
STRAY_MAX_AGE = 86400.0


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _reap_session(session: Path) -> int | None:
    """Remove ``session`` if no live process holds its lock: the bytes freed, or None."""
    try:
        fd = os.open(session / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live server's session
        freed = sum(p.stat().st_size for p in session.rglob("*") if p.is_file())
        shutil.rmtree(session, ignore_errors=True)
        return freed
    finally:
        os.close(fd)


def reap(root: Path) -> int:
    """Remove from ``root`` what dead servers left; returns how many entries went."""
    removed = 0
    cutoff = time.time() - STRAY_MAX_AGE
    for entry in list(root.iterdir()):
        try:
            if entry.name.startswith(SESSION_PREFIX) and (entry / LOCK_FILE).exists():
                freed = _reap_session(entry)
                if freed is not None:
                    removed += 1
                    logger.info("removed %s (%d bytes), left by a stopped server", entry, freed)
            elif entry.lstat().st_mtime < cutoff:
                _remove(entry)
                removed += 1
        except FileNotFoundError:
            continue  # another server starting beside this one renamed or removed it
    return removed


class ScratchSession:
    """This process's own folder for staging uploads, locked while the process lives.

    Example:
        >>> session = ScratchSession(Path("/srv/hub/.incoming"))  # doctest: +SKIP
        >>> tempfile.mkstemp(dir=session.path)  # doctest: +SKIP
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        reap(root)
        making = Path(tempfile.mkdtemp(prefix=".making-", dir=root))
        self._lock_fd = os.open(making / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = root / f"{SESSION_PREFIX}{os.getpid()}-{making.name.removeprefix('.making-')}"
        os.rename(making, self.path)
        atexit.register(self.close)

    def close(self) -> None:
        """Remove the session (what is in it is abandoned) and let go of its lock."""
        if self._lock_fd < 0:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._lock_fd = -1


class LazyScratch:
    """A :class:`ScratchSession` under ``root``, made (and ``root`` reaped) on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._session: ScratchSession | None = None
        self._lock = threading.Lock()

    def path(self) -> Path:
        with self._lock:
            if self._session is None:
                self._session = ScratchSession(self.root)
            return self._session.path
