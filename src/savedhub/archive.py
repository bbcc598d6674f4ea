"""Safe, streaming extraction of a model archive (``.tar.gz``, ``.tgz`` or ``.tar``).

The archive is read once, front to back, from any object with ``read`` (a
:class:`savedhub.transfer.Download`, a file), so a model is unpacked while it
is still arriving and a big archive is never read twice. Every member is
checked before a byte of it is written:

* names: no absolute paths, no ``..``, nothing that resolves outside the
  destination (checked on resolved paths, so an earlier symlink cannot be
  used as a ladder);
* types: regular files, folders, and links whose target stays inside; no
  devices, FIFOs or sockets;
* size: at most :func:`savedhub.config.max_extract_members` members and
  :func:`savedhub.config.max_extract_bytes` bytes in total, enforced on the
  sizes the headers announce *before* writing, so a gzip bomb is refused
  without filling the disk.

Where Python offers it (3.12, 3.11.4+), ``tarfile``'s own ``data`` filter runs
on every member as a second opinion. tarfile errors become
:class:`~savedhub.errors.UnsafeArchiveError` or
:class:`~savedhub.errors.NotAnArchiveError` here.

Example:
    >>> with open("model.tar.gz", "rb") as f:
    ...     result = extract(f, Path("/tmp/work/model"), source="model.tar.gz")
    >>> result.files["saved_model.pb"]
    5130
"""

from __future__ import annotations

import errno
import os
import tarfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from savedhub import config
from savedhub._io import digest
from savedhub._io.pipe import BytePipe
from savedhub.errors import CacheFullError, NotAnArchiveError, UnsafeArchiveError

_COPY_BYTES = 1 << 20
_INFLATED_CHUNKS = 16
_GZIP_MAGIC = b"\x1f\x8b"
_TAR_MAGIC_OFFSET = 257


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class ExtractResult:
    """What an extraction wrote.

    Attributes:
        files: relative POSIX path -> size in bytes, of every regular file.
        sha256: relative POSIX path -> hex SHA-256 of every regular file, taken
            while it was written (the cache's manifest records it).
        links: relative path -> target, of every symbolic link.
        total_bytes: the sum of ``files``.
        members: how many archive members were read.
    """

    files: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    total_bytes: int = 0
    members: int = 0


def looks_like_archive(head: bytes) -> bool:
    """True when ``head`` (the first 512+ bytes) starts a gzip stream or a tar archive."""
    if head.startswith(_GZIP_MAGIC):
        return True
    return head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar"


def looks_like_html(head: bytes) -> bool:
    """True when ``head`` is the start of an HTML page."""
    text = head.lstrip()[:64].lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))


def _unsafe(source: str, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"Refusing to extract {source}: member {member!r} {why}. Nothing outside the temporary "
        "folder was written and nothing was installed. The archive is broken or hostile; ask "
        "its publisher for a proper one (savedhub pack DIR OUT.tar.gz writes safe archives).",
        member,
    )


def _clean_name(source: str, name: str) -> str | None:
    """The member's name relative to the model root, or None for the root itself."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\\" in name:
        raise _unsafe(source, name, "has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(source, name, "contains '..'")
    if "\x00" in name:
        raise _unsafe(source, name, "contains a NUL byte")
    return "/".join(parts) or None


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Extractor:
    def __init__(self, dest: Path, source: str) -> None:
        self.dest = dest
        self.root = os.path.realpath(dest)
        self.source = source
        self.result = ExtractResult()
        self.max_bytes = config.max_extract_bytes()
        self.max_members = config.max_extract_members()
        self.has_data_filter = hasattr(tarfile, "data_filter")

    def check(self, member: tarfile.TarInfo) -> str | None:
        self.result.members += 1
        if self.result.members > self.max_members:
            raise _unsafe(
                self.source,
                member.name,
                f"is beyond the limit of {self.max_members} members "
                "(raise SAVEDHUB_MAX_EXTRACT_MEMBERS if the archive is trusted)",
            )
        name = _clean_name(self.source, member.name)
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            kind = (
                "a FIFO"
                if member.isfifo()
                else "a device file"
                if member.isdev()
                else f"of tar type {member.type!r}"
            )
            raise _unsafe(self.source, member.name, f"is {kind}, which a model never contains")
        if member.isreg() and self.result.total_bytes + member.size > self.max_bytes:
            raise _unsafe(
                self.source,
                member.name,
                f"would make the archive expand past {self.max_bytes} bytes "
                "(SAVEDHUB_MAX_EXTRACT_BYTES); a gzip bomb or a model bigger than allowed",
            )
        if self.has_data_filter:
            try:
                tarfile.data_filter(member, str(self.dest))
            except tarfile.FilterError as exc:
                raise _unsafe(self.source, member.name, f"is refused by tarfile ({exc})") from exc
        return name

    def target(self, name: str, member_name: str) -> str:
        path = os.path.join(self.root, *name.split("/"))
        parent = os.path.realpath(os.path.dirname(path))
        if not _inside(self.root, parent):
            raise _unsafe(self.source, member_name, "would be written outside the model folder")
        return os.path.join(parent, os.path.basename(path))

    def write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        path = self.target(name, member.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)  # a later member of the same name wins, as with tar itself
        source = tar.extractfile(member)
        assert source is not None
        written = 0
        content = digest.new()  # in this pass: a cached model is never read back to hash it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_COPY_BYTES):
                written += len(chunk)
                content.update(chunk)
                out.write(chunk)
        self.result.files[name] = written
        self.result.sha256[name] = content.hexdigest()
        self.result.total_bytes += written

    def write_link(self, member: tarfile.TarInfo, name: str) -> None:
        path = self.target(name, member.name)
        if member.issym():
            if member.linkname.startswith("/"):
                raise _unsafe(self.source, member.name, "is a link to an absolute path")
            resolved = os.path.realpath(
                os.path.join(os.path.dirname(path), *member.linkname.split("/"))
            )
            if not _inside(self.root, resolved):
                raise _unsafe(
                    self.source, member.name, f"links outside the model ({member.linkname!r})"
                )
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(member.linkname, path)
            self.result.links[name] = member.linkname
            return
        linked = _clean_name(self.source, member.linkname)
        if linked is None or linked not in self.result.files:
            raise _unsafe(
                self.source,
                member.name,
                f"is a hard link to {member.linkname!r}, which is not a file extracted before it",
            )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.link(self.target(linked, member.linkname), path)
        size = self.result.files[linked]
        self.result.files[name] = size
        self.result.sha256[name] = self.result.sha256[linked]
        self.result.total_bytes += size

    def run(self, fileobj: Readable, mode: str) -> ExtractResult:
        self.dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=fileobj, mode=mode, bufsize=_COPY_BYTES
        ) as tar:
            for member in tar:
                name = self.check(member)
                if name is None:
                    continue
                if member.isdir():
                    os.makedirs(self.target(name, member.name), exist_ok=True)
                elif member.isreg():
                    self.write_file(tar, member, name)
                else:
                    self.write_link(member, name)
        return self.result


def extract(fileobj: Readable | IO[bytes], dest: Path, *, source: str) -> ExtractResult:
    """Extract a tar (optionally gzip-compressed) stream into ``dest``, safely.

    ``dest`` should be a fresh, private folder (the cache's work folder): on
    any error its content is undefined and the caller throws it away.

    Args:
        fileobj: the archive, read sequentially once.
        dest: the folder to fill; created if missing.
        source: the URL or path the archive came from, for messages.

    Returns:
        The files and links written, with sizes, for the cache manifest.

    Raises:
        UnsafeArchiveError: a member is absolute, has ``..``, escapes through
            a link, is a device/FIFO, or the archive is too big.
        NotAnArchiveError: the bytes are not a (complete) tar archive.
        CacheFullError: the disk filled up.
    """
    first = b""
    while len(first) < len(_GZIP_MAGIC) and (more := fileobj.read(_COPY_BYTES)):
        first += more
    stream: _Prefixed | _Inflating
    if first.startswith(_GZIP_MAGIC):
        stream = _Inflating(fileobj, first)
    else:  # a plain tar, or another compression tarfile knows (bz2, xz)
        stream = _Prefixed(fileobj, first)
    try:
        result = _Extractor(dest, source).run(stream, stream.tar_mode)
        stream.drain()
        return result
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error) as exc:
        raise NotAnArchiveError(
            f"{source} is not a readable .tar.gz archive ({exc}). If it is cut short, try "
            "again; if the URL serves something else, check the handle.",
            source,
        ) from exc
    except tarfile.TarError as exc:
        raise NotAnArchiveError(
            f"{source} could not be read as a tar archive ({exc}).", source
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(dest, exc) from exc
        raise
    finally:
        stream.stop()


class _Prefixed:
    """``fileobj`` with bytes already read from it put back in front."""

    tar_mode = "r|*"

    def __init__(self, fileobj: Readable, first: bytes) -> None:
        self._fileobj = fileobj
        self._first = first

    def read(self, size: int = -1, /) -> bytes:
        if self._first:
            data = self._first if size < 0 else self._first[:size]
            self._first = self._first[len(data) :]
            return data
        return self._fileobj.read(size)

    def drain(self) -> None:
        return None  # the caller reads what follows the archive (e.g. Download.finish)

    def stop(self) -> None:
        return None


class _Inflating:
    """The inflated bytes of a gzip stream, inflated by a thread of their own.

    zlib lets go of the GIL while it inflates, so unpacking and writing files
    (the reader's thread) overlap with inflating (this one) and with the
    download (the network thread): a cold load costs about the slowest of the
    three, not their sum. Output comes in bounded pieces through a bounded
    queue, so a gzip bomb cannot fill memory before the size checks refuse it.
    """

    tar_mode = "r|"

    def __init__(self, fileobj: Readable, first: bytes) -> None:
        self._pipe = BytePipe(_INFLATED_CHUNKS, lambda: EOFError("extraction was stopped"))
        self._thread = threading.Thread(
            target=self._run, args=(fileobj, first), name="savedhub-inflate", daemon=True
        )
        self._thread.start()

    def _run(self, fileobj: Readable, chunk: bytes) -> None:
        try:
            inflate: zlib._Decompress | None = zlib.decompressobj(wbits=31)
            while chunk:
                while chunk and inflate is not None:
                    data = inflate.decompress(chunk, _COPY_BYTES)
                    if data and not self._pipe.send(data):
                        return
                    chunk = inflate.unconsumed_tail
                    if inflate.eof:
                        # Concatenated gzip members continue; anything else after the
                        # end (padding) is read, for the digest, but not unpacked.
                        rest = inflate.unused_data
                        chunk = rest if rest.startswith(_GZIP_MAGIC) else b""
                        inflate = zlib.decompressobj(wbits=31) if chunk else None
                chunk = fileobj.read(_COPY_BYTES)
            if inflate is not None and not inflate.eof:
                raise EOFError("the gzip stream ends before its end marker")
            self._pipe.end()
        except BaseException as exc:  # handed to the reader, which raises it
            self._pipe.send(exc)

    def read(self, size: int = -1, /) -> bytes:
        return self._pipe.read(size)

    def drain(self) -> None:
        """Inflate to the end (tar stops at its end marker; the stream goes on)."""
        while self.read(_COPY_BYTES):
            pass
        self._thread.join()

    def stop(self) -> None:
        self._pipe.cancel()


def disk_full(where: Path, exc: BaseException | None = None) -> CacheFullError:
    """The error for a full disk while writing under ``where``."""
    detail = f" ({exc})" if exc else ""
    return CacheFullError(
        f"The disk holding {where} is full{detail}. Free space, remove old models with "
        "`savedhub cache prune --max-size 10GB` (or savedhub.cache.prune(...)), or set "
        "SAVEDHUB_CACHE_DIR to a folder on a larger disk.",
        str(where),
    )
