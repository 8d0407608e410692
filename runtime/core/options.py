"""Encode options: one frozen object per call and one per encoder, validated once where they enter.

Downstream (tokenizer, batcher, collect) trusts them: nothing is checked twice. Every default of the
encode path is written here and only here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

from runtime.core.checks import check_bool, check_positive_int, check_threshold, check_top_k, check_unit
from runtime.core.sparse import SparseVector
from runtime.errors import InputTypeError, InvalidInputError

# Sequences per run of one encode() call.
DEFAULT_BATCH_SIZE = 32
# Padded tokens (batch × longest sequence) per run: bounds activation memory.
DEFAULT_MAX_BATCH_TOKENS = 16384
# Windows one text may take with truncation "windows"; a longer text is refused (InputTooLongError, HTTP 413).
DEFAULT_MAX_WINDOWS = 32
# A text is cut at max_length × CHARS_PER_TOKEN characters before tokenizing when truncation (or the
# window cap) could not use more. Real text averages 3-6 characters per WordPiece/BPE token, so the
# cut lies far beyond what the model sees; a text whose tokens average more than this (long runs with
# no spaces or punctuation, which WordPiece maps to one [UNK] per 100 characters) keeps fewer tokens.
CHARS_PER_TOKEN = 32

# How a text over max_length tokens is handled: cut at max_length; encoded as overlapping windows
# max-merged into one vector (up to max_windows); or refused with InputTooLongError.
Truncation = Literal["cut", "windows", "refuse"]
TRUNCATIONS: tuple[str, ...] = get_args(Truncation)
# Which end a cut keeps: "right" cuts the end (keeps the start), "left" cuts the start (TEI's meaning).
Direction = Literal["right", "left"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)


def truncation_of(truncate: object) -> Truncation:
    """`truncate` as a mode: True is "cut", False is "windows" (the library's long-standing meaning), or a mode."""
    if truncate is True:
        return "cut"
    if truncate is False:
        return "windows"
    if truncate not in TRUNCATIONS:
        raise InvalidInputError(f"truncate must be a bool or one of {', '.join(TRUNCATIONS)}; got {truncate!r}")
    return truncate  # type: ignore[return-value]


@dataclass(frozen=True)
class EncodeOptions:
    """What one encode call asks for; built (and checked) once by `EncodeOptions.of`, then trusted.

    Pruning (each keeps a prefix of the weight-sorted vector the graph returns; the shortest wins,
    so the order they are given in does not matter; OpenSearch's prune types are the last two):

    Attributes:
        top_k: keep at most this many terms per text (None: every non-zero term).
        threshold: drop weights <= this.
        max_ratio: keep weights >= max_ratio × the text's largest weight, in [0, 1].
        alpha_mass: keep the heaviest terms while their running sum is <= alpha_mass × the total, in [0, 1].
        batch_size: sequences per run.
        truncation: "cut", "windows" or "refuse" (see `Truncation`).
        truncation_direction: which end "cut" removes: "right" (the default) or "left" (keeps the end).
        max_windows: windows per text with "windows" (None: the encoder's own cap).
        prompt_name: a prompt of the model folder (sentence-transformers `prompts`), put before each
            text; None: the folder's default prompt, if it names one.
        sort_by_length: run length-sorted batches (less padding); the caller's order is kept either way.
    """

    top_k: int | None = None
    threshold: float = 0.0
    max_ratio: float | None = None
    alpha_mass: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    truncation: Truncation = "cut"
    truncation_direction: Direction = "right"
    max_windows: int | None = None
    prompt_name: str | None = None
    sort_by_length: bool = True

    def __post_init__(self) -> None:
        check_top_k(self.top_k)
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        for name in ("max_ratio", "alpha_mass"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_unit(value, name))
        if self.truncation_direction not in DIRECTIONS:
            raise InvalidInputError(f"truncation_direction must be one of {', '.join(DIRECTIONS)}; "
                                    f"got {self.truncation_direction!r}")
        if self.prompt_name is not None and not isinstance(self.prompt_name, str):
            raise InvalidInputError(f"prompt_name must be a string, got {self.prompt_name!r}")
        check_positive_int(self.batch_size, "batch_size")
        object.__setattr__(self, "truncation", truncation_of(self.truncation))  # a bool becomes its mode
        if self.max_windows is not None:
            check_positive_int(self.max_windows, "max_windows")
        check_bool(self.sort_by_length, "sort_by_length")

    @classmethod
    def of(cls, options: EncodeOptions | None = None, *, truncate: bool | Truncation | None = None,
           **overrides) -> EncodeOptions:
        """`options` (or the defaults) with keyword overrides; `truncate` is the public name of `truncation`.

        Raises:
            InvalidInputError: a value out of range (a ValueError naming the option).
            TypeError: an unknown keyword.
        """
        unknown = set(overrides) - {f.name for f in fields(cls)} - {"truncation"}
        if unknown:
            raise InputTypeError(f"unknown encode option(s): {', '.join(sorted(unknown))}")
        if truncate is not None:
            overrides["truncation"] = truncation_of(truncate)
        base = options or _DEFAULT
        return replace(base, **overrides) if overrides else base

    def prune(self, vector: SparseVector) -> SparseVector:
        """`vector` with these options' pruning applied."""
        return vector.pruned(top_k=self.top_k, threshold=self.threshold, max_ratio=self.max_ratio,
                             alpha_mass=self.alpha_mass)


_DEFAULT = EncodeOptions()


@dataclass(frozen=True)
class EncoderOptions:
    """What an encoder holds for its whole life, beside its session (`runtime.backends.options.SessionOptions`).

    Attributes:
        max_batch_tokens: cap on batch × longest sequence per run, bounding activation memory.
        window_stride: overlap in tokens between windows (default max_length / 4).
        max_windows: windows per text with truncation "windows" unless a call says otherwise.
        allow_failed_validation: load a folder whose export failed validation (refused by default).
    """

    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    window_stride: int | None = None
    max_windows: int = DEFAULT_MAX_WINDOWS
    allow_failed_validation: bool = False

    def __post_init__(self) -> None:
        check_positive_int(self.max_batch_tokens, "max_batch_tokens")
        check_positive_int(self.max_windows, "max_windows")
        check_bool(self.allow_failed_validation, "allow_failed_validation")
        if self.window_stride is not None and (isinstance(self.window_stride, bool)
                                               or not isinstance(self.window_stride, int)):
            raise InvalidInputError(f"window_stride must be an int, got {self.window_stride!r}")
