"""Where a cache root keeps each entry's files, and whether an entry on disk is whole."""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from pathlib import Path

from savedhub._savedmodel import folder
from savedhub.cache._content import ContentCheck
from savedhub.cache._content import check as check_content
from savedhub.client import handles
from savedhub.client.handles import Handle

MANIFEST_SUFFIX = ".savedhub.json"
LOCK_SUFFIX = ".savedhub.lock"
OWNER_SUFFIX = ".savedhub.owner"
TFHUB_LOCK_SUFFIX = ".lock"
DESCRIPTOR_SUFFIX = ".descriptor.txt"
WORK_DIR = ".savedhub-work"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by savedhub.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
KEY = re.compile(r"^[0-9a-f]{40}$")


def key_for(text: str) -> str:
    """The folder name of a cache key: SHA-1 of its UTF-8 bytes, as tensorflow_hub does."""
    return hashlib.sha1(text.encode("utf8")).hexdigest()


def keys_for(handle: Handle) -> list[str]:
    """Folder names that may hold ``handle``: its canonical key first, then the
    name tensorflow_hub gives the handle exactly as written."""
    keys = [key_for(handle.cache_key)]
    for alias in (handle.original, handles.normalise_url(handle.original)):
        if handle.original.startswith(("http://", "https://")) and key_for(alias) not in keys:
            keys.append(key_for(alias))
    return keys


class EntryState(enum.Enum):
    """What a cache entry's check found."""

    COMPLETE = "complete"  # every file in the manifest is present with its size and bytes
    DAMAGED = "damaged"  # files missing, resized or changed: will be fetched again


def model_dir(entry_path: Path) -> Path:
    """The SavedModel folder inside an entry (see :func:`savedhub._savedmodel.folder.step_down`)."""
    return folder.step_down(entry_path)


def check_foreign(path: Path) -> str | None:
    """A plausibility check for a folder tensorflow_hub wrote (it keeps no manifest)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return "the folder is gone"
    except NotADirectoryError:
        return "it is a file, not a folder"
    if not names:
        return "the folder is empty"
    root = folder.step_down(path)
    if not folder.has_graph(root):
        return "it has no saved_model.pb"
    variables = root / folder.VARIABLES_DIR
    if (variables / folder.VARIABLES_INDEX).is_file():
        if not folder.data_shards(variables):
            return "variables/variables.index has no data shards beside it"
        missing = folder.missing_shards(variables)
        if missing:
            count = missing[0][1]
            held = count - sum(1 for _, c in missing if c == count)
            return f"variables/ has {held} of its {count} data shards"
    return None


class Layout:
    """The paths of one cache root, and what is found at them; takes no lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = self.root / WORK_DIR

    def entry_path(self, key: str) -> Path:
        return self.root / key

    def sibling(self, key: str, suffix: str) -> Path:
        """The file ``<root>/<key><suffix>`` beside an entry (manifest, locks, descriptor)."""
        return self.root / f"{key}{suffix}"

    def manifest(self, key: str) -> dict[str, object] | None:
        """The entry's manifest, or None when it has none (or an unreadable one)."""
        try:
            data = json.loads(self.sibling(key, MANIFEST_SUFFIX).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def check(self, key: str, *, content: bool = False) -> ContentCheck | None:
        """None when there is no entry, else what checking it found (see
        :func:`savedhub.cache._content.check`; a folder without a manifest gets
        the plausibility check of :func:`check_foreign`)."""
        path = self.entry_path(key)
        if not path.is_dir():
            return None
        manifest = self.manifest(key)
        if manifest is None:
            return ContentCheck(problem=check_foreign(path))
        return check_content(path, manifest, content=content)

    def descriptor_handle(self, key: str) -> str | None:
        """The handle named in tensorflow_hub's ``<key>.descriptor.txt``, if any."""
        try:
            text = self.sibling(key, DESCRIPTOR_SUFFIX).read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("Module: "):
                return line[len("Module: ") :].strip()
        return None
