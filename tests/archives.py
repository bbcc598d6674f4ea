"""Model archives for tests: a real model packed the way hubs pack it, and hostile ones."""

from __future__ import annotations

import io
import os
import tarfile
import zlib


def pack_folder(folder: str, top: str | None = None) -> bytes:
    """A ``.tar.gz`` whose root is ``folder``'s content (or a ``top`` folder holding it)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            arcname = f"{top}/{name}" if top else name
            tar.add(os.path.join(folder, name), arcname=arcname)
    return out.getvalue()


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None], compress: bool = True) -> bytes:
    """An archive of hand-made members (to forge names, links and types)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if compress else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def special_member(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def zeros_bomb(size: int) -> bytes:
    """A real gzip bomb: one member of ``size`` zero bytes, compressed ~1000x."""
    info = tarfile.TarInfo("variables/variables.data-00000-of-00001")
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [compressor.compress(header)]
    block = bytes(1 << 20)
    left = size
    while left > 0:
        parts.append(compressor.compress(block[: min(left, len(block))]))
        left -= len(block)
    padding = (512 - size % 512) % 512
    parts.append(compressor.compress(bytes(padding + 1024)))
    parts.append(compressor.flush())
    return b"".join(parts)


def lying_bomb(claimed: int) -> bytes:
    """A small archive whose only header claims ``claimed`` bytes (an endless bomb's start)."""
    info = tarfile.TarInfo("saved_model.pb")
    info.size = claimed
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(1 << 20))
    return body + compressor.flush()
