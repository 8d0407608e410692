"""The order a gathered batch's sub-batches run in: first come, first served (DynamicBatcher's `_Batch`)."""

from __future__ import annotations

from runtime.serving.batcher import _Batch
from runtime.serving.gather import Part, Queued
from tests.unit.test_gather import request as queued


def request(enqueued: float, *lengths: int) -> Queued:
    """A queued request of these token lengths that arrived at `enqueued`."""
    req = queued(*lengths)
    req.enqueued = enqueued
    return req


def batch(*requests: Queued) -> _Batch:
    return _Batch([Part(r, 0, len(r.lengths)) for r in requests], alone=False, max_batch_size=8,
                  max_batch_tokens=10_000)


def owners(b: _Batch) -> list[list[int]]:
    return [sorted({b.owner[int(r)] for r in rows}) for rows in b.runs]


def test_the_sub_batch_holding_the_oldest_request_runs_first():
    # a passage queued first, then two queries: the passage's run goes first although it is the longest
    b = batch(request(1.0, 120), request(2.0, 8), request(3.0, 9))
    assert owners(b) == [[0], [1, 2]]
    assert [b.arrival(rows) for rows in b.runs] == b.arrivals == [1.0, 2.0]  # the heap's keys


def test_a_sub_batch_counts_its_oldest_request_and_equal_ones_stay_shortest_first():
    # the queries' run holds the oldest request (1.0): it goes before the passage queued at 2.0
    b = batch(request(1.0, 8), request(2.0, 120), request(3.0, 9))
    assert owners(b) == [[0, 2], [1]]
    # one request with texts of very different lengths: every run has its arrival, shortest first
    b = batch(request(5.0, 200, 10, 100))
    assert [len(b.sequences[int(rows[0])]) for rows in b.runs] == [10, 100, 200]


def test_runs_by_cost_first_come_first_served_and_large_batches_by_length_ratio():
    """With a run's fixed cost, queries of different lengths share a run (the length-ratio rule gives them
    one each); the order is still the oldest request's first. Past COST_PLAN_MAX_SEQUENCES (planned under the
    batcher's lock) the length-ratio rule plans."""
    from runtime.core import batching

    reqs = (request(1.0, 120), request(2.0, 8), request(3.0, 11), request(4.0, 14))
    assert owners(batch(*reqs)) == [[0], [1], [2], [3]]
    by_cost = _Batch([Part(r, 0, 1) for r in reqs], alone=False, max_batch_size=8, max_batch_tokens=10_000,
                     run_cost_tokens=16)
    assert owners(by_cost) == [[0], [1, 2, 3]]
    many = [request(float(i), 8 + i % 9) for i in range(batching.COST_PLAN_MAX_SEQUENCES + 1)]
    large = _Batch([Part(r, 0, 1) for r in many], alone=False, max_batch_size=8, max_batch_tokens=10_000,
                   run_cost_tokens=1e6)
    expected = batching.plan(batching.lengths_of(large.sequences),
                             max_batch_size=8, max_batch_tokens=10_000, shortest_first=True)
    assert sorted(map(len, large.runs)) == sorted(map(len, expected))
