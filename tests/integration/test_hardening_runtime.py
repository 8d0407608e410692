"""Hardening of the library: bounded memory, argument type rules, odd text, and a batcher whose
errors stay with their caller. Vectors are compared with the independent PyTorch reference."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime import DynamicBatcher, InputTooLongError, SpladeEncoder
from runtime.core.options import CHARS_PER_TOKEN
from runtime.core.pipeline import CHUNK_TEXTS
from tests.conftest import assert_matches

REPO = Path(__file__).resolve().parents[2]
PASSAGE = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
           "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. ")


@pytest.fixture(scope="module")
def encoder(fp32_dir):
    return SpladeEncoder(fp32_dir, provider="cpu")


def test_character_cut_leaves_ordinary_long_texts_unchanged(encoder, reference):
    """Texts far longer than the cut (here ~40× it) give the vector of the full text's first 512 tokens."""
    long = PASSAGE * (40 * encoder.tokenizer.char_limit // len(PASSAGE))
    assert len(long) > 30 * encoder.tokenizer.char_limit
    [vec] = encoder.encode([long])
    full_ids = reference.ids(long)  # transformers on the whole text, no cut
    assert encoder.tokenizer.encode([long]).sequences[0].tolist() == full_ids
    assert_matches(vec, reference.from_ids(full_ids))
    assert encoder.tokenizer.char_limit == encoder.max_length * CHARS_PER_TOKEN


def test_huge_text_memory_is_bounded(fp32_dir):
    """One 20 MB text with truncation: only its first max_length × 32 characters are tokenized
    (before the cut it took 3 GB and 30 s); measured in a fresh process by the committed script."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory_bounds", "--model", str(fp32_dir),
                           "--child", "huge-1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["peak_rss_mib"] - row["rss_before_call_mib"] < 100, row


def test_many_short_texts_return_memory(fp32_dir):
    """2,500 short texts in one call: the heap is trimmed between chunks, so what stays resident after
    the call is close to what was there before (it was ~450 MB more before chunking and trimming)."""
    script = (
        "import json, sys\n"
        "from benchmarks.memory_bounds import status_mib\n"
        "from runtime import SpladeEncoder\n"
        f"enc = SpladeEncoder({str(fp32_dir)!r}, provider='cpu')\n"
        "texts = [f'short text {i} about ' + ['cats', 'rust', 'paris', 'tea'][i % 4] for i in range(2500)]\n"
        "before = status_mib('VmRSS')\n"
        "vecs = enc.encode(texts)\n"
        "print(json.dumps({'before': before, 'after': status_mib('VmRSS'), 'peak': status_mib('VmHWM')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["after"] - row["before"] < 100, row
    assert row["peak"] < 600, row


def test_chunked_encode_keeps_order_and_values(encoder, reference):
    n = CHUNK_TEXTS + 7
    texts = [f"text number {i} on {['cats', 'rust', 'paris'][i % 3]}" + " more" * (i % 11) for i in range(n)]
    vectors = encoder.encode(texts, batch_size=16)
    assert len(vectors) == n
    for i in (0, CHUNK_TEXTS - 1, CHUNK_TEXTS, n - 1):
        assert_matches(vectors[i], reference.encode(texts[i]))


def test_max_windows_caps_long_texts(encoder, reference):
    long = PASSAGE * 60  # ~2,000 tokens: 6 windows of 512 with stride 128
    windows = len(encoder.tokenizer.encode([long], truncate=False).sequences)
    assert windows > 3
    [vec] = encoder.encode([long], truncate=False, max_windows=windows)
    assert_matches(vec, reference.windows(long, 512, encoder.tokenizer.stride))
    with pytest.raises(InputTooLongError, match=rf"texts\[1\] needs {windows} windows.*max_windows=3"):
        encoder.encode(["short", long], truncate=False, max_windows=3)
    huge = "word " * 1_000_000  # refused by its length in characters, before any tokenizing
    with pytest.raises(InputTooLongError, match=r"texts\[0\] needs 5000000 characters"):
        encoder.encode([huge], truncate=False)
    texts = ["ok"] * (CHUNK_TEXTS + 3) + [long]  # the index counts across chunks
    with pytest.raises(InputTooLongError, match=rf"texts\[{CHUNK_TEXTS + 3}\]"):
        encoder.encode(texts, truncate=False, max_windows=2)
    with pytest.raises(ValueError, match="max_windows must be an int >= 1"):
        encoder.encode(["x"], truncate=False, max_windows=0)


@pytest.mark.parametrize("text, position", [("a\ud800b", 1), ("\udfff", 0), ("ok \ud83d then", 3)])
def test_lone_surrogate_is_a_value_error_naming_the_text(encoder, text, position):
    with pytest.raises(ValueError, match=rf"texts\[1\] holds an unpaired UTF-16 surrogate at character {position}"):
        encoder.encode(["fine", text])
    [vec] = encoder.encode(["emoji \U0001F600 are fine"])
    assert len(vec) > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 1.5}, "top_k must be an int >= 1"),
    ({"top_k": True}, "top_k must be an int >= 1"),
    ({"top_k": 0}, "top_k must be an int >= 1"),
    ({"top_k": "3"}, "top_k must be an int >= 1"),
    ({"threshold": None}, "threshold must be a finite number"),
    ({"threshold": "0"}, "threshold must be a finite number"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"threshold": float("inf")}, "threshold must be a finite number"),
    ({"threshold": False}, "threshold must be a finite number"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": 2.0}, "batch_size must be an int >= 1"),
    ({"batch_size": True}, "batch_size must be an int >= 1"),
])
def test_public_api_type_rules(encoder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        encoder.encode(["what is splade"], **kwargs)
    assert len(encoder.encode(["what is splade"], top_k=2, threshold=0)[0]) == 2  # int threshold is fine


def test_bad_arguments_fail_only_their_caller(encoder):
    """84 callers share batches; bad arguments raise at submission, in their own thread."""
    texts = [f"caller {i} asks about {['cats', 'rust', 'paris', 'onnx'][i % 4]}" for i in range(84)]
    expected = encoder.encode(texts)
    bad = [{"top_k": 1.5}, {"threshold": None}, {"threshold": "0"}, {"top_k": True}]
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(texts) + len(bad))
    with DynamicBatcher(encoder, max_batch_size=16, max_wait_ms=50) as batcher:
        def good(i):
            barrier.wait()
            results[i] = batcher.encode([texts[i]])[0]

        def wrong(j):
            barrier.wait()
            try:
                batcher.encode(["x"], **bad[j])
            except ValueError as exc:
                results[-1 - j] = exc

        threads = [threading.Thread(target=good, args=(i,)) for i in range(len(texts))]
        threads += [threading.Thread(target=wrong, args=(j,)) for j in range(len(bad))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for i, vec in enumerate(expected):
        assert np.array_equal(results[i].indices, vec.indices)
    assert all(isinstance(results[-1 - j], ValueError) for j in range(len(bad)))


def test_raising_callback_does_not_kill_the_worker(encoder, caplog):
    calls = []

    def on_batch(stats):
        calls.append(stats)
        raise RuntimeError("callback bug")

    with DynamicBatcher(encoder, max_wait_ms=1, on_batch=on_batch) as batcher:
        first = batcher.submit(["first"]).result(timeout=30)
        second = batcher.submit(["second"]).result(timeout=30)
    assert len(calls) == 2 and len(first[0]) > 0 and len(second[0]) > 0
    assert "on_batch callback raised" in caplog.text


def test_long_window_job_interleaves_with_short_requests(encoder):
    """A long windowed text runs a batch at a time: a query sent after it is answered before it ends."""
    long = PASSAGE * 120  # ~4,000 tokens: about a dozen windows, two per batch below
    order: list[str] = []
    with DynamicBatcher(encoder, max_batch_size=2, max_wait_ms=1) as batcher:
        slow = batcher.submit([long], truncate=False)
        slow.add_done_callback(lambda f: order.append("long"))
        quick = batcher.submit(["a short query"])
        quick.add_done_callback(lambda f: order.append("short"))
        [vec] = slow.result(timeout=120)
        quick.result(timeout=120)
    assert order == ["short", "long"]
    [expected] = encoder.encode([long], truncate=False)
    assert np.array_equal(vec.indices, expected.indices) and np.allclose(vec.values, expected.values, atol=1e-6)
    with DynamicBatcher(encoder, max_wait_ms=1) as batcher, pytest.raises(InputTooLongError, match="max_windows=2"):
        batcher.submit([long], truncate=False, max_windows=2)


def test_a_query_sharing_a_batch_with_later_documents_is_answered_first(encoder):
    """A gathered batch runs as sub-batches of similar lengths, first come, first served; each request is
    answered after its own sub-batch, not at the end of the batch."""
    documents = [PASSAGE * 3] * 4  # ~200 tokens each
    order: list[str] = []
    with DynamicBatcher(encoder, max_wait_ms=500) as batcher:  # long enough that both land in one batch
        query = batcher.submit(["a short query"])
        query.add_done_callback(lambda f: order.append("query"))
        docs = batcher.submit(documents)
        docs.add_done_callback(lambda f: order.append("documents"))
        got_docs, [got_query] = docs.result(timeout=60), query.result(timeout=60)
    assert order == ["query", "documents"]
    for got, want in zip([*got_docs, got_query], encoder.encode([*documents, "a short query"])):
        assert np.array_equal(got.indices, want.indices) and np.allclose(got.values, want.values, atol=1e-6)


def test_a_failing_sub_batch_fails_only_the_requests_still_waiting(fp32_dir):
    """Requests answered by an earlier sub-batch keep their vectors when a later sub-batch raises."""
    encoder = SpladeEncoder(fp32_dir, provider="cpu")
    run = encoder.backend.run

    def fail_on_long(batch):  # the real backend, refusing batches of long rows
        if batch.input_ids.shape[1] > 64:
            raise RuntimeError("device lost")
        return run(batch)

    encoder.backend.run = fail_on_long
    with DynamicBatcher(encoder, max_wait_ms=500) as batcher:
        docs = batcher.submit([PASSAGE * 3])
        query = batcher.submit(["a short query"])
        [vec] = query.result(timeout=60)
        with pytest.raises(RuntimeError, match="device lost"):
            docs.result(timeout=60)
    assert len(vec) > 0


def test_a_cancelled_request_does_not_fail_its_batch_neighbours(encoder):
    """A caller that gives up (cancel, or an asyncio timeout) is skipped; the others get their vectors."""
    documents = [PASSAGE * 3] * 4
    with DynamicBatcher(encoder, max_wait_ms=300) as batcher:
        docs = batcher.submit(documents)
        query = batcher.submit(["a short query"])
        assert query.cancel()
        got = docs.result(timeout=60)
        after = batcher.submit(["another query"]).result(timeout=60)  # the worker goes on
    for g, want in zip(got, encoder.encode(documents)):
        assert np.array_equal(g.indices, want.indices)
    assert len(after[0]) > 0


def test_queue_waits_of_a_request_run_over_several_batches_are_never_negative(encoder):
    waits: list[float] = []
    with DynamicBatcher(encoder, max_batch_size=2, max_wait_ms=1,
                        on_batch=lambda stats: waits.extend(stats.queue_waits)) as batcher:
        batcher.submit([f"text number {i}" for i in range(5)]).result(timeout=60)
    assert len(waits) == 3 and min(waits) >= 0


def test_non_finite_weights_are_an_error_not_a_vector(fp32_dir):
    """An overflowing graph (fp16 inf, say) fails the call; no vector carries inf or NaN to a client."""
    encoder = SpladeEncoder(fp32_dir, provider="cpu")
    run = encoder.backend.run

    def overflow(batch):  # the real backend's outputs with one weight overflowed
        outputs = run(batch)
        outputs[0][0, 0] = np.inf
        return outputs

    encoder.backend.run = overflow
    with pytest.raises(RuntimeError, match="non-finite weights"):
        encoder.encode(["a short query"])
