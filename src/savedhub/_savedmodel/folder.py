"""What a SavedModel folder is on disk: its file names, and a SavedModel one folder down.

The one owner of these facts for the client (resolver, loading), the cache,
the publisher's tools (lint) and the server. Plain ``pathlib``: no TensorFlow.

Archives are often packed with an extra top folder (``tar -czf m.tgz model/``),
so a SavedModel turns up one folder below where it is expected. Each side
answers that differently, on purpose, and each answer is one function here:

* :func:`nested_hint`: a local folder the user named: refuse, but say where it is.
* :func:`step_down`: a cache entry someone else packed: use the sub-folder silently.
* :func:`refusal`: an upload to a hub: refuse, so every client gets the model at the root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")
TF1_HUB_MODULE_FILE = "tfhub_module.pb"  # beside the graph in the legacy TF1 Hub format
VARIABLES_DIR = "variables"
VARIABLES_INDEX = "variables.index"
# variables/variables.data-00000-of-00002: shard number, shard count.
VARIABLES_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")
_LISTED = 12


def has_graph(folder: Path) -> bool:
    """True when ``folder`` holds ``saved_model.pb`` (or ``.pbtxt``) itself."""
    return any((folder / name).is_file() for name in GRAPH_FILES)


def describe_contents(folder: Path) -> str:
    """The first names in ``folder`` for an error message (folders marked with ``/``),
    e.g. ``"assets/, model.keras and 3 more"``; ``"nothing"`` when it is empty."""
    names = sorted(os.listdir(folder))
    if not names:
        return "nothing"
    shown = ", ".join(n + ("/" if (folder / n).is_dir() else "") for n in names[:_LISTED])
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return shown + more


def _nested(folder: Path) -> Path | None:
    """The first sub-folder (by name) that holds a graph file."""
    for child in sorted(folder.iterdir()):
        if child.is_dir() and has_graph(child):
            return child
    return None


def nested_hint(folder: Path) -> str:
    """For a folder without a graph that the user named: a sentence pointing at a
    SavedModel one folder down, else one saying how to make a SavedModel."""
    nested = _nested(folder)
    if nested is not None:
        return f"A SavedModel is one level down: pass {str(nested)!r}."
    return "Save one with tf.saved_model.save(obj, path) or model.export(path)."


def step_down(folder: Path) -> Path:
    """The SavedModel folder of a cache entry: the entry itself, or its only
    sub-folder when that one holds the graph (an archive with an extra top folder)."""
    if has_graph(folder):
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and has_graph(subdirs[0]):
        return subdirs[0]
    return folder


def refusal(folder: Path) -> str | None:
    """Why an uploaded archive's extracted ``folder`` cannot be published (None when
    the graph is at its root). Names only what is inside the archive."""
    if has_graph(folder):
        return None
    held = describe_contents(folder) if folder.is_dir() else "nothing"
    nested = _nested(folder) if folder.is_dir() else None
    fix = (
        f"Its SavedModel is inside the folder {nested.name!r}: pack that folder itself, so "
        "that saved_model.pb is at the archive's root"
        if nested is not None
        else "Pack a SavedModel folder"
    )
    return f"has no saved_model.pb at its root (it holds: {held}). {fix}"


def data_shards(variables: Path) -> list[tuple[int, int]]:
    """``(shard, count)`` of every data shard in ``variables/``, sorted; [] if none."""
    if not variables.is_dir():
        return []
    found = (VARIABLES_SHARD.match(name) for name in os.listdir(variables))
    return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)


def missing_shards(variables: Path) -> list[tuple[int, int]]:
    """``(shard, count)`` of every data shard that ``variables/`` lacks, judged by the
    counts its shards' names announce (``variables.data-00001-of-00002``)."""
    present = data_shards(variables)
    return [
        (shard, count)
        for count in sorted({count for _, count in present})
        for shard in range(count)
        if (shard, count) not in present
    ]
