"""Session options: the one owner of provider names and of everything that shapes a backend's session."""

from __future__ import annotations

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
