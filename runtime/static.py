"""Static query models: a weight per vocabulary term, applied to the tokens a query contains (no graph).

This is sentence-transformers' SparseStaticEmbedding (the query side of inference-free sparse
models): tokenize without special tokens, mark each distinct token present, multiply by its weight.
Encoding a query costs a tokenizer call and a gather: microseconds, no ONNX Runtime session.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.errors import InputTooLongError, ModelFolderError
from runtime.manifest import Manifest, load_manifest
from runtime.sparse import SparseVector, max_merge, score
from runtime.tokenize import Tokenized, check_texts


class StaticTokenizer:
    """Token ids without special tokens, cut at max_length unless `truncate=False` (then every token counts)."""

    def __init__(self, path: str | Path, *, max_length: int):
        self.max_length = max_length
        self._truncating = Tokenizer.from_file(str(path))
        self._whole = Tokenizer.from_file(str(path))
        for tok in (self._truncating, self._whole):
            tok.no_padding()
            tok.no_truncation()
        self._truncating.enable_truncation(max_length)

    def id_to_token(self, index: int) -> str:
        return self._truncating.id_to_token(int(index)) or f"[unused{index}]"

    def encode(self, texts: list[str], *, truncate: bool = True) -> Tokenized:
        """One sequence per text (a bag of tokens needs no windows: without truncation the whole text counts)."""
        tok = self._truncating if truncate else self._whole
        encodings = tok.encode_batch(texts, add_special_tokens=False) if texts else []
        sequences = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return Tokenized(sequences, np.arange(len(sequences), dtype=np.int64))

    def check_length(self, texts: list[str]) -> None:
        """Raise InputTooLongError for the first text longer than max_length tokens."""
        for i, enc in enumerate(self._whole.encode_batch(texts, add_special_tokens=False) if texts else []):
            if len(enc.ids) > self.max_length:
                raise InputTooLongError(
                    f"inputs[{i}] is longer than the query model's max length of {self.max_length} tokens; "
                    f"send truncate=true or split the text"
                )


class StaticQueryEncoder:
    """Encode queries with a static query model folder (`kind: "static-query"` in its manifest).

    Has the same methods as SpladeEncoder (encode, infer, collect, decode, score), so the CLI, the
    pair and the server's dynamic batcher use either without knowing which.

    Example:
        >>> enc = StaticQueryEncoder("models/my-model/query")
        >>> [vec] = enc.encode(["what is splade"])   # (nnz,) weights of the query's distinct tokens
    """

    provider = "none (static weights)"

    def __init__(self, path: str | Path, *_args, **_kwargs):
        self.path = Path(path)
        self.manifest: Manifest = load_manifest(self.path)
        if self.manifest.kind != "static-query":
            raise ModelFolderError(f"{self.path}: manifest kind is {self.manifest.kind!r}, not 'static-query'")
        weights = np.load(self.path / self.manifest.model_file, allow_pickle=False)
        if weights.ndim != 1 or weights.shape[0] != self.manifest.vocab_size:
            raise ModelFolderError(f"{self.path / self.manifest.model_file}: expected ({self.manifest.vocab_size},) "
                                   f"weights, got {weights.shape}")
        self.weights = weights.astype(np.float32)
        self.tokenizer = StaticTokenizer(self.path / self.manifest.tokenizer_file, max_length=self.manifest.max_length)

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def encode(self, texts: str | Sequence[str], *, batch_size: int = 32, top_k: int | None = None,
               threshold: float = 0.0, truncate: bool = True, sort_by_length: bool = True) -> list[SparseVector]:
        """Encode texts; one SparseVector per text, in the caller's order (batching options are ignored)."""
        texts = check_texts(texts)
        tokenized = self.tokenizer.encode(texts, truncate=truncate)
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

    @staticmethod
    def collect(tokenized: Tokenized, rows: Sequence[SparseVector], *, n_texts: int, top_k: int | None,
                threshold: float) -> list[SparseVector]:
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1 (or None for every non-zero term)")
        parts: list[list[SparseVector]] = [[] for _ in range(n_texts)]
        for owner, vec in zip(tokenized.owners, rows):
            parts[owner].append(vec)
        return [max_merge(p).pruned(top_k=top_k, threshold=threshold) for p in parts]

    def decode(self, vector: SparseVector) -> dict[str, float]:
        return {self.tokenizer.id_to_token(i): float(v) for i, v in zip(vector.indices, vector.values)}

    score = staticmethod(score)
