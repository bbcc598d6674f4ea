"""BERT's text normalisation and pre-tokenisation as one table: code point -> code points.

Hugging Face's ``BertNormalizer`` + ``BertPreTokenizer`` treat every character
on its own: drop control characters, turn whitespace into spaces, put spaces
around CJK ideographs, decompose (NFD) and drop non-spacing marks, lowercase,
then split on whitespace and around each punctuation character. Because each
step is a function of one character, the whole chain is a function of one
code point, which we tabulate here with Python's ``unicodedata`` at conversion
time. The graph then needs only core TensorFlow ops (decode, binary search,
gather, encode, split) to reproduce it; no ICU, no custom op.

The table is stored compactly: ``starts`` holds the first code point of each
run of code points that share a row of ``rows``; in a row, ``SELF`` stands for
the code point being mapped, so identity (``[SELF]``), deletion (``[]``) and
"pad with spaces" (``[32, SELF, 32]``) are one row each for the whole range.

Known, deliberate gap: ``tokenizers`` takes character categories from an
older Unicode version than this Python's; about 450 code points assigned
since (rare marks and format characters) are handled by today's categories.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np

from savedhub.errors import UnsupportedSourceError

SELF = -1
SPACE = 32
MAX_CODE_POINT = 0x10FFFF

# Unicode White_Space (what Rust's char::is_whitespace tests, which `tokenizers` uses).
_WHITE_SPACE = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)]
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)

# The "Chinese character" blocks of the original BERT tokenizer.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# Special tokens written literally in the input ("[SEP]") stay whole, as in
# `tokenizers`; before mapping they are replaced by these noncharacters, whose
# rows spell the token out. A noncharacter already in the input is moved to
# one past the markers first, which maps to itself like any noncharacter.
SPECIAL_MARKER_BASE = 0xFDD0
SPECIAL_MARKER_LIMIT = 0xFDEF


@dataclass(frozen=True)
class NormalizerSettings:
    """The switches of Hugging Face's ``BertNormalizer``."""

    clean_text: bool = True
    chinese_chars: bool = True
    strip_accents: bool = True
    lowercase: bool = True


@dataclass(frozen=True)
class CharTable:
    """Run-length code point table; see the module docstring."""

    starts: np.ndarray  # int32 [runs], ascending, starts[0] == 0
    run_rows: np.ndarray  # int32 [runs], row index of each run
    row_values: np.ndarray  # int32 [total], concatenated rows
    row_splits: np.ndarray  # int64 [rows + 1]


def _is_cjk(cp: int) -> bool:
    if cp < 0x3400 or cp > 0x2FA1F:
        return False
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(cp: int) -> bool:
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(chr(cp)).startswith("P")


def map_code_point(cp: int, settings: NormalizerSettings) -> tuple[int, ...]:
    """What normalisation + pre-tokenisation turn one code point into (spaces split words)."""
    ch = chr(cp)
    category = unicodedata.category(ch)
    # Unassigned (Cn) code points are kept, as `tokenizers` keeps them.
    control = category[0] == "C" and category != "Cn" and cp not in (9, 10, 13)
    if settings.clean_text and (cp in (0, 0xFFFD) or control):
        return ()
    if cp in _WHITE_SPACE:
        return (SPACE,)
    cjk = settings.chinese_chars and _is_cjk(cp)
    if category == "Cn" and not cjk:
        return (cp,)  # no decomposition, case or punctuation: the bulk of the table, fast
    text = f" {ch} " if cjk else ch
    if settings.strip_accents:
        text = "".join(
            c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
        )
    if settings.lowercase:
        text = "".join(c.lower() for c in text)
    out: list[int] = []
    for c in text:
        point = ord(c)
        if point in _WHITE_SPACE:
            out.append(SPACE)
        elif _is_punctuation(point):
            out.extend((SPACE, point, SPACE))
        else:
            out.append(point)
    return tuple(out)


@functools.lru_cache(maxsize=4)
def build_char_table(
    settings: NormalizerSettings, special_tokens: tuple[str, ...] = ()
) -> CharTable:
    """Tabulate :func:`map_code_point` over all of Unicode, plus special-token markers.

    Args:
        settings: the normaliser switches read from the source tokenizer.
        special_tokens: tokens kept whole when written in the input, in marker
            order (the ``i``-th maps from ``SPECIAL_MARKER_BASE + i``).
    """
    if len(special_tokens) > SPECIAL_MARKER_LIMIT - SPECIAL_MARKER_BASE:
        raise UnsupportedSourceError(
            f"The tokenizer has {len(special_tokens)} special tokens; savedhub convert "
            f"supports at most {SPECIAL_MARKER_LIMIT - SPECIAL_MARKER_BASE}."
        )
    row_index: dict[tuple[int, ...], int] = {}
    starts: list[int] = []
    run_rows: list[int] = []
    for cp in range(MAX_CODE_POINT + 1):
        if 0xD800 <= cp <= 0xDFFF:
            row: tuple[int, ...] = ()  # surrogates never come out of UTF-8 decoding
        elif SPECIAL_MARKER_BASE <= cp < SPECIAL_MARKER_BASE + len(special_tokens):
            token = special_tokens[cp - SPECIAL_MARKER_BASE]
            row = (SPACE, *(ord(c) for c in token), SPACE)
        else:
            mapped = map_code_point(cp, settings)
            row = (SELF,) if mapped == (cp,) else tuple(SELF if p == cp else p for p in mapped)
        index = row_index.setdefault(row, len(row_index))
        if not run_rows or run_rows[-1] != index:
            starts.append(cp)
            run_rows.append(index)
    rows = sorted(row_index, key=row_index.__getitem__)
    splits = np.cumsum([0] + [len(r) for r in rows], dtype=np.int64)
    values = np.fromiter((p for r in rows for p in r), dtype=np.int32, count=int(splits[-1]))
    return CharTable(
        starts=np.asarray(starts, dtype=np.int32),
        run_rows=np.asarray(run_rows, dtype=np.int32),
        row_values=values,
        row_splits=splits,
    )
