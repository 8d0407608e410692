"""Server limits in one dataclass: the CLI's defaults and the server's behaviour both read it."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.core.checks import DEFAULT_MAX_WINDOWS


@dataclass(frozen=True)
class ServerLimits:
    """Server limits; names follow TEI's flags. Token counts are padded: batch × longest sequence."""

    max_batch_tokens: int = 16384  # tokens (batch × longest) per inference batch
    max_batch_size: int = 32  # sequences per inference batch
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    max_concurrent_requests: int = 512  # in-flight requests before 429
    max_client_batch_size: int = 32  # inputs per request before 413
    payload_limit: int = 2_000_000  # request body bytes before 413 (checked before parsing)
    max_windows: int = DEFAULT_MAX_WINDOWS  # windows per text with `windows: true` before 413
