"""batching.plan and pad: count and token caps, length sorting, the 1.25× padding rule."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.core.batching import MAX_PADDING, lengths_of, pad, plan


def covers_each_once(batches, n):
    return sorted(np.concatenate(batches).tolist()) == list(range(n))


def test_token_and_count_caps():
    lengths = np.array([5, 40, 7, 30, 12, 3])
    batches = plan(lengths, max_batch_size=4, max_batch_tokens=64, max_padding=100)
    assert covers_each_once(batches, 6)
    for rows in batches:
        assert len(rows) <= 4 and (len(rows) == 1 or len(rows) * lengths[rows].max() <= 64)
    assert [b.tolist() for b in plan(np.full(10, 8), max_batch_size=4, max_batch_tokens=10_000)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_sequence_over_the_budget_gets_a_batch_of_its_own():
    batches = plan(np.array([600, 10, 10]), max_batch_size=8, max_batch_tokens=100, max_padding=100)
    assert [b.tolist() for b in batches] == [[0], [1, 2]]


def test_sorted_longest_first_and_unsorted_keeps_order():
    lengths = np.array([3, 9, 5, 9])
    assert [b.tolist() for b in plan(lengths, max_batch_size=2, max_batch_tokens=1000, max_padding=100)] == [
        [1, 3], [2, 0]]
    assert [b.tolist() for b in plan(lengths, max_batch_size=2, max_batch_tokens=1000, sort=False)] == [
        [0, 1], [2, 3]]


def test_padding_rule_keeps_queries_away_from_documents():
    # a sequence joins only if the batch's longest is at most MAX_PADDING × its own length
    assert MAX_PADDING == 1.25
    lengths = np.array([100, 80, 79, 10])
    batches = plan(lengths, max_batch_size=8, max_batch_tokens=10_000)
    assert [b.tolist() for b in batches] == [[0, 1], [2], [3]]  # 100 <= 1.25 × 80, but 100 > 1.25 × 79
    # the rule only applies when sorting (unsorted batches are the caller's order)
    assert [b.tolist() for b in plan(lengths, max_batch_size=8, max_batch_tokens=10_000, sort=False)] == [[0, 1, 2, 3]]


def test_shortest_first_runs_queries_first_under_the_same_padding_rule():
    lengths = np.array([100, 80, 79, 10, 12])
    batches = plan(lengths, max_batch_size=8, max_batch_tokens=10_000, shortest_first=True)
    # 12 <= 1.25 × 10; 79 and 80 ride together; 100 > 1.25 × 79
    assert [b.tolist() for b in batches] == [[3, 4], [2, 1], [0]]


def test_bad_caps_and_empty_input():
    with pytest.raises(ValueError, match="max_batch_size"):
        plan(np.array([3]), max_batch_size=0, max_batch_tokens=10)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        plan(np.array([3]), max_batch_size=1, max_batch_tokens=0)
    assert plan(np.array([], dtype=np.int64), max_batch_size=4, max_batch_tokens=10) == []


def test_pad_to_the_batch_longest_not_max_length():
    seqs = [np.array([101, 7, 102]), np.array([101, 5, 6, 7, 8, 102]), np.array([101, 102])]
    assert lengths_of(seqs).tolist() == [3, 6, 2]
    batch = pad(seqs, np.array([2, 0]), pad_id=0)
    assert batch.input_ids.tolist() == [[101, 102, 0], [101, 7, 102]]
    assert batch.attention_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch.rows.tolist() == [2, 0] and batch.tokens == 6
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
