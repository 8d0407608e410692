"""batching.plan_by_cost: the split of a batch into runs of least total cost, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from runtime.core.batching import plan_by_cost
from runtime.errors import InvalidInputError


def cost(runs, lengths, fixed):
    return sum(fixed + len(r) * lengths[r].max() for r in runs)


def brute_force(lengths, fixed, max_batch_size, max_batch_tokens):
    """The least cost over every split of the sorted lengths into consecutive runs that respect the caps."""
    ordered = np.sort(lengths)
    n, best = len(ordered), float("inf")
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
        runs = [ordered[a:b] for a, b in zip(bounds, bounds[1:])]
        if all(len(r) <= max_batch_size and (len(r) == 1 or len(r) * r.max() <= max_batch_tokens) for r in runs):
            best = min(best, sum(fixed + len(r) * r.max() for r in runs))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_least_cost_split_within_the_caps(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 120, rng.integers(1, 11))
    fixed = float(rng.choice([0, 4, 16, 40, 500]))
    size, tokens = int(rng.integers(1, 8)), int(rng.integers(60, 400))
    runs = plan_by_cost(lengths, run_cost_tokens=fixed, max_batch_size=size, max_batch_tokens=tokens)
    assert sorted(np.concatenate(runs).tolist()) == list(range(len(lengths))), "every sequence exactly once"
    for r in runs:
        assert len(r) <= size and (len(r) == 1 or len(r) * lengths[r].max() <= tokens)
    assert cost(runs, lengths, fixed) == pytest.approx(brute_force(lengths, fixed, size, tokens))
    firsts = [lengths[r].max() for r in runs]
    assert firsts == sorted(firsts), "runs come shortest first"


def test_no_fixed_cost_runs_each_alone_and_a_large_one_merges_up_to_the_caps():
    lengths = np.array([9, 8, 30, 10])
    assert [r.tolist() for r in plan_by_cost(lengths, run_cost_tokens=0, max_batch_size=8,
                                             max_batch_tokens=1000)] == [[1], [0], [3], [2]]
    assert [r.tolist() for r in plan_by_cost(lengths, run_cost_tokens=1e6, max_batch_size=8,
                                             max_batch_tokens=1000)] == [[1, 0, 3, 2]]
    assert [r.tolist() for r in plan_by_cost(lengths, run_cost_tokens=1e6, max_batch_size=8,
                                             max_batch_tokens=100)] == [[1, 0, 3], [2]]
    # equal costs: fewer runs (sequences of one length share a run even with no fixed cost)
    assert [r.tolist() for r in plan_by_cost(np.full(5, 10), run_cost_tokens=0, max_batch_size=8,
                                             max_batch_tokens=1000)] == [[0, 1, 2, 3, 4]]
    # the 16-token fixed cost of a tiny model: queries share a run, the document pays its own
    assert [r.tolist() for r in plan_by_cost(lengths, run_cost_tokens=16, max_batch_size=8,
                                             max_batch_tokens=1000)] == [[1, 0, 3], [2]]


def test_caps_are_checked():
    with pytest.raises(InvalidInputError):
        plan_by_cost(np.array([3]), run_cost_tokens=1, max_batch_size=0, max_batch_tokens=10)
