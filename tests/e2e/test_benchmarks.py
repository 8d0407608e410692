"""Benchmark smoke runs on the session's exports (never timed): the scripts run and write well-formed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from runtime.backends.options import plan_instances
from tests.conftest import REPO


def optimum_available() -> bool:
    """Whether optimum's ONNX Runtime model classes import here, as benchmarks.engines decides whether to run its row."""
    try:
        import optimum.onnxruntime  # noqa: F401
    except Exception:  # absent, or installed against a transformers it does not support
        return False
    return True


@pytest.fixture(scope="module")
def bench_work(exports, tmp_path_factory) -> Path:
    """A benchmark work folder holding the session's exports under the names the scripts look for."""
    work = tmp_path_factory.mktemp("bench-work")
    for precision in ("fp32", "int8", "fp16"):
        (work / f"splade-tiny-{precision}").symlink_to(exports(precision=precision), target_is_directory=True)
    return work


def test_benchmark_runs_and_writes_results(bench_work, tmp_path):
    """Timings are never asserted: only that the comparison runs, on our exports, and its files are well-formed."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--quick", "--repeats", "1", "--query-repeats", "3",
                           "--corpus-size", "6", "--fidelity-pairs", "6", "--out", str(tmp_path), "--work", str(bench_work)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "compare-cpu-quick.json").read_text())
    assert {"cpu", "versions"} <= set(result["machine"]) and result["command"].startswith("python -m benchmarks.compare")
    rows = result["models"][0]["rows"]
    native_only = ("pytorch-bf16", "ours-openvino-bf16")  # bf16 rows only on CPUs with native bf16 (and openvino)
    engines = [r["engine"] for r in rows if r["engine"] not in native_only]
    # optimum (the `peers` extra) pins an older transformers: its row is skipped, with a warning, where it is absent
    peer = ["optimum-fill-mask"] if optimum_available() else []
    assert engines == ["pytorch-fp32", *peer, "ours-fp32", "ours-int8", "ours-int8-dynamic"]
    if not peer:
        assert "optimum-fill-mask skipped: optimum is not installed" in done.stderr
    rows = {r["engine"]: r for r in rows}
    assert rows["pytorch-fp32"]["ratio"]["docs_32x128"] == 1.0
    for r in rows.values():
        assert r["docs_32x128_texts_per_s"] > 0 and r["query_ms"]["p50"] > 0
    # fidelity against PyTorch fp32 on the same batch: exact engines agree, int8 keeps the top terms
    assert rows["pytorch-fp32"]["max_abs_diff"] == 0.0
    for exact in (*peer, "ours-fp32"):
        assert rows[exact]["max_abs_diff"] < 1e-4 and rows[exact]["top32_overlap"] == 1.0
    assert rows["ours-int8"]["top32_overlap"] >= 0.8 and rows["ours-int8-dynamic"]["top32_overlap"] >= 0.8
    assert "| splade-tiny | ours-fp32 |" in (tmp_path / "compare-cpu-quick.md").read_text()
    fidelity = {r["engine"]: r for r in result["fidelity"]["rows"]}
    assert fidelity["ours-fp32"]["top32_overlap_worst"] == 1.0 and "ours-int8-static" in fidelity
    assert "| ours-int8-dynamic |" in (tmp_path / "compare-cpu-quick.md").read_text().split("Retrieval fidelity")[1]
    assert (tmp_path / "compare-cpu-quick.png").read_bytes()[:4] == b"\x89PNG"


def test_gpu_benchmark_prepares_models_and_refuses_without_cuda(bench_work, tmp_path):
    """The GPU script's CPU half: finds (or exports) both GPU precisions, and a clear exit where no CUDA is."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--prepare-only", "--work", str(bench_work),
                           "--models", "splade-tiny"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for precision in ("fp32", "fp16"):  # the GPU export settings (benchmarks.compare.GPU_EXPORT)
        folder = bench_work / f"splade-tiny-{precision}-gpu"
        assert f"splade-tiny-{precision}: {folder}" in done.stdout
        manifest = json.loads((folder / "splade.json").read_text())
        assert manifest["precision"] == precision
        ops = {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
        assert "GlobalMaxPool" in ops and "ReduceMax" not in ops
    if not torch_cuda_available():
        done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(tmp_path / "out")],
                              cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 1 and "no CUDA device" in done.stderr


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_loadgen_checks_every_answer_and_reports_the_server_overhead(exports, tmp_path):
    """Online rows with and without batching and a bulk row, each a share of the in-process limit on the same
    texts, then a lone client beside the same queries in process."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", "--model", str(exports()), "--clients", "4",
                           "--requests", "40", "--latency-requests", "20", "--out", str(tmp_path), "--name", "lg"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "lg.json").read_text())
    assert result["in_process"]["texts"] == 40 and result["in_process"]["texts_per_s"] > 0
    count, each = plan_instances("cpu", None)  # the server's default instances, also measured in process
    served = result["in_process_as_served"]
    assert served is None if count == 1 else (served["concurrent"], served["threads_each"]) == (count, each)
    assert [r["instances"] for r in result["runs"]] == [count] * 3
    assert [(r["texts_per_request"], r["requests_sent"]) for r in result["runs"]] == [(1, 40), (1, 40), (32, 2)]
    for run in result["runs"]:  # fp32: every answer equals the in-process vector
        assert run["answered_200"] == run["requests_sent"] and run["texts_per_s"] > 0
        assert run["exactly_its_answers"] and run["agrees_with_in_process"] == 1.0
        assert run["p99_over_mean"] >= 1.0
    assert result["sequential_query_latency"]["answered_200"] == 20
    assert result["in_process_query_latency"]["requests"] == 20
    table = (tmp_path / "lg.md").read_text()
    assert "the server adds" in table and "of in-process" in table


def test_ideal_queue_times_the_engine_and_models_the_load(exports, tmp_path):
    """The model's costs come from the real engine; each overhead gets its row, averaged over the orders."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.ideal_queue", "--model", str(exports()), "--clients", "4",
                           "--requests", "40", "--orders", "2", "--overhead-ms", "0", "5", "--out", str(tmp_path),
                           "--name", "iq"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "iq.json").read_text())
    assert (result["workers"], result["threads_each"]) == plan_instances("cpu", None)
    assert 0 < result["cost_ms"]["min"] <= result["cost_ms"]["mean"] <= result["cost_ms"]["max"]
    bare, slow = result["rows"]
    assert (bare["overhead_ms"], slow["overhead_ms"]) == (0, 5)
    # 5 ms more per request: every latency grows by at least that, and texts/s falls
    assert slow["p50_ms"] >= bare["p50_ms"] + 5 and slow["texts_per_s"] < bare["texts_per_s"]
    for row in (bare, slow):
        assert row["p50_ms"] >= result["cost_ms"]["min"] and 1.0 <= row["p99_over_mean_min"] <= row["p99_over_mean"]
    assert "| overhead per request, ms |" in (tmp_path / "iq.md").read_text()
