"""Per-call options end to end: prompts, left truncation and OpenSearch's pruning, in the library, the CLI,
the corpus job and every HTTP route, each against PyTorch or a NumPy reference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from starlette.testclient import TestClient

from runtime import SpladeEncoder, SpladeEncoderPair
from runtime.errors import InvalidInputError
from runtime.manifest import MANIFEST_NAME
from runtime.serving.app import create_app
from tests.conftest import REPO, TEXTS, assert_matches
from tests.unit.test_pruning import reference as pruned_positions

PROMPTS = {"query": "query: ", "document": "passage: "}
LONG = " ".join(f"word{i % 97} about sparse retrieval number {i}" for i in range(400))


@pytest.fixture(scope="module")
def prompted_dir(fp32_dir, tmp_path_factory):
    """The fp32 export with sentence-transformers prompts in its manifest, as an export of a prompted folder writes."""
    folder = tmp_path_factory.mktemp("prompted") / "model"
    shutil.copytree(fp32_dir, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    (folder / MANIFEST_NAME).write_text(json.dumps({**manifest, "prompts": PROMPTS}))
    return folder


@pytest.fixture(scope="module")
def encoder(fp32_dir):
    return SpladeEncoder(fp32_dir, provider="cpu")


def test_prompts_are_put_before_each_text(prompted_dir, reference):
    enc = SpladeEncoder(prompted_dir, provider="cpu")
    texts = ["what is splade", "capital of france"]
    named = enc.encode(texts, prompt_name="query")
    for text, vec in zip(texts, named, strict=True):
        assert_matches(vec, reference.encode("query: " + text))
    assert [v.to_qdrant() for v in enc.encode_query(texts)] == [v.to_qdrant() for v in named]
    for text, vec in zip(texts, enc.encode_document(texts), strict=True):
        assert_matches(vec, reference.encode("passage: " + text))
    for text, vec in zip(texts, enc.encode(texts), strict=True):  # no prompt named, no default: none
        assert_matches(vec, reference.encode(text))
    pair = SpladeEncoderPair(prompted_dir, prompted_dir, provider="cpu")
    assert pair.encode_queries(texts)[0].to_qdrant() == named[0].to_qdrant()
    with pytest.raises(InvalidInputError, match="prompt_name 'qery' is not a prompt of .*query"):
        enc.encode(texts, prompt_name="qery")


def test_a_default_prompt_applies_when_none_is_named(prompted_dir, tmp_path, reference):
    folder = tmp_path / "default"
    shutil.copytree(prompted_dir, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    (folder / MANIFEST_NAME).write_text(json.dumps({**manifest, "default_prompt_name": "document"}))
    [vec] = SpladeEncoder(folder, provider="cpu").encode(["paris"])
    assert_matches(vec, reference.encode("passage: paris"))


def test_left_truncation_keeps_the_end(encoder, reference):
    [right] = encoder.encode([LONG])
    [left] = encoder.encode([LONG], truncation_direction="left")
    reference.tokenizer.truncation_side = "left"  # transformers' own left truncation, as TEI's
    try:
        ids = reference.tokenizer(LONG, truncation=True, max_length=encoder.max_length)["input_ids"]
    finally:
        reference.tokenizer.truncation_side = "right"
    assert ids[1] != reference.ids(LONG)[1]
    assert_matches(left, reference.from_ids(ids))
    assert_matches(right, reference.encode(LONG, max_length=encoder.max_length))
    assert left.to_qdrant() != right.to_qdrant()


def test_pruning_options_match_the_numpy_reference(encoder):
    full = encoder.encode(TEXTS)
    for rules in ({"max_ratio": 0.3}, {"alpha_mass": 0.5}, {"alpha_mass": 0.9, "top_k": 7, "max_ratio": 0.1}):
        for whole, vec in zip(full, encoder.encode(TEXTS, **rules), strict=True):
            kept = pruned_positions(whole.values, **rules)
            assert vec.indices.tolist() == whole.indices[sorted(kept)].tolist(), rules


def test_http_routes_take_the_same_options(prompted_dir, reference):
    enc = SpladeEncoder(prompted_dir, provider="cpu")
    with TestClient(create_app(enc)) as client:
        q = client.post("/encode", json={"inputs": ["what is splade"], "kind": "query"}).json()["data"][0]
        assert q["indices"] == enc.encode_query(["what is splade"])[0].indices.tolist()  # the query prompt
        tei = client.post("/embed_sparse", json={"inputs": "paris", "prompt_name": "query"}).json()[0]
        assert [x["index"] for x in tei] == enc.encode(["paris"], prompt_name="query")[0].indices.tolist()
        bad = client.post("/embed_sparse", json={"inputs": "paris", "prompt_name": "nope"})
        assert bad.status_code == 422 and "nope" in bad.json()["error"]
        left = client.post("/embed_sparse", json={"inputs": LONG, "truncate": True, "truncation_direction": "Left"})
        assert [x["index"] for x in left.json()[0]] == enc.encode([LONG], truncation_direction="left")[0].indices.tolist()
        pruned = client.post("/encode", json={"inputs": TEXTS, "max_ratio": 0.2, "alpha_mass": 0.8}).json()["data"]
        for row, vec in zip(pruned, enc.encode_document(TEXTS, max_ratio=0.2, alpha_mass=0.8), strict=True):
            assert row["indices"] == vec.indices.tolist()
        assert client.post("/encode", json={"inputs": "x", "max_ratio": 1.5}).status_code == 422
        opensearch = client.post("/opensearch/sparse_encoding?prune_type=max_ratio&prune_ratio=0.1", json=TEXTS)
        assert opensearch.status_code == 200
        for row, vec in zip(opensearch.json(), enc.encode_document(TEXTS, max_ratio=0.1), strict=True):
            assert row == pytest.approx(enc.decode(vec)) and list(row) == list(enc.decode(vec))
        queries = client.post("/opensearch/sparse_encoding?kind=query&prune_type=top_k&prune_ratio=3", json=["paris"])
        assert list(queries.json()[0]) == list(enc.decode(enc.encode_query(["paris"], top_k=3)[0]))
        for url, body in (("?prune_type=top_k&prune_ratio=0.5", ["x"]), ("?prune_ratio=0.5", ["x"]),
                          ("?prune_type=bogus&prune_ratio=1", ["x"]), ("", {"inputs": ["x"]}), ("", [])):
            r = client.post("/opensearch/sparse_encoding" + url, json=body)
            assert r.status_code == 422 and set(r.json()) == {"error", "error_type"}, (url, body)


def test_corpus_job_takes_the_pruning_options(fp32_dir, encoder, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--model", str(fp32_dir), "--input", str(src),
                           "--output", str(dst), "--format", "indices", "--max-ratio", "0.25", "--alpha-mass", "0.7"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    for row, vec in zip(rows, encoder.encode(TEXTS, max_ratio=0.25, alpha_mass=0.7), strict=True):
        assert row["indices"] == vec.indices.tolist() and np.allclose(row["values"], vec.values)


@pytest.mark.parametrize("kind", ["document", "query"])
def test_cli_and_corpus_apply_the_kinds_prompt_as_encode_does(prompted_dir, tmp_path, kind):
    enc = SpladeEncoder(prompted_dir, provider="cpu")
    expected = (enc.encode_document if kind == "document" else enc.encode_query)(TEXTS[:4])
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS[:4])))
    done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--model", str(prompted_dir), "--input", str(src),
                           "--output", str(dst), "--format", "indices", "--kind", kind],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["indices"] for r in rows] == [v.indices.tolist() for v in expected]
    assert [r["indices"] for r in rows] != [v.indices.tolist() for v in enc.encode(TEXTS[:4])]  # the prompt mattered
