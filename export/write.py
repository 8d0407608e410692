"""Write: a model folder's tokenizer and manifest, first with its validation pending (so that the runtime can
load the folder to validate it), then with the figures."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from export import validate as fidelity
from export.config import Bounds, ExportConfig
from export.convert import Graph
from export.load import LoadedModel
from runtime.manifest import Manifest, sha256_of


def splade_manifest(cfg: ExportConfig, model: LoadedModel, graph: Graph, *, revision: str, versions: dict[str, str],
                    prompts: dict[str, str] | None = None, default_prompt_name: str | None = None) -> Manifest:
    """The manifest of a SPLADE graph folder, its validation still empty (pending); `prompts` and
    `default_prompt_name` are a sentence-transformers folder's, which the runtime applies as it does."""
    return Manifest(
        source_model=model.name,
        source_revision=revision,
        architecture=type(model.mlm).__name__,
        precision=cfg.precision,
        pooling=model.pooling,
        top_k=min(cfg.top_k, model.vocab),
        max_length=model.max_length,
        vocab_size=model.vocab,
        opset=cfg.opset,
        inputs=("input_ids", "attention_mask"),
        outputs=graph.outputs,
        sha256=sha256_of(graph.model),
        pad_token_id=int(model.tokenizer.pad_token_id or 0),
        fusions=graph.fusions,
        versions=versions,
        validation={},
        position_limit=model.position_limit,
        quantization=("int8-" + cfg.int8_scales) if cfg.precision == "int8" else "",
        prompts=dict(prompts or {}),
        default_prompt_name=default_prompt_name,
        max_reduction=graph.max_reduction,
    )


def write_folder(folder: Path, manifest: Manifest, tokenizer: Any) -> Manifest:
    """Tokenizer files and `splade.json` beside the graph already in `folder`: a folder the runtime loads."""
    tokenizer.save_pretrained(folder)
    manifest.write(folder)
    return manifest


def fp32_reference_folder(folder: Path, manifest: Manifest, graph: Graph, tokenizer: Any) -> Path:
    """The fused fp32 graph (moved, not copied) as a folder of its own, to validate a reduced precision's origin."""
    folder.mkdir(parents=True)
    shutil.move(graph.fp32, folder / manifest.model_file)
    write_folder(folder, replace(manifest, precision="fp32", quantization="", validation={},
                                 sha256=sha256_of(folder / manifest.model_file)), tokenizer)
    return folder


def record_validation(folder: Path, manifest: Manifest, results: dict[str, fidelity.Fidelity], failures: list[str],
                      bounds: Bounds, reference: str) -> Manifest:
    """Rewrite `folder`'s manifest with the validation block (`"passed": false` when `failures`)."""
    validation = fidelity.record(results, failures, bounds, "CPUExecutionProvider")
    validation["reference"] = reference
    manifest = replace(manifest, validation=validation)
    manifest.write(folder)
    return manifest
