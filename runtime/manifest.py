"""The manifest (`splade.json`): the only contract between `export` and `runtime`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from runtime.errors import ModelFolderError

MANIFEST_NAME = "splade.json"
FORMAT = "splade-onnx"
FORMAT_VERSION = 1

Precision = Literal["fp32", "fp16", "int8"]
Pooling = Literal["max", "sum"]
# "splade": an ONNX graph (model_file); "static-query": a weight per vocabulary term (model_file is a .npy
# vector), applied to the tokens a query contains without running any graph (inference-free queries).
Kind = Literal["splade", "static-query"]
KINDS = ("splade", "static-query")
# max_length of a manifest that does not record its graph's position limit (older exports): no
# encoder this runtime exports has more positions, and a larger value would fail inside the graph.
MAX_LENGTH_CEILING = 8192
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    quantization: str = ""  # "int8-static" (batch-independent) or "int8-dynamic"; "" for fp32/fp16
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    kind: Kind = "splade"
    position_limit: int | None = None  # the graph's position embeddings: max_length may not exceed it
    # sentence-transformers prompts (name -> text put before each text), applied as its encode_query /
    # encode_document / encode(prompt_name=...) do; default_prompt_name applies when a call names none.
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    # how max pooling reduces over tokens (export's --max-reduction, as built); "" for sum pooling and for
    # folders exported before it was recorded (token-major). Informational: the runtime runs any layout.
    max_reduction: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        data["outputs"] = list(self.outputs)
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"  # NaN is not JSON

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    def problem(self) -> str | None:
        """What is wrong with the fields' types or ranges, or None: checked at load, so that a hand-edited
        manifest fails here, naming the field, rather than inside the tokenizer or ONNX Runtime."""
        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for name in ("source_model", "source_revision", "architecture", "model_file", "tokenizer_file"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                return f"{name} must be a non-empty string, got {getattr(self, name)!r}"
        if self.pooling not in ("max", "sum") or self.precision not in ("fp32", "fp16", "int8"):
            return f"unknown pooling {self.pooling!r} or precision {self.precision!r}"
        for name in ("top_k", "max_length", "vocab_size", "opset", "pad_token_id"):
            if not is_int(getattr(self, name)):
                return f"{name} must be an integer, got {getattr(self, name)!r}"
        if self.vocab_size < 1 or not 0 <= self.pad_token_id < self.vocab_size or not 0 <= self.top_k <= self.vocab_size:
            return (f"vocab_size {self.vocab_size}, pad_token_id {self.pad_token_id} and top_k {self.top_k} must satisfy "
                    f"vocab_size >= 1, 0 <= pad_token_id < vocab_size, 0 <= top_k <= vocab_size")
        if self.position_limit is not None and (not is_int(self.position_limit) or self.position_limit < 4):
            return f"position_limit must be an integer >= 4, got {self.position_limit!r}"
        ceiling = self.position_limit or MAX_LENGTH_CEILING
        if not 4 <= self.max_length <= ceiling:
            return f"max_length {self.max_length} must be between 4 and the graph's position limit {ceiling}"
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            return "sha256 must be 64 lowercase hex digits"
        if not all(isinstance(n, str) for n in (*self.inputs, *self.outputs)):
            return "inputs and outputs must be lists of names"
        for name in ("fusions", "versions", "validation", "prompts"):
            if not isinstance(getattr(self, name), dict):
                return f"{name} must be a JSON object"
        if not isinstance(self.max_reduction, str):
            return f"max_reduction must be a string, got {self.max_reduction!r}"
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.prompts.items()):
            return "prompts must map names to strings"
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            return f"default_prompt_name {self.default_prompt_name!r} is not among the prompts {sorted(self.prompts)}"
        for name in ("model_file", "tokenizer_file"):
            value = getattr(self, name)
            posix, windows = PurePosixPath(value), PureWindowsPath(value)
            if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
                return f"{name} {value!r} must be a path inside the model folder"
        return None

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
            for name in ("inputs", "outputs"):
                if not isinstance(kwargs[name], list):
                    raise TypeError(f"{name} must be a list")
                kwargs[name] = tuple(kwargs[name])
            manifest = cls(**kwargs)
        except (KeyError, TypeError) as exc:
            raise ModelFolderError(f"{where}: malformed manifest ({exc})") from exc
        if manifest.kind not in KINDS:
            raise ModelFolderError(f"{where}: unknown model kind {manifest.kind!r} (this runtime reads {', '.join(KINDS)})")
        problem = manifest.problem()
        if problem:
            raise ModelFolderError(f"{where}: {problem}")
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


def validation_failures(manifest: Manifest) -> list[str]:
    """The export's failed checks, each naming its precision and figure; [] when it passed or was not validated.

    Re-derived from the stored figures and bounds, so the message says what failed, not just that something did.
    """
    validation = manifest.validation or {}
    if validation.get("passed") is not False:
        return []
    stored = validation.get("bounds")
    bounds: dict[str, Any] = stored if isinstance(stored, dict) else {}
    min_overlap = float(bounds.get("min_top32_overlap", 0.9))
    max_diff = float(bounds.get("fp32_max_abs_diff", 1e-4))
    failures = []
    for precision, fid in validation.items():
        if not isinstance(fid, dict) or not isinstance(fid.get("top32_overlap"), int | float):
            continue  # "bounds", "skipped", or a precision that could not run (null figures)
        if precision == "fp32" and isinstance(fid.get("max_abs_diff"), int | float) and fid["max_abs_diff"] > max_diff:
            failures.append(f"fp32 max |diff| {fid['max_abs_diff']:.2e} > {max_diff:.0e}")
        if fid["top32_overlap"] < min_overlap:
            failures.append(f"{precision} top-32 overlap {fid['top32_overlap']:.3f} < {min_overlap}")
    return failures or ["passed: false"]


def check_validation(manifest: Manifest, folder: str | Path, *, allow_failed: bool = False) -> None:
    """Refuse a folder whose export failed validation against PyTorch, unless the caller opts in.

    Raises:
        ModelFolderError: the manifest records `"passed": false` and `allow_failed` is False.
    """
    failures = validation_failures(manifest)
    if not failures:
        return
    what = "; ".join(failures)
    if not allow_failed:
        raise ModelFolderError(
            f"{folder}: this {manifest.precision} export failed its validation against PyTorch ({what}); "
            "re-export it (another --max-length, or fp32), or load it anyway with "
            "allow_failed_validation=True / --allow-failed-validation"
        )
    logging.getLogger("runtime").warning("%s: loading a folder that failed validation (%s), as asked", folder, what)
