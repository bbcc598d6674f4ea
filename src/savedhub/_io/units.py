"""Byte sizes and durations, written and read the way people write them."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def human_size(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; bytes below 1 KiB as a whole number."""
    if size < 1024:
        return f"{size:.0f} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def parse_duration(text: str) -> dt.timedelta:
    """``'30d'``, ``'12h'``, ``'90m'``, ``'2w'``, ``'3600'`` (seconds) -> a timedelta.

    Raises:
        ValueError: the text is not a duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30d, 12h, 90m, 2w or 3600s")
    number, unit = float(match.group(1)), match.group(2).lower()
    return dt.timedelta(seconds=number * _SECONDS[unit])
