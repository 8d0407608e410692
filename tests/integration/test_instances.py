"""Several inference runs at once (the batcher's `instances`): every caller still gets exactly its own
vector, checked against the independent PyTorch reference; a lone request runs alone on all threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime import DynamicBatcher, SparseVector, SpladeEncoder
from runtime.backends.options import instances_share_a_session, plan_instances
from runtime.errors import InvalidInputError
from runtime.serving.runcost import MAX_RUN_COST_TOKENS, run_cost_tokens
from tests.conftest import assert_matches, encode_concurrently
from tests.servers import AppServer

PASSAGE = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
           "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. ")
TOPICS = ["cats", "rust", "paris", "onnx", "tea", "rivers"]


def assert_served(server, texts, reference):
    """The server's /embed_sparse answer for `texts` is, text by text, the PyTorch reference's vector."""
    answer = server.post("/embed_sparse", json={"inputs": texts}).json()
    assert len(answer) == len(texts)
    for got, text in zip(answer, texts):
        vec = SparseVector.from_dict({"indices": [x["index"] for x in got], "values": [x["value"] for x in got]})
        assert_matches(vec, reference.encode(text))


@pytest.fixture(scope="module")
def encoder(fp32_dir):
    return SpladeEncoder(fp32_dir, provider="cpu", threads=2, max_batch_tokens=8192)


@pytest.fixture(scope="module")
def narrow(encoder):
    return encoder.reopen(threads=1)


def test_reopen_is_the_same_model_on_its_own_session(encoder, narrow, reference):
    assert narrow.session.threads == 1 and narrow.backend.session is not encoder.backend.session
    assert narrow.provider == "cpu" and narrow.options == encoder.options and narrow.path == encoder.path
    text = "what is the capital of france"
    [vec] = narrow.encode([text])
    assert_matches(vec, reference.encode(text))


@pytest.mark.parametrize("own_sessions", [False, True], ids=["one-session", "a-session-each"])
def test_concurrent_runs_answer_every_caller_with_its_own_vector(encoder, narrow, reference, own_sessions):
    """96 callers (queries and passages) at once on two instances, sharing a session or on one each: runs
    overlap, and each caller's vector is the PyTorch reference's for its own text."""
    shared = [narrow, encoder.reopen(threads=1)] if own_sessions else narrow
    texts = [f"caller {i} asks about {TOPICS[i % len(TOPICS)]}" if i % 3 else f"{i}. " + PASSAGE * (1 + i % 4)
             for i in range(96)]
    runs: list[tuple[float, float, bool]] = []

    def on_batch(stats):
        end = time.monotonic()
        runs.append((end - stats.infer_seconds, end, stats.alone))

    with DynamicBatcher(encoder, instances=2, shared=shared, max_batch_size=16, on_batch=on_batch) as batcher:
        results = encode_concurrently(batcher, texts, together=True)
    for vec, text in zip(results, texts):
        assert_matches(vec, reference.encode(text))
    shared_runs = sorted((start, end) for start, end, alone in runs if not alone)
    assert any(b[0] < a[1] for a, b in zip(shared_runs, shared_runs[1:])), "no two runs overlapped"


def test_sub_batches_run_first_come_first_served(encoder):
    """A passage queued before two queries runs before them, though it is longer: the sub-batch holding the
    oldest request goes first (a short text no longer jumps every longer one queued ahead of it)."""
    finished: list[str] = []
    with DynamicBatcher(encoder, max_batch_size=4) as batcher:
        busy = batcher.submit([PASSAGE * 2] * 4)  # a full batch: what follows is gathered after it
        futures = {name: batcher.submit([text]) for name, text in
                   [("passage", PASSAGE), ("query 1", "capital of france"), ("query 2", "what is onnx")]}
        for name, future in futures.items():
            future.add_done_callback(lambda _, name=name: finished.append(name))
        busy.result(timeout=60)
        assert all(len(f.result(timeout=60)) == 1 for f in futures.values())
    assert finished[0] == "passage", finished


def test_a_lone_request_runs_alone(encoder, narrow, reference):
    """With nothing else queued and no other run going, a request runs on the main encoder (all threads)."""
    alone: list[bool] = []
    with DynamicBatcher(encoder, instances=2, shared=narrow, on_batch=lambda s: alone.append(s.alone)) as batcher:
        for text in ["first lone query", "second lone query"]:
            [vec] = batcher.encode([text])
            assert_matches(vec, reference.encode(text))
    assert alone == [True, True]


def test_a_long_request_runs_a_batch_at_a_time_across_instances(encoder, narrow):
    """A 9-text request runs two sequences at a time, re-queued between parts, while other callers come and go:
    its rows come back whole and in order."""
    long = [f"text {i} about {TOPICS[i % len(TOPICS)]}" for i in range(9)]
    with DynamicBatcher(encoder, instances=2, shared=narrow, max_batch_size=2) as batcher:
        whole = batcher.submit(long)
        others = [batcher.submit([f"other {i}"]) for i in range(6)]
        got = whole.result(timeout=60)
        other_vecs = [f.result(timeout=60)[0] for f in others]
    for g, want in zip(got, encoder.encode(long)):
        assert np.array_equal(g.indices, want.indices) and np.allclose(g.values, want.values, atol=1e-5)
    for i, vec in enumerate(other_vecs):
        [want] = encoder.encode([f"other {i}"])
        assert np.array_equal(vec.indices, want.indices)


def test_close_finishes_accepted_work_and_stops_every_worker(encoder, narrow):
    batcher = DynamicBatcher(encoder, instances=3, shared=narrow)
    futures = [batcher.submit([f"queued text {i}", PASSAGE]) for i in range(12)]
    batcher.close()
    assert all(len(f.result(timeout=0)) == 2 for f in futures)
    assert not [t for t in threading.enumerate() if t.name.startswith("splade-batcher") and t.is_alive()]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_instances_must_be_a_positive_int(encoder, bad):
    with pytest.raises(ValueError, match="instances"):
        DynamicBatcher(encoder, instances=bad)


def test_shared_is_one_encoder_or_one_per_instance(encoder, narrow):
    with pytest.raises(ValueError, match=r"one per instance \(3\), got 2"):
        DynamicBatcher(encoder, instances=3, shared=[narrow, narrow])


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1])
def test_max_wait_must_be_finite(encoder, bad):
    """An infinite wait cannot be waited on: refused when the batcher is made, not when a batch forms."""
    with pytest.raises(ValueError, match="max_wait_ms must be a finite number"):
        DynamicBatcher(encoder, max_wait_ms=bad)


def test_a_wait_longer_than_threading_allows_still_gathers(encoder):
    """1e13 ms is past threading's largest timeout: the batch waits (capped) and fills when the next
    request comes, as any wait does, instead of failing its callers."""
    with DynamicBatcher(encoder, max_wait_ms=1e13, max_batch_size=2) as batcher:
        first = batcher.submit(["a query that waits for company"])
        time.sleep(0.05)  # the worker is now waiting inside the gather
        second = batcher.submit(["its company"])
        assert len(first.result(timeout=30)) == 1 and len(second.result(timeout=30)) == 1


def test_server_runs_its_planned_instances(fp32_dir, reference):
    """`serve` with default flags runs the plan for this machine; `--instances 2` always runs two. Runs of one
    thread share a session; runs of several threads get a session each (a session's runs share its pool)."""
    count, each = plan_instances("cpu", None)
    shares = count == 1 or instances_share_a_session("cpu", each)  # 4+ cores: a session per instance
    default = (count, each if count > 1 else None, 1 if shares else count)
    for flags, layout in (((), default), (("--instances", "2", "--threads", "2"), (2, 1, 1)),
                          (("--instances", "2", "--threads", "4"), (2, 2, 2))):
        with AppServer(fp32_dir, "--provider", "cpu", *flags) as server:
            info = server.get("/info").json()
            doc = info["document"]
            assert (doc["instances"], doc["instance_threads"], doc["instance_sessions"]) == layout
            assert info["limits"]["instances"] == (2 if flags else 0)
            cost = doc["run_cost_tokens"]  # timed at start-up on the instances (None: the timings fit no cost)
            assert cost is None or (isinstance(cost, float) and 0 <= cost <= MAX_RUN_COST_TOKENS)
            assert_served(server, ["what is onnx", PASSAGE], reference)


def test_a_batch_that_cannot_be_formed_fails_its_callers_only(encoder, narrow, monkeypatch):
    """A failure while forming a batch (here: planning its sub-batches) answers its callers with the error;
    the workers go on and the next request gets its vector."""
    from runtime.serving import batcher as batcher_module

    plan = batcher_module.batching.plan
    calls = {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("planning failed")
        return plan(*args, **kwargs)

    monkeypatch.setattr(batcher_module.batching, "plan", failing_once)
    with DynamicBatcher(encoder, instances=2, shared=narrow) as batcher:
        with pytest.raises(RuntimeError, match="planning failed"):
            batcher.submit(["first"]).result(timeout=30)
        [vec] = batcher.submit(["second"]).result(timeout=30)
    [want] = encoder.encode(["second"])
    assert np.array_equal(vec.indices, want.indices)


@pytest.mark.parametrize("cost", [0.0, 16.0, 1e6])
def test_runs_planned_by_cost_answer_every_caller(encoder, narrow, reference, cost):
    """Runs split by a measured fixed cost (none: a run per sequence; huge: as few runs as the caps allow):
    each caller still gets exactly the reference vector of its own text."""
    texts = [f"caller {i} asks about {TOPICS[i % len(TOPICS)]}" if i % 3 else f"{i}. " + PASSAGE * (1 + i % 3)
             for i in range(48)]
    with DynamicBatcher(encoder, instances=2, shared=narrow, max_batch_size=16, run_cost_tokens=cost) as batcher:
        results = encode_concurrently(batcher, texts, together=True)
    for vec, text in zip(results, texts):
        assert_matches(vec, reference.encode(text))


def test_run_cost_is_measured_and_checked(encoder, narrow):
    """A run's fixed cost comes back in range (None only when the timings fit no cost per token, which a loaded
    machine can cause: the batcher then keeps the length-ratio rule); bad values are refused."""
    measured = run_cost_tokens(narrow)
    assert measured is None or 0.0 <= measured <= MAX_RUN_COST_TOKENS
    for bad in (-1, float("nan"), float("inf"), True, "16"):
        with pytest.raises(InvalidInputError, match="run_cost_tokens"):
            DynamicBatcher(encoder, run_cost_tokens=bad)  # type: ignore[arg-type]
    with DynamicBatcher(encoder, run_cost_tokens=np.float32(16)) as batcher:  # numpy numbers are numbers
        assert batcher.run_cost_tokens == 16.0 and type(batcher.run_cost_tokens) is float


def test_server_takes_a_run_cost_or_times_one(fp32_dir, reference):
    """`--run-cost-tokens N` is used as given (0: a run per length); out of range is a clean start-up error."""
    with AppServer(fp32_dir, "--provider", "cpu", "--run-cost-tokens", "0") as server:
        assert server.get("/info").json()["document"]["run_cost_tokens"] == 0.0
        assert_served(server, ["what is onnx", "what is rust", PASSAGE], reference)
    from runtime.serving.limits import ServerLimits

    with pytest.raises(InvalidInputError, match="--run-cost-tokens must be a finite number from -1 to 4096"):
        ServerLimits(run_cost_tokens=5000)
