"""Export a SparseStaticEmbedding (the query side of inference-free models) as a static query model folder.

The folder holds `tokenizer.json`, `query_weights.npy` (float32 [vocab]) and a manifest of kind
"static-query"; `runtime.core.static.StaticQueryEncoder` encodes with it, no graph involved.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from export import validate as fidelity
from export.config import Bounds
from export.errors import StFolderError
from export.st_reference import Reference
from runtime.manifest import MAX_LENGTH_CEILING, Manifest, sha256_of

log = logging.getLogger("export")

WEIGHTS_FILE = "query_weights.npy"
# A tokenizer saved without a limit: queries are cut at the runtime's ceiling (8192 tokens), far
# beyond any query, so the folder passes the manifest's range check.
UNLIMITED = MAX_LENGTH_CEILING


def _weights(folder: Path) -> np.ndarray:
    path = folder / "model.safetensors"
    if not path.is_file():
        raise StFolderError(f"{folder}: SparseStaticEmbedding without model.safetensors (re-save it with "
                         "safe_serialization=True)")
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    if "weight" not in tensors or tensors["weight"].ndim != 1:
        raise StFolderError(f"{path}: expected one 1-D tensor named 'weight', found {sorted(tensors)}")
    weights = tensors["weight"].astype(np.float32)
    if (weights < 0).any():
        raise StFolderError(f"{path}: {int((weights < 0).sum())} negative weights; sparse vectors here hold "
                         "positive weights only")
    return weights


def _max_length(folder: Path) -> int:
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    value = cfg.get("model_max_length")
    return int(value) if isinstance(value, int | float) and 4 <= value < UNLIMITED else UNLIMITED


def export_static_query(folder: Path, out: Path, *, source_name: str, source_revision: str,
                        versions: dict[str, str], reference: Reference | None,
                        prompts: dict[str, str] | None = None, default_prompt_name: str | None = None) -> Manifest:
    """Write the static query model for `folder` into `out`; validate it against `reference` when given
    (texts -> weights, with the prompt the folder's `encode_query` applies).

    Raises:
        StFolderError: no fast tokenizer or no usable weights in the folder (also a ValueError).
        ValidationError: the runtime's vectors differ from the reference.
    """
    manifest = write_static_query(folder, out, source_name=source_name, source_revision=source_revision,
                                  versions=versions, prompts=prompts, default_prompt_name=default_prompt_name)
    if reference is None:
        return manifest
    manifest, failures = validate_static_query(folder, out, manifest, reference)
    if failures:
        raise fidelity.ValidationError(f"{out}: validation failed: " + "; ".join(failures))
    return manifest


def write_static_query(folder: Path, out: Path, *, source_name: str, source_revision: str, versions: dict[str, str],
                       prompts: dict[str, str] | None = None, default_prompt_name: str | None = None) -> Manifest:
    """Tokenizer files, `query_weights.npy` and the manifest (validation pending, the sentence-transformers
    folder's prompts) into `out`."""
    if not (folder / "tokenizer.json").is_file():
        raise StFolderError(f"{folder}: no tokenizer.json; the runtime needs a fast (Rust) tokenizer")
    weights = _weights(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    np.save(out / WEIGHTS_FILE, weights)
    from tokenizers import Tokenizer

    pad = Tokenizer.from_file(str(folder / "tokenizer.json")).padding
    manifest = Manifest(
        source_model=source_name, source_revision=source_revision, architecture="SparseStaticEmbedding",
        precision="fp32", pooling="max", top_k=0, max_length=_max_length(folder), vocab_size=int(weights.shape[0]),
        opset=0, inputs=("input_ids",), outputs=("weights",), sha256=sha256_of(out / WEIGHTS_FILE),
        model_file=WEIGHTS_FILE, pad_token_id=int(pad["pad_id"]) if pad else 0, versions=versions,
        kind="static-query", prompts=dict(prompts or {}), default_prompt_name=default_prompt_name,
    )
    manifest.write(out)
    return manifest


def validate_static_query(folder: Path, out: Path, manifest: Manifest,
                          reference: Reference) -> tuple[Manifest, list[str]]:
    """Encode the validation texts with the runtime's StaticQueryEncoder from `out` (its `encode_query`, so with
    the folder's query prompt), compare with `reference`, and rewrite the manifest with the figures; returns it
    and the failed bounds ([] when it passed)."""
    from transformers import AutoTokenizer

    from runtime.core.static import StaticQueryEncoder

    texts = fidelity.validation_texts(AutoTokenizer.from_pretrained(folder), min(manifest.max_length, 512))
    encoder = StaticQueryEncoder(out)
    got = np.stack([v.to_dense(manifest.vocab_size) for v in encoder.encode_query(texts)])
    fid = fidelity.compare(reference(texts), got, top_k=0)
    failures = fidelity.check({"fp32": fid}, Bounds())
    manifest = replace(manifest, validation={"fp32": fid.as_dict(), "passed": not failures,
                                             "reference": "sentence-transformers encode_query"})
    manifest.write(out)
    log.info("-[%s] static query model: max |diff| %.2e, top-32 overlap %.3f", "x" if failures else "✓",
             fid.max_abs_diff, fid.top32_overlap)
    return manifest, failures
