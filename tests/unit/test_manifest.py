"""The manifest contract: a hand-written model folder loads, and every way it can be wrong is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.errors import ModelFolderError, SpladeError
from runtime.manifest import MANIFEST_NAME, Manifest, cache_root, load_manifest, sha256_of


def manifest(**changes) -> Manifest:
    fields = dict(source_model="m", source_revision="r", architecture="BertForMaskedLM", precision="fp32",
                  pooling="max", top_k=8, max_length=16, vocab_size=100, opset=17,
                  inputs=("input_ids", "attention_mask"), outputs=("values", "indices"), sha256="0" * 64)
    return Manifest(**{**fields, **changes})


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"not really a graph, but hashed all the same")
    (tmp_path / "tokenizer.json").write_text("{}")
    manifest(sha256=sha256_of(tmp_path / "model.onnx")).write(tmp_path)
    return tmp_path


def rewrite(folder: Path, **changes) -> None:
    data = json.loads((folder / MANIFEST_NAME).read_text())
    data.update(changes)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


def test_round_trip(folder):
    loaded = load_manifest(folder)
    assert loaded == manifest(sha256=sha256_of(folder / "model.onnx"))
    assert loaded.inputs == ("input_ids", "attention_mask") and isinstance(loaded.outputs, tuple)
    assert json.loads(loaded.to_json())["format_version"] == 1


def test_dense_output_contract():
    assert Manifest.from_dict(json.loads(manifest(top_k=0, outputs=("weights",)).to_json())).top_k == 0
    with pytest.raises(ModelFolderError, match="do not match top_k=0"):
        Manifest.from_dict(json.loads(manifest(top_k=0).to_json()))


@pytest.mark.parametrize("changes, message", [
    ({"format": "onnx"}, "not a splade-onnx manifest"),
    ({"format_version": 99}, "format_version 99 is not supported"),
    ({"pooling": "mean"}, "unknown pooling 'mean'"),
    ({"precision": "bf16"}, "or precision 'bf16'"),
    ({"outputs": ["weights"]}, "do not match top_k=8"),
    ({"inputs": None}, "malformed manifest"),
    ({"not_a_field": 1}, None),  # unknown keys are ignored: newer writers may add fields
])
def test_rejections(folder, changes, message):
    rewrite(folder, **changes)
    if message is None:
        assert load_manifest(folder).top_k == 8
        return
    with pytest.raises(ModelFolderError, match=message):
        load_manifest(folder)


def test_missing_field_is_malformed(folder):
    data = json.loads((folder / MANIFEST_NAME).read_text())
    del data["vocab_size"]
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="malformed manifest.*vocab_size"):
        load_manifest(folder)


def test_folder_and_file_problems(folder, tmp_path_factory):
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_manifest(folder / "nope")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ModelFolderError, match="splade.json: missing"):
        load_manifest(empty)
    (empty / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(ModelFolderError, match="expected a JSON object"):
        load_manifest(empty)
    (empty / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        load_manifest(empty)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFolderError, match=r"tokenizer\.json: missing"):
        load_manifest(folder)


def test_changed_model_is_refused_by_sha256(folder):
    (folder / "model.onnx").write_bytes(b"replaced after export")
    with pytest.raises(ModelFolderError, match=r"model\.onnx: sha256 .* does not match"):
        load_manifest(folder)
    assert load_manifest(folder, verify=False).precision == "fp32"
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelFolderError, match=r"model\.onnx: missing"):
        load_manifest(folder)


def test_errors_share_one_root_and_nan_is_never_written():
    assert issubclass(ModelFolderError, SpladeError) and issubclass(ModelFolderError, ValueError)
    with pytest.raises(ValueError, match="JSON compliant"):
        manifest(validation={"fp16": {"max_abs_diff": float("nan")}}).to_json()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPLADE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("SPLADE_CACHE")
    assert cache_root().parts[-2:] == (".cache", "splade-onnx")
