"""Server limits in one frozen dataclass: the CLI's defaults and the server's behaviour both read it."""

from __future__ import annotations

from dataclasses import dataclass, fields

from runtime.core.checks import check_positive_int
from runtime.core.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_WINDOWS
from runtime.errors import InvalidInputError


@dataclass(frozen=True)
class ServerLimits:
    """Server limits; names follow TEI's flags. Token counts are padded: batch × longest sequence."""

    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS  # tokens (batch × longest) per inference batch
    max_batch_size: int = DEFAULT_BATCH_SIZE  # sequences per inference batch
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    max_concurrent_requests: int = 512  # in-flight requests before 429
    max_client_batch_size: int = 32  # inputs per request before 413
    payload_limit: int = 2_000_000  # request body bytes before 413 (checked before parsing)
    max_windows: int = DEFAULT_MAX_WINDOWS  # windows per text with `windows: true` before 413
    max_connections: int = 1024  # open connections before 503 (each holds a file descriptor)
    client_timeout: float = 10.0  # seconds a request's headers and body may take to arrive before 408 / close

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("max_wait_ms", "client_timeout"):
                least = 0 if f.name == "max_wait_ms" else 0.001
                if isinstance(value, bool) or not isinstance(value, int | float) or not value >= least:
                    raise InvalidInputError(f"--{f.name.replace('_', '-')} must be >= {least}, got {value!r}")
                continue
            try:
                check_positive_int(getattr(self, f.name), f.name)
            except InvalidInputError:
                raise InvalidInputError(f"--{f.name.replace('_', '-')} must be >= 1, got "
                                        f"{getattr(self, f.name)!r}") from None
