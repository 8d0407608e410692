"""OpenSearch's pruning rules (max_ratio, alpha_mass) beside top_k and threshold, against a NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.core.options import EncodeOptions
from runtime.core.sparse import SparseVector
from runtime.errors import InvalidInputError
from runtime.serving.schemas import prune_options


def reference(values: np.ndarray, *, top_k=None, threshold=0.0, max_ratio=None, alpha_mass=None) -> set[int]:
    """Positions kept, rule by rule on the whole vector, as OpenSearch's PruneUtils writes them in Java floats
    (float32; the total summed as doubles): a term is kept when every rule keeps it."""
    f32 = np.float32
    keep = set(range(len(values)))
    order = sorted(range(len(values)), key=lambda i: -values[i])
    if top_k is not None:
        keep &= set(order[:top_k])
    keep &= {i for i in range(len(values)) if values[i] > f32(threshold)}
    if max_ratio is not None:
        keep &= {i for i in range(len(values)) if values[i] >= f32(max_ratio) * f32(max(values))}
    if alpha_mass is not None:
        total, running, mass = f32(sum(float(v) for v in values)), f32(0), set()
        for i in order:
            running = f32(running + values[i])
            if running <= f32(alpha_mass) * total:
                mass.add(i)
        keep &= mass
    return keep


def test_opensearch_examples():
    v = SparseVector(np.array([1, 2, 3, 4], np.int32), np.array([10, 6, 3, 1], np.float32))
    assert v.pruned(alpha_mass=0.8).indices.tolist() == [1, 2]  # 10 + 6 = 16 <= 0.8 × 20; + 3 is over
    assert v.pruned(max_ratio=0.3).indices.tolist() == [1, 2, 3]  # >= 3.0
    assert v.pruned(alpha_mass=0.3).indices.tolist() == []  # the heaviest alone is over: nothing kept
    assert len(v.pruned(alpha_mass=1.0)) == len(v.pruned(max_ratio=0.0)) == 4


@pytest.mark.parametrize("seed", range(20))
def test_every_combination_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    values = np.sort(rng.gamma(1.0, 1.0, n).astype(np.float32))[::-1]
    v = SparseVector(np.arange(n, dtype=np.int32), values.copy())
    for _ in range(15):
        rules = {"top_k": int(rng.integers(1, 40)) if rng.random() < 0.5 else None,
                 "threshold": float(rng.choice([0.0, 0.3, 1.0])),
                 "max_ratio": float(rng.random()) if rng.random() < 0.6 else None,
                 "alpha_mass": float(rng.random()) if rng.random() < 0.6 else None}
        got = v.pruned(**rules)
        assert set(got.indices.tolist()) == reference(values, **rules), rules
        assert got.indices.tolist() == list(range(len(got)))  # a prefix: still weight-descending
        assert EncodeOptions(**rules).prune(v).indices.tolist() == got.indices.tolist()


@pytest.mark.parametrize("name", ["max_ratio", "alpha_mass"])
@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5", math.nan])
def test_out_of_range_ratios_are_refused(name, bad):
    with pytest.raises(InvalidInputError, match=name):
        EncodeOptions(**{name: bad})


def test_opensearch_query_parameters():
    assert prune_options("none", None) == {}
    assert prune_options("top_k", 5.0) == {"top_k": 5}
    assert prune_options("max_ratio", 0.1) == {"max_ratio": 0.1}
    assert prune_options("alpha_mass", 0.4) == {"alpha_mass": 0.4}
    # abs_value keeps weights >= the value (OpenSearch, in floats); threshold drops weights <= it: one float below
    v = SparseVector(np.array([1, 2, 3], np.int32), np.array([2.0, 0.7, 0.25], np.float32))
    assert EncodeOptions(**prune_options("abs_value", 0.7)).prune(v).indices.tolist() == [1, 2]
    assert EncodeOptions(**prune_options("abs_value", 0.70001)).prune(v).indices.tolist() == [1]
    # threshold compares in float32, as it always has: a weight equal to float32(threshold) is dropped
    assert EncodeOptions(threshold=0.7).prune(v).indices.tolist() == [1]
    for args in (("top_k", 2.5), ("top_k", 0.0), ("max_ratio", None), ("none", 0.3)):
        with pytest.raises(InvalidInputError):
            prune_options(*args)
