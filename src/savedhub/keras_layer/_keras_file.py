"""Keeping a KerasLayer's SavedModel inside the ``.keras`` file that holds it.

``save_assets`` writes the SavedModel into the ``.keras`` archive, in a folder
named by the model's fingerprint. Keras reads a layer's config before the
archive's assets, so when the layer's handle does not resolve on the loading
machine (the folder is gone, no network), the layer finds the archive Keras
is reading (the open ``zipfile.ZipFile`` up the call stack), copies its
embedded SavedModel into the cache under that fingerprint, and loads it from
there. Later loads find the copy in the cache directly.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import sys
import uuid
import zipfile
from pathlib import Path
from types import FrameType

import tensorflow as tf

from savedhub import config
from savedhub._io.atomic import put_folder

FOLDER_PREFIX = "saved_model-"
_MAX_FRAMES = 64


def fingerprint(path: str) -> str | None:
    """A content key of a SavedModel (graph, signatures, objects, checkpoint)."""
    try:
        printed = tf.saved_model.experimental.read_fingerprint(path).singleprint()
    except Exception:  # no fingerprint.pb (written by TF < 2.12): nothing to key on
        return None
    return str(printed).replace("/", "-")


def folder_name(key: str) -> str:
    return FOLDER_PREFIX + key


def store_root() -> Path:
    """Where SavedModels taken out of ``.keras`` files are kept, by fingerprint."""
    return config.cache_dir() / "keras-embedded"


def stored_copy(key: str | None) -> str | None:
    """The kept copy for a fingerprint, if one exists."""
    if not key:
        return None
    path = store_root() / key
    return str(path) if (path / "saved_model.pb").is_file() else None


def copy_tree(src: str, dst: str) -> None:
    """Copy a SavedModel folder through tf.io.gfile (local, gs://, ram:// alike)."""
    for root, _, files in tf.io.gfile.walk(src):
        relative = os.path.relpath(root, src)
        target = dst if relative == "." else os.path.join(dst, relative)
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def _open_archives() -> list[zipfile.ZipFile]:
    """``.keras`` archives being read further up the call stack (Keras keeps
    the open ZipFile in a local while it rebuilds layers from their config)."""
    found = []
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        for value in frame.f_locals.values():
            if isinstance(value, zipfile.ZipFile) and value.fp is not None:
                found.append(value)
        frame = frame.f_back
    return found


def _members(archive: zipfile.ZipFile, key: str) -> tuple[str, list[zipfile.ZipInfo]] | None:
    marker = "/" + folder_name(key) + "/saved_model.pb"
    for name in archive.namelist():
        if name.endswith(marker) or name == marker[1:]:
            prefix = name[: -len("saved_model.pb")]
            return prefix, [i for i in archive.infolist() if i.filename.startswith(prefix)]
    return None


def _extract(
    archive: zipfile.ZipFile, prefix: str, members: list[zipfile.ZipInfo], dest: Path
) -> None:
    for info in members:
        relative = info.filename[len(prefix) :]
        parts = relative.split("/")
        if not relative or info.is_dir():
            continue
        if relative.startswith("/") or ".." in parts or posixpath.isabs(relative):
            raise ValueError(f"unsafe member {info.filename!r} in a .keras file")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def from_open_archive(key: str | None) -> str | None:
    """Copy the SavedModel with fingerprint ``key`` out of the ``.keras`` file
    being loaded into the cache (atomically), and return the copy's folder."""
    if not key:
        return None
    for archive in _open_archives():
        located = _members(archive, key)
        if located is None:
            continue
        root = store_root()
        root.mkdir(parents=True, exist_ok=True)
        work = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _extract(archive, *located, work)
            put_folder(work, root / key)  # False: another process won the race, use its copy
        except OSError:
            if stored_copy(key) is None:  # not another process winning the race
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return stored_copy(key)
    return None
