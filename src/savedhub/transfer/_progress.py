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
    path = urllib.parse.urlsplit(label).path.rstrip("/")
    return path.rsplit("/", 3)[-1] if path else label
