"""SpladeEncoder: text -> tokens -> batches -> session -> SparseVector, in the caller's order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime import batching
from runtime.backend import Backend, ProviderName, ProviderOptions
from runtime.manifest import Manifest, load_manifest
from runtime.sparse import SparseVector, from_dense, from_topk, max_merge, score
from runtime.tokenize import TextTokenizer, Tokenized, check_texts

DEFAULT_MAX_BATCH_TOKENS = 16384


class SpladeEncoder:
    """Encode texts into SPLADE sparse vectors with an exported model folder.

    Example:
        >>> enc = SpladeEncoder("models/splade-tiny-fp32")
        >>> [vec] = enc.encode(["what is splade"])
        >>> sorted(enc.decode(vec).items(), key=lambda kv: -kv[1])[:3]

    Args:
        path: folder written by `python -m export` (its sha256 is checked against the manifest).
        provider: "auto" (TensorRT, then CUDA, then CPU: the first that really loads), or one of
            "tensorrt", "cuda", "cpu" (raises ProviderError if it cannot run).
        threads: intra-op threads (default: the cores this process may use).
        max_batch_tokens: cap on batch × longest sequence per run, bounding activation memory.
        window_stride: overlap in tokens between windows when `truncate=False` (default max_length/4).
        provider_options: ONNX Runtime options per provider, on top of ours, e.g.
            `{"cuda": {"device_id": 1, "gpu_mem_limit": 8 << 30}}`; a None value drops one of ours.
    """

    def __init__(self, path: str | Path, provider: ProviderName = "auto", *, threads: int | None = None,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS, max_batch_size: int = 64,
                 window_stride: int | None = None, cache_dir: str | Path | None = None,
                 provider_options: ProviderOptions | None = None):
        self.path = Path(path)
        self.manifest: Manifest = load_manifest(self.path)
        self.max_batch_tokens = max_batch_tokens
        self.tokenizer = TextTokenizer(self.path / self.manifest.tokenizer_file,
                                       max_length=self.manifest.max_length, stride=window_stride)
        self.backend = Backend(self.path / self.manifest.model_file, self.manifest, provider=provider,
                               threads=threads, max_batch_size=max_batch_size,
                               cache=Path(cache_dir) if cache_dir else None, provider_options=provider_options)

    @property
    def provider(self) -> str:
        """The provider actually running: "tensorrt", "cuda" or "cpu"."""
        return self.backend.provider

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def encode(self, texts: str | Sequence[str], *, batch_size: int = 32, top_k: int | None = None,
               threshold: float = 0.0, truncate: bool = True, sort_by_length: bool = True) -> list[SparseVector]:
        """Encode texts; returns one SparseVector per text, in the caller's order.

        An empty or whitespace-only text gives the vector of `[CLS] [SEP]` alone, as the
        reference implementations do. `truncate=False` encodes over-long texts as overlapping
        windows and max-merges them.

        Raises:
            TypeError: an item is not a str (the message names its position).
        """
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        tokenized = self.tokenizer.encode(texts, truncate=truncate)
        rows = self.infer(tokenized.sequences, batch_size=batch_size, sort=sort_by_length)
        return self.collect(tokenized, rows, n_texts=len(texts), top_k=top_k, threshold=threshold)

    def infer(self, sequences: Sequence[np.ndarray], *, batch_size: int = 32, sort: bool = True) -> list[SparseVector]:
        """Run token sequences through the graph; one unpruned SparseVector per sequence."""
        out: list[SparseVector | None] = [None] * len(sequences)
        for rows in batching.plan(batching.lengths_of(sequences), max_batch_size=batch_size, max_batch_tokens=self.max_batch_tokens, sort=sort):
            batch = batching.pad(sequences, rows, self.manifest.pad_token_id)
            outputs = self.backend.run(batch)
            if len(outputs) == 1:
                vectors = [from_dense(w) for w in outputs[0]]
            else:
                vectors = [from_topk(v, i) for v, i in zip(*outputs)]
            if len(vectors) != len(rows):
                raise RuntimeError(f"graph returned {len(vectors)} rows for a batch of {len(rows)}")
            for r, vec in zip(batch.rows, vectors):
                out[r] = vec
        return out  # type: ignore[return-value]

    @staticmethod
    def collect(tokenized: Tokenized, rows: Sequence[SparseVector], *, n_texts: int, top_k: int | None,
                threshold: float) -> list[SparseVector]:
        """Per-sequence vectors -> per-text vectors: windows max-merged, then pruned."""
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1 (or None for every non-zero term)")
        parts: list[list[SparseVector]] = [[] for _ in range(n_texts)]
        for owner, vec in zip(tokenized.owners, rows):
            parts[owner].append(vec)
        return [max_merge(p).pruned(top_k=top_k, threshold=threshold) for p in parts]

    def decode(self, vector: SparseVector) -> dict[str, float]:
        """token -> weight, the Elasticsearch `rank_features` / OpenSearch `sparse_vector` shape."""
        return {self.tokenizer.id_to_token(i): float(v) for i, v in zip(vector.indices, vector.values)}

    @staticmethod
    def score(query: SparseVector, docs: Sequence[SparseVector]) -> np.ndarray:
        """Dot product of the query with each document."""
        return score(query, docs)


class SpladeEncoderPair:
    """Separate query and document models (efficient SPLADE ships one of each), each with its own max length.

    Example:
        >>> pair = SpladeEncoderPair("models/q", "models/d")
        >>> pair.score(pair.encode_queries(["q"])[0], pair.encode_documents(["d1", "d2"]))
    """

    def __init__(self, query_path: str | Path, document_path: str | Path, provider: ProviderName = "auto", **kwargs):
        self.query = SpladeEncoder(query_path, provider, **kwargs)
        self.document = SpladeEncoder(document_path, provider, **kwargs)
        if self.query.manifest.vocab_size != self.document.manifest.vocab_size:
            raise ValueError("query and document models have different vocabularies")

    def encode_queries(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        return self.query.encode(texts, **kwargs)

    def encode_documents(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        return self.document.encode(texts, **kwargs)

    score = staticmethod(score)
