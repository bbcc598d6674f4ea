"""Keeping a KerasLayer's SavedModel inside the ``.keras`` file that holds it.

``save_assets`` writes the SavedModel into the ``.keras`` archive, in a folder
named by the model's fingerprint, and ``get_config`` records that
fingerprint. When the layer is rebuilt from the file on a machine where its
handle does not resolve (the folder is gone, no network), the layer takes
the SavedModel out of the archive into the model cache, as an entry with the
handle ``keras-embedded://<fingerprint>`` that ``savedhub cache ls/prune/rm``
manage like any other, and loads it from there.

Keras reads a layer's config, and builds the layer, before it hands the
layer its assets (``load_assets`` runs last, after the weights), and the
layer needs its SavedModel to exist at all: its variables must be there when
Keras restores weights and builds the optimizer. Keras offers no way to reach
the archive earlier, so the layer finds it in the frame of Keras' own loader
function, named in :data:`KERAS_LOADERS`. ``tests/test_keras_file.py`` pins
those names on both Kerases and fails the day Keras renames them.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
import zipfile
from pathlib import Path
from types import FrameType

import tensorflow as tf

from savedhub import config
from savedhub._io import digest
from savedhub.cache import Cache, Installed
from savedhub.client.handles import Handle, HandleKind
from savedhub.errors import KerasLayerError

FOLDER_PREFIX = "saved_model-"
HANDLE_SCHEME = "keras-embedded://"
# TensorFlow's singleprint: four unsigned 64-bit hashes ("/" written as "-").
_FINGERPRINT = re.compile(r"[0-9]{1,20}(-[0-9]{1,20}){3}")
# (module, function, local holding the open zipfile.ZipFile) of Keras' loaders.
KERAS_LOADERS = (
    ("keras.src.saving.saving_lib", "_load_model_from_fileobj", "zf"),
    ("tf_keras.src.saving.saving_lib", "load_model", "zf"),
)
_MAX_FRAMES = 64


def fingerprint(path: str) -> str | None:
    """A content key of a SavedModel (graph, signatures, objects, checkpoint)."""
    try:
        printed = tf.saved_model.experimental.read_fingerprint(path).singleprint()
    except Exception:  # no fingerprint.pb (written by TF < 2.12): nothing to key on
        return None
    return str(printed).replace("/", "-")


def checked_fingerprint(value: object) -> str | None:
    """The fingerprint a layer's config names, once it is known to be one.

    The value comes from a file that may have been crafted, and becomes part of
    a cache key and of a name looked up in the archive: anything but four
    numbers joined by ``-`` is refused.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not _FINGERPRINT.fullmatch(value):
        raise KerasLayerError(
            f"The .keras file's config names an embedded SavedModel {value!r}, which is not "
            "a SavedModel fingerprint (four numbers joined by '-'). The file is damaged or "
            "was edited; save the model again with model.save(path)."
        )
    return value


def folder_name(key: str) -> str:
    return FOLDER_PREFIX + key


def cache_handle(key: str) -> Handle:
    """The cache's handle for the SavedModel with fingerprint ``key``."""
    text = HANDLE_SCHEME + key
    return Handle(text, HandleKind.REMOTE_FS, text, text)


def cached_copy(key: str) -> str | None:
    """The cache's whole copy of the SavedModel with fingerprint ``key``, if any."""
    found = Cache().find(cache_handle(key))
    return str(found) if found is not None else None


def copy_tree(src: str, dst: str) -> None:
    """Copy a SavedModel folder through tf.io.gfile (local, gs://, ram:// alike)."""
    for root, _, files in tf.io.gfile.walk(src):
        relative = os.path.relpath(root, src)
        target = dst if relative == "." else os.path.join(dst, relative)
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def open_keras_archive() -> zipfile.ZipFile | None:
    """The ``.keras`` archive that Keras' loader further up the stack is reading."""
    wanted = {(module, function): local for module, function, local in KERAS_LOADERS}
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        local = wanted.get((frame.f_globals.get("__name__", ""), frame.f_code.co_name))
        archive = frame.f_locals.get(local) if local else None
        if isinstance(archive, zipfile.ZipFile) and archive.fp is not None:
            return archive
        frame = frame.f_back
    return None


def _members(archive: zipfile.ZipFile, key: str) -> tuple[str, list[zipfile.ZipInfo]] | None:
    """The archive folder holding the SavedModel ``key``, and its members."""
    marker = "/" + folder_name(key) + "/saved_model.pb"
    for name in archive.namelist():
        if name.endswith(marker) or name == marker[1:]:
            prefix = name[: -len("saved_model.pb")]
            return prefix, [i for i in archive.infolist() if i.filename.startswith(prefix)]
    return None


def _extract(
    archive: zipfile.ZipFile, prefix: str, members: list[zipfile.ZipInfo], dest: Path
) -> tuple[dict[str, int], dict[str, str]]:
    """Write the members under ``prefix`` into ``dest``; returns path -> size and
    path -> SHA-256 (hex)."""
    limit = config.max_extract_bytes()
    declared = sum(info.file_size for info in members)
    if declared > limit:
        raise KerasLayerError(
            f"The SavedModel embedded in the .keras file would expand to {declared} bytes, "
            f"over the limit of {limit} (SAVEDHUB_MAX_EXTRACT_BYTES); raise it if you trust "
            "the file."
        )
    files: dict[str, int] = {}
    digests: dict[str, str] = {}
    for info in members:
        relative = info.filename[len(prefix) :]
        if not relative or info.is_dir():
            continue
        parts = relative.split("/")
        if posixpath.isabs(relative) or any(p in ("", ".", "..") for p in parts):
            raise KerasLayerError(f"Refusing the unsafe member {info.filename!r} of a .keras file.")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        content = digest.new()  # for the cache's manifest, in this one pass
        with archive.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                content.update(chunk)
                out.write(chunk)
        files["/".join(parts)] = info.file_size
        digests["/".join(parts)] = content.hexdigest()
    return files, digests


def install_from_archive(archive: zipfile.ZipFile, key: str) -> str | None:
    """Copy the SavedModel ``key`` out of ``archive`` into the cache (once, atomically,
    under the cache's lock) and return its folder; None if the archive lacks it."""
    located = _members(archive, key)
    if located is None:
        return None

    def fetch(work: Path, _partial: Path) -> Installed:
        files, digests = _extract(archive, *located, work)
        return Installed(
            url=str(archive.filename or ""),
            etag=None,
            archive_sha256=None,
            archive_bytes=0,
            files=files,
            sha256=digests,
        )

    return str(Cache().install(cache_handle(key), fetch))
