"""The export pipeline: resolve the model, trace, fuse, convert precision, validate, write the folder."""

from __future__ import annotations

import importlib.metadata as md
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import onnxruntime as ort
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from export import optimize
from export import validate as fidelity
from export.errors import UnsupportedModelError, ValidationError
from export.graph import export_onnx, mlm_head
from export.sources import resolve_model
from runtime.manifest import Manifest, sha256_of

log = logging.getLogger("export")

Precision = Literal["fp32", "fp16", "int8"]
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert"}  # two positions reserved for padding offset


@dataclass(frozen=True)
class ExportConfig:
    """Everything `python -m export` decides; one frozen object so the CLI stays a thin shell."""

    model: str = "naver/splade-cocondenser-ensembledistil"
    output: Path | None = None
    precision: Precision = "fp32"
    pooling: Literal["max", "sum"] = "max"
    top_k: int = 512
    max_length: int | None = None
    opset: int = 17
    validate: bool = True
    attention_fusion: bool = True
    int8_head: bool = True
    vocab_chunk: int = 2048
    bounds: fidelity.Bounds = field(default_factory=fidelity.Bounds)

    def __post_init__(self):
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.pooling not in ("max", "sum"):
            raise ValueError(f"pooling must be 'max' or 'sum', got {self.pooling!r}")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 returns the full weights)")
        if self.vocab_chunk < 0:
            raise ValueError("vocab_chunk must be >= 0 (0: project the whole vocabulary at once)")
        if self.opset < 14:
            raise ValueError("opset must be >= 14 (LayerNormalization export and TopK with a dynamic k)")


def position_limit(config) -> int:
    limit = int(getattr(config, "max_position_embeddings", 512))
    return limit - 2 if config.model_type in _OFFSET_POSITIONS else limit


def _dims(config) -> tuple[int, int]:
    hidden = getattr(config, "hidden_size", None) or config.dim
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    return int(heads), int(hidden)


def library_versions() -> dict[str, str]:
    names = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _validate(cfg: ExportConfig, mlm, tokenizer, graphs: dict[str, Path], max_length: int, vocab: int) -> dict[str, fidelity.Fidelity]:
    texts = fidelity.validation_texts(tokenizer, max_length)
    reference = fidelity.reference_weights(mlm, tokenizer, texts, pooling=cfg.pooling, max_length=max_length)
    results = {}
    for precision, path in graphs.items():
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # e.g. an ORT build without fp16 CPU kernels
            results[precision] = fidelity.Fidelity.skip(f"CPU provider cannot run it: {str(exc).splitlines()[0][:300]}")
            continue
        got = fidelity.graph_weights(session, tokenizer, texts, max_length=max_length, vocab=vocab)
        results[precision] = fidelity.compare(reference, got, top_k=cfg.top_k)
    return results


def export_model(cfg: ExportConfig) -> Manifest:
    """Export `cfg.model` to a self-describing folder and return its manifest.

    Raises:
        ModelSourceError: the model cannot be found or fetched.
        UnsupportedModelError: no fast tokenizer, no Linear MLM head, or a max length beyond the model's.
        ValidationError: the graph differs from PyTorch beyond `cfg.bounds` (the folder is
            still written, with the failing figures in its manifest, for inspection).
    """
    source = resolve_model(cfg.model)
    config = AutoConfig.from_pretrained(source.path)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    if not tokenizer.is_fast:
        raise UnsupportedModelError(f"{source.name}: no fast (Rust) tokenizer; the runtime needs tokenizer.json")
    mlm = AutoModelForMaskedLM.from_pretrained(source.path, attn_implementation="eager").float().eval()
    limit = position_limit(config)
    max_length = cfg.max_length or limit
    if not 2 <= max_length <= limit:
        raise UnsupportedModelError(f"--max-length {max_length} must be between 2 and the model's position limit {limit}")
    vocab = int(mlm_head(mlm).weight.shape[0])
    out = Path(cfg.output or Path("models") / f"{Path(source.name).name}-{cfg.precision}")
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        log.info("tracing %s (%s pooling, top-k %s, opset %s)", source.name, cfg.pooling, cfg.top_k, cfg.opset)
        outputs = export_onnx(mlm, raw, pooling=cfg.pooling, top_k=cfg.top_k, opset=cfg.opset,
                              vocab_chunk=cfg.vocab_chunk)
        heads, hidden = _dims(config)
        fusions = optimize.fuse_transformer(raw, fused, num_heads=heads, hidden_size=hidden, attention=cfg.attention_fusion)
        log.info("fusions: %s", ", ".join(f"{k}×{v}" for k, v in fusions.items()) or "none")
        final = out / "model.onnx"
        if cfg.precision == "fp16":
            optimize.to_fp16(fused, final)
        elif cfg.precision == "int8":
            optimize.to_int8(fused, final, quantize_head=cfg.int8_head)
        else:
            shutil.copyfile(fused, final)
        results: dict[str, fidelity.Fidelity] = {}
        if cfg.validate:
            graphs = {"fp32": fused} if cfg.precision == "fp32" else {"fp32": fused, cfg.precision: final}
            results = _validate(cfg, mlm, tokenizer, graphs, max_length, vocab)

    tokenizer.save_pretrained(out)
    failures = fidelity.check(results, cfg.bounds)
    validation = fidelity.record(results, failures, cfg.bounds, "CPUExecutionProvider") if results else {}
    manifest = Manifest(
        source_model=source.name,
        source_revision=source.revision,
        architecture=type(mlm).__name__,
        precision=cfg.precision,
        pooling=cfg.pooling,
        top_k=min(cfg.top_k, vocab),
        max_length=max_length,
        vocab_size=vocab,
        opset=cfg.opset,
        inputs=("input_ids", "attention_mask"),
        outputs=outputs,
        sha256=sha256_of(final),
        pad_token_id=int(tokenizer.pad_token_id or 0),
        fusions=fusions,
        versions=library_versions(),
        validation=validation,
    )
    manifest.write(out)
    for precision, fid in results.items():
        if fid.skipped:
            log.info("-[!] %s validation skipped: %s", precision, fid.skipped)
        else:
            log.info(
                "-[%s] %s: max |diff| %.2e, top-32 overlap %.3f, cosine %.6f",
                "x" if any(f.startswith(precision) for f in failures) else "✓",
                precision, fid.max_abs_diff, fid.top32_overlap, fid.cosine,
            )
    if failures:
        raise ValidationError(f"{out}: validation failed: " + "; ".join(failures))
    return manifest
