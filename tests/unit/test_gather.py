"""What a batch takes from the queue (gather) and each worker's share of it, on a plain deque.

Tokens are counted padded (batch × longest), as batching.plan counts them.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import pytest

from runtime.core.tokenize import Tokenized
from runtime.serving.gather import Queued, gather, share


def request(*lengths: int) -> Queued:
    seqs = [np.arange(n, dtype=np.int64) for n in lengths]
    return Queued(Tokenized(seqs, np.arange(len(seqs), dtype=np.int64)), len(seqs), None)  # type: ignore[arg-type]


def taken(batch) -> list[Queued]:
    """The requests a gathered batch runs; each whole (gather slices only a request beyond the caps)."""
    assert all(part.start == part.request.done and part.end == len(part.request.lengths) for part in batch)
    return [part.request for part in batch]


class Source:
    """A queue as the batcher holds it: a deque under a condition, and `more` waiting on it."""

    def __init__(self, *requests: Queued):
        self.pending: deque[Queued] = deque(requests)
        self.cond = threading.Condition()
        self.closed = False

    def more(self, deadline: float) -> bool:
        self.cond.wait_for(lambda: self.pending or self.closed, timeout=max(0.0, deadline - time.monotonic()))
        return bool(self.pending)

    def put_later(self, seconds: float, req: Queued | None) -> None:
        def put():
            with self.cond:
                if req is None:
                    self.closed = True
                else:
                    self.pending.append(req)
                self.cond.notify_all()
        threading.Timer(seconds, put).start()

    def gather(self, first: Queued, **caps) -> list:
        with self.cond:
            return gather(first, self.pending, self.more, **caps)


def test_takes_everything_waiting_until_the_deadline():
    first, rest = request(4), [request(4), request(4, 4)]
    started = time.monotonic()
    batch = Source(*rest).gather(first, max_batch_size=32, max_batch_tokens=1000, deadline=started + 0.2)
    assert taken(batch) == [first, *rest]
    assert time.monotonic() - started >= 0.15, "an empty queue waits for the deadline, not less"


def test_a_past_deadline_returns_at_once_with_what_is_queued():
    first, second = request(4), request(4)
    started = time.monotonic()
    batch = Source(second).gather(first, max_batch_size=32, max_batch_tokens=1000, deadline=started - 1)
    assert taken(batch) == [first, second] and time.monotonic() - started < 0.1


def test_late_arrival_before_the_deadline_joins():
    first, late = request(4), request(4)
    source = Source()
    source.put_later(0.05, late)
    batch = source.gather(first, max_batch_size=2, max_batch_tokens=1000, deadline=time.monotonic() + 2)
    assert taken(batch) == [first, late]


def test_size_cap_closes_the_batch_and_leaves_the_request_that_did_not_fit_at_the_head():
    first, second, third = request(8), request(8, 8), request(8, 8)
    source = Source(second, third)
    batch = source.gather(first, max_batch_size=4, max_batch_tokens=1000, deadline=time.monotonic() + 5)
    assert taken(batch) == [first, second] and list(source.pending) == [third]


def test_token_cap_closes_the_batch():
    first, second, third = request(16), request(16), request(16)
    source = Source(second, third)
    batch = source.gather(first, max_batch_size=32, max_batch_tokens=40, deadline=time.monotonic() + 5)
    assert taken(batch) == [first, second] and list(source.pending) == [third]
    # a full first request starts at once, without waiting for the deadline
    started = time.monotonic()
    batch = Source().gather(request(16, 16, 16), max_batch_size=32, max_batch_tokens=40, deadline=started + 5)
    assert len(batch) == 1 and time.monotonic() - started < 1
    assert (batch[0].start, batch[0].end) == (0, 2), "a request beyond the caps runs a slice at a time"


def test_close_ends_the_wait_at_once():
    first = request(4)
    source = Source()
    source.put_later(0.05, None)
    started = time.monotonic()
    batch = source.gather(first, max_batch_size=32, max_batch_tokens=1000, deadline=started + 5)
    assert taken(batch) == [first] and time.monotonic() - started < 1, "close() must not wait for the deadline"


def test_a_failing_wait_leaves_every_request_taken_with_the_caller():
    """Should waiting for more raise, the requests already taken off the queue are in `into`, for the
    batcher to answer: none is lost between the queue and a batch that never formed."""
    first, second = request(4), request(4)
    pending = deque([second])

    def more(deadline: float) -> bool:
        raise OverflowError("timestamp out of range")

    into: list = []
    with pytest.raises(OverflowError):
        gather(first, pending, more, max_batch_size=32, max_batch_tokens=1000, deadline=float("inf"), into=into)
    assert taken(into) == [first, second] and not pending


def test_each_worker_takes_its_share_of_what_is_queued():
    queued = deque(request(4) for _ in range(10))
    assert share(request(4), queued, instances=1, max_batch_size=32) == 32  # one worker: all it can
    assert share(request(4), queued, instances=2, max_batch_size=32) == 6  # 11 sequences, two workers
    assert share(request(4), queued, instances=4, max_batch_size=32) == 3
    assert share(request(4), deque(), instances=2, max_batch_size=32) == 1
    assert share(request(*[4] * 20), deque(), instances=2, max_batch_size=32) == 20, "the first request is not cut"
    assert share(request(*[4] * 40), queued, instances=2, max_batch_size=32) == 32, "nor taken past the cap"
    first = request(4, 4, 4)
    first.done = 2
    assert share(first, deque(), instances=2, max_batch_size=32) == 1, "what is left of a long request"
