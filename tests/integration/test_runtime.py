"""Runtime: SpladeEncoder on the CPU provider against an independent PyTorch computation."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading

import numpy as np
import onnxruntime as ort
import pytest

from runtime import (
    DynamicBatcher,
    ModelFolderError,
    ProviderError,
    SparseVector,
    SpladeEncoder,
    SpladeEncoderPair,
    to_csr,
)
from runtime.backends.ort import AUTO_ORDER, ProviderPlan
from tests.conftest import TEXTS, assert_matches

LONG = "Sparse lexical retrieval with learned term weights scales to billions of documents. " * 80


@pytest.fixture(scope="module")
def encoder(fp32_dir):
    return SpladeEncoder(fp32_dir, provider="cpu")


@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_encode_matches_pytorch(encoder, reference, sort, batch_size):
    vectors = encoder.encode(TEXTS, batch_size=batch_size, sort_by_length=sort)
    assert len(vectors) == len(TEXTS)
    for text, vec in zip(TEXTS, vectors, strict=True):
        assert_matches(vec, reference.encode(text))


def test_empty_text_is_cls_sep(encoder, reference):
    empty, blank = encoder.encode(["", " \t\n"])
    expected = reference.from_ids([reference.tokenizer.cls_token_id, reference.tokenizer.sep_token_id])
    assert_matches(empty, expected)
    assert_matches(blank, expected)
    assert encoder.encode([]) == []


def test_over_long_text_in_both_modes(encoder, reference):
    truncated, windowed = encoder.encode([LONG]), encoder.encode([LONG], truncate=False)
    assert len(reference.ids(LONG, max_length=10_000)) > 1000
    assert_matches(truncated[0], reference.encode(LONG))
    assert_matches(windowed[0], reference.windows(LONG, 512, encoder.tokenizer.stride))
    assert not np.array_equal(truncated[0].to_dense(30522), windowed[0].to_dense(30522))


def test_token_budget_caps_batches(fp32_dir, reference):
    small = SpladeEncoder(fp32_dir, provider="cpu", max_batch_tokens=64)
    seen = []
    run = small.backend.run
    small.backend.run = lambda batch: seen.append(batch.input_ids.shape) or run(batch)  # record, then run for real
    for text, vec in zip(TEXTS, small.encode(TEXTS), strict=True):
        assert_matches(vec, reference.encode(text))
    assert all(rows == 1 or rows * longest <= 64 for rows, longest in seen) and len(seen) > 2


def test_pruning_and_formats(encoder):
    full, = encoder.encode(["learned sparse retrieval"])
    top, = encoder.encode(["learned sparse retrieval"], top_k=5, threshold=0.0)
    assert len(top) == 5 and np.array_equal(top.indices, full.indices[:5])
    cut, = encoder.encode(["learned sparse retrieval"], threshold=1.0)
    assert np.all(cut.values > 1.0) and len(cut) == int((full.values > 1.0).sum())
    tokens = encoder.decode(top)
    assert list(tokens.values()) == top.values.tolist() and all(isinstance(k, str) for k in tokens)
    assert SparseVector.from_dict(full.to_qdrant()).to_qdrant() == full.to_qdrant()
    assert full.to_tei()[0] == {"index": int(full.indices[0]), "value": float(full.values[0])}
    with pytest.raises(ValueError, match="top_k"):
        encoder.encode(["x"], top_k=0)


def test_score_and_csr(encoder):
    q, = encoder.encode(["capital of france"])
    docs = encoder.encode(["Paris is the capital of France.", "Bananas are yellow."])
    scores = encoder.score(q, docs)
    dense = np.array([d.to_dense(30522) for d in docs])
    assert np.allclose(scores, dense @ q.to_dense(30522), atol=1e-4) and scores[0] > scores[1]
    csr = to_csr(docs, 30522)
    assert csr.shape == (2, 30522) and np.allclose(csr.toarray(), dense)


def test_bad_inputs(encoder):
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        encoder.encode(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        encoder.encode([3])
    with pytest.raises(TypeError, match="sequence of str"):
        encoder.encode(None)
    assert len(encoder.encode("a single string")) == 1


def test_broken_model_folders(fp32_dir, tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        SpladeEncoder(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(fp32_dir, broken)
    (broken / "model.onnx").write_bytes((broken / "model.onnx").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelFolderError, match=r"model\.onnx: sha256"):
        SpladeEncoder(broken)
    (broken / "splade.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        SpladeEncoder(broken)
    manifest = json.loads((fp32_dir / "splade.json").read_text())
    (broken / "splade.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ModelFolderError, match="format_version"):
        SpladeEncoder(broken)
    (broken / "splade.json").unlink()
    with pytest.raises(ModelFolderError, match="splade.json: missing"):
        SpladeEncoder(broken)


def test_providers(fp32_dir, encoder):
    assert encoder.provider == "cpu"
    auto = SpladeEncoder(fp32_dir, provider="auto")
    # auto runs the first provider of TensorRT, CUDA, CPU whose session really loads, and says why it skipped the others
    assert auto.backend.session.get_providers()[0] == auto.backend.plan.ort_name
    assert list(auto.backend.skipped) == list(AUTO_ORDER[: AUTO_ORDER.index(auto.provider)])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert auto.provider == "cpu" and "cuda" in auto.backend.skipped
        with pytest.raises(ProviderError, match="cuda"):
            SpladeEncoder(fp32_dir, provider="cuda")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ProviderError, match="TensorrtExecutionProvider"):
            SpladeEncoder(fp32_dir, provider="tensorrt")
    with pytest.raises(ProviderError, match="one of"):
        SpladeEncoder(fp32_dir, provider="rocm")


def test_provider_options(fp32_dir, encoder):
    with pytest.raises(ProviderError, match="provider_options keys"):
        SpladeEncoder(fp32_dir, provider="cpu", provider_options={"gpu": {"device_id": 0}})
    other = SpladeEncoder(fp32_dir, provider="cpu", provider_options={"cuda": {"device_id": 3}})
    for a, b in zip(encoder.encode(TEXTS), other.encode(TEXTS), strict=True):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)


def test_io_binding_path_gives_same_vectors(fp32_dir, encoder):
    bound = SpladeEncoder(fp32_dir, provider="cpu")
    bound.backend.plan = ProviderPlan("cpu", io_binding=True)  # the CUDA/TensorRT run path, on CPU
    for a, b in zip(encoder.encode(TEXTS), bound.encode(TEXTS), strict=True):
        assert np.array_equal(a.indices, b.indices) and np.allclose(a.values, b.values, atol=1e-6)


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="no CUDA provider here")
def test_cuda_matches_cpu(fp32_dir, encoder):
    gpu = SpladeEncoder(fp32_dir, provider="cuda")
    for a, b in zip(encoder.encode(TEXTS), gpu.encode(TEXTS), strict=True):
        assert np.abs(a.to_dense(30522) - b.to_dense(30522)).max() < 1e-3


def test_dynamic_batcher_threads(encoder, reference):
    texts = [f"query number {i} about {w}" for i, w in enumerate(["cats", "paris", "rust", "onnx"] * 10)]
    expected = {t: reference.encode(t) for t in texts}
    sizes = []
    results: dict[int, list] = {}
    with DynamicBatcher(encoder, max_batch_size=16, max_wait_ms=20, on_batch=lambda s: sizes.append(s.requests)) as b:
        def call(i):
            results[i] = b.encode([texts[i], texts[(i + 1) % len(texts)]], truncate=True)
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == len(texts) and sum(sizes) == len(texts) and max(sizes) > 1
    for i, (first, second) in results.items():
        assert_matches(first, expected[texts[i]])
        assert_matches(second, expected[texts[(i + 1) % len(texts)]])


def test_dynamic_batcher_asyncio_and_long_texts(encoder, reference):
    texts = ["what is splade", LONG, "", "paris"]

    async def main(b):
        return await asyncio.gather(*(b.aencode([t], truncate=False) for t in texts))

    with DynamicBatcher(encoder, max_wait_ms=10) as b:
        out = asyncio.run(main(b))
        assert b.encode([]) == []
        with pytest.raises(TypeError, match=r"texts\[0\]"):
            b.submit([None])
    assert_matches(out[0][0], reference.encode(texts[0]))
    assert_matches(out[1][0], reference.windows(LONG, 512, encoder.tokenizer.stride))
    assert_matches(out[3][0], reference.encode("paris"))
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(["late"])


def test_encoder_pair_uses_each_models_max_length(exports, fp32_dir):
    pair = SpladeEncoderPair(exports(max_length=64, validate=False), fp32_dir, provider="cpu")
    assert (pair.query.max_length, pair.document.max_length) == (64, 512)
    q = pair.encode_queries([LONG])[0]
    d = pair.encode_documents([LONG])[0]
    assert not np.array_equal(q.to_dense(30522), d.to_dense(30522))
    assert pair.score(q, [d])[0] > 0
