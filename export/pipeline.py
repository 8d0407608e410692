"""The export pipeline: resolve the model, trace, fuse, convert precision, validate, write the folder."""

from __future__ import annotations

import importlib.metadata as md
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from export import optimize, st_folder, st_reference
from export import validate as fidelity
from export.errors import UnsupportedModelError, ValidationError
from export.graph import Activation, MaxReduction, export_onnx, mlm_head
from export.sources import ModelSource, resolve_model
from export.static_query import export_static_query
from runtime.manifest import Manifest, Pooling, Precision, sha256_of

log = logging.getLogger("export")



@dataclass(frozen=True)
class ExportConfig:
    """Everything `python -m export` decides; one frozen object so the CLI stays a thin shell."""

    model: str = "naver/splade-cocondenser-ensembledistil"
    output: Path | None = None
    precision: Precision = "fp32"
    pooling: Pooling | None = None  # None: the folder's SpladePooling, else max
    top_k: int = 512
    max_length: int | None = None
    opset: int = 17
    validate: bool = True
    attention_fusion: bool = True
    int8_head: bool = True
    # int8 activation scales: "static" (calibrated constants: a text's vector does not depend on its batch)
    # or "dynamic" (one scale per tensor per run, i.e. per batch).
    int8_scales: Literal["static", "dynamic"] = "static"
    vocab_chunk: int = 2048
    max_reduction: MaxReduction = "reducemax"
    bounds: fidelity.Bounds = field(default_factory=fidelity.Bounds)

    def __post_init__(self):
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.int8_scales not in ("static", "dynamic"):
            raise ValueError(f"int8_scales must be 'static' or 'dynamic', got {self.int8_scales!r}")
        if self.pooling not in ("max", "sum", None):
            raise ValueError(f"pooling must be 'max' or 'sum', got {self.pooling!r}")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 returns the full weights)")
        if self.vocab_chunk < 0:
            raise ValueError("vocab_chunk must be >= 0 (0: project the whole vocabulary at once)")
        if self.opset < 14:
            raise ValueError("opset must be >= 14 (LayerNormalization export and TopK with a dynamic k)")


def position_limit(mlm: nn.Module, config) -> int:
    """Tokens per text the model can embed, read from the model itself.

    A learned position table whose rows start after a padding index (RoBERTa, XLM-R, CamemBERT,
    MPNet: positions start at padding_idx + 1) loses those rows; rotary models (ModernBERT) have
    no table and take `max_position_embeddings` as is.
    """
    table = next((m for name, m in mlm.named_modules()
                  if name.endswith("position_embeddings") and isinstance(m, nn.Embedding)), None)
    if table is None:
        return int(getattr(config, "max_position_embeddings", 512))
    offset = table.padding_idx + 1 if table.padding_idx is not None else 0
    return int(table.num_embeddings) - offset


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


def _validate(cfg: ExportConfig, reference_fn: st_reference.Reference, tokenizer, graphs: dict[str, Path],
              max_length: int, vocab: int) -> dict[str, fidelity.Fidelity]:
    texts = fidelity.validation_texts(tokenizer, max_length)
    reference = reference_fn(texts)
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


def calibration_feeds(tokenizer, max_length: int) -> list[dict[str, np.ndarray]]:
    """The shipped calibration texts, one per feed, cut at `max_length` tokens."""
    feeds = []
    for text in optimize.calibration_texts():
        ids = np.array([tokenizer(text, truncation=True, max_length=max_length)["input_ids"]], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return feeds


def export_model(cfg: ExportConfig) -> Manifest:
    """Export `cfg.model` to a self-describing folder and return its manifest.

    A sentence-transformers Router folder (query and document routes) is written as two folders,
    `<output>/document` and `<output>/query` (a SPLADE graph, or a static query model for a
    SparseStaticEmbedding); the document manifest is returned.

    Raises:
        ModelSourceError: the model cannot be found or fetched.
        StFolderError: a sentence-transformers folder this exporter cannot reproduce.
        ValueError: bad settings, e.g. a `pooling` that contradicts the folder's SpladePooling.
        UnsupportedModelError: no fast tokenizer, no Linear MLM head, or a max length beyond the model's.
        ValidationError: the graph differs from PyTorch beyond `cfg.bounds` (the folder is
            still written, with the failing figures in its manifest, for inspection).
    """
    source = resolve_model(cfg.model)
    out = Path(cfg.output or Path("models") / f"{Path(source.name).name}-{cfg.precision}")
    if not st_folder.is_st_folder(source.path):
        return _export_splade(cfg, source, source.path, out)
    routes = st_folder.read_routes(source.path)
    use_st = cfg.validate and st_reference.available()
    if not use_st and cfg.validate:
        log.info("sentence-transformers is not installed: validating against the SPLADE formula instead")
    if "" in routes:
        route = routes[""]
        if isinstance(route, st_folder.StaticRoute):
            raise st_folder.StFolderError(f"{source.path}: only a SparseStaticEmbedding; nothing to export for documents")
        return _export_splade(cfg, source, route.mlm, out, route=route, st_route="" if use_st else None)
    manifests = {}
    for name in ("document", "query"):
        route = routes[name]
        if isinstance(route, st_folder.StaticRoute):
            ref = st_reference.st_reference(source.path, "query", max_length=None) if use_st else None
            manifests[name] = export_static_query(route.folder, out / name, source_name=f"{source.name}#{name}",
                                                  source_revision=source.revision, versions=library_versions(),
                                                  reference=ref)
        else:
            manifests[name] = _export_splade(cfg, source, route.mlm, out / name, route=route,
                                             st_route=name if use_st else None, name=f"{source.name}#{name}")
    return manifests["document"]


def _export_splade(cfg: ExportConfig, source: ModelSource, mlm_dir: Path, out: Path, *,
                   route: st_folder.SpladeRoute | None = None, st_route: str | None = None,
                   name: str | None = None) -> Manifest:
    """One MLM (a plain folder, or a sentence-transformers route) -> one SPLADE graph folder."""
    pooling = cfg.pooling or (route.pooling if route else "max")
    activation: Activation = route.activation if route else "relu"
    if route is not None and cfg.pooling is not None and cfg.pooling != route.pooling:
        raise ValueError(f"--pooling {cfg.pooling} contradicts {source.name}: its SpladePooling uses "
                         f"pooling_strategy {route.pooling!r}; drop --pooling (the folder's setting is used)")
    config = AutoConfig.from_pretrained(mlm_dir)
    tokenizer = AutoTokenizer.from_pretrained(mlm_dir)
    if not tokenizer.is_fast:
        raise UnsupportedModelError(f"{source.name}: no fast (Rust) tokenizer; the runtime needs tokenizer.json")
    try:
        mlm = AutoModelForMaskedLM.from_pretrained(mlm_dir, attn_implementation="eager").float().eval()
    except (AttributeError, KeyError, TypeError, RuntimeError) as exc:  # e.g. a head transformers cannot tie
        raise UnsupportedModelError(f"{source.name}: transformers could not load it as a masked LM "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    limit = position_limit(mlm, config)
    default = min(limit, route.max_seq_length) if route and route.max_seq_length else limit
    max_length = cfg.max_length or default
    if not 2 <= max_length <= limit:
        raise UnsupportedModelError(f"--max-length {max_length} must be between 2 and the model's position limit {limit}")
    vocab = int(mlm_head(mlm).weight.shape[0])
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        log.info("tracing %s (%s pooling, %s, top-k %s, opset %s, max length %s)", mlm_dir, pooling, activation,
                 cfg.top_k, cfg.opset, max_length)
        outputs = export_onnx(mlm, raw, tokenizer=tokenizer, pooling=pooling, top_k=cfg.top_k, opset=cfg.opset,
                              vocab_chunk=cfg.vocab_chunk, activation=activation, max_reduction=cfg.max_reduction)
        heads, hidden = _dims(config)
        fusions = optimize.fuse_transformer(raw, fused, num_heads=heads, hidden_size=hidden, attention=cfg.attention_fusion)
        log.info("fusions: %s", ", ".join(f"{k}×{v}" for k, v in fusions.items()) or "none")
        final = out / "model.onnx"
        if cfg.precision == "fp16":
            optimize.to_fp16(fused, final)
        elif cfg.precision == "int8" and cfg.int8_scales == "static":
            feeds = calibration_feeds(tokenizer, limit)  # the same scales whatever the export's max length
            frozen = optimize.to_int8_static(fused, final, feeds, quantize_head=cfg.int8_head)
            log.info("int8 with static activation scales: %d calibrated on %d texts", frozen, len(feeds))
        elif cfg.precision == "int8":
            optimize.to_int8(fused, final, quantize_head=cfg.int8_head)
        else:
            shutil.copyfile(fused, final)
        results: dict[str, fidelity.Fidelity] = {}
        if cfg.validate:
            graphs = {"fp32": fused} if cfg.precision == "fp32" else {"fp32": fused, cfg.precision: final}
            if st_route is not None:
                reference_fn = st_reference.st_reference(source.path, st_route, max_length=max_length)
                reference_name = f"sentence-transformers {st_reference.version()} " + (
                    f"encode_{st_route}" if st_route else "encode")
            else:
                def reference_fn(texts: list[str]):
                    return fidelity.reference_weights(mlm, tokenizer, texts, pooling=pooling, max_length=max_length,
                                                      activation=activation)
                reference_name = "transformers MLM + SPLADE formula"
            results = _validate(cfg, reference_fn, tokenizer, graphs, max_length, vocab)

    tokenizer.save_pretrained(out)
    failures = fidelity.check(results, cfg.bounds)
    validation = fidelity.record(results, failures, cfg.bounds, "CPUExecutionProvider") if results else {}
    if results:
        validation["reference"] = reference_name
    manifest = Manifest(
        source_model=name or source.name,
        source_revision=source.revision,
        architecture=type(mlm).__name__,
        precision=cfg.precision,
        pooling=pooling,
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
        position_limit=limit,
        quantization=("int8-" + cfg.int8_scales) if cfg.precision == "int8" else "",
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
