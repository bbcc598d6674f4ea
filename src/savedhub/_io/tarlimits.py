"""Limits on a tar stream, checked on its 512-byte headers as the bytes pass by.

``tarfile`` trusts the sizes a header announces: it reads a GNU long name or
a pax extended header whole into memory before any check of ours could run
(a 256 MiB "name" is 256 MiB of RAM), and it follows any chain of extended
headers. :class:`TarLimitGuard` sits between the (decompressed) byte stream
and ``tarfile`` and parses each header itself, with ``tarfile``'s own number
and checksum rules, *before* ``tarfile`` sees it. It refuses, with an
:class:`~savedhub.errors.ArchiveLimitError` naming the limit and the setting
that raises it:

* more members than ``max_members``, or member data adding up past ``max_bytes``;
* a GNU long name or link longer than :data:`MAX_NAME_BYTES`, a pax header larger
  than :data:`MAX_EXTENDED_HEADER_BYTES`, or more than one of each per member;
* sparse members and ``size`` in global pax headers (no model needs them, and
  they would make the guard's idea of where the next header starts differ from
  ``tarfile``'s);
* more than :data:`MAX_TRAILING_BYTES` after the end of the archive (a
  compression bomb hidden after the end marker).

So memory stays bounded by those limits whatever the archive says, and the
work done on a hostile archive is bounded by ``max_bytes``.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from typing import Protocol

from savedhub.errors import ArchiveLimitError

BLOCK = 512
# PATH_MAX on Linux; one component of a path may be at most NAME_MAX (255) bytes.
MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
# tarfile reads ahead in 1 MiB pieces, and writers pad the end to their record size.
MAX_TRAILING_BYTES = 8 * 2**20

_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
# tarfile's own header number and checksum readers (outside its __all__), so the guard reads
# every header exactly as tarfile will: a difference would let a header slip past unseen.
_number = tarfile.nti  # type: ignore[attr-defined]
_checksums = tarfile.calc_chksums  # type: ignore[attr-defined]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ExtractLimits:
    """How much an archive may expand to and hold, and what the user changes to allow more.

    Attributes:
        max_bytes: the most bytes of member data (all members together).
        max_members: the most members (files, folders, links).
        bytes_setting: the setting that raises ``max_bytes``, for messages.
        members_setting: the setting that raises ``max_members``, for messages.
    """

    max_bytes: int
    max_members: int
    bytes_setting: str = "SAVEDHUB_MAX_EXTRACT_BYTES"
    members_setting: str = "SAVEDHUB_MAX_EXTRACT_MEMBERS"

    @classmethod
    def from_config(cls) -> ExtractLimits:
        """The client's limits (environment variables, see :mod:`savedhub.config`)."""
        from savedhub import config

        return cls(config.max_extract_bytes(), config.max_extract_members())


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _ustar_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    return name.decode("utf-8", "replace")


def _pax_size(records: bytes) -> tuple[int | None, list[str]]:
    """The ``size`` a pax header gives (parsed as tarfile parses it), and its keywords."""
    size: int | None = None
    keywords = []
    pos = 0
    while match := _PAX_RECORD.match(records, pos):
        length = int(match.group(1))
        if length == 0:
            break  # tarfile refuses the header; it reads no member after it
        keyword = match.group(2).decode("utf-8", "surrogateescape")
        keywords.append(keyword)
        if keyword == "size":
            value = records[match.end(2) + 1 : match.start(1) + length - 1]
            try:
                size = int(value.decode("utf-8", "surrogateescape"))
            except ValueError:
                size = 0
        pos += length
    return size, keywords


class TarLimitGuard:
    """``fileobj`` (an uncompressed tar stream) with every header checked before it is read.

    Example:
        >>> guard = TarLimitGuard(stream, ExtractLimits(2**30, 1000), source="model.tar.gz")
        >>> tar = tarfile.open(fileobj=guard, mode="r|")  # doctest: +SKIP
    """

    def __init__(self, fileobj: Readable, limits: ExtractLimits, source: str) -> None:
        self._fileobj = fileobj
        self.limits = limits
        self.source = source
        self.members = 0
        self.data_bytes = 0
        self._skip = 0  # bytes of member data (or padding) before the next header
        self._header = bytearray()
        self._extended: bytearray | None = None  # a pax header's records, while they arrive
        self._extended_left = 0
        self._extended_global = False
        self._skip_after_extended = 0
        self._chain: list[bytes] = []  # extended header types seen for the next member
        self._pax_size: int | None = None
        self._ended = False
        self._trailing = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._fileobj.read(size)
        self._scan(memoryview(data))
        return data

    def _refuse(self, what: str) -> ArchiveLimitError:
        return ArchiveLimitError(
            f"Refusing to extract {self.source}: {what}. Nothing was installed.", None
        )

    def _scan(self, data: memoryview) -> None:
        at, end = 0, len(data)
        while at < end:
            if self._ended:
                self._trailing += end - at
                if self._trailing > MAX_TRAILING_BYTES:
                    raise self._refuse(
                        f"more than {MAX_TRAILING_BYTES} bytes follow the end of the tar "
                        "archive (a compression bomb, or not one archive)"
                    )
                return
            if self._skip:
                step = min(self._skip, end - at)
                self._skip -= step
                at += step
            elif self._extended is not None:
                step = min(self._extended_left, end - at)
                self._extended += data[at : at + step]
                self._extended_left -= step
                at += step
                if not self._extended_left:
                    self._end_extended()
            else:
                step = min(BLOCK - len(self._header), end - at)
                self._header += data[at : at + step]
                at += step
                if len(self._header) == BLOCK:
                    header, self._header = bytes(self._header), bytearray()
                    self._on_header(header)

    def _on_header(self, header: bytes) -> None:
        # Where tarfile ends the archive (zero block, bad checksum or number), so does the guard.
        if header.count(0) == BLOCK:
            self._ended = True
            return
        try:
            valid = _number(header[148:156]) in _checksums(header)
            size: int = _number(header[124:136])
        except tarfile.HeaderError:
            valid = False
        if not valid:
            self._ended = True
            return
        kind = header[156:157]
        name = _ustar_name(header)
        if size < 0:
            raise tarfile.ReadError(f"member {name!r} has a negative size")
        if kind in _LONG_TYPES:
            self._extend(kind)
            if size > MAX_NAME_BYTES + 1:  # the name and its NUL
                raise self._refuse(
                    f"a GNU long {'name' if kind == tarfile.GNUTYPE_LONGNAME else 'link'} "
                    f"header of {size} bytes is beyond the limit of {MAX_NAME_BYTES} bytes "
                    "for a path (a fixed limit: no model needs longer paths)"
                )
            self._skip = _padded(size)
        elif kind in _PAX_TYPES or kind == tarfile.XGLTYPE:
            self._extend(kind)  # tarfile follows each extended header recursively
            if size > MAX_EXTENDED_HEADER_BYTES:
                raise self._refuse(
                    f"a pax extended header of {size} bytes is beyond the limit of "
                    f"{MAX_EXTENDED_HEADER_BYTES} bytes (a fixed limit: names and "
                    "attributes of a model's files fit in far less)"
                )
            self._extended = bytearray()
            self._extended_left = size
            self._extended_global = kind == tarfile.XGLTYPE
            self._skip_after_extended = _padded(size) - size
            if size == 0:
                self._end_extended()
        elif kind == tarfile.GNUTYPE_SPARSE:
            raise self._refuse(f"member {name!r} is a sparse file, which a model never contains")
        else:
            self._member(kind, name, size)

    def _extend(self, kind: bytes) -> None:
        if kind in self._chain:
            raise self._refuse(f"a member has more than one extended header of type {kind!r}")
        self._chain.append(kind)

    def _end_extended(self) -> None:
        records, self._extended = bytes(self._extended or b""), None
        size, keywords = _pax_size(records)
        if any(k.startswith("GNU.sparse") for k in keywords):
            raise self._refuse("a pax header describes a sparse file, which a model never contains")
        if self._extended_global:
            if size is not None:
                raise self._refuse("a global pax header sets the size of every member")
        elif size is not None:
            self._pax_size = size
        self._skip = self._skip_after_extended

    def _member(self, kind: bytes, name: str, size: int) -> None:
        if self._pax_size is not None:
            size = self._pax_size
        self._chain.clear()
        self._pax_size = None
        if size < 0:
            raise tarfile.ReadError(f"member {name!r} has a negative size")
        self.members += 1
        if self.members > self.limits.max_members:
            raise self._refuse(
                f"it holds more than the limit of {self.limits.max_members} members "
                f"(raise {self.limits.members_setting} if the archive is trusted)"
            )
        # tarfile's rule for which members are followed by data (an old-style folder is a
        # regular-file type whose name ends in "/").
        is_folder = kind == tarfile.AREGTYPE and name.endswith("/")
        if (kind in tarfile.REGULAR_TYPES and not is_folder) or kind not in (
            tarfile.SUPPORTED_TYPES
        ):
            self.data_bytes += size
            if self.data_bytes > self.limits.max_bytes:
                raise self._refuse(
                    f"member {name!r} would make it expand past the limit of "
                    f"{self.limits.max_bytes} bytes (raise {self.limits.bytes_setting} if "
                    "the model really is that big; otherwise it is a compression bomb)"
                )
            self._skip = _padded(size)
