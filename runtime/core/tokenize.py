"""Texts -> token id sequences with the Rust `tokenizers` library (truncation or overlapping windows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.core.batching import lengths_of
from runtime.core.checks import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_WINDOWS,
    check_positive_int,
    check_texts,
    check_threshold,
    check_top_k,
)
from runtime.core.sparse import SparseVector, max_merge
from runtime.errors import InputTooLongError, ModelFolderError

__all__ = ["TextTokenizer", "Tokenized", "check_texts"]


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


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A `tokenizers.Tokenizer` from a folder's tokenizer.json, without padding; ModelFolderError if unreadable."""
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
        raise ModelFolderError(f"{path}: not a readable tokenizer file ({str(exc)[:200]})") from None
    tok.no_padding()
    return tok


def per_text(tokenized: Tokenized, rows: Sequence[SparseVector], *, n_texts: int, top_k: int | None,
             threshold: float) -> list[SparseVector]:
    """Per-sequence vectors -> per-text vectors: a text's windows max-merged, then pruned."""
    top_k, threshold = check_top_k(top_k), check_threshold(threshold)
    parts: list[list[SparseVector]] = [[] for _ in range(n_texts)]
    for owner, vec in zip(tokenized.owners, rows):
        parts[owner].append(vec)
    return [max_merge(p).pruned(top_k=top_k, threshold=threshold) for p in parts]


class TextTokenizer:
    """Owns two configured `tokenizers.Tokenizer`s (their settings are not per call, so not shared).

    Memory follows what the model can use, not what it is sent: with truncation a text is cut at
    `char_limit` characters before tokenizing; with windows a text longer than `max_windows`
    windows is refused, by characters first (nothing tokenized) and then by its windows.
    """

    def __init__(self, path: str | Path, *, max_length: int, stride: int | None = None,
                 max_windows: int = DEFAULT_MAX_WINDOWS):
        if max_length < 4:
            raise ValueError("max_length must be at least 4")
        self.max_length = max_length
        self.stride = max_length // 4 if stride is None else stride
        if not 0 <= self.stride < max_length - 2:
            raise ValueError(f"window stride must be in [0, {max_length - 2}), got {self.stride}")
        self.max_windows = check_positive_int(max_windows, "max_windows")
        self._truncating, self._windowing = load_tokenizer(path), load_tokenizer(path)
        self._truncating.enable_truncation(max_length)
        self._windowing.enable_truncation(max_length, stride=self.stride)

    @property
    def char_limit(self) -> int:
        """Characters of one text tokenized with truncation (beyond them, nothing can reach the model)."""
        return self.max_length * CHARS_PER_TOKEN

    def window_char_limit(self, max_windows: int) -> int:
        """Characters a text may have with windows: the tokens `max_windows` windows cover, × CHARS_PER_TOKEN."""
        body = self.max_length - 2
        return (body + (max_windows - 1) * (body - self.stride) + 2) * CHARS_PER_TOKEN

    def id_to_token(self, index: int) -> str:
        return self._truncating.id_to_token(int(index)) or f"[unused{index}]"

    def encode(self, texts: list[str], *, truncate: bool = True, max_windows: int | None = None,
               name: str = "texts", first_index: int = 0) -> Tokenized:
        """Tokenize; `truncate=False` splits long texts into windows that overlap by `stride` tokens.

        Raises:
            InputTooLongError: with `truncate=False`, a text needs more than `max_windows` windows
                (default `self.max_windows`; 1 means "refuse anything over max_length tokens").
        """
        if truncate:
            limit = self.char_limit
            texts = [t if len(t) <= limit else t[:limit] for t in texts]
            encodings = self._truncating.encode_batch(texts, add_special_tokens=True) if texts else []
            truncated = [np.asarray(enc.ids, dtype=np.int64) for enc in encodings]
            return Tokenized(truncated, np.arange(len(truncated), dtype=np.int64))
        cap = self.max_windows if max_windows is None else check_positive_int(max_windows, "max_windows")
        limit = self.window_char_limit(cap)
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise self._too_long(name, first_index + i, cap, f"{len(text)} characters, more than {limit} "
                                     f"(max_length × {CHARS_PER_TOKEN} per window)")
        encodings = self._windowing.encode_batch(texts, add_special_tokens=True) if texts else []
        sequences: list[np.ndarray] = []
        owners: list[int] = []
        for i, enc in enumerate(encodings):
            parts = [enc, *enc.overflowing]
            if len(parts) > cap:
                raise self._too_long(name, first_index + i, cap, f"{len(parts)} windows")
            for part in parts:
                sequences.append(np.asarray(part.ids, dtype=np.int64))
                owners.append(i)
        return Tokenized(sequences, np.asarray(owners, dtype=np.int64))

    def _too_long(self, name: str, i: int, cap: int, what: str) -> InputTooLongError:
        if cap == 1:
            return InputTooLongError(f"{name}[{i}] is longer than the model's max length of {self.max_length} "
                                     f"tokens; send truncate=true or split the text")
        return InputTooLongError(f"{name}[{i}] needs {what}: over max_windows={cap} windows of "
                                 f"{self.max_length} tokens; split the text or raise max_windows")

    def check_length(self, texts: list[str]) -> None:
        """Raise InputTooLongError for the first text longer than max_length tokens."""
        self.encode(texts, truncate=False, max_windows=1, name="inputs")
