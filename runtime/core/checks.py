"""Argument and text checks, run once where input enters (the caller's thread), before any work is shared."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from runtime.errors import InputTypeError, InvalidInputError

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """A list of str, or an InputTypeError naming the first bad position; lone surrogates are an InvalidInputError.

    A lone UTF-16 surrogate (valid in JSON as `"\\ud800"`, never in UTF-8) cannot be tokenized.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif texts is None or not isinstance(texts, Sequence):
        raise InputTypeError(f"{name} must be a str or a sequence of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputTypeError(f"{name}[{i}] is {type(text).__name__}, expected str")
        if not text.isascii():
            found = _SURROGATE.search(text)
            if found:
                raise InvalidInputError(f"{name}[{i}] holds an unpaired UTF-16 surrogate at character "
                                        f"{found.start()} (U+{ord(found.group()):04X}); it is not valid Unicode text")
    return list(texts)


def check_top_k(top_k: object) -> int | None:
    """None (every non-zero term) or an int >= 1; bools are refused."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be an int >= 1 or None (every non-zero term), got {top_k!r}")
    return top_k


def check_threshold(threshold: object) -> float:
    """A finite number (weights <= it are dropped); bools and strings are refused."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise InvalidInputError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def check_unit(value: object, name: str) -> float:
    """A number in [0, 1] (max_ratio, alpha_mass); bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_positive_int(value: object, name: str) -> int:
    """An int >= 1 (batch_size, max_windows); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a bool, got {value!r}")
    return value
