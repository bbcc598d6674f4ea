"""Which publisher, model and version names the hub accepts, and how versions sort.

Every name that reaches storage passes through :func:`check_name` first, so a
request can never name a path outside the storage root: names are one path
segment of letters, digits, ``.``, ``_`` and ``-`` that starts with a letter
or digit (so ``.``, ``..`` and hidden files are impossible), and a few words
that the server's own routes use are reserved as publisher names.
"""

from __future__ import annotations

import re

from savedhub.errors import InvalidNameError as InvalidNameError  # re-exported

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# First path segments the server routes itself; a publisher of that name would be unreachable.
RESERVED_PUBLISHERS = frozenset({"api", "static", "favicon.ico", "robots.txt", "healthz"})
_NATURAL = re.compile(r"(\d+)")


def is_valid_name(name: str) -> bool:
    """True when ``name`` is a single safe path segment (see the module docstring)."""
    return bool(NAME_PATTERN.match(name)) and ".." not in name


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it may be used as a ``kind`` (publisher/model/version), else raise.

    Example:
        >>> check_name("model", "nnlm-en-dim128")
        'nnlm-en-dim128'

    Raises:
        InvalidNameError: the name could escape the storage root or is reserved.
    """
    if not is_valid_name(name):
        raise InvalidNameError(
            f"{kind} name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'."
        )
    if kind == "publisher" and name.lower() in RESERVED_PUBLISHERS:
        raise InvalidNameError(
            f"publisher name {name!r} is reserved by the server's own URLs; pick another."
        )
    return name


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders versions naturally: ``2 < 10``, ``1.2 < 1.10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _NATURAL.split(version) if part
    )


def latest(versions: list[str]) -> str | None:
    """The highest version by natural order, or None for an empty list."""
    return max(versions, key=version_key) if versions else None
