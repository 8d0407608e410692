"""Ray Data takes the same encode options as the library: pruning and truncation travel to the actors whole."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from runtime import EncodeOptions, SpladeEncoder  # noqa: E402
from runtime.jobs.ray import encode_dataset  # noqa: E402
from tests.conftest import TEXTS  # noqa: E402


def test_pruning_options_reach_the_actors(fp32_dir):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS)])
        options = EncodeOptions(max_ratio=0.2, alpha_mass=0.8, top_k=20, truncation_direction="left")
        rows = sorted(encode_dataset(ds, fp32_dir, options, num_actors=1).take_all(), key=lambda r: r["id"])
    finally:
        ray.shutdown()
    expected = SpladeEncoder(fp32_dir, provider="cpu").encode(TEXTS, options)
    assert len(rows) == len(TEXTS)
    for row, vec in zip(rows, expected, strict=True):
        assert list(row["indices"]) == vec.indices.tolist()
