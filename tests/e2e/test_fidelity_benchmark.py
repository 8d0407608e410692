"""The retrieval fidelity benchmark's plumbing: docstring pairs, MRR@10, overlaps, and a small real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.fidelity import docstring_pairs, mrr_at_10, split_docstring, top32_overlaps

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
    assert {"pytorch-fp32", "ours-fp32", "ours-int8-static", "ours-int8-dynamic"} <= set(rows)
    assert rows["ours-fp32"]["top32_overlap_worst"] == 1.0
    assert abs(rows["ours-fp32"]["mrr@10"] - rows["pytorch-fp32"]["mrr@10"]) < 1e-9
    for r in rows.values():
        assert 0 <= r["mrr@10"] <= 1 and 0 <= r["top32_overlap_worst"] <= r["top32_overlap_mean"] <= 1
    assert "| ours-int8-static |" in (tmp_path / "fidelity-cpu.md").read_text()
