"""Server limits in one frozen dataclass: `serve`'s flags (name, default, help) and the server's behaviour both read it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from runtime.core.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_WINDOWS
from runtime.errors import InvalidInputError
from runtime.serving.batcher import DEFAULT_MAX_WAIT_MS


def limit(default: int | float, help: str, least: float = 1, most: float = math.inf) -> Any:
    """A field with its flag's help text and the least and most values it takes (always a finite number)."""
    return field(default=default, metadata={"help": help, "least": least, "most": most})


@dataclass(frozen=True)
class ServerLimits:
    """Server limits; names follow TEI's flags. Token counts are padded: batch × longest sequence."""

    max_batch_tokens: int = limit(DEFAULT_MAX_BATCH_TOKENS, "padded tokens (batch × longest sequence) per inference "
                                  "batch, in the batcher's gather and in each run")
    max_batch_size: int = limit(DEFAULT_BATCH_SIZE, "sequences per inference batch")
    instances: int = limit(0, "inference runs at once per model, each on threads ÷ instances; a batch alone in the "
                           "queue runs on all threads (0: 2 on ONNX Runtime's CPU provider with 2+ threads, else 1)",
                           least=0, most=64)
    max_wait_ms: float = limit(DEFAULT_MAX_WAIT_MS, "how long a batch may wait for more requests once the worker is "
                               "free (0: it takes what is queued and starts)", least=0, most=60_000)
    run_cost_tokens: float = limit(-1.0, "what one inference run costs beyond its tokens, in padded tokens' worth: "
                                   "each batch splits into the runs of least total cost (-1: timed at start-up on "
                                   "the model's instances, as /info shows)", least=-1, most=4096)
    max_concurrent_requests: int = limit(512, "requests in flight before 429")
    max_client_batch_size: int = limit(32, "inputs per request before 413")
    payload_limit: int = limit(2_000_000, "request body bytes before 413, checked before parsing")
    max_windows: int = limit(DEFAULT_MAX_WINDOWS, "windows per text with `windows: true` before 413")
    max_connections: int = limit(1024, "open connections before new ones get 503 and are closed (each holds a "
                                 "file descriptor)")
    client_timeout: float = limit(10.0, "seconds a request's headers and body may take to arrive: 408 while "
                                  "headers are incomplete, then the connection is closed", least=0.001, most=3600)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, least, most = getattr(self, f.name), f.metadata["least"], f.metadata["most"]
            kinds = int if isinstance(f.default, int) else int | float
            if not isinstance(value, bool) and isinstance(value, kinds) and least <= value <= most:
                continue  # NaN fails the comparison; an int past a float's range compares exactly
            kind = "an integer" if kinds is int else "a finite number"
            bounds = f">= {least:g}" if most == math.inf else f"from {least:g} to {most:g}"
            raise InvalidInputError(f"--{f.name.replace('_', '-')} must be {kind} {bounds}, got {value!r}")

    @classmethod
    def flags(cls) -> list[tuple[str, type, object, str]]:
        """(flag, type, default, help) of every limit, for argparse."""
        return [(f"--{f.name.replace('_', '-')}", type(f.default), f.default, f.metadata["help"]) for f in fields(cls)]

    @classmethod
    def from_args(cls, args: object) -> ServerLimits:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
