"""SpladeEncoder on every kind of folder the exporter writes: dense output (top_k=0), sum pooling, int8, fp16."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from export.validate import top_terms
from runtime import SpladeEncoder
from tests.conftest import TEXTS, assert_matches

LONG = "Sparse lexical retrieval with learned term weights scales to billions of documents. " * 80


def test_dense_output_export(exports, reference):
    """top_k=0: the graph returns weights [batch, vocab]; the runtime keeps the non-zeros, sorted."""
    enc = SpladeEncoder(exports(top_k=0, validate=False), provider="cpu")
    assert enc.manifest.outputs == ("weights",) and enc.backend.output_names == ["weights"]
    for text, vec in zip(TEXTS, enc.encode(TEXTS, batch_size=3), strict=True):
        assert_matches(vec, reference.encode(text))
    windowed, = enc.encode([LONG], truncate=False)
    assert_matches(windowed, reference.windows(LONG, 512, enc.tokenizer.stride))
    top, = enc.encode(["capital of france"], top_k=4)
    assert len(top) == 4 and np.array_equal(top.indices, enc.encode(["capital of france"])[0].indices[:4])


def test_sum_pooling_export(exports, reference):
    enc = SpladeEncoder(exports(pooling="sum", top_k=0), provider="cpu")
    assert enc.manifest.pooling == "sum"
    texts = TEXTS[:5]
    for text, vec in zip(texts, enc.encode(texts, batch_size=2), strict=True):
        expected = reference.encode(text, pooling="sum")
        tol = 1e-3 * max(1.0, float(expected.max()))
        dense = vec.to_dense(expected.shape[0])
        assert np.abs(dense - expected).max() < tol
        assert np.all(dense[expected > tol] > 0) and np.all(np.diff(vec.values) <= 0)
        assert not np.allclose(dense, reference.encode(text), atol=tol), "sum must differ from max pooling"


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_folders(exports, reference, precision):
    """The encoder gives exactly the graph's own answer, which keeps PyTorch's top terms."""
    folder = exports(precision=precision)
    enc = SpladeEncoder(folder, provider="cpu")
    assert enc.manifest.precision == precision
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    vectors = enc.encode(TEXTS, batch_size=1)  # one text per run: int8 scales then depend on that text alone
    for text, vec in zip(TEXTS, vectors, strict=True):
        ids = np.array([reference.ids(text)], dtype=np.int64)
        values, indices = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        nnz = int((values[0] > 0).sum())
        assert vec.indices.tolist() == indices[0, :nnz].tolist()
        assert np.allclose(vec.values, values[0, :nnz], atol=1e-6)
        top_ref = top_terms(reference.encode(text), 32)
        assert len(top_ref & set(vec.indices[:32].tolist())) / len(top_ref) >= 0.8
    batched = enc.encode(TEXTS, batch_size=8)
    for one, many in zip(vectors, batched, strict=True):  # batch neighbours move int8 weights only slightly
        k = min(16, len(one), len(many))
        assert len(set(one.indices[:k].tolist()) & set(many.indices[:k].tolist())) >= 0.75 * k
