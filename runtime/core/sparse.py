"""SparseVector and the formats search engines take: token dicts, (indices, values), CSR."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class SparseVector:
    """One text's SPLADE vector: non-zero terms only, sorted by weight descending.

    Attributes:
        indices: np.int32 vocabulary ids, shape (nnz,).
        values: np.float32 weights, shape (nnz,), all > 0.
    """

    indices: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to_qdrant(self) -> dict[str, list]:
        """Qdrant / Milvus / Pinecone shape: `{"indices": [...], "values": [...]}`."""
        return {"indices": self.indices.tolist(), "values": self.values.tolist()}

    as_dict = to_qdrant

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseVector:
        indices = np.asarray(data["indices"], dtype=np.int32)
        values = np.asarray(data["values"], dtype=np.float32)
        order = np.argsort(-values, kind="stable")
        return cls(indices[order], values[order])

    def to_tei(self) -> list[dict[str, float]]:
        """text-embeddings-inference `/embed_sparse` shape: `[{"index": i, "value": v}, ...]`."""
        return [{"index": i, "value": v} for i, v in zip(self.indices.tolist(), self.values.tolist())]

    def to_dense(self, vocab_size: int) -> np.ndarray:
        dense = np.zeros(vocab_size, dtype=np.float32)
        dense[self.indices] = self.values
        return dense

    def dot(self, other: SparseVector) -> float:
        _, a, b = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[a].astype(np.float64), other.values[b]))

    def pruned(self, *, top_k: int | None = None, threshold: float = 0.0, max_ratio: float | None = None,
               alpha_mass: float | None = None) -> SparseVector:
        """The terms every given rule keeps; each keeps a prefix of the (descending) weights, judged on this vector.

        top_k: the first top_k. threshold: weights > threshold. max_ratio: weights >= max_ratio × the
        largest (OpenSearch's `max_ratio`). alpha_mass: the heaviest terms while their running sum is
        <= alpha_mass × the total (OpenSearch's `alpha_mass`; a small alpha can keep none).
        """
        values = self.values  # float32, compared in float32 as OpenSearch's PruneUtils compares Java floats
        keep = int(np.count_nonzero(values > np.float32(threshold)))
        if top_k is not None:
            keep = min(keep, top_k)
        if max_ratio is not None and len(values):
            keep = min(keep, int(np.count_nonzero(values >= np.float32(max_ratio) * values[0])))
        if alpha_mass is not None and len(values):
            running = np.cumsum(values, dtype=np.float32)  # a float running sum, as PruneUtils keeps it
            total = np.float32(values.sum(dtype=np.float64))  # ... and its total, summed as doubles
            keep = min(keep, int(np.count_nonzero(running <= np.float32(alpha_mass) * total)))
        return SparseVector(self.indices[:keep], self.values[:keep])


def from_topk(values: np.ndarray, indices: np.ndarray) -> SparseVector:
    """Graph output row (descending values, zero tail) -> SparseVector; zeros are padding."""
    nnz = int(np.count_nonzero(values > 0))
    return SparseVector(indices[:nnz].astype(np.int32), values[:nnz].astype(np.float32))


def from_dense(weights: np.ndarray) -> SparseVector:
    nz = np.flatnonzero(weights > 0)
    order = nz[np.argsort(-weights[nz], kind="stable")]
    return SparseVector(order.astype(np.int32), weights[order].astype(np.float32))


def max_merge(parts: Sequence[SparseVector]) -> SparseVector:
    """Element-wise max of several vectors (windows of one long document)."""
    if len(parts) == 1:
        return parts[0]
    indices = np.concatenate([p.indices for p in parts])
    values = np.concatenate([p.values for p in parts])
    order = np.lexsort((-values, indices))  # by index, the largest value first within each index
    indices, values = indices[order], values[order]
    first = np.ones(len(indices), dtype=bool)
    first[1:] = indices[1:] != indices[:-1]
    indices, values = indices[first], values[first]
    desc = np.argsort(-values, kind="stable")
    return SparseVector(indices[desc], values[desc])


def to_csr(vectors: Sequence[SparseVector], vocab_size: int):
    """A batch as a SciPy CSR matrix (n, vocab_size), for offline scoring and indexing."""
    from scipy.sparse import csr_matrix  # optional dependency: only this function needs it

    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(v) for v in vectors])
    indices = np.concatenate([v.indices for v in vectors]) if vectors else np.zeros(0, np.int32)
    data = np.concatenate([v.values for v in vectors]) if vectors else np.zeros(0, np.float32)
    return csr_matrix((data, indices, indptr), shape=(len(vectors), vocab_size))


def score(query: SparseVector, docs: Sequence[SparseVector]) -> np.ndarray:
    """Dot products of one query with each document, float64 (len(docs),)."""
    return np.array([query.dot(d) for d in docs], dtype=np.float64)
