"""What one batch takes from the batcher's queue: requests, parts of a request larger than a batch, caps.

No threads here: the DynamicBatcher calls these under its lock. Tokens are counted padded (batch ×
longest), as `batching.plan` counts them.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.core.options import EncodeOptions
from runtime.core.sparse import SparseVector
from runtime.core.tokenize import Tokenized


@dataclass(eq=False)
class Queued:
    """One caller's tokenized texts in the queue, and what has been run of them so far."""

    tokenized: Tokenized
    n_texts: int
    options: EncodeOptions
    future: cf.Future = field(default_factory=cf.Future)
    enqueued: float = field(default_factory=time.monotonic)
    done: int = 0  # sequences already run; a long request is run a batch at a time
    rows: list[SparseVector] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ready = self.enqueued  # when it (re)joined the queue: its batch deadline counts from here
        self.lengths = self.tokenized.lengths

    @property
    def remaining(self) -> int:
        return len(self.tokenized.sequences) - self.done


@dataclass(frozen=True)
class Part:
    """Sequences [start, end) of one request, run in one gathered batch."""

    request: Queued
    start: int
    end: int


def gather(first: Queued, pending: deque[Queued], more: Callable[[float], bool], *, max_batch_size: int,
           max_batch_tokens: int, deadline: float, into: list[Part] | None = None) -> list[Part]:
    """`first` and what follows it in `pending`, until the deadline or a cap: the parts, appended to `into`
    as each leaves the queue (so that, should `more` raise, the caller still holds every one taken).

    `more(deadline)` waits until `pending` holds a request (True) or the deadline passes (False). A
    request that does not fit stays at the head of `pending`. A request larger than the caps is taken
    a slice at a time (at least one sequence): the rest goes back to the queue after the run, behind
    whatever arrived meanwhile, so short requests interleave with long ones.
    """
    lengths = first.lengths
    end, longest = first.done, 0
    while end < len(lengths) and end - first.done < max_batch_size:
        candidate = max(longest, int(lengths[end]))
        if end > first.done and candidate * (end - first.done + 1) > max_batch_tokens:
            break
        longest, end = candidate, end + 1
    batch = into if into is not None else []
    batch.append(Part(first, first.done, end))
    if end < len(lengths):
        return batch
    count = end - first.done
    while count < max_batch_size and count * longest < max_batch_tokens and (pending or more(deadline)):
        req = pending[0]
        n, req_longest = req.remaining, int(req.lengths[req.done:].max())
        if count + n > max_batch_size or (count + n) * max(longest, req_longest) > max_batch_tokens:
            break
        pending.popleft()
        batch.append(Part(req, req.done, len(req.lengths)))
        count, longest = count + n, max(longest, req_longest)
    return batch


def share(first: Queued, pending: deque[Queued], *, instances: int, max_batch_size: int) -> int:
    """Sequences one of `instances` workers may gather: its even share of the sequences queued, so that
    one worker does not take a whole burst while another will soon be free. The first request is never
    cut for the share: its parts would run one after another anyway.

    The share divides by all instances, not only the idle ones: taking everything queued whenever the
    other run was busy gave 0.05 more of the in-process limit on short queries, but p99 ÷ mean 2.4-2.5
    instead of 1.8-1.9 (2 vCPUs, docs/server.md).
    """
    if instances == 1:
        return max_batch_size
    queued = sum(r.remaining for r in pending)
    return min(max_batch_size, max(first.remaining, -(-(queued + first.remaining) // instances)))
