"""Download progress: a tqdm bar of compressed bytes, when the configuration allows one."""

from __future__ import annotations

import urllib.parse
from typing import Any

from savedhub import config


def progress_bar(total: int | None, label: str) -> Any:
    """A tqdm bar over ``total`` bytes named after ``label``, or None when
    :func:`savedhub.config.show_progress` says no bar."""
    if not config.show_progress():
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=0,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=_short_label(label),
        leave=False,
    )


def _short_label(label: str) -> str:
    """The last three segments of a URL's path (``google/nnlm-en-dim128/2``), else ``label``."""
    path = urllib.parse.urlsplit(label).path.strip("/")
    return "/".join(path.split("/")[-3:]) if path else label
