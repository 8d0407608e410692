"""sentence-transformers folder layouts read without sentence-transformers, and the tracing batch.

- The committed 5.x-layout fixture (tests/integration/fixtures/st5-splade: MLMTransformer +
  SpladePooling, a max_seq_length of 32, query/passage prompts) exports and matches the SPLADE
  formula, prompts included.
- The same folder rewritten by hand in the 6.x layout (the generic Transformer with transformer_task
  fill-mask, base.modules type strings, embedding_dimension) exports alike.
- Modules the exporter cannot reproduce are refused, naming the module; Router route_mappings resolve
  the routes encode_query / encode_document take.
- Tracing: a batch built from token ids always has a padded row, even for a tokenizer whose example
  texts tokenize to the same length, and such a model exports.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from export import ExportConfig, export_model, st_reference
from export.errors import StFolderError
from export.graph import example_inputs
from export.st_folder import SpladeRoute, read_routes
from runtime import SpladeEncoder
from tests import tiny_models
from tests.conftest import TorchReference

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "st5-splade"  # committed; see its README.md
TEXTS = ["what is splade", "", "Tokyo is the capital of Japan", "sparse retrieval " * 40]
TRANSFORMER_6 = "sentence_transformers.base.modules.transformer.Transformer"
POOLING_6 = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(change(data) or data))


def _as_6x(folder: Path, task: str | None = "fill-mask") -> Path:
    """Rewrite a copy of the fixture the way sentence-transformers 6.x saves it."""
    _edit_json(folder / "modules.json", lambda m: [{**m[0], "type": TRANSFORMER_6}, {**m[1], "type": POOLING_6}])
    config = {"modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
              "module_output_name": "token_embeddings", **({"transformer_task": task} if task else {})}
    (folder / "sentence_bert_config.json").write_text(json.dumps(config))
    _edit_json(folder / "tokenizer_config.json", lambda c: c.update(model_max_length=tiny_models.ST5_MAX_SEQ_LENGTH))
    _edit_json(folder / "1_SpladePooling" / "config.json",
               lambda c: {"pooling_strategy": "max", "activation_function": "relu", "embedding_dimension": None})
    return folder


@pytest.fixture
def fixture_copy(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "src"))


@pytest.fixture
def no_st(monkeypatch):
    """Validate against the SPLADE formula, as where sentence-transformers is not installed."""
    monkeypatch.setattr(st_reference, "available", lambda: False)


def test_fixture_is_small_and_in_the_5x_layout():
    assert sum(f.stat().st_size for f in FIXTURE.rglob("*") if f.is_file()) < 300_000
    types = [m["type"] for m in json.loads((FIXTURE / "modules.json").read_text())]
    assert types == ["sentence_transformers.sparse_encoder.models.MLMTransformer",
                     "sentence_transformers.sparse_encoder.models.SpladePooling"]


@pytest.mark.parametrize("layout", ["5.x", "6.x"])
def test_layout_exports_and_matches_the_splade_formula(no_st, fixture_copy, tmp_path, layout):
    src = fixture_copy if layout == "5.x" else _as_6x(fixture_copy)
    result = export_model(ExportConfig(model=str(src), output=tmp_path / "out", top_k=0))
    m = result.manifest
    assert m.validation["passed"] and m.validation["reference"] == "transformers MLM + SPLADE formula"
    assert m.max_length == tiny_models.ST5_MAX_SEQ_LENGTH, "the folder's max_seq_length, not the model's 64"
    assert m.prompts == tiny_models.ST5_PROMPTS and m.default_prompt_name is None
    encoder, torch_ref = SpladeEncoder(result.output, provider="cpu"), TorchReference(src)
    for encode, prompt in ((encoder.encode_document, "passage: "), (encoder.encode_query, "query: ")):
        expected = np.stack([torch_ref.encode(prompt + t, max_length=m.max_length) for t in TEXTS])
        got = np.stack([v.to_dense(m.vocab_size) for v in encode(TEXTS)])
        assert np.abs(got - expected).max() < 1e-4, f"{encode.__name__} with prompt {prompt!r}"
    plain = np.stack([v.to_dense(m.vocab_size) for v in encoder.encode(TEXTS)])  # no prompt named, no default
    assert np.abs(plain - np.stack([torch_ref.encode(t, max_length=m.max_length) for t in TEXTS])).max() < 1e-4


def _add_module(type_name: str):
    return lambda m: [*m, {"idx": len(m), "name": str(len(m)), "path": f"{len(m)}_X", "type": type_name}]


@pytest.mark.parametrize("edit, named", [
    (lambda f: _edit_json(f / "modules.json", _add_module("my_package.modules.CustomPooling")),
     "my_package.modules.CustomPooling"),
    (lambda f: _edit_json(f / "modules.json", _add_module(
        "sentence_transformers.sparse_encoder.modules.sparse_auto_encoder.SparseAutoEncoder")), "SparseAutoEncoder"),
    (lambda f: _as_6x(f, task="feature-extraction"), "Transformer with transformer_task 'feature-extraction'"),
    (lambda f: _as_6x(f, task=None), "Transformer with transformer_task 'feature-extraction'"),  # its default
    (lambda f: _edit_json(f / "sentence_bert_config.json", lambda c: c.update(do_lower_case=True)), "do_lower_case"),
], ids=["other-package", "sparse-auto-encoder", "dense-transformer", "task-unsaid", "lowercase"])
def test_modules_it_cannot_reproduce_are_refused_by_name(fixture_copy, tmp_path, edit, named):
    edit(fixture_copy)
    with pytest.raises(StFolderError, match=re.escape(named)):
        export_model(ExportConfig(model=str(fixture_copy), output=tmp_path / "out", validate=False))
    assert not (tmp_path / "out").exists()


def _router(root: Path, structure: dict[str, list[str]], parameters: dict) -> Path:
    """A 6.x Router folder whose routes are MLM pipelines (configs only: read_routes loads no weights)."""
    types = {}
    for name in {p for paths in structure.values() for p in paths}:
        (root / name).mkdir(parents=True)
        if name.endswith("Pooling"):
            types[name] = POOLING_6
            (root / name / "config.json").write_text(json.dumps({"pooling_strategy": "sum"}))
        else:
            types[name] = TRANSFORMER_6
            (root / name / "config.json").write_text("{}")
            (root / name / "sentence_bert_config.json").write_text(json.dumps({"transformer_task": "fill-mask"}))
    (root / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                    "type": "sentence_transformers.base.modules.router.Router"}]))
    (root / "router_config.json").write_text(json.dumps({"types": types, "structure": structure,
                                                         "parameters": parameters}))
    return root


@pytest.mark.parametrize("structure, mappings, query, document", [
    ({"query": ["q_0_T", "q_1_Pooling"], "document": ["d_0_T", "d_1_Pooling"]}, {}, "q_0_T", "d_0_T"),
    ({"short": ["q_0_T", "q_1_Pooling"], "long": ["d_0_T", "d_1_Pooling"]},
     {"('query', None)": "short", "('document', 'text')": "long"}, "q_0_T", "d_0_T"),
    ({"query": ["q_0_T", "q_1_Pooling"], "all": ["d_0_T", "d_1_Pooling"]}, {"(None, None)": "all"}, "d_0_T", "d_0_T"),
], ids=["by-name", "route-mappings", "wildcard"])
def test_router_routes_follow_route_mappings(tmp_path, structure, mappings, query, document):
    routes = read_routes(_router(tmp_path / "r", structure, {"default_route": "query", "route_mappings": mappings}))
    assert isinstance(routes["query"], SpladeRoute) and isinstance(routes["document"], SpladeRoute)
    assert (routes["query"].mlm.name, routes["document"].mlm.name) == (query, document)
    assert routes["document"].pooling == "sum"


def test_router_without_a_query_route_is_refused(tmp_path):
    folder = _router(tmp_path / "r", {"a": ["d_0_T", "d_1_Pooling"]}, {"default_route": "a"})
    with pytest.raises(StFolderError, match="no route for task 'query'"):
        read_routes(folder)


def _fast(tok, folder: Path):
    from transformers import AutoTokenizer

    tiny_models.save_tokenizer(tok, folder, bpe=tok.token_to_id("<s>") is not None)
    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("make", [tiny_models.wordpiece, tiny_models.byte_bpe, tiny_models.line_level])
def test_tracing_batch_always_has_a_padded_row(tmp_path, make):
    tokenizer = _fast(make(), tmp_path)
    ids, mask = example_inputs(tokenizer, len(tokenizer))
    assert ids.shape == mask.shape and ids.shape[0] == 2 and ids.shape[1] >= 3
    assert mask[0].all() and not mask[1].all(), "row 1 is padded"
    assert int(ids.max()) < len(tokenizer) and int(ids.min()) >= 0
    assert (ids[1][mask[1] == 0] == tokenizer.pad_token_id).all()


def test_model_whose_example_texts_tokenize_alike_exports(tmp_path):
    src = tiny_models.build("bert", tmp_path / "mlm", {"wordpiece": tiny_models.line_level()})
    tokenizer = _fast(tiny_models.line_level(), tmp_path / "tok")
    lengths = {len(tokenizer(t)["input_ids"]) for t in ("what is a test", "hello", "what is splade")}
    assert len(lengths) == 1, "the case a text-based tracing batch could not pad"
    m = export_model(ExportConfig(model=str(src), output=tmp_path / "out")).manifest
    assert m.validation["passed"]
    vec = SpladeEncoder(tmp_path / "out", provider="cpu").encode(["hello"])[0]
    assert len(vec.indices) > 0
