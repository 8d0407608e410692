"""On TensorRT, a batch never exceeds the optimization profile the engine was built for
(`SpladeEncoder(max_batch_size=...)`), whatever `encode(batch_size=...)` asks; vectors are unchanged."""

from __future__ import annotations

import numpy as np

from runtime import SpladeEncoder
from runtime.backends.ort import ProviderPlan
from tests.conftest import TEXTS


def test_tensorrt_batches_stay_within_the_profile(fp32_dir):
    plain = SpladeEncoder(fp32_dir, provider="cpu")
    capped = SpladeEncoder(fp32_dir, provider="cpu", max_batch_size=2)
    # the TensorRT run path's batch cap, on the CPU session: only the plan's name says "tensorrt"
    capped.backend.plan = ProviderPlan("tensorrt", io_binding=False)
    sizes = []
    run = capped.backend.run
    capped.backend.run = lambda batch: sizes.append(len(batch.rows)) or run(batch)
    texts = [f"query number {i} about paris" for i in range(7)] + TEXTS[:3]
    got = capped.encode(texts, batch_size=32)
    assert sizes and max(sizes) <= 2 and sum(sizes) == len(texts)
    for a, b in zip(plain.encode(texts, batch_size=32), got, strict=True):
        assert np.array_equal(a.indices, b.indices) and np.allclose(a.values, b.values, atol=1e-6)
    plain_sizes = []
    prun = plain.backend.run
    plain.backend.run = lambda batch: plain_sizes.append(len(batch.rows)) or prun(batch)
    plain.encode(texts, batch_size=32)
    assert max(plain_sizes) > 2  # other providers take the caller's batch size
