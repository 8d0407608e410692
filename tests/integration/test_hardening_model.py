"""Model folder checks: every manifest field typed and in range, files inside the folder, corrupt files named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import ModelFolderError, SpladeEncoder
from runtime.manifest import sha256_of

REPO = Path(__file__).resolve().parents[2]


def copy_folder(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "splade.json").read_text())
    manifest.update(changes)
    (dst / "splade.json").write_text(json.dumps(manifest))
    return dst


def test_export_records_the_position_limit(fp32_dir):
    assert json.loads((fp32_dir / "splade.json").read_text())["position_limit"] == 512


@pytest.mark.parametrize("changes, message", [
    ({"max_length": "512"}, "max_length must be an integer"),
    ({"max_length": 100000}, "max_length 100000 must be between 4 and the graph's position limit 512"),
    ({"max_length": 100000, "position_limit": None}, "max_length 100000 must be between 4 and the graph's position limit 8192"),
    ({"max_length": True}, "max_length must be an integer"),
    ({"pad_token_id": "0"}, "pad_token_id must be an integer"),
    ({"pad_token_id": 99999999}, "0 <= pad_token_id < vocab_size"),
    ({"vocab_size": 30522.0}, "vocab_size must be an integer"),
    ({"top_k": "512"}, "top_k must be an integer"),
    ({"top_k": -1}, "0 <= top_k <= vocab_size"),
    ({"sha256": 5}, "sha256 must be 64 lowercase hex digits"),
    ({"inputs": "input_ids"}, "malformed manifest"),
    ({"versions": []}, "versions must be a JSON object"),
    ({"model_file": "../../x.onnx"}, "model_file '../../x.onnx' must be a path inside the model folder"),
    ({"model_file": "/etc/hostname"}, "must be a path inside the model folder"),
    ({"tokenizer_file": "../tokenizer.json"}, "tokenizer_file '../tokenizer.json' must be a path inside"),
    ({"tokenizer_file": "C:\\x\\tokenizer.json"}, "must be a path inside the model folder"),
])
def test_manifest_fields_are_checked_at_load(fp32_dir, tmp_path, changes, message):
    folder = copy_folder(fp32_dir, tmp_path / "m", **changes)
    with pytest.raises(ModelFolderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SpladeEncoder(folder, provider="cpu")


def test_file_outside_the_folder_is_not_loaded(fp32_dir, tmp_path):
    """A manifest naming a real model one folder up is refused, not loaded from there."""
    shutil.copy(fp32_dir / "model.onnx", tmp_path / "elsewhere.onnx")
    folder = copy_folder(fp32_dir, tmp_path / "m", model_file="../elsewhere.onnx")
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelFolderError, match="inside the model folder"):
        SpladeEncoder(folder, provider="cpu")


def test_corrupt_tokenizer_is_a_model_folder_error(fp32_dir, tmp_path):
    folder = copy_folder(fp32_dir, tmp_path / "m")
    (folder / "tokenizer.json").write_text('{"version": "1.0", "truncated')
    with pytest.raises(ModelFolderError, match=r"tokenizer.json: not a readable tokenizer file"):
        SpladeEncoder(folder, provider="cpu")
    done = subprocess.run([sys.executable, "-m", "runtime", "info", "--model", str(folder)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "not a readable tokenizer file" in done.stderr and "Traceback" not in done.stderr


def test_unparsable_model_with_matching_sha256_is_a_model_folder_error(fp32_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(fp32_dir, folder)
    (folder / "model.onnx").write_bytes(b"\x08\x07 this is not an ONNX protobuf" * 100)
    copy_folder(folder, tmp_path / "m2", sha256=sha256_of(folder / "model.onnx"))
    with pytest.raises(ModelFolderError, match="ONNX Runtime cannot load this model"):
        SpladeEncoder(tmp_path / "m2", provider="cpu")
    with pytest.raises(ModelFolderError, match="ONNX Runtime cannot load this model"):
        SpladeEncoder(tmp_path / "m2", provider="auto")
