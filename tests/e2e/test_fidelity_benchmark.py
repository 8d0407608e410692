"""The retrieval fidelity benchmark's plumbing: docstring pairs, MRR@10, overlaps, and a small real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.fidelity import docstring_pairs, int8_weight_floor, mrr_at_10, split_docstring, top32_overlaps

REPO = Path(__file__).resolve().parents[2]


def test_split_docstring_keeps_prose_and_drops_sections():
    body = " ".join(["word"] * 40)
    doc = f"Return the thing you asked for.\n\n{body}\n\nParameters\n----------\nx : int\n"
    assert split_docstring(doc) == ("Return the thing you asked for.", body)
    assert split_docstring("Too short.\n\nbody") is None
    assert split_docstring(f"One.\n\n{body}") is None  # a one-word summary is no query


def test_pairs_are_deterministic_and_distinct():
    a, versions = docstring_pairs(40)
    b, _ = docstring_pairs(40)
    assert a == b and len(a) == 40 and versions
    assert len({p.query for p in a}) == 40 and all(p.query != p.document for p in a)


def test_mrr_and_overlap_by_hand():
    q = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    d = np.array([[1.0, 0, 0], [0, 0.5, 1.0], [0, 0, 0.5]])  # query 1 ranks doc 1 first; query 2 ranks doc 1 first
    assert mrr_at_10(q, d) == np.mean([1.0, 1.0, 0.5])
    ref = np.array([[3.0, 2.0, 1.0, 0.0]])
    assert top32_overlaps(ref, np.array([[3.0, 0.0, 1.0, 5.0]]), k=3)[0] == 2 / 3


def test_small_run_writes_results(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.fidelity", "--pairs", "12", "--out", str(tmp_path),
                           "--work", str(tmp_path / "models")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "fidelity-cpu.json").read_text())
    rows = {r["engine"]: r for r in result["rows"]}
    assert {"pytorch-fp32", "ours-fp32", "ours-int8-static", "ours-int8-dynamic", "pytorch-bf16-autocast",
            "pytorch-int8-weights-only"} <= set(rows)
    assert rows["ours-fp32"]["top32_overlap_worst"] == 1.0
    assert abs(rows["ours-fp32"]["mrr@10"] - rows["pytorch-fp32"]["mrr@10"]) < 1e-9
    for r in rows.values():
        assert r["top32_overlap_worst"] == min(r["query_worst"], r["document_worst"])
    assert rows["pytorch-int8-weights-only"]["floor"] and rows["pytorch-int8-weights-only"]["top32_overlap_mean"] < 1.0
    text = (tmp_path / "fidelity-cpu.md").read_text()
    assert "| ours-int8-static |" in text and "*pytorch-int8-weights-only* (floor)" in text


def test_int8_weight_floor_rounds_linears_and_leaves_tied_embeddings():
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32)).eval()
    embeddings = model.bert.embeddings.word_embeddings.weight.detach().clone()
    dense = model.bert.encoder.layer[0].intermediate.dense.weight.detach().clone()
    assert int8_weight_floor(model) == 8  # q, k, v, attention out, intermediate, output, head transform, decoder
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, embeddings)
    rounded = model.bert.encoder.layer[0].intermediate.dense.weight.detach()
    scale = dense.abs().amax(dim=1, keepdim=True) / 127
    assert torch.all((rounded - dense).abs() <= scale / 2 + 1e-7)
    assert torch.allclose(rounded / scale, torch.round(rounded / scale), atol=1e-4)
    assert not torch.equal(model.cls.predictions.decoder.weight, embeddings)
