"""The model and session flags every `python -m runtime` command shares, read into the encoder's options once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from runtime.backends.options import PROVIDERS, SessionOptions
from runtime.core.options import EncoderOptions

_SESSION, _ENCODER = SessionOptions(), EncoderOptions()  # every default below is read from them


def add_model_flags(p: argparse.ArgumentParser, *, model_help: str = "folder written by `python -m export`") -> None:
    """--model, --provider, --threads, --allow-spinning, --allow-failed-validation, -v."""
    p.add_argument("--model", required=True, type=Path, help=model_help)
    p.add_argument("--provider", default=_SESSION.provider, choices=PROVIDERS,
                   help="execution provider; auto tries TensorRT, CUDA, then CPU (openvino only when named: "
                        "bf16 where the CPU has it). Default: %(default)s")
    p.add_argument("--threads", type=int, default=_SESSION.threads, help="intra-op threads (default: usable cores)")
    p.add_argument("--allow-spinning", type=int, choices=[0, 1], default=int(_SESSION.allow_spinning),
                   help="1: ONNX Runtime's idle threads spin (its default; measured best for latency and tails, "
                        "docs/cpu-precisions.md); 0: they sleep, leaving the cores to other threads "
                        "(HTTP, tokenization). Default: %(default)s")
    p.add_argument("--allow-failed-validation", action="store_true", default=_ENCODER.allow_failed_validation,
                   help="load a folder whose export failed validation against PyTorch (refused by default)")
    p.add_argument("-v", "--verbose", action="store_true", help="log which provider runs and why others did not")


def encoder_options(args: argparse.Namespace, **more: Any) -> dict[str, Any]:
    """The keyword options of `SpladeEncoder` / `open_encoder` the shared flags give, plus `more`."""
    return dict(threads=args.threads, allow_spinning=bool(args.allow_spinning),
                allow_failed_validation=args.allow_failed_validation, **more)
