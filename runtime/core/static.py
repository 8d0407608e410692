"""Static query models: a weight per vocabulary term, applied to the tokens a query contains (no graph).

This is sentence-transformers' SparseStaticEmbedding (the query side of inference-free sparse
models): tokenize without special tokens, mark each distinct token present, multiply by its weight.
Encoding a query costs a tokenizer call and a gather: microseconds, no ONNX Runtime session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.core.checks import check_positive_int
from runtime.core.options import CHARS_PER_TOKEN, DEFAULT_MAX_WINDOWS, Direction, Truncation, truncation_of
from runtime.core.pipeline import SparseEncoder
from runtime.core.sparse import SparseVector
from runtime.core.tokenize import LengthChecks, Tokenized, cut, load_tokenizer, truncating
from runtime.errors import InputTooLongError, ModelFolderError


class StaticTokenizer(LengthChecks):
    """Token ids without special tokens, one sequence per text.

    A bag of tokens needs no windows: with "windows" the whole text counts, up to what `max_windows`
    windows of max_length tokens would cover (the same bound as a graph model's); "refuse" allows
    max_length tokens; beyond the bound a text is refused by characters first (nothing tokenized),
    then by tokens.
    """

    model_name = "query model"

    def __init__(self, path: str | Path, *, max_length: int, max_windows: int = DEFAULT_MAX_WINDOWS):
        self.max_length = max_length
        self.max_windows = check_positive_int(max_windows, "max_windows")
        self._truncating = truncating(path, max_length)
        self._whole = load_tokenizer(path)
        self._whole.no_truncation()

    def id_to_token(self, index: int) -> str:
        return self._whole.id_to_token(int(index)) or f"[unused{index}]"

    def encode(self, texts: list[str], *, truncate: bool | Truncation = True, max_windows: int | None = None,
               direction: Direction = "right", name: str = "texts", first_index: int = 0) -> Tokenized:
        """One sequence per text; InputTooLongError names `name[i]` past the mode's bound."""
        mode = truncation_of(truncate)
        if mode == "cut":
            texts = cut(texts, self.max_length * CHARS_PER_TOKEN, direction)
            encodings = self._truncating[direction].encode_batch(texts, add_special_tokens=False) if texts else []
        else:
            cap = 1 if mode == "refuse" else self.max_windows if max_windows is None else max_windows
            tokens = cap * self.max_length
            for i, text in enumerate(texts):
                if len(text) > tokens * CHARS_PER_TOKEN:
                    raise self._too_long(mode, name, first_index + i, tokens)
            encodings = self._whole.encode_batch(texts, add_special_tokens=False) if texts else []
            for i, enc in enumerate(encodings):
                if len(enc.ids) > tokens:
                    raise self._too_long(mode, name, first_index + i, tokens)
        sequences = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return Tokenized(sequences, np.arange(len(sequences), dtype=np.int64))

    def _too_long(self, mode: Truncation, name: str, i: int, tokens: int) -> InputTooLongError:
        if mode == "refuse":
            return self.refused(name, i)
        return InputTooLongError(f"{name}[{i}] is longer than {tokens} tokens (max_windows × max_length); "
                                 f"split the text or raise max_windows")


class StaticQueryEncoder(SparseEncoder):
    """Encode queries with a static query model folder (`kind: "static-query"` in its manifest).

    The same encoder as SpladeEncoder (same pipeline, options and checks); its `infer_batches` is
    a lookup instead of a graph, so the CLI, the pair and the server's batcher take either. Session
    options (provider, threads, ...) are checked and have nothing to run.

    Example:
        >>> enc = StaticQueryEncoder("models/my-model/query")
        >>> [vec] = enc.encode(["what is splade"])   # (nnz,) weights of the query's distinct tokens
    """

    kind = "static-query"
    kind_name = "static query model"

    def _load(self) -> None:
        weights = np.load(self.path / self.manifest.model_file, allow_pickle=False)
        if weights.ndim != 1 or weights.shape[0] != self.manifest.vocab_size:
            raise ModelFolderError(f"{self.path / self.manifest.model_file}: expected ({self.manifest.vocab_size},) "
                                   f"weights, got {weights.shape}")
        self.weights = weights.astype(np.float32)
        self.tokenizer = StaticTokenizer(self.path / self.manifest.tokenizer_file, max_length=self.manifest.max_length,
                                         max_windows=self.options.max_windows)

    @property
    def provider(self) -> str:
        return "none (static weights)"

    def reopen(self, **session: Any) -> StaticQueryEncoder:
        """This encoder: a lookup has no session or thread pool, so concurrent runs share it as it is."""
        return self

    def infer_batches(self, sequences: Sequence[np.ndarray], *, batch_size: int = 1, sort: bool = True,
                      shortest_first: bool = False) -> Iterator[tuple[list[int], list[SparseVector]]]:
        """Each sequence's distinct token ids with their weights, weight descending: one batch (lookups)."""
        out = []
        for ids in sequences:
            present = np.unique(ids[(ids >= 0) & (ids < self.weights.shape[0])])
            values = self.weights[present]
            keep = values > 0
            present, values = present[keep], values[keep]
            order = np.argsort(-values, kind="stable")
            out.append(SparseVector(present[order].astype(np.int32), values[order]))
        yield list(range(len(sequences))), out
