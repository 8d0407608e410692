"""`python -m runtime serve`: flags and uvicorn start-up (server packages are imported only here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.flags import add_model_flags, encoder_options
from runtime.serving.limits import ServerLimits


def add_serve_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="HTTP server: TEI-compatible /embed_sparse, /encode, /health, /info, /metrics")
    add_model_flags(p, model_help="document (or only) model folder")
    p.add_argument("--query-model", type=Path, default=None, help="separate query model folder (efficient SPLADE, or a static query model)")
    p.add_argument("--host", default="127.0.0.1", help="Default: %(default)s")
    p.add_argument("--port", type=int, default=8080, help="Default: %(default)s")
    p.add_argument("--access-log", action="store_true",
                   help="log a line per request (uvicorn's access log; off by default: at hundreds of requests a "
                        "second the line costs the event loop about a tenth of its time, and /metrics counts "
                        "every request by route and status)")
    for flag, kind, default, text in ServerLimits.flags():
        p.add_argument(flag, type=kind, default=default, help=f"{text}. Default: %(default)s")
    return p


def build_app(args: argparse.Namespace):
    """The ASGI app the flags describe (limits checked, encoders loaded); `run_server` serves it, tests call it in process."""
    from runtime.core.encoder import SpladeEncoder, open_encoder
    from runtime.serving.app import create_app

    limits = ServerLimits.from_args(args)
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
                access_log=args.access_log, http=bounded_protocol(limits.max_connections, limits.client_timeout))
    return 0
