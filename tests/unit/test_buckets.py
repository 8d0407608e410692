"""CUDA graph buckets without a GPU: which bucket a batch takes, how it is padded, the options a CUDA plan sets."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends.ort import plan_provider
from runtime.core.batching import Buckets, pad, pad_to
from tests.unit.test_manifest import manifest


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


def test_cuda_plan_captures_graphs():
    m = manifest(max_length=512, sha256="ab" * 32)
    cuda = plan_provider("cuda", m, max_batch_size=16)
    assert cuda.cuda_graphs and cuda.options["enable_cuda_graph"] == 1
    # graphs on: runs outside the buckets skip capture; the GPU arena is never shrunk (a graph keeps its blocks)
    assert cuda.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0", "gpu_graph_id": "-1"}
    off = cuda.with_options({"enable_cuda_graph": 0})
    assert not off.cuda_graphs and off.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0"}
    assert not cuda.with_options({"enable_cuda_graph": None}).cuda_graphs
    assert not plan_provider("cpu", m, max_batch_size=16).cuda_graphs
    assert not plan_provider("tensorrt", m, max_batch_size=16).cuda_graphs


def test_buckets_stay_within_the_model_length():
    b = Buckets(lengths=(16, 32, 64, 128))
    assert b.within(512) == b and b.within(64).lengths == (16, 32, 64) and b.within(8) is None
