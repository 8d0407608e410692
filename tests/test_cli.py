"""`python -m runtime`: argument encoding, JSONL corpus with resume after a kill, info; clean install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.engines import optimum_available
from runtime import SpladeEncoder
from runtime.corpus import done_ids
from runtime.sparse import SparseVector
from tests.conftest import assert_matches

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, **kwargs)


def test_encode_texts_json(fp32_dir, reference):
    done = run_cli("encode", "--model", fp32_dir, "--json", "what is splade", "")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    enc = SpladeEncoder(fp32_dir, provider="cpu")
    for text, row in zip(["what is splade", ""], rows, strict=True):
        expected = reference.encode(text)
        assert len(row) == int((expected > 0).sum())
        for token, weight in row.items():
            index = enc.tokenizer._truncating.token_to_id(token)
            assert abs(expected[index] - weight) < 1e-4
    plain = run_cli("encode", "--model", fp32_dir, "--top-k", "3", "capital of france")
    assert plain.returncode == 0 and "(3 terms)" in plain.stdout


def test_info_and_errors(fp32_dir, tmp_path):
    info = run_cli("info", "--model", fp32_dir)
    assert info.returncode == 0
    shown = json.loads(info.stdout)
    assert shown["provider"] == "cpu" and shown["manifest"]["sha256"]
    missing = run_cli("encode", "--model", tmp_path, "x")
    assert missing.returncode == 1 and "splade.json: missing" in missing.stderr and "Traceback" not in missing.stderr


def test_corpus_resume_after_kill(fp32_dir, reference, tmp_path):
    texts = {f"d{i}": f"document {i} about {['cats', 'rust', 'paris', 'onnx'][i % 4]} " * (1 + i % 40) for i in range(900)}
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    cmd = [sys.executable, "-m", "runtime", "encode", "--model", str(fp32_dir), "--input", str(src),
           "--output", str(dst), "--format", "indices", "--batch-size", "8"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not dst.exists() or dst.stat().st_size == 0):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(done_ids(dst))
    assert 0 < first < len(texts), "the kill must land mid-run"
    with open(dst, "a") as fh:
        fh.write('{"id": "d899", "indi')  # a torn line, as a kill mid-write leaves
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"encoded {len(texts) - first} new texts" in done.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(texts), "every id exactly once"
    for row in rows[:: 97]:
        assert_matches(SparseVector.from_dict(row), reference.encode(texts[row["id"]]))
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert "encoded 0 new texts" in again.stderr and len(dst.read_text().splitlines()) == len(texts)


def test_corpus_bad_line(fp32_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "ok"}\n{"id": 2}\n')
    done = run_cli("encode", "--model", fp32_dir, "--input", src, "--output", tmp_path / "o.jsonl")
    assert done.returncode == 1 and "in.jsonl:2" in done.stderr


@pytest.mark.skipif(os.environ.get("SKIP_CLEAN_ENV") == "1", reason="SKIP_CLEAN_ENV=1")
def test_runtime_installs_and_runs_without_torch(fp32_dir, tmp_path, reference):
    """A fresh venv with the base install + `cpu` extra: no torch/transformers/optimum (nor the optional
    server, Triton or Ray packages), and it encodes."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{REPO}[cpu]"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    script = (
        "import importlib.util, json, sys\n"
        "for name in ('torch', 'transformers', 'optimum', 'ray', 'tritonclient', 'fastapi'):\n"
        "    assert importlib.util.find_spec(name) is None, name + ' is installed'\n"
        "from runtime import SpladeEncoder\n"
        f"vec = SpladeEncoder({str(fp32_dir)!r}, provider='cpu').encode(['what is splade'])[0]\n"
        "print(json.dumps(vec.to_qdrant()))\n"
    )
    out = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert_matches(SparseVector.from_dict(json.loads(out.stdout)), reference.encode("what is splade"))
    assert np.isfinite(json.loads(out.stdout)["values"]).all()


def test_benchmark_runs_and_writes_results(tmp_path):
    """Timings are never asserted: only that the comparison runs and its files are well-formed."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--quick", "--repeats", "1", "--query-repeats", "3",
                           "--corpus-size", "6", "--fidelity-pairs", "6", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
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
    rows = {r["engine"]: r for r in rows if r["engine"] not in native_only}
    assert rows["pytorch-fp32"]["ratio"]["docs_32x128"] == 1.0
    for r in rows.values():
        assert r["docs_32x128_texts_per_s"] > 0 and r["query_ms"]["p50"] > 0 and 0 <= r["top32_overlap"] <= 1
    assert rows["ours-fp32"]["max_abs_diff"] < 1e-4 and rows["ours-fp32"]["top32_overlap"] == 1.0
    assert "| splade-tiny | ours-fp32 |" in (tmp_path / "compare-cpu-quick.md").read_text()
    fidelity = {r["engine"]: r for r in result["fidelity"]["rows"]}
    assert fidelity["ours-fp32"]["top32_overlap_worst"] == 1.0 and "ours-int8-static" in fidelity
    assert "| ours-int8-dynamic |" in (tmp_path / "compare-cpu-quick.md").read_text().split("Retrieval fidelity")[1]
    assert (tmp_path / "compare-cpu-quick.png").read_bytes()[:4] == b"\x89PNG"


def test_gpu_benchmark_prepares_models_and_refuses_without_cuda(tmp_path):
    """The GPU script's CPU half: exports for both GPU precisions, and a clear exit where no CUDA is."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--prepare-only", "--work", str(tmp_path),
                           "--models", "splade-tiny"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for precision in ("fp32", "fp16"):
        manifest = json.loads((tmp_path / f"splade-tiny-{precision}" / "splade.json").read_text())
        assert manifest["precision"] == precision
    if not torch_cuda_available():
        done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(tmp_path / "out")],
                              cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 1 and "no CUDA device" in done.stderr


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
