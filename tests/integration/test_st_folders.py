"""sentence-transformers SparseEncoder folders as export input, compared value by value with sentence-transformers.

Folders: SpladePooling max, sum, the MLM moved into a subfolder, and a Router whose query side is a
SparseStaticEmbedding (inference-free queries) and whose document side uses OpenSearch's
log1p_relu activation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from sentence_transformers import SparseEncoder  # noqa: E402
from sentence_transformers.sparse_encoder.modules import (  # noqa: E402
    MLMTransformer,
    Router,
    SparseStaticEmbedding,
    SpladePooling,
)

from export import ExportConfig, export_model  # noqa: E402
from runtime import SpladeEncoder, SpladeEncoderPair  # noqa: E402
from runtime.core.static import StaticQueryEncoder  # noqa: E402
from tests import tiny_models  # noqa: E402
from tests.servers import AppServer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LONG = "sparse retrieval " * 80
TEXTS = ["what is splade", "", "Tokyo is the capital of Japan", "an inverted index answers queries", LONG,
         "repeated repeated repeated words"]


@pytest.fixture(scope="session")
def st_folders(tmp_path_factory, mlm_source):
    """Lazily saved SparseEncoder folders by name, and their exports (session-scoped)."""
    root = tmp_path_factory.mktemp("st-folders")
    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in made:
            src = root / name
            if name == "router":
                tok = MLMTransformer(str(mlm_source)).tokenizer
                torch.manual_seed(1)
                weight = torch.rand(tok.vocab_size) * (torch.rand(tok.vocab_size) > 0.3)  # some zero weights
                router = Router.for_query_document(
                    query_modules=[SparseStaticEmbedding(tokenizer=tok, weight=weight, frozen=True)],
                    document_modules=[MLMTransformer(str(mlm_source)), SpladePooling("max", "log1p_relu")])
                SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu").save(str(src))
            else:
                pooling = "sum" if name == "sum" else "max"
                SparseEncoder(modules=[MLMTransformer(str(mlm_source)), SpladePooling(pooling)], device="cpu").save(str(src))
                if name == "subfolder":
                    tiny_models.move_mlm_to_subfolder(src, "0_MLMTransformer")
            export_model(ExportConfig(model=str(src), output=root / f"{name}-out", top_k=0))
            made[name] = (src, root / f"{name}-out")
        return made[name]

    return get


def st_dense(folder: Path, texts: list[str], kind: str = "") -> np.ndarray:
    model = SparseEncoder(str(folder), device="cpu")
    encode = {"query": model.encode_query, "document": model.encode_document}.get(kind, model.encode)
    return encode(texts, convert_to_tensor=True, show_progress_bar=False).to_dense().numpy()


@pytest.mark.parametrize("name", ["max", "sum", "subfolder"])
def test_sparse_encoder_folder_matches_sentence_transformers(st_folders, name):
    src, out = st_folders(name)
    encoder = SpladeEncoder(out, provider="cpu")
    m = encoder.manifest
    assert m.pooling == ("sum" if name == "sum" else "max"), "pooling comes from the folder's SpladePooling"
    assert m.validation["passed"] and m.validation["reference"].startswith("sentence-transformers")
    assert m.max_length == tiny_models.MAX_LENGTH
    expected = st_dense(src, TEXTS)
    got = np.stack([v.to_dense(m.vocab_size) for v in encoder.encode(TEXTS)])
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, float(expected.max()))


def test_contradicting_pooling_is_refused(st_folders, tmp_path):
    src, _ = st_folders("sum")
    with pytest.raises(ValueError, match="--pooling max contradicts .* 'sum'"):
        export_model(ExportConfig(model=str(src), output=tmp_path / "x", pooling="max"))
    m = export_model(ExportConfig(model=str(src), output=tmp_path / "y", pooling="sum", validate=False, top_k=8)).manifest
    assert m.pooling == "sum"


def test_router_exports_document_graph_and_static_query_model(st_folders):
    src, out = st_folders("router")
    document = SpladeEncoder(out / "document", provider="cpu")
    query = StaticQueryEncoder(out / "query")
    assert document.manifest.kind == "splade" and query.manifest.kind == "static-query"
    assert not (out / "query" / "model.onnx").exists(), "the query side runs no graph"
    assert query.manifest.validation["passed"] and query.manifest.validation["fp32"]["max_abs_diff"] == 0.0
    vocab = document.manifest.vocab_size
    got_q = np.stack([v.to_dense(vocab) for v in query.encode(TEXTS)])
    np.testing.assert_allclose(got_q, st_dense(src, TEXTS, "query"), atol=1e-7)
    got_d = np.stack([v.to_dense(vocab) for v in document.encode(TEXTS)])
    assert np.abs(got_d - st_dense(src, TEXTS, "document")).max() < 1e-4  # log1p_relu activation


def test_pair_cli_and_server_use_the_static_query_model(st_folders):
    src, out = st_folders("router")
    expected_q = st_dense(src, TEXTS[:4], "query")
    pair = SpladeEncoderPair(out / "query", out / "document", provider="cpu")
    assert isinstance(pair.query, StaticQueryEncoder)
    vocab = pair.document.manifest.vocab_size
    np.testing.assert_allclose(np.stack([v.to_dense(vocab) for v in pair.encode_queries(TEXTS[:4])]), expected_q,
                               atol=1e-7)
    done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--model", str(out / "query"), "--json",
                           TEXTS[0]], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0] == pytest.approx(pair.query.decode(pair.encode_queries(TEXTS[0])[0]))
    with AppServer(out / "document", "--query-model", str(out / "query")) as srv:
        body = srv.post("/encode", json={"inputs": TEXTS[:4], "kind": "query"}).json()
        got = np.zeros((4, vocab), np.float32)
        for row, item in enumerate(body["data"]):
            got[row, item["indices"]] = item["values"]
        np.testing.assert_allclose(got, expected_q, atol=1e-7)
        info = srv.get("/info").json()
        assert info["query"]["provider"].startswith("none")
