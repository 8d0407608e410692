"""Static query models without sentence-transformers: folder format, manifest kind, encoding vs an independent computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from export.static_query import export_static_query
from runtime import ModelFolderError, load_manifest
from runtime.core.static import StaticQueryEncoder
from runtime.errors import InputTooLongError
from tests import tiny_models


@pytest.fixture(scope="module")
def static_folder(tmp_path_factory):
    """A SparseStaticEmbedding-shaped folder (tokenizer + safetensors `weight`) and its export."""
    root = tmp_path_factory.mktemp("static")
    src = root / "src"
    tiny_models.save_tokenizer(tiny_models.wordpiece(), src, bpe=False)
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    rng = np.random.default_rng(0)
    weights = (rng.random(len(vocab)) * (rng.random(len(vocab)) > 0.3)).astype(np.float32)
    save_file({"weight": weights}, str(src / "model.safetensors"))
    export_static_query(src, root / "out", source_name="test", source_revision="local", versions={}, reference=None)
    return src, root / "out", weights


def expected(src, weights, texts, max_length):
    """Distinct tokens (no special tokens, truncated) times their weights, via the transformers tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    out = np.zeros((len(texts), len(weights)), np.float32)
    for row, text in enumerate(texts):
        ids = tok(text, add_special_tokens=False, truncation=max_length is not None, max_length=max_length)["input_ids"]
        out[row, sorted(set(ids))] = weights[sorted(set(ids))]
    return out


def test_static_query_encoding_matches_token_presence_times_weight(static_folder):
    src, out, weights = static_folder
    enc = StaticQueryEncoder(out)
    m = enc.manifest
    assert m.kind == "static-query" and m.max_length == tiny_models.MAX_LENGTH and m.vocab_size == len(weights)
    texts = ["what is splade", "", "Tokyo Tokyo Tokyo is the capital", "sparse retrieval " * 60]
    got = np.stack([v.to_dense(len(weights)) for v in enc.encode(texts)])
    np.testing.assert_array_equal(got, expected(src, weights, texts, tiny_models.MAX_LENGTH))
    whole = np.stack([v.to_dense(len(weights)) for v in enc.encode(texts, truncate=False)])
    np.testing.assert_array_equal(whole, expected(src, weights, texts, None))
    vec = enc.encode(["Tokyo is the capital"], top_k=2)[0]
    assert len(vec) <= 2 and np.all(np.diff(vec.values) <= 0)
    with pytest.raises(InputTooLongError, match="max length of 64"):
        enc.tokenizer.check_length(["sparse retrieval " * 60])
    assert enc.reopen(threads=1) is enc  # a lookup has no session: concurrent runs share it as it is


def test_manifest_kind_defaults_and_is_checked(static_folder, tmp_path):
    _, out, _ = static_folder
    data = json.loads((out / "splade.json").read_text())
    data.pop("kind")
    (tmp_path / "splade.json").write_text(json.dumps(data))
    for name in ("query_weights.npy", "tokenizer.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    assert load_manifest(tmp_path).kind == "splade", "manifests written before `kind` existed are SPLADE graphs"
    data["kind"] = "colbert"
    (tmp_path / "splade.json").write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="unknown model kind 'colbert'"):
        load_manifest(tmp_path)


def test_negative_or_missing_weights_are_refused(static_folder, tmp_path):
    src, _, weights = static_folder
    bad = tmp_path / "bad"
    tiny_models.save_tokenizer(tiny_models.wordpiece(), bad, bpe=False)
    save_file({"weight": -weights}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match="negative weights"):
        export_static_query(bad, tmp_path / "o", source_name="b", source_revision="", versions={}, reference=None)
    (bad / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="without model.safetensors"):
        export_static_query(bad, tmp_path / "o", source_name="b", source_revision="", versions={}, reference=None)


def test_static_query_limits_follow_the_runtime_rules(static_folder):
    """Without truncation the whole text counts, up to max_windows × max_length tokens; arguments are checked."""
    src, out, weights = static_folder
    enc = StaticQueryEncoder(out, max_windows=2)
    long = "sparse retrieval " * 200  # far more than 2 × max_length tokens
    with pytest.raises(InputTooLongError, match=r"texts\[1\]"):
        enc.encode(["paris", long], truncate=False)
    with pytest.raises(InputTooLongError, match=r"inputs\[0\]"):
        enc.tokenizer.check_length([long])
    mid = "sparse retrieval tokyo " * 6  # over max_length, within two windows' worth
    whole = enc.encode([mid], truncate=False)[0].to_dense(len(weights))
    assert np.allclose(whole, expected(src, weights, [mid], None)[0])
    huge = "x" * 10_000_000  # cut before tokenizing: cheap, and the same as the cut text
    assert np.allclose(enc.encode([huge])[0].to_dense(len(weights)), enc.encode([huge[:50_000]])[0].to_dense(len(weights)))
    for bad in ({"top_k": 0}, {"top_k": True}, {"threshold": float("nan")}):
        with pytest.raises((TypeError, ValueError)):
            enc.encode(["paris"], **bad)


def test_static_folders_open_through_open_encoder_and_honour_validation(static_folder, tmp_path):
    """open_encoder passes SpladeEncoder's options on; a static folder that failed validation is refused
    unless allowed; SpladeEncoder names the folder's kind instead of failing inside ONNX Runtime."""
    from runtime import SpladeEncoder
    from runtime.core.encoder import open_encoder

    src, out, weights = static_folder
    enc = open_encoder(out, "cpu", threads=1, max_windows=2, allow_failed_validation=False)
    assert isinstance(enc, StaticQueryEncoder) and enc.tokenizer.max_windows == 2
    with pytest.raises(ModelFolderError, match="static-query model folder, not a SPLADE graph"):
        SpladeEncoder(out, provider="cpu")
    failed = tmp_path / "failed"
    failed.mkdir()
    for name in ("query_weights.npy", "tokenizer.json"):
        (failed / name).write_bytes((out / name).read_bytes())
    data = json.loads((out / "splade.json").read_text())
    data["validation"] = {"fp32": {"max_abs_diff": 0.5, "top32_overlap": 0.5, "cosine": 0.9}, "passed": False,
                          "bounds": {"fp32_max_abs_diff": 1e-4, "min_top32_overlap": 0.9}}
    (failed / "splade.json").write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="fp32 top-32 overlap 0.500 < 0.9"):
        open_encoder(failed, "cpu")
    assert isinstance(open_encoder(failed, "cpu", allow_failed_validation=True), StaticQueryEncoder)


def test_tokenizer_without_a_length_limit_exports_a_loadable_folder(static_folder, tmp_path):
    """A tokenizer saved without model_max_length gets the runtime's ceiling, inside the manifest's range."""
    src, _, weights = static_folder
    bare = tmp_path / "src"
    bare.mkdir()
    for path in src.iterdir():
        (bare / path.name).write_bytes(path.read_bytes())
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("model_max_length", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    manifest = export_static_query(bare, tmp_path / "out", source_name="test", source_revision="local", versions={},
                                   reference=None)
    enc = StaticQueryEncoder(tmp_path / "out")
    assert manifest.max_length == enc.max_length == 8192
    assert enc.encode(["what is splade"])[0].values.size > 0
