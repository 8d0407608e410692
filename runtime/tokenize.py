"""Texts -> token id sequences with the Rust `tokenizers` library (truncation or overlapping windows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.batching import lengths_of
from runtime.errors import InputTooLongError


def check_texts(texts: object) -> list[str]:
    """A list of str, or a TypeError naming the first bad position."""
    if isinstance(texts, str):
        return [texts]
    if texts is None or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return list(texts)


@dataclass(frozen=True)
class Tokenized:
    """Token sequences plus, for each sequence, the index of the text it came from.

    With truncation every text gives one sequence; with windows a long text gives several,
    which the encoder max-merges back into one vector.
    """

    sequences: list[np.ndarray]
    owners: np.ndarray  # (n_sequences,) int64, non-decreasing

    @property
    def lengths(self) -> np.ndarray:
        return lengths_of(self.sequences)


class TextTokenizer:
    """Owns two configured `tokenizers.Tokenizer`s (their settings are not per call, so not shared)."""

    def __init__(self, path: str | Path, *, max_length: int, stride: int | None = None):
        if max_length < 4:
            raise ValueError("max_length must be at least 4")
        self.max_length = max_length
        self.stride = max_length // 4 if stride is None else stride
        if not 0 <= self.stride < max_length - 2:
            raise ValueError(f"window stride must be in [0, {max_length - 2}), got {self.stride}")
        self._truncating = Tokenizer.from_file(str(path))
        self._windowing = Tokenizer.from_file(str(path))
        for tok in (self._truncating, self._windowing):
            tok.no_padding()
        self._truncating.enable_truncation(max_length)
        self._windowing.enable_truncation(max_length, stride=self.stride)

    def id_to_token(self, index: int) -> str:
        return self._truncating.id_to_token(int(index)) or f"[unused{index}]"

    def encode(self, texts: list[str], *, truncate: bool = True) -> Tokenized:
        """Tokenize; `truncate=False` splits long texts into windows that overlap by `stride` tokens."""
        tok = self._truncating if truncate else self._windowing
        encodings = tok.encode_batch(texts, add_special_tokens=True) if texts else []
        sequences: list[np.ndarray] = []
        owners: list[int] = []
        for i, enc in enumerate(encodings):
            parts = [enc] if truncate else [enc, *enc.overflowing]
            for part in parts:
                sequences.append(np.asarray(part.ids, dtype=np.int64))
                owners.append(i)
        return Tokenized(sequences, np.asarray(owners, dtype=np.int64))

    def check_length(self, texts: list[str]) -> None:
        """Raise InputTooLongError for the first text longer than max_length tokens."""
        for i, enc in enumerate(self._windowing.encode_batch(texts) if texts else []):
            if enc.overflowing:
                raise InputTooLongError(
                    f"inputs[{i}] is longer than the model's max length of {self.max_length} tokens; "
                    f"send truncate=true or split the text"
                )
