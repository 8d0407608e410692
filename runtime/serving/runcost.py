"""What one inference run costs beyond its tokens, measured once per model and provider at start-up.

The batcher splits each gathered batch into runs; whether two lengths should share a run depends on
what a run costs by itself (launching the graph, reading every weight: a 15 MB vocabulary projection
on splade-tiny, 434 MB of weights on BERT-base fp32) against what one more padded token costs. Both
differ by model, precision, provider and machine, so they are timed on the encoder the runs will use,
from a few synthetic batches, and fitted as seconds = fixed + per_token × rows × longest. On 2 vCPUs:
splade-tiny fp32 10-17 tokens' worth, BERT-base fp32 about 20 (docs/server.md).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from runtime.core.options import EncodeOptions
from runtime.core.pipeline import SparseEncoder

log = logging.getLogger("runtime")
SHAPES = ((1, 16), (4, 16), (1, 48), (4, 48))  # (rows, tokens) timed; shorter where the model's max length is
MAX_RUN_COST_TOKENS = 4096.0  # a fixed cost past this merges everything the caps allow anyway


def run_cost_tokens(encoder: SparseEncoder, *, repeats: int = 7, budget_s: float = 0.5) -> float | None:
    """A run's fixed cost in padded tokens' worth (up to MAX_RUN_COST_TOKENS), or None when the timings fit
    no positive fixed cost and cost per token (the batcher then keeps its length-ratio rule). Each shape
    runs up to `repeats` times within about `budget_s`, and its fastest run counts (the least disturbed by
    other work on the machine); shapes the encoder would split into several runs are left out."""
    seed = encoder.tokenize(["sparse retrieval"], EncodeOptions.of(truncate=True)).sequences[0]
    x: list[float] = []
    y: list[float] = []
    for rows, wanted in SHAPES:
        length = max(3, min(wanted, encoder.max_length))
        if rows > encoder.session.max_batch_size or rows * length > encoder.options.max_batch_tokens:
            continue
        sequence = np.concatenate([seed[:1], np.repeat(seed[1:2], length - 2), seed[-1:]])
        batch = [sequence] * rows
        times: list[float] = []
        began = time.perf_counter()
        for i in range(repeats + 1):  # the first run of a shape is not timed (allocations, kernel choice)
            start = time.perf_counter()
            for _ in encoder.infer_batches(batch, batch_size=rows, sort=False):
                pass
            if i:
                times.append(time.perf_counter() - start)
            if times and time.perf_counter() - began > budget_s:
                break
        x.append(rows * length)
        y.append(min(times))
    if len(set(x)) < 2:
        log.info("run cost: the batch caps leave one shape to time; runs split by length ratio")
        return None
    per_token, fixed = np.polyfit(np.array(x, dtype=float), np.array(y), 1)
    if not (per_token > 0 and fixed > 0):
        log.info("run cost: timings %s fit no positive fixed cost and cost per token; runs split by length ratio", y)
        return None
    tokens = float(min(fixed / per_token, MAX_RUN_COST_TOKENS))
    log.info("run cost: %.2f ms fixed + %.1f µs per padded token = %.0f tokens' worth", fixed * 1e3,
             per_token * 1e6, tokens)
    return tokens
