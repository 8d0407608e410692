"""SparseEncoder folders saved by the installed sentence-transformers (6.x: the generic `Transformer` with
transformer_task fill-mask, `sentence_transformers.base.modules` types), exported and compared with its own
`encode_document` / `encode_query` through the runtime's encoders of the exported folders (max |diff| < 1e-4).

Folders: SpladePooling max, sum, log1p_relu, the MLM in a subfolder, a Router (SparseStaticEmbedding
queries, MLM documents; and one whose routes are found through route_mappings), query/document
prompts, prompts sentence-transformers does not pick for encode_query / encode_document (with a
default prompt); and the committed 5.x-layout fixture, as the installed version reads it.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

import sentence_transformers  # noqa: E402
from sentence_transformers import SparseEncoder  # noqa: E402

from export import ExportConfig, export_model  # noqa: E402
from runtime import SpladeEncoder  # noqa: E402
from runtime.core.static import StaticQueryEncoder  # noqa: E402
from tests import tiny_models  # noqa: E402

try:  # 6.x (and late 5.x): one import path for every SparseEncoder module
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling
except ImportError:  # early 5.x
    from sentence_transformers.models import Router  # type: ignore[no-redef]
    from sentence_transformers.sparse_encoder.models import SparseStaticEmbedding, SpladePooling  # type: ignore[no-redef]

ST6 = int(sentence_transformers.__version__.split(".")[0]) >= 6
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "st5-splade"  # committed; see its README.md
PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = ["what is splade", "", "Tokyo is the capital of Japan", "an inverted index answers queries",
         "sparse retrieval " * 80, "repeated repeated repeated words"]
NAMES = ["max", "sum", "log1p", "subfolder", "prompts", "odd-prompts", "router", "router-mapped", "st5-fixture"]


def mlm_module(path: Path):
    """The module the installed version saves an MLM with: Transformer(fill-mask) in 6.x, MLMTransformer before."""
    if ST6:
        from sentence_transformers.sparse_encoder.modules import Transformer

        return Transformer(str(path), transformer_task="fill-mask")
    from sentence_transformers.sparse_encoder.models import MLMTransformer

    return MLMTransformer(str(path))


def _router(mlm_source: Path, mapped: bool):
    tok = mlm_module(mlm_source).tokenizer
    torch.manual_seed(1)
    weight = torch.rand(tok.vocab_size) * (torch.rand(tok.vocab_size) > 0.3)
    query, document = [SparseStaticEmbedding(tokenizer=tok, weight=weight, frozen=True)], [
        mlm_module(mlm_source), SpladePooling("max", "log1p_relu")]
    if not mapped:
        return Router.for_query_document(query_modules=query, document_modules=document)
    return Router({"inference-free": query, "splade": document}, default_route="splade",
                  route_mappings={("query", None): "inference-free", ("document", None): "splade"})


def _save(name: str, src: Path, mlm_source: Path) -> None:
    if name == "st5-fixture":
        shutil.copytree(FIXTURE, src)
        return
    if name.startswith("router"):
        SparseEncoder(modules=[_router(mlm_source, name == "router-mapped")], similarity_fn_name="dot",
                      device="cpu").save(str(src))
        return
    pooling = SpladePooling("sum" if name == "sum" else "max", "log1p_relu" if name == "log1p" else "relu")
    prompts = PROMPTS if name == "prompts" else None
    SparseEncoder(modules=[mlm_module(mlm_source), pooling], prompts=prompts, device="cpu").save(str(src))
    if name == "subfolder":
        tiny_models.move_mlm_to_subfolder(src, "0_Transformer")
    if name == "odd-prompts":  # as a hand-edited config may hold them: no "query" nor "document" prompt
        config = json.loads((src / "config_sentence_transformers.json").read_text())
        config.update(prompts={"passage": "passage: ", "classify": "classify: "}, default_prompt_name="classify")
        (src / "config_sentence_transformers.json").write_text(json.dumps(config))


@pytest.fixture(scope="session")
def st_folders(tmp_path_factory, mlm_source):
    """Lazily saved folders by name and their exports (session-scoped)."""
    root = tmp_path_factory.mktemp("st6-folders")
    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in made:
            if name == "router-mapped" and "route_mappings" not in inspect.signature(Router.__init__).parameters:
                pytest.skip("this sentence-transformers' Router has no route_mappings")
            src, out = root / name, root / f"{name}-out"
            _save(name, src, mlm_source)
            export_model(ExportConfig(model=str(src), output=out, top_k=0))
            made[name] = (src, out)
        return made[name]

    return get


def st_dense(folder: Path, texts: list[str], kind: str) -> np.ndarray:
    model = SparseEncoder(str(folder), device="cpu")
    encode = {"query": model.encode_query, "document": model.encode_document}.get(kind, model.encode)
    return encode(texts, convert_to_tensor=True, show_progress_bar=False).to_dense().numpy()


def dense(vectors, vocab: int) -> np.ndarray:
    return np.stack([v.to_dense(vocab) for v in vectors])


def test_saved_folders_use_the_installed_layout(st_folders):
    src, _ = st_folders("log1p")
    types = [m["type"] for m in json.loads((src / "modules.json").read_text())]
    if ST6:
        assert types[0] == "sentence_transformers.base.modules.transformer.Transformer"
        assert json.loads((src / "sentence_bert_config.json").read_text())["transformer_task"] == "fill-mask"
    assert json.loads((src / "1_SpladePooling" / "config.json").read_text())["activation_function"] == "log1p_relu"


@pytest.mark.parametrize("name", NAMES)
def test_export_matches_sentence_transformers(st_folders, name):
    src, out = st_folders(name)
    router = name.startswith("router")
    document = SpladeEncoder(out / "document" if router else out, provider="cpu")
    query = StaticQueryEncoder(out / "query") if router else document
    m = document.manifest
    assert m.validation["passed"], m.validation
    assert m.validation["reference"] == f"sentence-transformers {sentence_transformers.__version__} encode_document"
    assert m.pooling == ("sum" if name == "sum" else "max")
    vocab = m.vocab_size
    got = {"document": dense(document.encode_document(TEXTS), vocab), "query": dense(query.encode_query(TEXTS), vocab)}
    for kind in ("document", "query"):
        expected = st_dense(src, TEXTS, kind)
        assert np.abs(got[kind] - expected).max() < 1e-4, kind
    if router:
        assert query.manifest.kind == "static-query" and query.manifest.validation["passed"]
    if name == "st5-fixture":
        assert m.max_length == tiny_models.ST5_MAX_SEQ_LENGTH


def test_prompts_are_written_and_applied(st_folders):
    src, out = st_folders("prompts")
    encoder = SpladeEncoder(out, provider="cpu")
    assert encoder.manifest.prompts == PROMPTS and encoder.manifest.default_prompt_name is None
    vocab = encoder.manifest.vocab_size
    # the prompt matters: without it the vectors differ, with it by name they are encode_query's
    assert np.abs(dense(encoder.encode(TEXTS), vocab) - st_dense(src, TEXTS, "query")).max() > 1e-3
    np.testing.assert_allclose(dense(encoder.encode(TEXTS, prompt_name="query"), vocab),
                               dense(encoder.encode_query(TEXTS), vocab))


def test_prompts_sentence_transformers_does_not_pick_by_task(st_folders):
    """No "query"/"document" prompt saved: sentence-transformers (5.x and 6.x) still holds empty ones, and uses
    them for encode_query / encode_document, never "passage" or the default; encode() takes the default."""
    src, out = st_folders("odd-prompts")
    encoder = SpladeEncoder(out, provider="cpu")
    m = encoder.manifest
    assert m.prompts == {"query": "", "document": "", "passage": "passage: ", "classify": "classify: "}
    assert m.default_prompt_name == "classify"
    got = dense(encoder.encode(TEXTS), m.vocab_size)
    assert np.abs(got - st_dense(src, TEXTS, "")).max() < 1e-4, "the default prompt, as sentence-transformers' encode"


def test_router_manifests_carry_the_prompts(st_folders):
    _, out = st_folders("router")
    for side in ("document", "query"):
        manifest = json.loads((out / side / "splade.json").read_text())
        assert manifest["prompts"] == {"query": "", "document": ""} and manifest["default_prompt_name"] is None
