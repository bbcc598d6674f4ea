"""Write a file, or put a folder in place, so that readers see all of it or none.

Everything savedhub writes for others to read (cache manifests, the partial
download's state, packed archives, converted models, models copied out of a
``.keras`` file, published hub versions) goes through a temporary name beside
the target and one ``rename``: a crash leaves the old contents or a stray
temporary, never half a file under the real name.

Example:
    >>> write_file(Path("cache/abc.savedhub.json"), '{"files": {}}')
    >>> with replacing_file(Path("out/model.tar.gz"), durable=True, mode=0o644) as f:
    ...     f.write(archive_bytes)
    >>> put_folder(Path("cache/.work/abc.1234"), Path("cache/abc"))  # False: already there
    True
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def temporary_beside(path: Path) -> Path:
    """A fresh name beside ``path``: ``<name>.<pid>.<8 hex>.tmp`` (the cache's prune
    recognises this shape and reaps such files left by a killed process)."""
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def replacing_file(
    path: Path, *, durable: bool = False, mode: int | None = None
) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``path`` in one rename when the block ends
    without an error (and is deleted when it raises).

    Args:
        path: the file to create or replace.
        durable: flush it to the disk (fsync) before the rename, for files that
            must survive a power cut (archives a user publishes).
        mode: permissions to give it; by default those of a new file (umask applies).
    """
    tmp = temporary_beside(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_file(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) in one rename."""
    with replacing_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def put_folder(work: Path, target: Path) -> bool:
    """Rename the finished folder ``work`` to ``target``, which must not exist yet
    (or be an empty folder): of two writers racing for one target, exactly one wins.

    Returns:
        True when ``work`` is now ``target``; False when ``target`` already held
        something (``work`` is left as it was, for the caller to delete).

    Raises:
        OSError: any other failure of the rename.
    """
    try:
        os.rename(work, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def replace_folder(work: Path, target: Path) -> None:
    """Put the finished folder ``work`` at ``target``, replacing whatever is there:
    the old folder is renamed aside first and deleted only after ``work`` is in
    place, so ``target`` never holds a mix of both."""
    if not (target.exists() or target.is_symlink()):
        os.replace(work, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    old = aside / "old"
    try:
        os.replace(target, old)
        try:
            os.replace(work, target)
        except BaseException:
            os.replace(old, target)  # put the user's folder back
            raise
    except BaseException:
        if not old.exists():  # else putting it back failed: keep it where it is
            shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
