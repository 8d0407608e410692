"""Static query models: a weight per vocabulary term, applied to the tokens a query contains (no graph).

This is sentence-transformers' SparseStaticEmbedding (the query side of inference-free sparse
models): tokenize without special tokens, mark each distinct token present, multiply by its weight.
Encoding a query costs a tokenizer call and a gather: microseconds, no ONNX Runtime session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from runtime.core.checks import CHARS_PER_TOKEN, DEFAULT_MAX_WINDOWS, check_positive_int, check_threshold, check_top_k
from runtime.core.sparse import SparseVector, score
from runtime.core.tokenize import Tokenized, check_texts, load_tokenizer, per_text
from runtime.errors import InputTooLongError, ModelFolderError
from runtime.manifest import Manifest, check_validation, load_manifest


class StaticTokenizer:
    """Token ids without special tokens, cut at max_length unless `truncate=False`.

    A bag of tokens needs no windows: without truncation the whole text counts, up to what
    `max_windows` windows of max_length tokens would cover (the same bound as a graph model's),
    refused beyond it by characters first (nothing tokenized) and then by tokens.
    """

    def __init__(self, path: str | Path, *, max_length: int, max_windows: int = DEFAULT_MAX_WINDOWS):
        self.max_length = max_length
        self.max_windows = check_positive_int(max_windows, "max_windows")
        self._truncating, self._whole = load_tokenizer(path), load_tokenizer(path)
        for tok in (self._truncating, self._whole):
            tok.no_truncation()
        self._truncating.enable_truncation(max_length)

    def id_to_token(self, index: int) -> str:
        return self._truncating.id_to_token(int(index)) or f"[unused{index}]"

    def encode(self, texts: list[str], *, truncate: bool = True, max_windows: int | None = None,
               name: str = "texts", first_index: int = 0) -> Tokenized:
        """One sequence per text; InputTooLongError names `name[i]` past the cap without truncation."""
        if truncate:
            limit = self.max_length * CHARS_PER_TOKEN
            texts = [t if len(t) <= limit else t[:limit] for t in texts]
            encodings = self._truncating.encode_batch(texts, add_special_tokens=False) if texts else []
        else:
            cap = self.max_windows if max_windows is None else check_positive_int(max_windows, "max_windows")
            tokens = cap * self.max_length
            for i, text in enumerate(texts):
                if len(text) > tokens * CHARS_PER_TOKEN:
                    raise self._too_long(name, first_index + i, tokens)
            encodings = self._whole.encode_batch(texts, add_special_tokens=False) if texts else []
            for i, enc in enumerate(encodings):
                if len(enc.ids) > tokens:
                    raise self._too_long(name, first_index + i, tokens)
        sequences = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return Tokenized(sequences, np.arange(len(sequences), dtype=np.int64))

    def _too_long(self, name: str, i: int, tokens: int) -> InputTooLongError:
        if tokens == self.max_length:
            return InputTooLongError(f"{name}[{i}] is longer than the query model's max length of {self.max_length} "
                                     f"tokens; send truncate=true or split the text")
        return InputTooLongError(f"{name}[{i}] is longer than {tokens} tokens (max_windows × max_length); "
                                 f"split the text or raise max_windows")

    def check_length(self, texts: list[str]) -> None:
        """Raise InputTooLongError for the first text longer than max_length tokens."""
        self.encode(texts, truncate=False, max_windows=1, name="inputs")


class StaticQueryEncoder:
    """Encode queries with a static query model folder (`kind: "static-query"` in its manifest).

    Has the same methods as SpladeEncoder (encode, infer, collect, decode, score), so the CLI, the
    pair and the server's dynamic batcher use either without knowing which.

    Example:
        >>> enc = StaticQueryEncoder("models/my-model/query")
        >>> [vec] = enc.encode(["what is splade"])   # (nnz,) weights of the query's distinct tokens
    """

    provider = "none (static weights)"

    def __init__(self, path: str | Path, *_args, max_windows: int = DEFAULT_MAX_WINDOWS,
                 allow_failed_validation: bool = False, **_kwargs):
        """Other keyword arguments of SpladeEncoder (provider, threads, ...) are accepted and unused: no graph runs."""
        self.path = Path(path)
        self.manifest: Manifest = load_manifest(self.path)
        if self.manifest.kind != "static-query":
            raise ModelFolderError(f"{self.path}: manifest kind is {self.manifest.kind!r}, not 'static-query'")
        check_validation(self.manifest, self.path, allow_failed=allow_failed_validation)
        weights = np.load(self.path / self.manifest.model_file, allow_pickle=False)
        if weights.ndim != 1 or weights.shape[0] != self.manifest.vocab_size:
            raise ModelFolderError(f"{self.path / self.manifest.model_file}: expected ({self.manifest.vocab_size},) "
                                   f"weights, got {weights.shape}")
        self.weights = weights.astype(np.float32)
        self.tokenizer = StaticTokenizer(self.path / self.manifest.tokenizer_file, max_length=self.manifest.max_length,
                                         max_windows=max_windows)

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def encode(self, texts: str | Sequence[str], *, batch_size: int = 32, top_k: int | None = None,
               threshold: float = 0.0, truncate: bool = True, sort_by_length: bool = True,
               max_windows: int | None = None) -> list[SparseVector]:
        """Encode texts; one SparseVector per text, in the caller's order (batching options are ignored)."""
        texts = check_texts(texts)
        top_k, threshold = check_top_k(top_k), check_threshold(threshold)
        tokenized = self.tokenizer.encode(texts, truncate=truncate, max_windows=max_windows)
        return self.collect(tokenized, self.infer(tokenized.sequences), n_texts=len(texts), top_k=top_k,
                            threshold=threshold)

    def infer(self, sequences: Sequence[np.ndarray], **_kwargs) -> list[SparseVector]:
        """Each sequence's distinct token ids with their weights, weight descending."""
        out = []
        for ids in sequences:
            present = np.unique(ids[(ids >= 0) & (ids < self.weights.shape[0])])
            values = self.weights[present]
            keep = values > 0
            present, values = present[keep], values[keep]
            order = np.argsort(-values, kind="stable")
            out.append(SparseVector(present[order].astype(np.int32), values[order]))
        return out

    def infer_batches(self, sequences: Sequence[np.ndarray], **_kwargs) -> Iterator[tuple[list[int], list[SparseVector]]]:
        """`infer` as one batch (lookups, no graph): what the DynamicBatcher calls."""
        yield list(range(len(sequences))), self.infer(sequences)

    collect = staticmethod(per_text)

    def decode(self, vector: SparseVector) -> dict[str, float]:
        return {self.tokenizer.id_to_token(i): float(v) for i, v in zip(vector.indices, vector.values)}

    score = staticmethod(score)
