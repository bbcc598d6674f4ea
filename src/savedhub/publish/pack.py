"""``pack()``: a model folder -> a reproducible hosting-protocol ``.tar.gz``.

The archive's root is the model folder itself: members are named
``saved_model.pb``, ``variables/``, ``variables/variables.index`` ... (no
``./`` prefix and no top folder), which is what the hosting protocol serves,
what ``tensorflow_hub`` and ``savedhub`` extract, and what
``mkdir model && tar -xzf model.tar.gz -C model`` gives back.

The same folder always gives the same bytes, so a hub can compare digests and
a publisher can check a download against their own build:

* members in path order, each folder before its contents;
* owner and group 0 with empty names (``tar --owner=0 --group=0 --numeric-owner``);
* one fixed mtime for every member: ``SOURCE_DATE_EPOCH`` if set, else 0;
* modes normalised to 0644 for files (0755 if executable) and 0755 for folders;
* a gzip header with no timestamp and no file name.

Symbolic links are stored as the files they point to, since hub downloads
cannot carry links. The archive is written to a temporary file beside
``out_path`` and renamed into place, so a reader never sees half an archive.

The module is named ``packing`` so that the function ``savedhub.pack`` is
never shadowed by a submodule of the same name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from savedhub import config
from savedhub._io.atomic import replacing_file
from savedhub.client.resolver import check_saved_model_dir
from savedhub.errors import PackError

_COMPRESS_LEVEL = 6  # gzip's own default: most of level 9's ratio at a fraction of its time


@dataclass(frozen=True)
class PackResult:
    """The archive ``pack`` wrote: its path, SHA-256 (hex) and size in bytes."""

    path: str
    sha256: str
    size: int


class _HashingWriter:
    """Passes writes through to a file while hashing and counting them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _members(root: Path) -> list[tuple[str, Path, bool]]:
    """(archive name, source path, is folder) for everything below ``root``, in path order."""
    found: list[tuple[tuple[str, ...], Path, bool]] = []
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(directory, name)
            if path.is_symlink():
                raise PackError(
                    f"Cannot pack {str(root)!r}: {str(path.relative_to(root))!r} is a link to a "
                    "folder. Replace it with a copy of that folder.",
                    str(root),
                )
            found.append((path.relative_to(root).parts, path, True))
        for name in filenames:
            path = Path(directory, name)
            if not path.is_file():  # a dangling link, a socket, a FIFO
                raise PackError(
                    f"Cannot pack {str(root)!r}: {str(path.relative_to(root))!r} is not a "
                    "regular file (a broken link or a special file). Remove or replace it.",
                    str(root),
                )
            found.append((path.relative_to(root).parts, path, False))
    found.sort(key=lambda item: item[0])
    return [("/".join(parts), path, is_dir) for parts, path, is_dir in found]


def _tar_info(name: str, path: Path, is_dir: bool, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        status = path.stat()  # follows links: the file's content is what ships
        info.type = tarfile.REGTYPE
        info.size = status.st_size
        info.mode = 0o755 if status.st_mode & stat.S_IXUSR else 0o644
    return info


def write_archive(model_dir: Path, out: IO[bytes], mtime: int) -> None:
    """Write the reproducible ``.tar.gz`` of ``model_dir`` into the open binary file ``out``."""
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=out, mtime=0, compresslevel=_COMPRESS_LEVEL
        ) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path, is_dir in _members(model_dir):
            info = _tar_info(name, path, is_dir, mtime)
            if is_dir:
                tar.addfile(info)
                continue
            with open(path, "rb") as source:
                tar.addfile(info, source)


def pack(
    model_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *, force: bool = False
) -> PackResult:
    """Pack a SavedModel folder into a hosting-protocol ``.tar.gz``.

    The folder is linted first; a folder with lint errors is refused unless
    ``force`` is true (warnings never block). An existing ``out_path`` is
    replaced atomically.

    Example:
        >>> result = pack("/models/my_mul", "my_mul.tar.gz")
        >>> result.sha256  # the same for every run on the same folder
        '3f1c...'

    Raises:
        ModelNotFoundError, NotASavedModelError: ``model_dir`` is not a SavedModel folder.
        PackError: lint found errors, the output lies inside the model folder,
            or the folder holds links to folders or special files.
    """
    root = check_saved_model_dir(model_dir).resolve()
    out = Path(out_path).expanduser().absolute()
    if out.resolve() == root or root in out.resolve().parents:
        raise PackError(
            f"Cannot write {str(out)!r} inside the model folder {str(root)!r} it packs: "
            "choose an output path outside it.",
            str(root),
        )
    if not force:
        from savedhub.publish.lint import errors, lint

        found = errors(lint(root))
        if found:
            raise PackError(
                f"{str(root)!r} fails lint with {len(found)} error(s), so it is not packed: "
                + "; ".join(f"{f.code}: {f.message}" for f in found)
                + " Fix them (savedhub lint shows all findings) or pass force=True (--force).",
                str(root),
                findings=found,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing_file(out, durable=True, mode=0o644) as raw:
        writer = _HashingWriter(raw)
        write_archive(root, writer, config.pack_mtime())  # type: ignore[arg-type]
    return PackResult(str(out), writer.digest.hexdigest(), writer.size)
