"""The dynamic batcher's gather with a plain queue: deadline, caps, the request carried over, close.

Tokens are counted padded (batch × longest), as batching.plan counts them.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from runtime.core.tokenize import Tokenized
from runtime.serving.batcher import _Request, gather


def request(*lengths: int) -> _Request:
    seqs = [np.arange(n, dtype=np.int64) for n in lengths]
    return _Request(Tokenized(seqs, np.arange(len(seqs), dtype=np.int64)), len(seqs), None, 0.0)


def taken(batch) -> list[_Request]:
    """The requests a gathered batch runs; each whole (gather slices only a request beyond the caps)."""
    assert all(part.start == part.request.done and part.end == len(part.request.lengths) for part in batch)
    return [part.request for part in batch]


def filled(*requests) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for r in requests:
        q.put(r)
    return q


def test_takes_everything_waiting_until_the_deadline():
    first, rest = request(4), [request(4), request(4, 4)]
    started = time.monotonic()
    batch, carry = gather(first, filled(*rest), max_batch_size=32, max_batch_tokens=1000, deadline=started + 0.2)
    assert taken(batch) == [first, *rest] and carry is None
    assert time.monotonic() - started >= 0.15, "an empty queue waits for the deadline, not less"


def test_a_past_deadline_returns_at_once_with_what_is_queued():
    first, second = request(4), request(4)
    started = time.monotonic()
    batch, carry = gather(first, filled(second), max_batch_size=32, max_batch_tokens=1000, deadline=started - 1)
    assert taken(batch) == [first, second] and carry is None and time.monotonic() - started < 0.1


def test_late_arrival_before_the_deadline_joins():
    first, late = request(4), request(4)
    pending: queue.Queue = queue.Queue()
    threading.Timer(0.05, pending.put, args=(late,)).start()
    batch, _ = gather(first, pending, max_batch_size=2, max_batch_tokens=1000, deadline=time.monotonic() + 2)
    assert taken(batch) == [first, late]


def test_size_cap_closes_the_batch_and_carries_the_request_that_did_not_fit():
    first, second, third = request(8), request(8, 8), request(8, 8)
    batch, carry = gather(first, filled(second, third), max_batch_size=4, max_batch_tokens=1000,
                          deadline=time.monotonic() + 5)
    assert taken(batch) == [first, second] and carry is third


def test_token_cap_closes_the_batch():
    first, second, third = request(16), request(16), request(16)
    batch, carry = gather(first, filled(second, third), max_batch_size=32, max_batch_tokens=40,
                          deadline=time.monotonic() + 5)
    assert taken(batch) == [first, second] and carry is third
    # a full first request starts at once, without waiting for the deadline
    started = time.monotonic()
    batch, carry = gather(request(16, 16, 16), queue.Queue(), max_batch_size=32, max_batch_tokens=40,
                          deadline=started + 5)
    assert len(batch) == 1 and carry is None and time.monotonic() - started < 1
    assert (batch[0].start, batch[0].end) == (0, 2), "a request beyond the caps runs a slice at a time"


def test_close_sentinel_ends_the_batch_and_stays_queued():
    first, second = request(4), request(4)
    pending = filled(second, None)
    started = time.monotonic()
    batch, carry = gather(first, pending, max_batch_size=32, max_batch_tokens=1000, deadline=started + 5)
    assert taken(batch) == [first, second] and carry is None
    assert time.monotonic() - started < 1, "close() must not wait for the deadline"
    assert pending.get_nowait() is None, "the sentinel is put back for the worker loop to see"
