"""Token sequences -> padded batches: length sorting, count and token-budget caps. No ONNX here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from runtime.errors import InvalidInputError


@dataclass(frozen=True)
class Batch:
    """What the backend sees: padded ids and mask [batch, longest], and which sequences they are."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    rows: np.ndarray  # positions in the caller's sequence list

    @property
    def tokens(self) -> int:
        return int(self.input_ids.size)


def lengths_of(sequences: Sequence[np.ndarray]) -> np.ndarray:
    return np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))


COST_PLAN_MAX_SEQUENCES = 64  # past this, a batch's runs are large enough that the length-ratio rule serves
MAX_PADDING = 1.25  # a sequence joins a batch only if the batch's longest is at most this × its length


def plan(lengths: np.ndarray, *, max_batch_size: int, max_batch_tokens: int, sort: bool = True,
         max_padding: float = MAX_PADDING, shortest_first: bool = False) -> list[np.ndarray]:
    """Group sequence positions into batches.

    Sorted (longest first, or `shortest_first` where short texts should be answered first, as in the
    server's shared batches) so each batch pads only to its own longest member; a batch closes when
    it holds `max_batch_size` sequences, when one more would make batch × longest exceed
    `max_batch_tokens` (a single sequence longer than the budget still gets a batch of its own),
    or, when sorted, when the next sequence is so short that padding it to the batch's longest
    would cost more than `max_padding` times its own work (queries never ride with documents).
    """
    if max_batch_size < 1 or max_batch_tokens < 1:
        raise InvalidInputError("max_batch_size and max_batch_tokens must be >= 1")
    if not sort:
        order = np.arange(len(lengths))
    else:
        order = np.argsort(lengths if shortest_first else -lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end, longest, shortest = start, 0, 0
        while end < len(order) and end - start < max_batch_size:
            length = int(lengths[order[end]])
            candidate = max(longest, length)
            if end > start and candidate * (end - start + 1) > max_batch_tokens:
                break
            if sort and end > start and candidate > max_padding * min(shortest, length):
                break
            shortest = length if end == start else min(shortest, length)
            longest, end = candidate, end + 1
        batches.append(order[start:end])
        start = end
    return batches


def plan_by_cost(lengths: np.ndarray, *, run_cost_tokens: float, max_batch_size: int,
                 max_batch_tokens: int) -> list[np.ndarray]:
    """Group sequence positions into runs of the least total cost, shortest first.

    A run costs `run_cost_tokens` (its fixed cost: launching the graph, streaming the weights, in
    padded tokens' worth) plus its padded tokens (rows × longest). Over the lengths sorted, the best
    split into consecutive runs is a dynamic program (O(n²) for the n sequences of one gathered
    batch). Merging two runs pays when the padding it adds costs less than the run it saves: a
    tiny model's run of one 10-token query costs as much as a run of three. Caps as in `plan`.
    The work grows with n × max_batch_size: callers keep n small (COST_PLAN_MAX_SEQUENCES).
    """
    if max_batch_size < 1 or max_batch_tokens < 1:
        raise InvalidInputError("max_batch_size and max_batch_tokens must be >= 1")
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order].tolist()
    n = len(sorted_lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j sequences
    start = [0] * (n + 1)  # where the last run of that best split begins
    for end in range(1, n + 1):
        longest = sorted_lengths[end - 1]
        for first in range(end - 1, -1, -1):
            rows = end - first
            if rows > max_batch_size or (rows > 1 and rows * longest > max_batch_tokens):
                break
            cost = best[first] + run_cost_tokens + rows * longest
            if cost <= best[end]:  # among equal costs, fewer runs
                best[end], start[end] = cost, first
    runs: list[np.ndarray] = []
    end = n
    while end > 0:
        runs.append(order[start[end]:end])
        end = start[end]
    return runs[::-1]


def pad(sequences: Sequence[np.ndarray], rows: np.ndarray, pad_id: int) -> Batch:
    """Right-pad the chosen sequences to the longest of them (never to max length)."""
    chosen = [sequences[i] for i in rows]
    longest = max(len(s) for s in chosen)
    ids = np.full((len(chosen), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(chosen), longest), dtype=np.int64)
    for r, seq in enumerate(chosen):
        ids[r, : len(seq)] = seq
        mask[r, : len(seq)] = 1
    return Batch(ids, mask, np.asarray(rows, dtype=np.int64))


@dataclass(frozen=True)
class Buckets:
    """Fixed (batch, length) shapes a batch may be padded up to, so that each shape can be
    captured once as a CUDA graph and replayed: a 10-token query costs one graph launch instead of
    hundreds of kernel launches. Only small batches are bucketed (`max_tokens`): there launch
    overhead dominates, while for large batches padding waste would cost more than it saves.
    """

    lengths: tuple[int, ...] = (16, 32, 48, 64, 96, 128)
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    max_tokens: int = 4096  # bucket batch × bucket length

    def __post_init__(self):
        for name in ("lengths", "batch_sizes"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values) or list(values) != sorted(set(values)):
                raise InvalidInputError(f"Buckets.{name} must be increasing positive ints, got {values!r}")
        if self.max_tokens < 1:
            raise InvalidInputError("Buckets.max_tokens must be >= 1")

    def within(self, max_length: int) -> Buckets | None:
        """These buckets without lengths beyond the model's max length (None if none is left)."""
        lengths = tuple(n for n in self.lengths if n <= max_length)
        return replace(self, lengths=lengths) if lengths else None

    def fit(self, batch_size: int, length: int) -> tuple[int, int] | None:
        """The smallest bucket holding a [batch_size, length] batch, or None to run it as it is."""
        n = next((b for b in self.batch_sizes if b >= batch_size), None)
        seq = next((s for s in self.lengths if s >= length), None)
        if n is None or seq is None or n * seq > self.max_tokens:
            return None
        return n, seq


def pad_to(batch: Batch, batch_size: int, length: int, pad_id: int) -> Batch:
    """`batch` padded to exactly [batch_size, length]: extra columns are padding (mask 0), extra
    rows repeat the first row (their outputs are dropped; a row of padding alone would give an
    attention over no tokens). Padding never changes a real row's vector: the graph masks padded
    keys and replaces padded positions before pooling."""
    n, seq = batch.input_ids.shape
    if batch_size < n or length < seq:
        raise InvalidInputError(f"cannot pad a [{n}, {seq}] batch down to [{batch_size}, {length}]")
    ids = np.full((batch_size, length), pad_id, dtype=np.int64)
    mask = np.zeros((batch_size, length), dtype=np.int64)
    ids[:n, :seq] = batch.input_ids
    mask[:n, :seq] = batch.attention_mask
    ids[n:] = ids[0]
    mask[n:] = mask[0]
    return Batch(ids, mask, batch.rows)
