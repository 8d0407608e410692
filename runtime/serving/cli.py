"""`python -m runtime serve`: flags and uvicorn start-up (server packages are imported only here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.backends.ort import AUTO_ORDER
from runtime.serving.limits import ServerLimits

_D = ServerLimits()  # every default below is read from the dataclass, never repeated


def add_serve_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="HTTP server: TEI-compatible /embed_sparse, /encode, /health, /info, /metrics")
    p.add_argument("--model", required=True, type=Path, help="document (or only) model folder")
    p.add_argument("--query-model", type=Path, default=None, help="separate query model folder (efficient SPLADE, or a static query model)")
    p.add_argument("--provider", default="auto", choices=["auto", *AUTO_ORDER, "openvino"],
                   help="auto tries TensorRT, CUDA, then CPU; openvino (bf16 where native) only when named. Default: %(default)s")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: usable cores)")
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
    p.add_argument("--allow-spinning", type=int, choices=[0, 1], default=1,
                   help="1: ONNX Runtime's idle threads spin (its default; measured best for latency and tails here, "
                   "docs/cpu-precisions.md); 0: they sleep, leaving the cores to the HTTP and tokenization threads. "
                   "Default: %(default)s")
    p.add_argument("--allow-failed-validation", action="store_true",
                   help="serve a folder whose export failed validation against PyTorch (refused by default)")
    return p


def build_app(args):
    """The ASGI app the flags describe (encoders loaded, limits checked); `run_server` serves it, tests call it in process."""
    from runtime.core.encoder import SpladeEncoder, open_encoder
    from runtime.serving.app import ServerLimits, create_app

    limits = ServerLimits(max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
                          max_wait_ms=args.max_wait_ms, max_concurrent_requests=args.max_concurrent_requests,
                          max_client_batch_size=args.max_client_batch_size, payload_limit=args.payload_limit,
                          max_windows=args.max_windows)
    for name in ("max_batch_tokens", "max_batch_size", "max_concurrent_requests", "max_client_batch_size",
                 "payload_limit", "max_windows"):
        if getattr(limits, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1")
    kwargs = dict(threads=args.threads, max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
                  max_windows=args.max_windows, allow_failed_validation=args.allow_failed_validation,
                  allow_spinning=bool(args.allow_spinning))
    document = SpladeEncoder(args.model, args.provider, **kwargs)
    query = open_encoder(args.query_model, args.provider, **kwargs) if args.query_model else None
    return create_app(document, query, limits)


def run_server(args) -> int:
    import uvicorn

    uvicorn.run(build_app(args), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=30)
    return 0
