"""provider="openvino": OpenVINO's runtime on the exported fp32 folder, f32 exact and bf16 faithful (skipped without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import ProviderError, SpladeEncoder
from runtime.backends.openvino import native_bf16, plan_openvino
from tests.conftest import TEXTS, assert_matches, encode_concurrently

REPO = Path(__file__).resolve().parents[2]


def test_plan_picks_bf16_only_where_native_and_takes_overrides():
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    assert native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))
    assert plan_openvino(2, bf16=False).precision == "f32" and plan_openvino(2, bf16=False).max_run_tokens == 0
    plan = plan_openvino(2, {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": None}, bf16=True)
    assert plan.precision == "f32" and "PERFORMANCE_HINT" not in plan.config and plan.config["INFERENCE_NUM_THREADS"] == 2
    assert plan_openvino(2, bf16=True).precision == "bf16" and plan_openvino(2, bf16=True).max_run_tokens > 0
    with pytest.raises(ProviderError, match="INFERENCE_PRECISION_HINT"):
        plan_openvino(2, {"INFERENCE_PRECISION_HINT": "int4"})
    with pytest.raises(ProviderError, match="max_run_tokens"):
        plan_openvino(2, {"max_run_tokens": -1})


def test_auto_never_picks_openvino(fp32_dir):
    assert SpladeEncoder(fp32_dir).provider != "openvino"


def test_missing_package_is_a_clear_error(fp32_dir):
    code = ("import sys; sys.modules['openvino'] = None\n"
            "from runtime import SpladeEncoder, ProviderError\n"
            f"try:\n    SpladeEncoder({str(fp32_dir)!r}, 'openvino')\n"
            "except ProviderError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert "needs the `openvino` package" in done.stdout, done.stderr


@pytest.fixture(scope="module")
def ov_f32(fp32_dir):
    pytest.importorskip("openvino")
    return SpladeEncoder(fp32_dir, "openvino", provider_options={"openvino": {"INFERENCE_PRECISION_HINT": "f32"}})


@pytest.fixture(scope="module")
def ov_default(fp32_dir):
    pytest.importorskip("openvino")
    return SpladeEncoder(fp32_dir, "openvino")


def test_f32_matches_pytorch(ov_f32, reference):
    assert ov_f32.provider == "openvino" and ov_f32.backend.plan.precision == "f32"
    for text, vec in zip(TEXTS, ov_f32.encode(TEXTS, batch_size=3)):
        assert_matches(vec, reference.encode(text))


def test_default_precision_keeps_top_terms(ov_default, reference):
    assert ov_default.backend.plan.precision == ("bf16" if native_bf16() else "f32")
    for text, vec in zip(TEXTS, ov_default.encode(TEXTS)):
        expected = reference.encode(text)
        top_ref = set(np.argsort(-expected)[:32][expected[np.argsort(-expected)[:32]] > 0].tolist())
        top = set(vec.pruned(top_k=32).indices.tolist())
        assert len(top & top_ref) / len(top_ref) >= 0.9, text
        assert np.abs(vec.to_dense(expected.shape[0]) - expected).max() < 0.1


def test_runs_split_by_token_budget_give_the_same_vectors(fp32_dir, ov_default):
    split = SpladeEncoder(fp32_dir, "openvino", provider_options={"openvino": {"max_run_tokens": 64}})
    whole = SpladeEncoder(fp32_dir, "openvino", provider_options={"openvino": {"max_run_tokens": 0}})
    assert split.backend.plan.max_run_tokens == 64 and whole.backend.plan.max_run_tokens == 0
    texts = [t for t in TEXTS if t.strip()] * 4
    for a, b in zip(split.encode(texts, batch_size=32), whole.encode(texts, batch_size=32)):
        assert np.array_equal(a.indices, b.indices) and np.allclose(a.values, b.values, atol=1e-5)


def test_cli_encodes_with_openvino(fp32_dir, ov_default):
    done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--model", str(fp32_dir), "--provider", "openvino",
                           "--json", "what is splade"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [got] = json.loads(done.stdout)
    [vec] = ov_default.encode(["what is splade"])
    assert got == pytest.approx(ov_default.decode(vec), abs=1e-6)
    info = subprocess.run([sys.executable, "-m", "runtime", "info", "--model", str(fp32_dir), "--provider", "openvino"],
                          cwd=REPO, capture_output=True, text=True)
    assert info.returncode == 0 and json.loads(info.stdout)["provider"] == "openvino"


def test_instances_run_on_a_request_each(ov_f32, reference):
    """OpenVINO's backend runs one inference request at a time: its instances each get their own session
    (with the same options), and concurrent callers still get exactly their own vectors."""
    from runtime import DynamicBatcher
    from runtime.backends.options import instances_share_a_session

    assert not instances_share_a_session("openvino", 1)
    runners = [ov_f32.reopen(threads=1) for _ in range(2)]
    assert all(r.backend.plan.precision == "f32" and r.backend is not ov_f32.backend for r in runners)
    texts = [f"{i}: {TEXTS[i % len(TEXTS)]}" for i in range(24)]
    with DynamicBatcher(ov_f32, instances=2, shared=runners, max_batch_size=4) as batcher:
        got = encode_concurrently(batcher, texts, timeout=60)
    for vec, text in zip(got, texts):
        assert_matches(vec, reference.encode(text))


def test_every_projection_chunk_is_retyped_bf16(fp32_dir):
    """The bf16 memory fix finds each chunk's MatMul -> Reshape -> ReduceMax of the vocabulary-major export,
    and the retyped graph still compiles and runs."""
    ov = pytest.importorskip("openvino")
    from runtime.backends.openvino import type_projection_bf16

    model = ov.Core().read_model(str(fp32_dir / "model.onnx"))
    assert type_projection_bf16(model) == -(-30522 // 2048)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ids = np.array([[101, 2054, 2003, 102, 0], [101, 2054, 2003, 2023, 102]], dtype=np.int64)
    out = compiled({"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)})
    values = out[compiled.output("values")]
    assert values.shape == (2, 512) and np.all(np.diff(values, axis=1) <= 0) and values[:, 0].min() > 0
