"""SparseVector and its formats: Qdrant dict, TEI list, dense, CSR; pruning, merging, scoring."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.core.sparse import SparseVector, from_dense, from_topk, max_merge, score, to_csr


def vec(pairs: dict[int, float]) -> SparseVector:
    return SparseVector.from_dict({"indices": list(pairs), "values": list(pairs.values())})


def test_from_dict_sorts_by_weight_and_round_trips():
    v = vec({7: 0.5, 3: 2.0, 9: 1.0})
    assert v.indices.tolist() == [3, 9, 7] and v.values.tolist() == [2.0, 1.0, 0.5]
    assert v.indices.dtype == np.int32 and v.values.dtype == np.float32 and len(v) == 3
    assert SparseVector.from_dict(v.to_qdrant()).to_qdrant() == v.to_qdrant() == v.as_dict()


def test_tei_and_dense_formats():
    v = vec({3: 2.0, 9: 1.0})
    assert v.to_tei() == [{"index": 3, "value": 2.0}, {"index": 9, "value": 1.0}]
    assert all(type(x["index"]) is int and type(x["value"]) is float for x in v.to_tei())
    dense = v.to_dense(12)
    assert dense.dtype == np.float32 and dense[3] == 2.0 and dense[9] == 1.0 and dense.sum() == 3.0


def test_pruned_by_threshold_then_top_k():
    v = vec({1: 3.0, 2: 2.0, 3: 1.0, 4: 0.5})
    assert v.pruned(threshold=0.9).indices.tolist() == [1, 2, 3]
    assert v.pruned(top_k=2).indices.tolist() == [1, 2]
    assert v.pruned(top_k=5, threshold=1.5).indices.tolist() == [1, 2]
    assert len(v.pruned(threshold=3.0)) == 0


def test_graph_rows_to_vectors():
    top = from_topk(np.array([2.0, 1.0, 0.0, 0.0], np.float32), np.array([5, 8, 0, 1], np.int64))
    assert top.indices.tolist() == [5, 8] and top.indices.dtype == np.int32  # zero tail is padding
    dense = from_dense(np.array([0.0, 1.0, 0.0, 3.0, 1.0], np.float32))
    assert dense.indices.tolist() == [3, 1, 4] and dense.values.tolist() == [3.0, 1.0, 1.0]


def test_max_merge():
    a = SparseVector(np.array([5, 1], np.int32), np.array([2.0, 1.0], np.float32))
    b = SparseVector(np.array([1, 7], np.int32), np.array([3.0, 0.5], np.float32))
    merged = max_merge([a, b])
    assert merged.indices.tolist() == [1, 5, 7] and merged.values.tolist() == [3.0, 2.0, 0.5]
    assert max_merge([a]) is a


def test_dot_score_and_csr():
    q = vec({1: 2.0, 4: 1.0})
    docs = [vec({1: 1.5, 9: 3.0}), vec({4: 2.0, 1: 1.0}), vec({8: 1.0})]
    assert score(q, docs).tolist() == pytest.approx([3.0, 4.0, 0.0])
    assert q.dot(docs[1]) == pytest.approx(4.0)
    csr = to_csr(docs, 10)
    assert csr.shape == (3, 10)
    assert np.allclose(csr.toarray(), np.stack([d.to_dense(10) for d in docs]))
    assert to_csr([], 10).shape == (0, 10)
