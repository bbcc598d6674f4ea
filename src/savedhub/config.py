"""Every setting savedhub reads, with its environment variable and default.

Settings are read at call time, never frozen at import, so a test or a
notebook that changes ``os.environ`` sees the change on the next call.
Precedence: an explicit argument > the environment > the default.
``tensorflow_hub``'s own variables (``TFHUB_*``) keep their meaning; ours
start with ``SAVEDHUB_``.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from pathlib import Path

from savedhub.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}

# Mirrors set from Python (``savedhub.set_mirrors``) win over SAVEDHUB_MIRRORS.
_mirrors_override: list[tuple[str, str]] | None = None


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in _TRUE


def _number(name: str, default: str, parse: type[int] | type[float], example: str) -> float:
    """The non-negative number in environment variable ``name`` (else ``default``);
    a value that is not one raises ConfigError naming the variable and the value."""
    raw = os.environ.get(name, "").strip() or default
    try:
        value = parse(raw)
    except ValueError:
        value = -1
    if not value >= 0:  # also refuses nan
        kind = "whole number" if parse is int else "number"
        raise ConfigError(
            f"{name}={raw!r} is not a non-negative {kind}; set e.g. {name}={example} "
            f"or unset it (default {default}).",
            name,
            raw,
        )
    return value


def _absl_flag(name: str) -> str | None:
    """Value of an absl flag such as ``--tfhub_cache_dir`` if the program parsed flags."""
    absl_flags = sys.modules.get("absl.flags")
    if absl_flags is None:
        return None
    flags = absl_flags.FLAGS
    try:
        if name in flags and flags.is_parsed():
            value = flags[name].value
            return str(value) if value else None
    except Exception:  # an absl without the flag, or one mid-parse: ignore it
        return None
    return None


_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def _cache_root(value: str, source: str) -> Path:
    """The local folder a cache setting names: a path, or a ``file://`` URL.

    tensorflow_hub reads its cache folder through ``tf.io.gfile``, so users set
    ``TFHUB_CACHE_DIR=file:///some/dir``; that is the folder ``/some/dir``, shared
    with tensorflow_hub as before. Other URLs (``gs://`` ...) are refused: the
    cache relies on atomic renames and file locks, which only a local (or
    mounted) filesystem offers.
    """
    parts = urllib.parse.urlsplit(value)
    if parts.scheme.lower() == "file":
        path = urllib.parse.unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path:
            raise ConfigError(
                f"{source}={value!r} is not a file:// URL of a folder on this machine; "
                "write it as file:///absolute/path or as a plain path.",
                source,
                value,
            )
        return Path(path)
    scheme = _URL_SCHEME.match(value)
    if scheme:
        name = scheme.group(1)
        raise ConfigError(
            f"{source}={value!r}: savedhub keeps its cache on a local filesystem (it "
            f"relies on atomic renames and file locks, which {name}:// storage does not "
            f"offer). Set {source} to a local folder, or a bucket mounted as one; a model "
            f"stored on {name}:// loads in place with hub.load('{name}://...').",
            source,
            value,
        )
    return Path(os.path.expanduser(value))


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: argument, SAVEDHUB_CACHE_DIR, TFHUB_CACHE_DIR, --tfhub_cache_dir,
    else the user's cache folder (never ``/tmp``, whose cleaners half-delete models).

    Each may be a path or a ``file://`` URL, as tensorflow_hub accepts.

    Raises:
        ConfigError: the setting is a URL of another filesystem (``gs://`` ...).
    """
    for candidate, source in (
        (explicit, "cache_dir"),
        (os.environ.get("SAVEDHUB_CACHE_DIR"), "SAVEDHUB_CACHE_DIR"),
        (os.environ.get("TFHUB_CACHE_DIR"), "TFHUB_CACHE_DIR"),
        (_absl_flag("tfhub_cache_dir"), "--tfhub_cache_dir"),
    ):
        if candidate:
            return _cache_root(os.fspath(candidate), source)
    import platformdirs

    return Path(platformdirs.user_cache_dir("savedhub", appauthor=False))


def model_load_format() -> str:
    """COMPRESSED (default) or UNCOMPRESSED, from TFHUB_MODEL_LOAD_FORMAT or the absl flag."""
    value = os.environ.get("TFHUB_MODEL_LOAD_FORMAT") or _absl_flag("tfhub_model_load_format")
    value = (value or "COMPRESSED").strip().upper()
    if value == "AUTO":
        value = "COMPRESSED"
    if value not in ("COMPRESSED", "UNCOMPRESSED"):
        raise ConfigError(
            f"TFHUB_MODEL_LOAD_FORMAT={value!r} is not understood; "
            "use COMPRESSED, UNCOMPRESSED or AUTO.",
            "TFHUB_MODEL_LOAD_FORMAT",
            value,
        )
    return value


def offline() -> bool:
    """SAVEDHUB_OFFLINE=1: never touch the network, load only from the cache."""
    return _flag("SAVEDHUB_OFFLINE")


def hf_offline() -> bool:
    """Offline for ``hf://`` handles: SAVEDHUB_OFFLINE=1 or Hugging Face's own
    HF_HUB_OFFLINE=1 (read here at call time; huggingface_hub reads it once at import)."""
    return offline() or _flag("HF_HUB_OFFLINE") or _flag("TRANSFORMERS_OFFLINE")


def hf_endpoint() -> str:
    """The Hugging Face Hub to ask for ``hf://`` handles: HF_ENDPOINT (a mirror), else
    https://huggingface.co. Read at call time; huggingface_hub reads it once at import."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co").rstrip("/")


def hf_cache_dir() -> Path:
    """Hugging Face's download cache, as huggingface_hub places it: HF_HUB_CACHE,
    else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name, "").strip():
            return Path(os.path.expandvars(os.path.expanduser(os.environ[name].strip())))
    home = os.environ.get("HF_HOME", "").strip() or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def verify_certificates() -> bool:
    """False when TFHUB_DISABLE_CERT_VALIDATION is set, as in tensorflow_hub."""
    return not _flag("TFHUB_DISABLE_CERT_VALIDATION")


def show_progress() -> bool:
    """Whether to draw a progress bar (only ever on a terminal)."""
    if _flag("SAVEDHUB_DISABLE_PROGRESS"):
        return False
    if os.environ.get("TFHUB_DOWNLOAD_PROGRESS") is not None:
        return _flag("TFHUB_DOWNLOAD_PROGRESS")
    return sys.stderr is not None and sys.stderr.isatty()


def http_timeout() -> float:
    """Seconds to wait for a connection or for the next bytes (SAVEDHUB_HTTP_TIMEOUT)."""
    return float(_number("SAVEDHUB_HTTP_TIMEOUT", "60", float, "120"))


def http_retries() -> int:
    """Attempts after the first on connection errors, timeouts and 5xx (SAVEDHUB_HTTP_RETRIES)."""
    return int(_number("SAVEDHUB_HTTP_RETRIES", "4", int, "8"))


def http_backoff() -> float:
    """Seconds before the first retry, doubled on each further one (SAVEDHUB_HTTP_BACKOFF)."""
    return float(_number("SAVEDHUB_HTTP_BACKOFF", "0.5", float, "1.5"))


def max_extract_members() -> int:
    """Most members an archive may hold (SAVEDHUB_MAX_EXTRACT_MEMBERS, default 100000)."""
    return int(_number("SAVEDHUB_MAX_EXTRACT_MEMBERS", "100000", int, "500000"))


def max_extract_bytes() -> int:
    """Largest total an archive may expand to (SAVEDHUB_MAX_EXTRACT_BYTES, default 64 GiB)."""
    return int(_number("SAVEDHUB_MAX_EXTRACT_BYTES", str(64 * 2**30), int, str(128 * 2**30)))


def verify_content() -> bool:
    """SAVEDHUB_VERIFY=content: every load from the cache re-hashes the model's files
    against the SHA-256 recorded when they were installed (reads the whole model).
    The default, ``fast``, compares sizes and modification times, and hashes only
    files whose time moved."""
    raw = os.environ.get("SAVEDHUB_VERIFY", "").strip()
    if raw.lower() in ("", "fast"):
        return False
    if raw.lower() == "content":
        return True
    raise ConfigError(
        f"SAVEDHUB_VERIFY={raw!r} is not understood; use 'content' (re-hash every file "
        "on each load) or 'fast' (the default: sizes and modification times).",
        "SAVEDHUB_VERIFY",
        raw,
    )


def lock_timeout() -> float:
    """Seconds to wait for another process's download of the same handle."""
    return float(_number("SAVEDHUB_LOCK_TIMEOUT", "3600", float, "7200"))


def lock_stale_seconds() -> float:
    """A tensorflow_hub ``.lock`` of another host whose download shows no progress for
    this long is taken over (SAVEDHUB_LOCK_STALE_SECONDS; tensorflow_hub itself uses 600)."""
    return float(_number("SAVEDHUB_LOCK_STALE_SECONDS", "600", float, "1200"))


def set_mirrors(mirrors: dict[str, str] | list[tuple[str, str]] | None) -> None:
    """Rewrite handle prefixes from Python; ``None`` returns to SAVEDHUB_MIRRORS.

    Example:
        >>> set_mirrors({"https://tfhub.dev": "http://hub.internal:8080"})
    """
    global _mirrors_override
    if mirrors is None:
        _mirrors_override = None
        return
    pairs = list(mirrors.items()) if isinstance(mirrors, dict) else list(mirrors)
    _mirrors_override = [(str(a), str(b)) for a, b in pairs]


def mirrors() -> list[tuple[str, str]]:
    """The ``(prefix, replacement)`` pairs in force, longest prefix first."""
    if _mirrors_override is not None:
        pairs = list(_mirrors_override)
    else:
        pairs = []
        raw = os.environ.get("SAVEDHUB_MIRRORS", "")
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            prefix, sep, replacement = item.partition("=")
            if not sep or not prefix.strip() or not replacement.strip():
                raise ConfigError(
                    f"SAVEDHUB_MIRRORS entry {item!r} is not 'prefix=replacement'; "
                    "example: SAVEDHUB_MIRRORS='https://tfhub.dev=http://hub.internal:8080'",
                    "SAVEDHUB_MIRRORS",
                    raw,
                )
            pairs.append((prefix.strip(), replacement.strip()))
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def serve_tokens() -> str | None:
    """Publishing tokens for ``savedhub serve``, comma-separated (SAVEDHUB_SERVE_TOKENS);
    with none here and no tokens file, the server takes no uploads."""
    return os.environ.get("SAVEDHUB_SERVE_TOKENS") or None


def push_token() -> str | None:
    """The bearer token ``savedhub push`` sends when none is given (SAVEDHUB_TOKEN)."""
    return os.environ.get("SAVEDHUB_TOKEN") or None


def pack_mtime() -> int:
    """The mtime ``pack`` gives every archive member: SOURCE_DATE_EPOCH (the
    reproducible-builds convention) if set, else 0, so archives do not depend
    on when files were written."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds since 1970; "
            "unset it or set e.g. SOURCE_DATE_EPOCH=1700000000.",
            "SOURCE_DATE_EPOCH",
            value,
        ) from None
