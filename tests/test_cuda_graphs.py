"""CUDA graph buckets, tested where they can be without a GPU: shape choice, option building, and
that padding a batch up to its bucket never changes a vector (the real graph, on the CPU provider)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from runtime import SpladeEncoder
from runtime.backend import plan_provider
from runtime.batching import Buckets, pad, pad_to
from runtime.manifest import load_manifest
from runtime.sparse import from_dense, from_topk
from tests.conftest import TEXTS


def test_bucket_fit():
    b = Buckets(lengths=(16, 32, 64), batch_sizes=(1, 2, 4, 8), max_tokens=256)
    assert b.fit(1, 10) == (1, 16) and b.fit(1, 16) == (1, 16) and b.fit(3, 17) == (4, 32)
    assert b.fit(8, 32) == (8, 32)
    assert b.fit(8, 33) is None  # 8 × 64 > max_tokens: padding waste would outweigh the launch savings
    assert b.fit(9, 4) is None and b.fit(1, 65) is None
    default = Buckets()
    assert default.fit(1, 10) == (1, 16) and default.fit(32, 128) == (32, 128) and default.fit(33, 10) is None
    for bad in ({"lengths": ()}, {"lengths": (32, 16)}, {"batch_sizes": (0, 1)}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            Buckets(**bad)


def test_pad_to_layout():
    seqs = [np.array([101, 7, 8, 102]), np.array([101, 9, 102])]
    batch = pad(seqs, np.array([0, 1]), pad_id=0)
    padded = pad_to(batch, 4, 8, pad_id=0)
    assert padded.input_ids.shape == (4, 8) and padded.attention_mask.shape == (4, 8)
    assert padded.attention_mask[:2].sum(axis=1).tolist() == [4, 3]
    assert (padded.input_ids[2:] == padded.input_ids[0]).all() and (padded.attention_mask[2:] == padded.attention_mask[0]).all()
    assert (padded.input_ids[:2, 4:] == 0).all()
    assert np.array_equal(padded.rows, batch.rows)
    with pytest.raises(ValueError, match="down"):
        pad_to(batch, 1, 8, pad_id=0)


def _dense(outputs, n: int, vocab: int) -> np.ndarray:
    if len(outputs) == 1:
        return np.stack([from_dense(w).to_dense(vocab) for w in outputs[0][:n]])
    return np.stack([from_topk(v, i).to_dense(vocab) for v, i in zip(outputs[0][:n], outputs[1][:n])])


@pytest.mark.parametrize("precision,top_k", [("fp32", 512), ("fp32", 0), ("fp16", 512)])
def test_padding_to_a_bucket_keeps_vectors(exports, precision, top_k):
    """Padded columns and repeated rows are neutral in the exported graph: every real row's vector is unchanged."""
    folder = exports(precision=precision, top_k=top_k)
    enc = SpladeEncoder(folder, provider="cpu")
    sequences = enc.tokenizer.encode(TEXTS[:5] + ["paris", "what is splade"], truncate=True).sequences
    batch = pad(sequences, np.arange(len(sequences)), enc.manifest.pad_token_id)
    n, length = batch.input_ids.shape
    vocab = enc.manifest.vocab_size
    plain = _dense(enc.backend.run(batch), n, vocab)
    bucket = Buckets().fit(n, length) or (8, length + 37)
    padded = _dense(enc.backend.run(pad_to(batch, *bucket, enc.manifest.pad_token_id)), n, vocab)
    tol = 1e-5 if precision == "fp32" else 2e-3
    assert np.abs(plain - padded).max() <= tol


def test_cuda_plan_captures_graphs(fp32_dir):
    m = load_manifest(fp32_dir)
    cuda = plan_provider("cuda", m, max_batch_size=16)
    assert cuda.cuda_graphs and cuda.options["enable_cuda_graph"] == 1
    # graphs on: runs outside the buckets skip capture; the GPU arena is never shrunk (a graph keeps its blocks)
    assert cuda.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0", "gpu_graph_id": "-1"}
    off = cuda.with_options({"enable_cuda_graph": 0})
    assert not off.cuda_graphs and off.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0"}
    assert not cuda.with_options({"enable_cuda_graph": None}).cuda_graphs
    assert not plan_provider("cpu", m, max_batch_size=16).cuda_graphs
    assert not plan_provider("tensorrt", m, max_batch_size=16).cuda_graphs


def test_cpu_encoder_has_no_graphs(fp32_dir):
    enc = SpladeEncoder(fp32_dir, provider="cpu", graph_buckets=Buckets(lengths=(8,), batch_sizes=(1,)))
    assert enc.backend.graphs is None and enc.backend.graphs_skipped is None


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="no CUDA provider here")
def test_cuda_graph_replay_matches_plain_run(fp32_dir):
    """On a GPU: replayed graphs (each bucket twice, interleaved) give the vectors of a graph-free session."""
    graphs = SpladeEncoder(fp32_dir, provider="cuda")
    plain = SpladeEncoder(fp32_dir, provider="cuda", provider_options={"cuda": {"enable_cuda_graph": 0}})
    assert graphs.backend.graphs is not None and plain.backend.graphs is None
    texts = ["capital of france", "capital of spain", TEXTS[3], TEXTS[4], "paris"]
    for _ in range(3):
        for batch in ([texts[0]], texts[:2], texts, [texts[1]], [TEXTS[7]]):
            for a, b in zip(graphs.encode(batch), plain.encode(batch), strict=True):
                assert np.abs(a.to_dense(30522) - b.to_dense(30522)).max() < 1e-4
    # (1, 16): one query; (2, 16): two queries together; (1, 96): TEXTS[4]; TEXTS[7] fits no bucket
    assert graphs.backend.graphs.disabled is None and {(1, 16), (2, 16), (1, 96)} <= set(graphs.backend.graphs.slots)
