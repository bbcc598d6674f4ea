"""Which publisher, model and version names the hub accepts, and how versions sort.

Every name that reaches storage passes through :func:`check_name` first, so a
request can never name a path outside the storage root: names are one path
segment of letters, digits, ``.``, ``_`` and ``-`` that starts with a letter
or digit (so ``.``, ``..`` and hidden files are impossible), and a few words
that the server's own routes use are reserved as publisher names.
"""

from __future__ import annotations

import re

from savedhub._wire import is_valid_version, version_error
from savedhub.errors import InvalidNameError as InvalidNameError  # re-exported

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# First path segments the server routes itself; a publisher of that name would be unreachable.
RESERVED_PUBLISHERS = frozenset({"api", "static", "favicon.ico", "robots.txt", "healthz"})


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
    if kind == "version":
        return check_version(name)
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


def check_version(version: str) -> str:
    """Return ``version`` if it is a positive integer, else raise.

    Raises:
        InvalidNameError: anything else (``v1``, ``1.0``, ``01``, ``0``).
    """
    if not is_valid_version(version):
        raise InvalidNameError(version_error(version))
    return version


def version_key(version: str) -> int:
    """Sort key of a valid version: its number (``2 < 10``)."""
    return int(version)


def latest(versions: list[str]) -> str | None:
    """The highest valid version, or None when there is none (other names are ignored).

    Example:
        >>> latest(["1", "2", "10", "v1"])
        '10'
    """
    valid = [v for v in versions if is_valid_version(v)]
    return max(valid, key=version_key) if valid else None
