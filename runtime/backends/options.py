"""Session options: the one owner of provider names and of everything that shapes a backend's session."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from runtime.core.batching import Buckets
from runtime.core.checks import check_positive_int
from runtime.errors import ProviderError, UnknownProviderError

ProviderName = Literal["auto", "tensorrt", "cuda", "cpu", "openvino"]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)
# "auto" tries these in order; OpenVINO's own runtime runs only when named.
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
ProviderOptions = Mapping[str, Mapping[str, Any]]
# The most sequences one run holds unless the caller says otherwise; TensorRT's profile is built for it.
DEFAULT_MAX_BATCH_SIZE = 64


def default_threads() -> int:
    """Intra-op threads: the cores this process may run on (ORT's own default counts all cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_instances(provider: str, threads: int | None, instances: int = 0) -> tuple[int, int | None]:
    """(concurrent runs, intra-op threads of each) for a server's model, as Triton's instance groups.

    `instances` 0 is the default: on ONNX Runtime's CPU provider with 2+ threads, 2 runs of half the
    threads each. Under load, two 1-thread runs on 2 vCPUs did 1.2-1.4x the texts/s of one 2-thread
    run (no barrier between ops to wait at while the HTTP work holds a core; docs/server.md). Other
    providers: 1 (a GPU runs one batch at a time; OpenVINO splits its threads into streams itself).
    Threads are split only on CPU providers; GPU runs share their one session.
    """
    total = threads or default_threads()
    count = instances or (2 if provider == "cpu" and total >= 2 else 1)
    if provider in ("cpu", "openvino"):
        return count, max(1, total // count)
    return count, threads


def instances_share_a_session(provider: str, threads: int | None) -> bool:
    """Whether concurrent runs of `threads` each can share one session, or each instance needs its own.

    ONNX Runtime's runs of one session share its intra-op thread pool: two runs of 4 threads on one
    session compete for that pool's threads instead of using 8 cores. At 1 thread a run has no pool
    (it runs on its caller's thread), so one session serves every instance. On a GPU the instances
    share the one session (and device); with CUDA graphs its runs take turns, so instances there
    overlap only the work around each run (padding, vectors). OpenVINO's backend runs one inference
    request at a time: each instance needs its own. Sessions of their own cost memory: one copy of the weights each
    (docs/limits.md).
    """
    if provider == "openvino":
        return False
    return provider != "cpu" or threads == 1


def check_provider(name: object) -> str:
    """One of PROVIDERS, or an UnknownProviderError (a ValueError) listing them."""
    if name not in PROVIDERS:
        raise UnknownProviderError(f"provider must be one of {', '.join(PROVIDERS)}; got {name!r}")
    return str(name)


def check_option_keys(provider_options: ProviderOptions | None) -> None:
    """provider_options are keyed by our provider names (ONNX Runtime's and "openvino")."""
    unknown = set(provider_options or {}) - set(PROVIDERS[1:])
    if unknown:
        raise ProviderError(f"provider_options keys must be among {', '.join(PROVIDERS[1:])}; "
                            f"got {', '.join(sorted(unknown))}")


@dataclass(frozen=True)
class SessionOptions:
    """How a backend builds its session; checked once here, read by every backend.

    Attributes:
        provider: "auto" (TensorRT, then CUDA, then CPU: the first that really runs) or one by name.
        threads: intra-op threads (None: the cores this process may use).
        max_batch_size: the most sequences one run holds; TensorRT's optimization profile is built
            for it and runs above it are split (other providers take any size).
        allow_spinning: ONNX Runtime's idle worker threads spin (its default) or sleep.
        provider_options: ONNX Runtime options per provider on top of ours (a None value drops one of
            ours), or OpenVINO CPU properties under "openvino".
        cache_dir: where TensorRT engines are cached (default: the runtime's cache root).
        graph_buckets: (batch, length) shapes small batches are padded to for CUDA graphs.
    """

    provider: ProviderName = "auto"
    threads: int | None = None
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    allow_spinning: bool = True
    provider_options: ProviderOptions | None = None
    cache_dir: Path | None = None
    graph_buckets: Buckets | None = None

    def __post_init__(self) -> None:
        check_provider(self.provider)
        check_option_keys(self.provider_options)
        check_positive_int(self.max_batch_size, "max_batch_size")
        if self.threads == 0 and not isinstance(self.threads, bool):  # ONNX Runtime's own "0: the default"
            object.__setattr__(self, "threads", None)
        if self.threads is not None:
            check_positive_int(self.threads, "threads")
        if self.cache_dir is not None and not isinstance(self.cache_dir, Path):
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
