"""Custom TensorFlow ops a SavedModel may need, and the packages that register them.

TensorFlow only knows an op once the Python package that defines it has been
imported. The original library leaves users with
``Op type not registered 'CaseFoldUTF8'``; we import the package for them when
it is installed, and otherwise say which package and savedhub extra bring it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from typing import TypeVar

from savedhub.errors import MissingOpError

T = TypeVar("T")

# Op-name prefix or exact name -> (import name, pip name, savedhub extra).
_TEXT = ("tensorflow_text", "tensorflow-text", "text")
_KNOWN_OPS: dict[str, tuple[str, str, str]] = {
    "CaseFoldUTF8": _TEXT,
    "NormalizeUTF8": _TEXT,
    "NormalizeUTF8WithOffsetsMap": _TEXT,
    "RegexSplitWithOffsets": _TEXT,
    "WordpieceTokenizeWithOffsets": _TEXT,
    "FastWordpieceTokenizeWithOffsets": _TEXT,
    "FastBertNormalize": _TEXT,
    "SentencepieceOp": _TEXT,
    "SentencepieceTokenizeOp": _TEXT,
    "UnicodeScriptTokenizeWithOffsets": _TEXT,
    "WhitespaceTokenizeWithOffsets": _TEXT,
    "WhitespaceTokenizeWithOffsetsV2": _TEXT,
    "TFText>": _TEXT,
}

_NOT_REGISTERED = re.compile(r"Op type not registered '([^']+)'")


def package_for_op(op: str) -> tuple[str, str, str] | None:
    """The (module, pip package, extra) that registers ``op``, if known."""
    if op in _KNOWN_OPS:
        return _KNOWN_OPS[op]
    for prefix, package in _KNOWN_OPS.items():
        if prefix.endswith(">") and op.startswith(prefix[:-1]):
            return package
    return None


def missing_op(exc: BaseException) -> str | None:
    """The op name from TensorFlow's 'Op type not registered' error, if that is what it is."""
    match = _NOT_REGISTERED.search(str(exc))
    return match.group(1) if match else None


def call_importing_ops(fn: Callable[[], T], handle: object) -> T:
    """Run ``fn`` (a load); if it fails on an unregistered op that a known,
    installed package defines, import that package and run ``fn`` again.

    Raises:
        MissingOpError: the op's package is not installed, or the op is unknown.
    """
    imported: set[str] = set()
    while True:
        try:
            return fn()
        except Exception as exc:
            op = missing_op(exc)
            if op is None:
                raise
            known = package_for_op(op)
            if known is None:
                raise MissingOpError(
                    f"{handle!r} uses the TensorFlow op {op!r}, which no imported package "
                    "registers. Import the library that defines it before loading "
                    "(the model's documentation should name it).",
                    op=op,
                ) from exc
            module, pip_name, extra = known
            if module in imported or importlib.util.find_spec(module) is None:
                raise MissingOpError(
                    f"{handle!r} uses the TensorFlow op {op!r} from the package {pip_name!r}, "
                    f"which is not installed. Install it with: pip install {pip_name} "
                    f"(or pip install 'savedhub[{extra}]'), then load again.",
                    op=op,
                    package=pip_name,
                ) from exc
            importlib.import_module(module)
            imported.add(module)
