"""DynamicBatcher: gathers concurrent encode calls into shared batches and runs them on worker threads."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from runtime.core import batching
from runtime.core.checks import check_positive_int, check_texts
from runtime.core.options import DEFAULT_BATCH_SIZE, EncodeOptions, Truncation
from runtime.core.pipeline import SparseEncoder
from runtime.core.sparse import SparseVector
from runtime.errors import InvalidInputError, OverloadedError
from runtime.serving.gather import Part, Queued, gather, share

log = logging.getLogger("runtime")
# No wait by default: when a worker is free it takes every request already queued and starts. Under
# load, requests queue while a batch runs, so batches form by themselves (as TEI's queue does); a lone
# request is never held for company that is not coming (a 5 ms wait cost a lone query 6 ms over
# HTTP on a 2-vCPU box, and bought no throughput: docs/server.md).
DEFAULT_MAX_WAIT_MS = 0.0


@dataclass(frozen=True)
class BatchStats:
    """What one gathered batch did; handed to `on_batch` (the server turns it into metrics)."""

    requests: int
    sequences: int
    tokens: int
    queue_waits: tuple[float, ...]  # seconds each request waited before its batch started
    infer_seconds: float
    alone: bool = True  # ran on the main encoder with no other run beside it (False: one of the concurrent runs)


class _Batch:
    """A gathered batch in flight: its sequences, the rows each part still waits for, and its sub-batches
    (each of similar lengths), which any free worker may run, in the order their oldest request arrived."""

    def __init__(self, parts: list[Part], *, alone: bool, max_batch_size: int, max_batch_tokens: int,
                 run_cost_tokens: float | None = None):
        self.parts, self.alone = parts, alone
        self.started = time.monotonic()
        self.waits = tuple(self.started - p.request.ready for p in parts)  # before a re-queued part moves `ready`
        self.sequences = [s for p in parts for s in p.request.tokenized.sequences[p.start: p.end]]
        self.owner = [k for k, p in enumerate(parts) for _ in range(p.end - p.start)]
        self.offsets = np.cumsum([0] + [p.end - p.start for p in parts]).tolist()
        self.slots: list[SparseVector | None] = [None] * len(self.sequences)
        self.left = [p.end - p.start for p in parts]  # rows still to come per part; 0: answered (or failed)
        lengths = batching.lengths_of(self.sequences)
        if run_cost_tokens is None or len(lengths) > batching.COST_PLAN_MAX_SEQUENCES:  # planned under the lock
            runs = batching.plan(lengths, max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                                 shortest_first=True)
        else:
            runs = batching.plan_by_cost(lengths, run_cost_tokens=run_cost_tokens, max_batch_size=max_batch_size,
                                         max_batch_tokens=max_batch_tokens)
        # each run's place in line, and the runs in that order (stable: among equals, shortest first)
        keyed = sorted(((self.arrival(rows), rows) for rows in runs), key=lambda pair: pair[0])
        self.arrivals: list[float] = [arrival for arrival, _ in keyed]
        self.runs: list[np.ndarray] = [rows for _, rows in keyed]
        self.unfinished = len(self.runs)
        self.lock = threading.Lock()

    def arrival(self, rows: np.ndarray) -> float:
        """When the oldest request with a row in `rows` first joined the queue: the sub-batch's place in line."""
        return min(self.parts[self.owner[int(r)]].request.enqueued for r in rows)

    def fill(self, row: int, vec: SparseVector) -> tuple[Part, list[SparseVector]] | None:
        """Store a row's vector; the part and its rows once that was its last row."""
        with self.lock:
            self.slots[row] = vec
            k = self.owner[row]
            self.left[k] -= 1
            if self.left[k] == 0:
                return self.parts[k], self.slots[self.offsets[k]: self.offsets[k + 1]]  # type: ignore[return-value]
        return None

    def fail(self, rows: Sequence[int] | np.ndarray | None = None) -> list[Part]:
        """The parts still waiting for any of `rows` (None: for anything), now failed: no later row answers them."""
        with self.lock:
            owners = range(len(self.parts)) if rows is None else {self.owner[r] for r in rows}
            failed = [k for k in owners if self.left[k] > 0]
            for k in failed:
                self.left[k] = 0  # later rows count it below zero, never back to "done"
        return [self.parts[k] for k in failed]

    def ran(self) -> bool:
        """One sub-batch ended; True when it was the last."""
        with self.lock:
            self.unfinished -= 1
            return self.unfinished == 0

    def stats(self) -> BatchStats:
        return BatchStats(requests=len(self.parts), sequences=len(self.sequences),
                          tokens=sum(int(p.request.lengths[p.start: p.end].sum()) for p in self.parts),
                          queue_waits=self.waits, infer_seconds=time.monotonic() - self.started, alone=self.alone)


class DynamicBatcher:
    """Runs an encoder on worker threads; callers from any thread or event loop share its batches.

    When a worker is free, a batch takes the requests already queued, up to `max_batch_size`
    sequences and `max_batch_tokens` tokens (batch × longest, padded), waiting at most `max_wait_ms`
    after its first request arrived for more (default 0: it starts at once). A batch runs as
    sub-batches of similar lengths, first come first served: the sub-batch holding the oldest request
    first (among equals, shortest first), and each request is answered as soon as its own rows are
    done. A request larger than one batch runs a batch at a time, taking turns with requests that
    arrive meanwhile. Each caller gets exactly its own rows back; a failing sub-batch fails only the
    requests still waiting for it, and the workers keep going.

    With `instances` > 1 (Triton's instance groups), that many sub-batches run at once on `shared`: one
    encoder on fewer threads that every worker runs (e.g. `encoder.reopen(threads=1)`), or one per
    worker (runs of several threads each must not share a session's thread pool:
    `instances_share_a_session`); default: `encoder` itself. A free worker first takes a sub-batch of
    a batch already in flight, else gathers its share of what is queued. A lone request (nothing else
    queued, no other run going) runs alone on `encoder`, on all its threads, so a lone query keeps its
    latency; the other workers start after it.

    Example:
        >>> with DynamicBatcher(SpladeEncoder("models/splade-tiny-fp32"), max_wait_ms=2) as b:  # or any SparseEncoder
        ...     vecs = b.encode(["a query"])          # from threads
        ...     vecs = await b.aencode(["a query"])   # from asyncio
    """

    def __init__(self, encoder: SparseEncoder, *, max_batch_size: int = DEFAULT_BATCH_SIZE,
                 max_batch_tokens: int | None = None, max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
                 on_batch: Callable[[BatchStats], None] | None = None, instances: int = 1,
                 shared: SparseEncoder | Sequence[SparseEncoder] | None = None, run_cost_tokens: float | None = None):
        """`max_batch_tokens` defaults to the encoder's own (`EncoderOptions.max_batch_tokens`). `run_cost_tokens`:
        what one run costs beyond its tokens, in padded tokens' worth (`runcost.run_cost_tokens` measures it);
        a batch then splits into the runs of least total cost. None: runs split where padding a sequence to
        its run's longest would cost more than `batching.MAX_PADDING` times its own length."""
        if max_batch_tokens is None:
            max_batch_tokens = encoder.options.max_batch_tokens
        check_positive_int(max_batch_size, "max_batch_size")
        check_positive_int(max_batch_tokens, "max_batch_tokens")
        check_positive_int(instances, "instances")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, int | float) or not 0 <= max_wait_ms < math.inf:
            raise InvalidInputError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms!r}")
        if run_cost_tokens is not None and (isinstance(run_cost_tokens, bool) or not isinstance(run_cost_tokens, Real)
                                            or not 0 <= run_cost_tokens < math.inf):
            raise InvalidInputError(f"run_cost_tokens must be a finite number >= 0 or None, got {run_cost_tokens!r}")
        runners = tuple(shared) if isinstance(shared, Sequence) else (shared or encoder,)
        if len(runners) not in (1, instances):
            raise InvalidInputError(f"shared must be one encoder or one per instance ({instances}), got {len(runners)}")
        self.encoder = encoder
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.run_cost_tokens = None if run_cost_tokens is None else float(run_cost_tokens)
        self.on_batch = on_batch
        self.instances = instances
        self.shared = runners  # worker i runs its sub-batches on runners[i % len(runners)]
        self._cond = threading.Condition()  # guards everything below
        self._pending: deque[Queued] = deque()
        # sub-batches of batches in flight, for any worker: a heap by (arrival, order queued)
        self._runs: list[tuple[float, int, _Batch, np.ndarray]] = []
        self._queued_runs = itertools.count()
        self._running = 0  # sub-batches running now
        self._alone = False  # a batch runs alone: nothing else starts until it ends
        self._closed = False
        self._workers = [threading.Thread(target=self._loop, args=(self.shared[i % len(self.shared)],),
                                          name=f"splade-batcher-{i}", daemon=True)
                         for i in range(instances)]
        for worker in self._workers:
            worker.start()

    def submit(self, texts: str | Sequence[str], options: EncodeOptions | None = None, *, name: str = "texts",
               truncate: bool | Truncation | None = None, **overrides) -> cf.Future:
        """Queue texts; the future yields list[SparseVector].

        Texts and options are checked (once) and the texts tokenized here, in the caller's thread, so
        a bad argument or an over-long text raises to its own caller and never reaches a shared
        batch. Options are an `EncodeOptions` and/or its fields as keywords, as in `encode`;
        `batch_size` and `sort_by_length` are the batcher's to decide. `name` is how error messages
        call the texts (the server says "inputs").

        Raises:
            InputTypeError, InvalidInputError: bad texts or options (InputTooLongError past the truncation mode).
            OverloadedError: the batcher is closed.
        """
        texts = check_texts(texts, name)
        options = EncodeOptions.of(options, truncate=truncate, **overrides)
        req = Queued(self.encoder.tokenize(texts, options, name=name), len(texts), options)
        if not texts:
            req.future.set_result([])
            return req.future
        with self._cond:
            if self._closed or not any(w.is_alive() for w in self._workers):
                raise OverloadedError("DynamicBatcher is closed")
            self._pending.append(req)
            self._cond.notify()
        return req.future

    def encode(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        return self.submit(texts, **kwargs).result()

    async def aencode(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        """Awaitable encode: inference and the wait for a batch run off the event loop, but tokenizing runs
        here, on the loop's thread (as in `submit`); for long texts call `submit` via `asyncio.to_thread`."""
        return await asyncio.wrap_future(self.submit(texts, **kwargs))

    def close(self) -> None:
        """Finish every accepted request, then stop the workers."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _loop(self, runner: SparseEncoder) -> None:
        while (work := self._next()) is not None:
            batch, rows = work
            try:
                self._run(batch, rows, self.encoder if batch.alone else runner)
            except BaseException as exc:  # noqa: BLE001 -- nothing may leave a future unanswered
                log.exception("batcher: unexpected failure; failing its batch")
                for part in batch.fail():
                    _answer(part.request.future, error=exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                with self._cond:
                    self._running -= 1
                    if batch.alone:
                        self._alone = False
                    self._cond.notify_all()

    def _next(self) -> tuple[_Batch, np.ndarray | None] | None:
        """The next work, counted as running: a sub-batch of a batch in flight, else a newly gathered batch
        (its first sub-batch, or None: all of them, when it runs alone); None once closed and drained."""
        with self._cond:
            while True:
                if not self._alone:
                    if self._runs:
                        self._running += 1
                        _, _, batch, rows = heapq.heappop(self._runs)
                        return batch, rows
                    while self._pending:
                        first = self._pending.popleft()
                        if first.future.cancelled():  # a caller that gave up while it waited: nothing to run
                            continue
                        self._running += 1  # from now: no other batch may start alone beside this one
                        try:
                            work = self._gather(first)
                        except BaseException:  # its callers are answered; the count must not stay raised
                            self._running -= 1
                            self._cond.notify_all()  # this worker stops: another takes what it was woken for
                            raise
                        if work is not None:
                            return work
                        self._running -= 1
                if self._closed and not self._pending and not self._runs:
                    return None  # re-queued rest of a long request: the worker that ran its part takes it
                self._cond.wait()

    def _gather(self, first: Queued) -> tuple[_Batch, np.ndarray | None] | None:
        """(Under the lock) a batch from `first` and what is queued, and the work to run now: all of it when
        it runs alone, else its sub-batches go to `_runs` and the oldest waiting there is this worker's. None
        if it could not be formed (its callers are answered with the error)."""
        parts: list[Part] = []  # filled as requests leave the queue: on an error, every one taken is answered
        try:
            gather(first, self._pending, self._more, deadline=first.ready + self.max_wait,
                   max_batch_size=share(first, self._pending, instances=self.instances,
                                        max_batch_size=self.max_batch_size),
                   max_batch_tokens=self.max_batch_tokens, into=parts)
            if self._pending:
                self._cond.notify()  # what did not fit is another worker's, if one is idle
            # alone: nothing else queued or waiting to run, and the one running is this worker
            lone = len(parts) == 1 and not self._pending and not self._runs and self._running == 1
            batch = _Batch(parts, alone=self.instances == 1 or lone, max_batch_size=self.max_batch_size,
                           max_batch_tokens=self.max_batch_tokens, run_cost_tokens=self.run_cost_tokens)
        except BaseException as exc:  # noqa: BLE001 -- nothing may leave a future unanswered
            log.exception("batcher: a batch could not be formed; failing its requests")
            for part in parts or [Part(first, first.done, len(first.lengths))]:
                _answer(part.request.future, error=exc)
            if not isinstance(exc, Exception):
                raise
            return None
        if batch.alone:
            self._alone = True
            return batch, None
        for arrival, rows in zip(batch.arrivals, batch.runs):
            heapq.heappush(self._runs, (arrival, next(self._queued_runs), batch, rows))
        _, _, oldest, rows = heapq.heappop(self._runs)  # the oldest waiting, this batch's or an earlier one's
        if self._runs:
            self._cond.notify_all()  # idle workers take the rest; a worker waiting inside a gather starts its batch
        return oldest, rows

    def _more(self, deadline: float) -> bool:
        """(Under the lock) wait until a request is queued (True), the deadline passes, the batcher closes or
        sub-batches wait for a worker (False: start this batch now, they are next)."""
        self._cond.wait_for(lambda: self._pending or self._closed or self._runs,
                            timeout=min(max(0.0, deadline - time.monotonic()), threading.TIMEOUT_MAX))
        return bool(self._pending) and not self._runs

    def _run(self, batch: _Batch, rows: np.ndarray | None, encoder: SparseEncoder) -> None:
        """Run one sub-batch of `batch` on `encoder` (None: all of them, alone); answer each request whose
        last row it was. A caller that cancelled (or timed out) is skipped; it never affects the others."""
        for run in batch.runs if rows is None else [rows]:
            try:
                sequences = [batch.sequences[r] for r in run]
                for sub, vectors in encoder.infer_batches(sequences, batch_size=len(sequences), sort=False):
                    for r, vec in zip(sub, vectors):
                        done = batch.fill(int(run[r]), vec)
                        if done is not None:
                            self._finish(*done)
            except Exception as exc:  # answer the callers still waiting on this sub-batch; keep the worker alive
                for part in batch.fail(run):
                    _answer(part.request.future, error=exc)
            if batch.ran() and self.on_batch is not None:
                try:
                    self.on_batch(batch.stats())
                except Exception:  # a callback must never stop the worker
                    log.exception("batcher: on_batch callback raised; the worker goes on")

    def _finish(self, part: Part, rows: list[SparseVector]) -> None:
        """A part's rows are done: requeue the request's rest, or answer it."""
        req = part.request
        if req.future.cancelled():  # its caller gave up: nothing to answer, no rest to run
            return
        req.rows.extend(rows)
        req.done = part.end
        if req.remaining:
            req.ready = time.monotonic()
            with self._cond:
                self._pending.append(req)  # behind whatever arrived meanwhile
                self._cond.notify()
            return
        try:  # one request's failure stays its own
            result = self.encoder.collect(req.tokenized, req.rows, req.n_texts, req.options)
        except Exception as exc:
            _answer(req.future, error=exc)
            return
        _answer(req.future, result=result)


def _answer(future: cf.Future, *, result=None, error: BaseException | None = None) -> None:
    """Set a future's outcome unless its caller already cancelled it (a race the caller may win)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except cf.InvalidStateError:
        pass
