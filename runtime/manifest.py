"""The manifest (`splade.json`): the only contract between `export` and `runtime`."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime.errors import ModelFolderError

MANIFEST_NAME = "splade.json"
FORMAT = "splade-onnx"
FORMAT_VERSION = 1

Precision = Literal["fp32", "fp16", "int8"]
Pooling = Literal["max", "sum"]


def cache_root() -> Path:
    """Where both sides cache files (splade-tiny's weights, TensorRT engines): `SPLADE_CACHE` or ~/.cache/splade-onnx."""
    root = os.environ.get("SPLADE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "splade-onnx")
    return Path(root)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so large models don't load into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a model folder holds and how its graph must be fed.

    `top_k == 0` means the graph returns the dense `weights` [batch, vocab]; otherwise it
    returns `values` (float32, descending) and `indices` [batch, top_k].
    """

    source_model: str
    source_revision: str
    architecture: str
    precision: Precision
    pooling: Pooling
    top_k: int
    max_length: int
    vocab_size: int
    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sha256: str
    model_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"
    pad_token_id: int = 0
    fusions: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        data["outputs"] = list(self.outputs)
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"  # NaN is not JSON

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MANIFEST_NAME) -> Manifest:
        if data.get("format") != FORMAT:
            raise ModelFolderError(f"{where}: not a {FORMAT} manifest (format={data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelFolderError(
                f"{where}: manifest format_version {data.get('format_version')!r} is not supported "
                f"(this runtime reads version {FORMAT_VERSION}); re-export the model"
            )
        known = set(cls.__dataclass_fields__)
        try:
            kwargs = {k: v for k, v in data.items() if k in known}
            kwargs["inputs"] = tuple(kwargs["inputs"])
            kwargs["outputs"] = tuple(kwargs["outputs"])
            manifest = cls(**kwargs)
        except (KeyError, TypeError) as exc:
            raise ModelFolderError(f"{where}: malformed manifest ({exc})") from exc
        if manifest.pooling not in ("max", "sum") or manifest.precision not in ("fp32", "fp16", "int8"):
            raise ModelFolderError(f"{where}: unknown pooling or precision in manifest")
        expected = ("weights",) if manifest.top_k == 0 else ("values", "indices")
        if manifest.outputs != expected:
            raise ModelFolderError(f"{where}: outputs {manifest.outputs} do not match top_k={manifest.top_k}")
        return manifest


def load_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read a model folder's manifest and check that its files are the ones it describes.

    Raises:
        ModelFolderError: the folder, manifest, model or tokenizer file is missing, malformed or
            does not match (a `model.onnx` replaced after export is refused by its sha256).
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: model folder does not exist (run `python -m export` first)")
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; this is not a folder written by `python -m export`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    manifest = Manifest.from_dict(data, where=str(path))
    for name in (manifest.model_file, manifest.tokenizer_file):
        if not (folder / name).is_file():
            raise ModelFolderError(f"{folder / name}: missing (named by {path})")
    if verify:
        actual = sha256_of(folder / manifest.model_file)
        if actual != manifest.sha256:
            raise ModelFolderError(
                f"{folder / manifest.model_file}: sha256 {actual[:12]}… does not match the manifest's "
                f"{manifest.sha256[:12]}…; the file was changed after export, re-export the model"
            )
    return manifest
