"""Safe, streaming extraction of a model archive (``.tar.gz``/``.tgz``, ``.tar.bz2``,
``.tar.xz`` or ``.tar``).

The archive is read once, front to back, from any object with ``read`` (a
:class:`savedhub.transfer.Download`, a file), so a model is unpacked while it
is still arriving and a big archive is never read twice. Every member is
checked before a byte of it is written:

* names: no absolute paths, no ``..``, nothing that resolves outside the
  destination (checked on resolved paths, so an earlier symlink cannot be
  used as a ladder);
* types: regular files, folders, and links whose target stays inside; no
  devices, FIFOs or sockets;
* size: at most ``limits.max_members`` members and ``limits.max_bytes`` bytes
  in total (for a client: :func:`savedhub.config.max_extract_members` and
  :func:`savedhub.config.max_extract_bytes`; a hub passes its own), enforced
  on the sizes the headers announce *before* writing, so a compression bomb is
  refused without filling the disk;
* headers: :mod:`savedhub._io.tarlimits` checks every tar header before
  ``tarfile`` reads it, so a huge long-name or pax header is refused before it
  is buffered, and names are at most 4096 bytes (255 per component).

Decompression (gzip, bzip2, xz) happens here, in bounded pieces on a thread of
its own, never inside ``tarfile`` (whose ``r|*`` mode inflates a whole bzip2
block at once: a few KB can become gigabytes of RAM).

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

import bz2
import errno
import lzma
import os
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from savedhub._io import digest
from savedhub._io.pipe import BytePipe
from savedhub._io.tarlimits import (
    MAX_COMPONENT_BYTES,
    MAX_NAME_BYTES,
    ExtractLimits,
    TarLimitGuard,
)
from savedhub.errors import (
    ArchiveLimitError,
    CacheFullError,
    NotAnArchiveError,
    UnsafeArchiveError,
)

__all__ = ["ExtractLimits", "ExtractResult", "compression_of", "disk_full", "extract"]

_COPY_BYTES = 1 << 20
_INFLATED_CHUNKS = 16
_GZIP_MAGIC = b"\x1f\x8b"
_TAR_MAGIC_OFFSET = 257
# The first bytes of each compressed stream this module unpacks, and its name.
COMPRESSIONS = {_GZIP_MAGIC: "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
_MAGIC_BYTES = max(len(m) for m in COMPRESSIONS)
# What writing a member fails with when the archive itself is inconsistent (a file where an
# earlier member made a folder, a link loop), as opposed to a failing disk.
_CLASHES = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG})


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


def compression_of(head: bytes) -> str | None:
    """``"gzip"``, ``"bzip2"`` or ``"xz"`` when ``head`` starts such a stream, else None."""
    return next((kind for magic, kind in COMPRESSIONS.items() if head.startswith(magic)), None)


def looks_like_archive(head: bytes) -> bool:
    """True when ``head`` (the first 512+ bytes) starts a gzip stream or a tar archive."""
    if head.startswith(_GZIP_MAGIC):
        return True
    return head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar"


def looks_like_html(head: bytes) -> bool:
    """True when ``head`` is the start of an HTML page."""
    text = head.lstrip()[:64].lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))


def _unsafe(source: str, member: str, why: str, *, limit: bool = False) -> UnsafeArchiveError:
    error = ArchiveLimitError if limit else UnsafeArchiveError
    return error(
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


def _check_length(source: str, member: str, name: str) -> None:
    encoded = name.encode("utf-8", "surrogateescape")
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if len(encoded) > MAX_NAME_BYTES or longest > MAX_COMPONENT_BYTES:
        raise ArchiveLimitError(
            f"Refusing to extract {source}: member {member[:200]!r}... has a path of "
            f"{len(encoded)} bytes (a part of {longest}); the limits are {MAX_NAME_BYTES} "
            f"bytes per path and {MAX_COMPONENT_BYTES} per part, fixed by the filesystem.",
            member[:200],
        )


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Extractor:
    def __init__(self, dest: Path, source: str, limits: ExtractLimits) -> None:
        self.dest = dest
        self.root = os.path.realpath(dest)
        self.source = source
        self.result = ExtractResult()
        self.limits = limits
        self.max_bytes = limits.max_bytes
        self.max_members = limits.max_members
        self.has_data_filter = hasattr(tarfile, "data_filter")

    def check(self, member: tarfile.TarInfo) -> str | None:
        self.result.members += 1
        if self.result.members > self.max_members:
            raise _unsafe(
                self.source,
                member.name,
                f"is beyond the limit of {self.max_members} members "
                f"(raise {self.limits.members_setting} if the archive is trusted)",
                limit=True,
            )
        _check_length(self.source, member.name, member.name)
        if member.issym() or member.islnk():
            _check_length(self.source, member.name, member.linkname)
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
                f"({self.limits.bytes_setting}); a compression bomb or a model bigger than allowed",
                limit=True,
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

    def run(self, fileobj: Readable) -> ExtractResult:
        self.dest.mkdir(parents=True, exist_ok=True)
        # "r|": a plain tar stream; decompression is done before, in bounded pieces.
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=fileobj, mode="r|", bufsize=_COPY_BYTES
        ) as tar:
            for member in tar:
                name = self.check(member)
                if name is None:
                    continue
                try:
                    self.write(tar, member, name)
                except OSError as exc:
                    if exc.errno not in _CLASHES:
                        raise
                    raise _unsafe(
                        self.source, member.name, f"clashes with an earlier member ({exc.strerror})"
                    ) from exc
        return self.result

    def write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        if member.isdir():
            os.makedirs(self.target(name, member.name), exist_ok=True)
        elif member.isreg():
            self.write_file(tar, member, name)
        else:
            self.write_link(member, name)


def extract(
    fileobj: Readable | IO[bytes],
    dest: Path,
    *,
    source: str,
    limits: ExtractLimits | None = None,
) -> ExtractResult:
    """Extract a tar (optionally gzip, bzip2 or xz-compressed) stream into ``dest``, safely.

    ``dest`` should be a fresh, private folder (the cache's work folder): on
    any error its content is undefined and the caller throws it away.

    Args:
        fileobj: the archive, read sequentially once.
        dest: the folder to fill; created if missing.
        source: the URL or path the archive came from, for messages.
        limits: the most the archive may expand to and hold (default: the
            client's settings, :meth:`ExtractLimits.from_config`).

    Returns:
        The files and links written, with sizes, for the cache manifest.

    Raises:
        UnsafeArchiveError: a member is absolute, has ``..``, escapes through
            a link, is a device/FIFO; its subclass ArchiveLimitError: the archive
            goes past a limit (size, members, name or header length).
        NotAnArchiveError: the bytes are not a (complete) tar archive.
        CacheFullError: the disk filled up.
    """
    limits = limits or ExtractLimits.from_config()
    first = b""
    while len(first) < _MAGIC_BYTES and (more := fileobj.read(_COPY_BYTES)):
        first += more
    kind = compression_of(first)
    # No compression: a plain tar, or not an archive at all (tarfile says so).
    stream: _Prefixed | _Decompressing = (
        _Prefixed(fileobj, first) if kind is None else _Decompressing(fileobj, first, kind)
    )
    guarded = TarLimitGuard(stream, limits, source)
    try:
        result = _Extractor(dest, source, limits).run(guarded)
        stream.drain(guarded)
        return result
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error) as exc:
        raise NotAnArchiveError(
            f"{source} is not a readable tar archive ({exc}). If it is cut short, try "
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

    def __init__(self, fileobj: Readable, first: bytes) -> None:
        self._fileobj = fileobj
        self._first = first

    def read(self, size: int = -1, /) -> bytes:
        if self._first:
            data = self._first if size < 0 else self._first[:size]
            self._first = self._first[len(data) :]
            return data
        return self._fileobj.read(size)

    def drain(self, guarded: Readable) -> None:
        return None  # the caller reads what follows the archive (e.g. Download.finish)

    def stop(self) -> None:
        return None


class _Decoder:
    """One compressed stream's decoder, giving output in pieces of at most ``_COPY_BYTES``
    (zlib, bz2 and lzma decompressors all say ``eof`` and keep ``unused_data``)."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    @property
    def eof(self) -> bool:
        return bool(self._decoder.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._decoder.unused_data)

    def pieces(self, data: bytes) -> Iterator[bytes]:
        raise NotImplementedError


class _ZlibDecoder(_Decoder):
    def __init__(self) -> None:
        super().__init__(zlib.decompressobj(wbits=31))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while data and not self._decoder.eof:
            piece = self._decoder.decompress(data, _COPY_BYTES)
            if piece:
                yield piece
            data = self._decoder.unconsumed_tail


class _BufferedDecoder(_Decoder):
    """bz2 and lzma decoders, which keep unconsumed input themselves."""

    def pieces(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._decoder.decompress(data, _COPY_BYTES)
            while True:
                if piece:
                    yield piece
                if self._decoder.eof or self._decoder.needs_input:
                    return
                piece = self._decoder.decompress(b"", _COPY_BYTES)
        except (OSError, lzma.LZMAError) as exc:  # bz2 says OSError("Invalid data stream")
            raise tarfile.ReadError(f"damaged compressed data: {exc}") from exc


_DECODERS: dict[str, Callable[[], _Decoder]] = {
    "gzip": _ZlibDecoder,
    "bzip2": lambda: _BufferedDecoder(bz2.BZ2Decompressor()),
    "xz": lambda: _BufferedDecoder(lzma.LZMADecompressor()),
}


class _Decompressing:
    """The decompressed bytes of a gzip, bzip2 or xz stream, decompressed by a thread of
    their own.

    zlib, bz2 and lzma let go of the GIL while they work, so unpacking and
    writing files (the reader's thread) overlap with decompressing (this one)
    and with the download (the network thread): a cold load costs about the
    slowest of the three, not their sum. Output comes in bounded pieces through
    a bounded queue, so a compression bomb cannot fill memory before the size
    checks refuse it.
    """

    def __init__(self, fileobj: Readable, first: bytes, kind: str) -> None:
        self.kind = kind
        self._pipe = BytePipe(_INFLATED_CHUNKS, lambda: EOFError("extraction was stopped"))
        self._thread = threading.Thread(
            target=self._run, args=(fileobj, first), name="savedhub-inflate", daemon=True
        )
        self._thread.start()

    def _run(self, fileobj: Readable, chunk: bytes) -> None:
        magic = next(m for m, k in COMPRESSIONS.items() if k == self.kind)
        new_decoder = _DECODERS[self.kind]
        try:
            decoder: _Decoder | None = new_decoder()
            while chunk:
                while chunk and decoder is not None:
                    for piece in decoder.pieces(chunk):
                        if not self._pipe.send(piece):
                            return
                    chunk = b""
                    if decoder.eof:
                        # Concatenated streams continue; anything else after the end
                        # (padding) is read, for the digest, but not unpacked.
                        rest = decoder.unused_data
                        chunk = rest if rest.startswith(magic) else b""
                        decoder = new_decoder() if chunk else None
                chunk = fileobj.read(_COPY_BYTES)
            if decoder is not None and not decoder.eof:
                raise EOFError(f"the {self.kind} stream ends before its end marker")
            self._pipe.end()
        except BaseException as exc:  # handed to the reader, which raises it
            self._pipe.send(exc)

    def read(self, size: int = -1, /) -> bytes:
        return self._pipe.read(size)

    def drain(self, guarded: Readable) -> None:
        """Decompress to the end (tar stops at its end marker; the stream goes on),
        through ``guarded``, which bounds what may follow the end of the archive."""
        while guarded.read(_COPY_BYTES):
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
