"""HTTP router: TEI-compatible `/embed_sparse`, richer `/encode`, health, info and Prometheus metrics.

Layers as in text-embeddings-inference: this module knows requests and limits; DynamicBatcher
knows tokens and deadlines; the encoder's Backend knows ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import asdict
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.backends.options import instances_share_a_session, plan_instances
from runtime.core.options import EncodeOptions
from runtime.core.pipeline import SparseEncoder
from runtime.errors import InputTooLongError, InvalidInputError, OverloadedError
from runtime.serving.batcher import BatchStats, DynamicBatcher
from runtime.serving.fastpath import EmbedSparseFastPath
from runtime.serving.guard import Guard, error_response
from runtime.serving.limits import ServerLimits
from runtime.serving.runcost import run_cost_tokens
from runtime.serving.schemas import (
    EmbedSparseRequest,
    EncodeRequest,
    EncodeResponse,
    ErrorResponse,
    PruneType,
    SparseValue,
    prune_options,
)

__all__ = ["ServerLimits", "create_app"]

INLINE_TOKENIZE_CHARS = 4096  # requests this short are tokenized on the event loop


class VectorsResponse(Response):
    """Vectors as JSON through orjson: a 512-term vector renders in 25 µs instead of json.dumps's 430."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content)


_error = error_response


def overloaded_response(exc: OverloadedError) -> JSONResponse:
    return _error(429, str(exc), "overloaded", headers={"Retry-After": "1"})
MAX_PROBLEMS = 5  # validation problems listed in one 422 (a body of 100k bad items must not echo them all)


class Metrics:
    """Prometheus series for one app (own registry, so several apps can live in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("splade_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.batch_requests = Histogram("splade_batch_requests", "Requests per inference batch",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.batch_sequences = Histogram("splade_batch_sequences", "Sequences per inference batch",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.batch_tokens = Histogram("splade_batch_tokens", "Tokens per inference batch",
                                      buckets=(16, 64, 256, 1024, 4096, 16384, 65536), registry=self.registry)
        self.queue_wait = Histogram("splade_queue_wait_seconds", "Time a request waited for its batch",
                                    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5), registry=self.registry)
        self.inference = Histogram("splade_inference_seconds", "Inference time per batch",
                                   buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 30), registry=self.registry)

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_sequences.observe(stats.sequences)
        self.batch_tokens.observe(stats.tokens)
        for wait in stats.queue_waits:
            self.queue_wait.observe(wait)
        self.inference.observe(stats.infer_seconds)


def instances_of(batcher: DynamicBatcher) -> dict:
    """How a model's runs are laid out, for /info: runs at once, the threads each has, the sessions they share."""
    return {"instances": batcher.instances, "instance_threads": batcher.shared[0].session.threads,
            "instance_sessions": len({id(runner) for runner in batcher.shared}),
            "run_cost_tokens": batcher.run_cost_tokens}


def create_app(document: SparseEncoder, query: SparseEncoder | None = None, limits: ServerLimits | None = None) -> FastAPI:
    """The ASGI app. Batchers start (and a warm-up batch runs) in the lifespan; shutdown drains them."""
    limits = limits or ServerLimits()
    metrics = Metrics()
    encoders = {"document": document, "query": query or document}
    state = {"ready": False, "in_flight": 0}
    batchers: dict[str, DynamicBatcher] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for kind, enc in encoders.items():
            same = next((b for k, b in batchers.items() if encoders[k] is enc), None)
            batchers[kind] = same if same is not None else await asyncio.to_thread(start_batcher, enc)
        for batcher in set(batchers.values()):
            await batcher.aencode(["warm-up query", "a somewhat longer warm-up passage " * 8])
        state["ready"] = True
        yield
        state["ready"] = False
        for batcher in set(batchers.values()):
            await asyncio.to_thread(batcher.close)  # finishes accepted requests

    def start_batcher(enc: SparseEncoder) -> DynamicBatcher:
        """The model's batcher, with its instances: on CPU they run on sessions of fewer threads (one they
        share at 1 thread each, else one each), warmed up here so that no request pays a first run; and
        what a run costs beyond its tokens, timed on them, to plan each batch's runs."""
        count, threads = plan_instances(enc.provider, enc.session.threads, limits.instances)
        shares = instances_share_a_session(enc.provider, threads)
        if count == 1 or (shares and threads == enc.session.threads):
            shared: list[SparseEncoder] = [enc]
        else:
            shared = [enc.reopen(threads=threads) for _ in range(1 if shares else count)]
            for runner in shared:
                runner.encode(["warm-up query", "a somewhat longer warm-up passage " * 8])
        cost = run_cost_tokens(shared[0]) if limits.run_cost_tokens < 0 else limits.run_cost_tokens
        return DynamicBatcher(enc, max_batch_size=limits.max_batch_size, max_batch_tokens=limits.max_batch_tokens,
                              max_wait_ms=limits.max_wait_ms, on_batch=metrics.on_batch, instances=count,
                              shared=shared, run_cost_tokens=cost)

    app = FastAPI(title="SPLADE ONNX server", version="0.1.0", lifespan=lifespan,
                  description="TEI-compatible sparse embeddings with ONNX Runtime.",
                  responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                             429: {"model": ErrorResponse}})
    app.state.metrics = metrics
    app.state.limits = limits

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        shown = [f"{'.'.join(str(x) for x in e['loc'][1:]) or 'body'}: {str(e['msg'])[:200]}" for e in errors[:MAX_PROBLEMS]]
        more = f"; and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
        return _error(422, f"invalid request: {'; '.join(shown)}{more}", "validation")

    @app.exception_handler(OverloadedError)
    async def overloaded(request: Request, exc: OverloadedError):
        return overloaded_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "validation" if 400 <= exc.status_code < 500 else "server"
        return _error(exc.status_code, str(exc.detail)[:500], kind, headers=getattr(exc, "headers", None))

    async def embed_sparse_answer(inputs: str | list[str], fields: dict[str, Any]) -> Response:
        """/embed_sparse's answer, for the route and for its fast path alike."""
        try:
            out = await run(as_list(inputs), "document", fields)
        except OverloadedError as exc:
            return overloaded_response(exc)
        return out if isinstance(out, JSONResponse) else VectorsResponse([v.to_tei() for v in out])

    paths: set[str] = set()  # the app's route paths, filled below once the routes exist
    app.add_middleware(EmbedSparseFastPath, handle=embed_sparse_answer)  # inside the Guard (added next)
    app.add_middleware(Guard, limit=limits.payload_limit, paths=paths,
                       count=lambda route, status: metrics.requests.labels(route, status).inc())

    async def run(texts: list[str], kind: str, fields: dict[str, Any], *, task: bool = False):
        """Admission (413/429), then options (built once from `fields`; with `task`, the kind's prompt when none
        is named) and texts checked once (by the batcher's submit), then the batch."""
        if len(texts) > limits.max_client_batch_size:
            return _error(413, f"batch size {len(texts)} > maximum allowed batch size {limits.max_client_batch_size}",
                          "validation")
        if state["in_flight"] >= limits.max_concurrent_requests:
            raise OverloadedError(f"model is overloaded: {limits.max_concurrent_requests} requests in flight")
        state["in_flight"] += 1
        try:
            try:
                options = EncodeOptions(**fields, max_windows=limits.max_windows)
                if task:
                    options = encoders[kind].for_task(kind, options)
                submit = functools.partial(batchers[kind].submit, texts, options, name="inputs")
                # Short texts are tokenized right here (microseconds); a hop to a worker thread and back
                # would cost more than that. Long ones go to a thread so the event loop keeps serving.
                inline = sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS
                future = submit() if inline else await asyncio.to_thread(submit)
            except InputTooLongError as exc:
                return _error(413, str(exc), "validation")
            except (InvalidInputError, TypeError) as exc:  # the caller's own input, e.g. a lone surrogate named by its index
                return _error(422, str(exc), "validation")
            # a failure inside the shared batch is the server's, not the caller's: it reaches the 500 handler
            return await asyncio.wrap_future(future)
        finally:
            state["in_flight"] -= 1

    def as_list(inputs) -> list[str]:
        return [inputs] if isinstance(inputs, str) else inputs

    @app.post("/embed_sparse", response_model=list[list[SparseValue]], summary="TEI-compatible sparse embeddings")
    async def embed_sparse(body: EmbedSparseRequest):  # bodies of this exact shape are answered by the fast path
        return await embed_sparse_answer(body.inputs, body.options())

    @app.post("/encode", response_model=EncodeResponse, summary="Sparse vectors with pruning and token strings")
    async def encode(body: EncodeRequest):
        out = await run(as_list(body.inputs), body.kind, body.options(), task=True)
        if isinstance(out, JSONResponse):
            return out
        enc = encoders[body.kind]
        data = [{"indices": v.indices.tolist(), "values": v.values.tolist(),
                 **({"tokens": enc.decode(v)} if body.return_tokens else {})} for v in out]
        return VectorsResponse({"kind": body.kind, "data": data})

    @app.post("/opensearch/sparse_encoding", response_model=list[dict[str, float]],
              summary="OpenSearch remote-model shape: a JSON array of texts in, one {token: weight} per text out")
    async def opensearch(inputs: Annotated[list[StrictStr], Body(min_length=1)],
                         kind: Literal["query", "document"] = "document", prune_type: PruneType = "none",
                         prune_ratio: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None):
        try:
            pruning = prune_options(prune_type, prune_ratio)
        except InvalidInputError as exc:
            return _error(422, str(exc), "validation")
        out = await run(inputs, kind, {"truncation": "cut", **pruning}, task=True)
        if isinstance(out, JSONResponse):
            return out
        enc = encoders[kind]
        return VectorsResponse([enc.decode(v) for v in out])

    @app.get("/health")
    async def health():
        if not state["ready"]:
            return _error(503, "warming up", "unhealthy")
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        def describe(kind: str) -> dict:
            enc, m, batcher = encoders[kind], encoders[kind].manifest, batchers.get(kind)
            return {"model": m.source_model, "revision": m.source_revision, "precision": m.precision,
                    "pooling": m.pooling, "top_k": m.top_k, "max_input_length": m.max_length,
                    "provider": enc.provider, "sha256": m.sha256,
                    **(instances_of(batcher) if batcher else {})}
        return {"document": describe("document"), "query": describe("query"),
                "limits": asdict(limits), "started": started}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4")

    started = time.time()
    paths.update(getattr(route, "path", "") for route in app.routes)
    return app
