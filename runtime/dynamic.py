"""DynamicBatcher: gathers concurrent encode calls into shared batches (threads and asyncio alike)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from runtime.encoder import SpladeEncoder
from runtime.sparse import SparseVector
from runtime.tokenize import Tokenized, check_texts


@dataclass
class _Request:
    tokenized: Tokenized
    n_texts: int
    top_k: int | None
    threshold: float
    future: cf.Future = field(default_factory=cf.Future)
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def tokens(self) -> int:
        return int(self.tokenized.lengths.sum())


@dataclass(frozen=True)
class BatchStats:
    """What one gathered batch did; handed to `on_batch` (the server turns it into metrics)."""

    requests: int
    sequences: int
    tokens: int
    queue_waits: tuple[float, ...]  # seconds each request waited before its batch started
    infer_seconds: float


def gather(first: _Request, pending: queue.Queue, *, max_batch_size: int, max_batch_tokens: int,
           deadline: float) -> tuple[list[_Request], _Request | None]:
    """Take requests until the deadline or a cap; returns the batch and a request that did not fit."""
    batch, sequences, tokens = [first], len(first.tokenized.sequences), first.tokens
    while sequences < max_batch_size and tokens < max_batch_tokens:
        try:
            req = pending.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if req is None:  # close() sentinel: put it back for the loop to see
            pending.put(None)
            break
        n = len(req.tokenized.sequences)
        if sequences + n > max_batch_size or tokens + req.tokens > max_batch_tokens:
            return batch, req
        batch.append(req)
        sequences, tokens = sequences + n, tokens + req.tokens
    return batch, None


class DynamicBatcher:
    """Runs one encoder on a worker thread; callers from any thread or event loop share its batches.

    A batch starts when `max_batch_size` sequences or `max_batch_tokens` tokens are waiting, or
    `max_wait_ms` after its first request arrived. Each caller gets exactly its own rows back;
    a failing batch fails only its own requests, and the worker keeps going.

    Example:
        >>> with DynamicBatcher(SpladeEncoder("models/splade-tiny-fp32"), max_wait_ms=2) as b:
        ...     vecs = b.encode(["a query"])          # from threads
        ...     vecs = await b.aencode(["a query"])   # from asyncio
    """

    def __init__(self, encoder: SpladeEncoder, *, max_batch_size: int = 32, max_batch_tokens: int = 16384,
                 max_wait_ms: float = 5.0, on_batch: Callable[[BatchStats], None] | None = None):
        if max_batch_size < 1 or max_batch_tokens < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_batch_tokens must be >= 1, max_wait_ms >= 0")
        self.encoder = encoder
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._pending: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name="splade-batcher", daemon=True)
        self._worker.start()

    def submit(self, texts: str | Sequence[str], *, top_k: int | None = None, threshold: float = 0.0,
               truncate: bool = True) -> cf.Future:
        """Queue texts (tokenized here, in the caller's thread); the future yields list[SparseVector]."""
        texts = check_texts(texts)
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1 (or None for every non-zero term)")
        req = _Request(self.encoder.tokenizer.encode(texts, truncate=truncate), len(texts), top_k, threshold)
        if not texts:
            req.future.set_result([])
            return req.future
        with self._lock:
            if self._closed:
                raise RuntimeError("DynamicBatcher is closed")
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
        self._worker.join()

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
                if self._pending.empty():
                    return
                continue
            batch, carry = gather(first, self._pending, max_batch_size=self.max_batch_size,
                                  max_batch_tokens=self.max_batch_tokens, deadline=first.enqueued + self.max_wait)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        started = time.monotonic()
        try:
            sequences = [s for req in batch for s in req.tokenized.sequences]
            rows = self.encoder.infer(sequences, batch_size=self.max_batch_size)
            offset = 0
            for req in batch:
                n = len(req.tokenized.sequences)
                mine = rows[offset: offset + n]
                offset += n
                req.future.set_result(SpladeEncoder.collect(req.tokenized, mine, n_texts=req.n_texts,
                                                            top_k=req.top_k, threshold=req.threshold))
        except Exception as exc:  # answer every caller; keep the worker alive
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(BatchStats(
                requests=len(batch), sequences=len(sequences), tokens=sum(r.tokens for r in batch),
                queue_waits=tuple(started - r.enqueued for r in batch), infer_seconds=time.monotonic() - started,
            ))
