"""Texts -> token id sequences with the Rust `tokenizers` library, under one truncation mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.core.batching import lengths_of
from runtime.core.checks import check_positive_int
from runtime.core.options import CHARS_PER_TOKEN, DEFAULT_MAX_WINDOWS, Direction, Truncation, truncation_of
from runtime.errors import InputTooLongError, InvalidInputError, ModelFolderError

__all__ = ["TextTokenizer", "Tokenized", "load_tokenizer"]


@dataclass(frozen=True)
class Tokenized:
    """Token sequences plus, for each sequence, the index of the text it came from.

    With "cut" or "refuse" every text gives one sequence; with "windows" a long text gives several,
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


def cut(texts: list[str], limit: int, direction: Direction = "right") -> list[str]:
    """Each text cut to `limit` characters at the end `direction` removes (beyond them, nothing reaches the model)."""
    if direction == "left":
        return [t if len(t) <= limit else t[-limit:] for t in texts]
    return [t if len(t) <= limit else t[:limit] for t in texts]


def truncating(path: str | Path, max_length: int) -> dict[str, Tokenizer]:
    """One tokenizer per truncation direction, each cutting at `max_length` tokens."""
    out = {}
    for direction in ("right", "left"):
        tok = load_tokenizer(path)
        tok.enable_truncation(max_length, direction=direction)
        out[direction] = tok
    return out


class LengthChecks:
    """What every tokenizer of the pipeline adds to its `encode`: the one "refuse" message, `check_length`."""

    max_length: int
    model_name = "model"  # how the refusal calls the model

    def refused(self, name: str, i: int) -> InputTooLongError:
        return InputTooLongError(f"{name}[{i}] is longer than the {self.model_name}'s max length of {self.max_length} "
                                 f"tokens; send truncate=true or split the text")

    def check_length(self, texts: list[str]) -> None:
        """Raise InputTooLongError for the first text longer than max_length tokens."""
        self.encode(texts, truncate="refuse", name="inputs")  # type: ignore[attr-defined]


class TextTokenizer(LengthChecks):
    """Owns two configured `tokenizers.Tokenizer`s (their settings are not per call, so not shared).

    Memory follows what the model can use, not what it is sent: when cutting, a text is cut at
    `char_limit` characters before tokenizing; otherwise a text longer than its cap (one window
    for "refuse", `max_windows` for "windows") is refused by characters first (nothing tokenized),
    then by its windows.
    """

    def __init__(self, path: str | Path, *, max_length: int, stride: int | None = None,
                 max_windows: int = DEFAULT_MAX_WINDOWS):
        if max_length < 4:
            raise InvalidInputError("max_length must be at least 4")
        self.max_length = max_length
        self.stride = max_length // 4 if stride is None else stride
        if not 0 <= self.stride < max_length - 2:
            raise InvalidInputError(f"window stride must be in [0, {max_length - 2}), got {self.stride}")
        self.max_windows = check_positive_int(max_windows, "max_windows")
        self._truncating = truncating(path, max_length)
        self._windowing = load_tokenizer(path)
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
        return self._windowing.id_to_token(int(index)) or f"[unused{index}]"

    def token_to_id(self, token: str) -> int | None:
        return self._windowing.token_to_id(token)

    def encode(self, texts: list[str], *, truncate: bool | Truncation = True, max_windows: int | None = None,
               direction: Direction = "right", name: str = "texts", first_index: int = 0) -> Tokenized:
        """Tokenize under one truncation mode (`truncate`: True/"cut", False/"windows", or "refuse").

        "cut" removes the end `direction` names; windows overlap by `stride` tokens; `max_windows`
        defaults to the tokenizer's own cap.

        Raises:
            InputTooLongError: "refuse" and a text over max_length tokens, or "windows" and a text
                needing more than `max_windows` windows; names `name[i]`.
        """
        mode = truncation_of(truncate)
        if mode == "cut":
            tokenizer = self._truncating[direction]
            encodings = tokenizer.encode_batch(cut(texts, self.char_limit, direction), add_special_tokens=True) if texts else []
            truncated = [np.asarray(enc.ids, dtype=np.int64) for enc in encodings]
            return Tokenized(truncated, np.arange(len(truncated), dtype=np.int64))
        cap = 1 if mode == "refuse" else self.max_windows if max_windows is None else max_windows
        limit = self.window_char_limit(cap)
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise self._too_long(mode, name, first_index + i, cap, f"{len(text)} characters, more than {limit} "
                                     f"(max_length × {CHARS_PER_TOKEN} per window)")
        encodings = self._windowing.encode_batch(texts, add_special_tokens=True) if texts else []
        sequences: list[np.ndarray] = []
        owners: list[int] = []
        for i, enc in enumerate(encodings):
            parts = [enc, *enc.overflowing]
            if len(parts) > cap:
                raise self._too_long(mode, name, first_index + i, cap, f"{len(parts)} windows")
            for part in parts:
                sequences.append(np.asarray(part.ids, dtype=np.int64))
                owners.append(i)
        return Tokenized(sequences, np.asarray(owners, dtype=np.int64))

    def _too_long(self, mode: Truncation, name: str, i: int, cap: int, what: str) -> InputTooLongError:
        if mode == "refuse":
            return self.refused(name, i)
        return InputTooLongError(f"{name}[{i}] needs {what}: over max_windows={cap} windows of "
                                 f"{self.max_length} tokens; split the text or raise max_windows")
