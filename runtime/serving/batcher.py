"""DynamicBatcher: gathers concurrent encode calls into shared batches (threads and asyncio alike)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from runtime.core.checks import check_positive_int, check_texts
from runtime.core.options import DEFAULT_BATCH_SIZE, EncodeOptions, Truncation
from runtime.core.pipeline import SparseEncoder
from runtime.core.sparse import SparseVector
from runtime.core.tokenize import Tokenized
from runtime.errors import InvalidInputError, OverloadedError

log = logging.getLogger("runtime")
# No wait by default: when the worker is free it takes every request already queued and starts. Under
# load, requests queue while a batch runs, so batches form by themselves (as TEI's queue does); a lone
# request is never held for company that is not coming (a 5 ms wait cost a lone query 6 ms over
# HTTP on a 2-vCPU box, and bought no throughput: docs/server.md).
DEFAULT_MAX_WAIT_MS = 0.0


@dataclass(eq=False)
class _Request:
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
class _Part:
    """Sequences [start, end) of one request, run in one gathered batch."""

    request: _Request
    start: int
    end: int


@dataclass(frozen=True)
class BatchStats:
    """What one gathered batch did; handed to `on_batch` (the server turns it into metrics)."""

    requests: int
    sequences: int
    tokens: int
    queue_waits: tuple[float, ...]  # seconds each request waited before its batch started
    infer_seconds: float
    alone: bool = True  # ran on the main encoder with no other run beside it (False: one of the concurrent runs)


def gather(first: _Request, pending: queue.Queue, *, max_batch_size: int, max_batch_tokens: int,
           deadline: float) -> tuple[list[_Part], _Request | None]:
    """Take requests until the deadline or a cap; returns the batch and a request that did not fit.

    Tokens are counted padded (batch × longest), as `batching.plan` counts them. A request larger
    than the caps is taken a slice at a time (at least one sequence): the rest goes back to the queue
    after the run, behind whatever arrived meanwhile, so short requests interleave with long ones.
    """
    lengths = first.lengths
    end, longest = first.done, 0
    while end < len(lengths) and end - first.done < max_batch_size:
        candidate = max(longest, int(lengths[end]))
        if end > first.done and candidate * (end - first.done + 1) > max_batch_tokens:
            break
        longest, end = candidate, end + 1
    batch = [_Part(first, first.done, end)]
    if end < len(lengths):
        return batch, None
    count = end - first.done
    while count < max_batch_size and count * longest < max_batch_tokens:
        try:
            req = pending.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if req is None:  # close() sentinel: put it back for the loop to see
            pending.put(None)
            break
        n, req_longest = req.remaining, int(req.lengths[req.done:].max())
        if count + n > max_batch_size or (count + n) * max(longest, req_longest) > max_batch_tokens:
            return batch, req
        batch.append(_Part(req, req.done, len(req.lengths)))
        count, longest = count + n, max(longest, req_longest)
    return batch, None


class DynamicBatcher:
    """Runs an encoder on worker threads; callers from any thread or event loop share its batches.

    When a worker is free, a batch takes the requests already queued, up to `max_batch_size`
    sequences and `max_batch_tokens` tokens (batch × longest, padded), waiting at most `max_wait_ms`
    after its first request arrived for more (default 0: it starts at once). A request larger than
    one batch runs a batch at a time, taking turns with requests that arrive meanwhile. Each caller gets exactly its own rows back;
    a failing batch fails only its own requests, and the worker keeps going.

    With `instances` > 1 (Triton's instance groups), that many batches run at once on `shared` (an
    encoder on fewer threads, e.g. `encoder.reopen(threads=1)`; default: `encoder` itself), and a
    free worker takes only its share of what is queued. A lone request (nothing else queued, no other
    run going) runs alone on `encoder`, on all its threads, so a lone query keeps its latency; the
    other workers start after it.

    Example:
        >>> with DynamicBatcher(SpladeEncoder("models/splade-tiny-fp32"), max_wait_ms=2) as b:  # or any SparseEncoder
        ...     vecs = b.encode(["a query"])          # from threads
        ...     vecs = await b.aencode(["a query"])   # from asyncio
    """

    def __init__(self, encoder: SparseEncoder, *, max_batch_size: int = DEFAULT_BATCH_SIZE,
                 max_batch_tokens: int | None = None, max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
                 on_batch: Callable[[BatchStats], None] | None = None, instances: int = 1,
                 shared: SparseEncoder | None = None):
        """`max_batch_tokens` defaults to the encoder's own (`EncoderOptions.max_batch_tokens`)."""
        if max_batch_tokens is None:
            max_batch_tokens = encoder.options.max_batch_tokens
        check_positive_int(max_batch_size, "max_batch_size")
        check_positive_int(max_batch_tokens, "max_batch_tokens")
        check_positive_int(instances, "instances")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, int | float) or not max_wait_ms >= 0:
            raise InvalidInputError(f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}")
        self.encoder = encoder
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.instances = instances
        self.shared = shared or encoder
        self._pending: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._runs = threading.Condition()  # guards the two counts below
        self._running = 0  # batches running now
        self._alone = False  # one of them runs alone: nothing else may start
        self._workers = [threading.Thread(target=self._loop, name=f"splade-batcher-{i}", daemon=True)
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
        req = _Request(self.encoder.tokenize(texts, options, name=name), len(texts), options)
        if not texts:
            req.future.set_result([])
            return req.future
        with self._lock:
            if self._closed or not any(w.is_alive() for w in self._workers):
                raise OverloadedError("DynamicBatcher is closed")
            self._pending.put(req)
        return req.future

    def encode(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        return self.submit(texts, **kwargs).result()

    async def aencode(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        """Awaitable encode: inference and the wait for a batch run off the event loop, but tokenizing runs
        here, on the loop's thread (as in `submit`); for long texts call `submit` via `asyncio.to_thread`."""
        return await asyncio.wrap_future(self.submit(texts, **kwargs))

    def close(self) -> None:
        """Finish every accepted request, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.put(None)
        for worker in self._workers:
            worker.join()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _loop(self) -> None:
        carry: _Request | None = None
        while True:
            first = carry if carry is not None else self._pending.get()
            carry = None
            if first is None:
                empty = self._pending.empty()
                self._pending.put(None)  # for every worker to see; requests re-queued after close() still finish first
                if empty:
                    return
                continue
            if first.future.cancelled():  # its caller gave up while it waited: run nothing for it
                continue
            batch: list[_Part] = [_Part(first, first.done, first.done)]
            try:
                batch, carry = gather(first, self._pending, max_batch_size=self._share(first),
                                      max_batch_tokens=self.max_batch_tokens, deadline=first.ready + self.max_wait)
                alone = self._start(lone=len(batch) == 1 and carry is None and self._pending.empty())
                try:
                    self._run(batch, alone)
                finally:
                    self._stop(alone)
            except BaseException as exc:  # noqa: BLE001 -- nothing may leave a future unanswered
                log.exception("batcher: unexpected failure; failing its batch")
                for part in batch:
                    _answer(part.request.future, error=exc)
                if not isinstance(exc, Exception):
                    raise

    def _share(self, first: _Request) -> int:
        """Sequences this worker may gather: all it can, or with several instances its even share of the
        sequences queued, so that one worker does not take a whole burst while another will soon be free.
        The first request is never cut for the share: its parts would run one after another anyway.

        The share divides by all instances, not the idle ones: taking all that waits whenever one other
        run is going gave 0.05 more of the in-process limit on queries but p99 ÷ mean 2.4-2.5 instead of
        1.8-1.9 (2 vCPUs, docs/server.md)."""
        if self.instances == 1:
            return self.max_batch_size
        with self._pending.mutex:
            queued = sum(r.remaining for r in self._pending.queue if r is not None)
        return min(self.max_batch_size, max(first.remaining, -(-(queued + first.remaining) // self.instances)))

    def _start(self, *, lone: bool) -> bool:
        """Count a run starting; True when it runs alone on the main encoder: with one instance always, else a
        `lone` request (the batch's only one, nothing else queued) while no other run goes. No other run
        starts until an alone run ends: it has every thread."""
        if self.instances == 1:
            return True
        with self._runs:
            while self._alone:
                self._runs.wait()
            alone = lone and not self._running
            self._alone = alone
            self._running += 1
        return alone

    def _stop(self, alone: bool) -> None:
        if self.instances == 1:
            return
        with self._runs:
            self._running -= 1
            if alone:
                self._alone = False
            self._runs.notify_all()

    def _run(self, batch: list[_Part], alone: bool) -> None:
        """Run a gathered batch; each request is answered as soon as its own rows are done.

        The encoder runs the batch as length-sorted sub-batches, so a query that shares a gathered
        batch with long documents gets its answer after its own sub-batch, not after theirs. A caller
        that cancelled (or timed out) is skipped; it never affects the others.
        """
        started = time.monotonic()
        waits = tuple(started - p.request.ready for p in batch)  # before a re-queued part moves `ready`
        sequences = [s for p in batch for s in p.request.tokenized.sequences[p.start: p.end]]
        owner = [k for k, p in enumerate(batch) for _ in range(p.end - p.start)]
        offsets = [0]
        for p in batch:
            offsets.append(offsets[-1] + p.end - p.start)
        slots: list[SparseVector | None] = [None] * len(sequences)
        left = [p.end - p.start for p in batch]  # rows still to come per part; 0: answered (or re-queued)
        try:
            encoder = self.encoder if alone else self.shared
            for rows, vectors in encoder.infer_batches(sequences, batch_size=self.max_batch_size, shortest_first=True):
                for r, vec in zip(rows, vectors):
                    slots[r] = vec
                    k = owner[r]
                    left[k] -= 1
                    if not left[k]:
                        self._finish(batch[k], slots[offsets[k]: offsets[k + 1]])
        except Exception as exc:  # answer every caller still waiting in this batch; keep the worker alive
            for k, part in enumerate(batch):
                if left[k]:
                    _answer(part.request.future, error=exc)
        if self.on_batch is not None:
            stats = BatchStats(
                requests=len(batch), sequences=len(sequences),
                tokens=sum(int(p.request.lengths[p.start: p.end].sum()) for p in batch),
                queue_waits=waits, infer_seconds=time.monotonic() - started, alone=alone,
            )
            try:
                self.on_batch(stats)
            except Exception:  # a callback must never stop the worker
                log.exception("batcher: on_batch callback raised; the worker goes on")

    def _finish(self, part: _Part, rows: list) -> None:
        """A part's rows are done: requeue the request's rest, or answer it."""
        req = part.request
        if req.future.cancelled():  # its caller gave up: nothing to answer, no rest to run
            return
        req.rows.extend(rows)
        req.done = part.end
        if req.remaining:
            req.ready = time.monotonic()
            self._pending.put(req)  # behind whatever arrived meanwhile
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
