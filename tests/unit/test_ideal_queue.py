"""The queueing model behind benchmarks.ideal_queue: closed-loop clients, first come, first served."""

from __future__ import annotations

import pytest

from benchmarks.ideal_queue import closed_loop


def test_equal_jobs_wait_one_turn_once_every_worker_is_busy():
    # 4 clients, 2 workers, each job 1 s: the first two start at once, every later job waits for one
    # ahead of it (it is sent when a job ends, and both workers are then busy for one more second).
    assert closed_loop([1.0] * 12, clients=4, workers=2) == ([1.0, 1.0] + [2.0] * 10, 6.0)


def test_one_client_never_waits():
    costs = [0.5, 2.0, 0.25, 1.0]
    assert closed_loop(costs, clients=1, workers=3) == (costs, sum(costs))


def test_a_long_job_delays_the_ones_queued_behind_it_first_come_first_served():
    # one worker, two clients: job 1 (5 s) runs after job 0; job 2, sent when job 0 ends at 1 s,
    # waits until 6 s and ends at 7 s; job 3, sent at 6 s, waits for job 2: 1 s + 1 s.
    assert closed_loop([1.0, 5.0, 1.0, 1.0], clients=2, workers=1) == ([1.0, 6.0, 6.0, 2.0], 8.0)


@pytest.mark.parametrize("clients,workers", [(32, 2), (3, 8), (1, 1)])
def test_every_job_is_answered_and_takes_at_least_its_cost(clients, workers):
    costs = [0.001 * (1 + (i * 37) % 11) for i in range(200)]
    latency, makespan = closed_loop(costs, clients=clients, workers=workers)
    assert all(lat >= cost - 1e-12 for lat, cost in zip(latency, costs))
    # work conserving: with no more clients than workers, nobody waits
    if clients <= workers:
        assert latency == pytest.approx(costs)
    # the work cannot end sooner than shared evenly among the runs that can go at once
    assert makespan >= sum(costs) / min(workers, clients) - 1e-9
