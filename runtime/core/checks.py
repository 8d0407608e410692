"""Argument and text checks for the public API, run in the caller's thread before any work is shared."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# A text is cut at max_length × CHARS_PER_TOKEN characters before tokenizing when truncation (or the
# window cap) could not use more. Real text averages 3-6 characters per WordPiece/BPE token, so the
# cut lies far beyond what the model sees; a text whose tokens average more than this (long runs with
# no spaces or punctuation, which WordPiece maps to one [UNK] per 100 characters) keeps fewer tokens.
CHARS_PER_TOKEN = 32
# Windows per text with truncate=False: a longer text is refused (InputTooLongError, HTTP 413).
DEFAULT_MAX_WINDOWS = 32

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """A list of str, or a TypeError naming the first bad position; lone surrogates are a ValueError.

    A lone UTF-16 surrogate (valid in JSON as `"\\ud800"`, never in UTF-8) cannot be tokenized.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif texts is None or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a str or a sequence of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is {type(text).__name__}, expected str")
        if not text.isascii():
            found = _SURROGATE.search(text)
            if found:
                raise ValueError(f"{name}[{i}] holds an unpaired UTF-16 surrogate at character {found.start()} "
                                 f"(U+{ord(found.group()):04X}); it is not valid Unicode text")
    return list(texts)


def check_top_k(top_k: object) -> int | None:
    """None (every non-zero term) or an int >= 1; bools are refused."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1 or None (every non-zero term), got {top_k!r}")
    return top_k


def check_threshold(threshold: object) -> float:
    """A finite number (weights <= it are dropped); bools and strings are refused."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def check_positive_int(value: object, name: str) -> int:
    """An int >= 1 (batch_size, max_windows); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value
