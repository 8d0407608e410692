"""CUDA graphs: padding a batch up to its bucket never changes a vector (the real graph, on the CPU
provider); on a GPU, replayed graphs give the vectors of a graph-free session."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from runtime import SpladeEncoder
from runtime.core.batching import Buckets, pad, pad_to
from runtime.core.sparse import from_dense, from_topk
from tests.conftest import TEXTS


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
