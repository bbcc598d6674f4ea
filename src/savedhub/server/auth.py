"""Who may publish: bearer tokens from a file or an environment variable.

A tokens file has one token a line, optionally followed by the publishers
it may publish as (none listed: any publisher); ``#`` starts a comment::

    # token                             publishers
    s3cr3t-for-the-ci                   acme vision-team
    an0ther-token-for-everything

With no token at all, uploads are off. Tokens are compared in constant time
and never logged.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from savedhub.errors import ConfigError


class Verdict(Enum):
    ALLOWED = "allowed"
    UPLOADS_OFF = "uploads_off"  # 403: the server takes no uploads at all
    MISSING = "missing"  # 401: no bearer token sent
    INVALID = "invalid"  # 401: a token the server does not know
    FORBIDDEN = "forbidden"  # 403: a known token not allowed for this publisher


@dataclass(frozen=True)
class TokenRules:
    """Tokens and, for each, the publishers it may publish as (None: all)."""

    tokens: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    @property
    def uploads_enabled(self) -> bool:
        return bool(self.tokens)

    def check(self, authorization: str | None, publisher: str) -> Verdict:
        """Judge an ``Authorization`` header for an upload under ``publisher``."""
        if not self.tokens:
            return Verdict.UPLOADS_OFF
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return Verdict.MISSING
        presented = presented.strip()
        matched = False
        publishers: frozenset[str] | None = None
        for token, allowed in self.tokens.items():
            # Compare against every token so the time taken says nothing about which matched.
            if hmac.compare_digest(token.encode(), presented.encode()):
                matched, publishers = True, allowed
        if not matched:
            return Verdict.INVALID
        if publishers is None or publisher in publishers:
            return Verdict.ALLOWED
        return Verdict.FORBIDDEN


def parse_tokens(lines: Iterable[str]) -> dict[str, frozenset[str] | None]:
    """Tokens from the lines of a tokens file (format in the module docstring)."""
    tokens: dict[str, frozenset[str] | None] = {}
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words:
            tokens[words[0]] = frozenset(words[1:]) or None
    return tokens


def load_rules(
    tokens: Mapping[str, Iterable[str] | None] | Iterable[str] | None = None,
    tokens_file: str | os.PathLike[str] | None = None,
    env_tokens: str | None = None,
) -> TokenRules:
    """Merge tokens given in code, a tokens file and a comma-separated env value.

    Example:
        >>> load_rules(["abc"]).check("Bearer abc", "acme")
        <Verdict.ALLOWED: 'allowed'>

    Raises:
        ConfigError: ``tokens_file`` does not exist (uploads would silently be off).
    """
    merged: dict[str, frozenset[str] | None] = {}
    if isinstance(tokens, Mapping):
        for token, publishers in tokens.items():
            merged[token] = frozenset(publishers) if publishers is not None else None
    elif tokens is not None:
        merged.update(dict.fromkeys(tokens))
    if tokens_file is not None:
        path = Path(tokens_file)
        if not path.is_file():
            raise ConfigError(
                f"tokens file {str(path)!r} does not exist; create it with one token a line "
                "(optionally followed by the publishers it may publish as).",
                "--tokens-file",
                str(path),
            )
        merged.update(parse_tokens(path.read_text().splitlines()))
    if env_tokens:
        merged.update(dict.fromkeys(t.strip() for t in env_tokens.split(",") if t.strip()))
    return TokenRules(merged)
