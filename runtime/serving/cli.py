"""`python -m runtime serve`: flags and uvicorn start-up (server packages are imported only here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.flags import add_model_flags, encoder_options
from runtime.serving.limits import ServerLimits

_D = ServerLimits()  # every default below is read from the dataclass, never repeated


def add_serve_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="HTTP server: TEI-compatible /embed_sparse, /encode, /health, /info, /metrics")
    add_model_flags(p, model_help="document (or only) model folder")
    p.add_argument("--query-model", type=Path, default=None, help="separate query model folder (efficient SPLADE, or a static query model)")
    p.add_argument("--host", default="127.0.0.1", help="Default: %(default)s")
    p.add_argument("--port", type=int, default=8080, help="Default: %(default)s")
    p.add_argument("--max-batch-tokens", type=int, default=_D.max_batch_tokens,
                   help="padded tokens (batch × longest sequence) per inference batch, in the batcher's gather "
                        "and in each run. Default: %(default)s")
    p.add_argument("--max-batch-size", type=int, default=_D.max_batch_size,
                   help="sequences per inference batch. Default: %(default)s")
    p.add_argument("--max-wait-ms", type=float, default=_D.max_wait_ms,
                   help="how long a batch waits for more requests. Default: %(default)s")
    p.add_argument("--max-concurrent-requests", type=int, default=_D.max_concurrent_requests,
                   help="requests in flight before 429. Default: %(default)s")
    p.add_argument("--max-client-batch-size", type=int, default=_D.max_client_batch_size,
                   help="inputs per request before 413. Default: %(default)s")
    p.add_argument("--payload-limit", type=int, default=_D.payload_limit,
                   help="request body bytes before 413, checked before parsing. Default: %(default)s")
    p.add_argument("--max-windows", type=int, default=_D.max_windows,
                   help="windows per text with `windows: true` before 413. Default: %(default)s")
    p.add_argument("--max-connections", type=int, default=_D.max_connections,
                   help="open connections before new ones get 503 and are closed (each holds a file "
                        "descriptor). Default: %(default)s")
    p.add_argument("--client-timeout", type=float, default=_D.client_timeout,
                   help="seconds a request's headers and body may take to arrive: 408 while headers are "
                        "incomplete, then the connection is closed. Default: %(default)s")
    return p


def build_app(args: argparse.Namespace):
    """The ASGI app the flags describe (limits checked, encoders loaded); `run_server` serves it, tests call it in process."""
    from runtime.core.encoder import SpladeEncoder, open_encoder
    from runtime.serving.app import create_app

    limits = ServerLimits(max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
                          max_wait_ms=args.max_wait_ms, max_concurrent_requests=args.max_concurrent_requests,
                          max_client_batch_size=args.max_client_batch_size, payload_limit=args.payload_limit,
                          max_windows=args.max_windows, max_connections=args.max_connections,
                          client_timeout=args.client_timeout)
    # a run never holds more than the batcher gathers: TensorRT's profile is built for exactly that
    options = encoder_options(args, max_batch_tokens=limits.max_batch_tokens, max_batch_size=limits.max_batch_size,
                              max_windows=limits.max_windows)
    document = SpladeEncoder(args.model, args.provider, **options)
    query = open_encoder(args.query_model, args.provider, **options) if args.query_model else None
    return create_app(document, query, limits)


def run_server(args: argparse.Namespace) -> int:
    import uvicorn

    from runtime.serving.protocol import bounded_protocol

    app = build_app(args)
    limits: ServerLimits = app.state.limits
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=30,
                http=bounded_protocol(limits.max_connections, limits.client_timeout))
    return 0
