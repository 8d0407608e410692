"""Convert: trace the SPLADE graph, apply ONNX Runtime's fusions, convert its precision into a folder."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export import optimize
from export.config import ExportConfig
from export.graph import export_onnx
from export.load import LoadedModel

log = logging.getLogger("export")


@dataclass(frozen=True)
class Graph:
    """What `convert` produced: the graph in the export's precision, the fused fp32 one it came from, and its shape."""

    model: Path  # `<folder>/model.onnx`, in cfg.precision
    fp32: Path  # the fused fp32 graph (in the work folder; the same bytes as `model` for an fp32 export)
    outputs: tuple[str, ...]
    fusions: dict[str, int]
    max_reduction: str  # how the graph's max pooling reduces ("" for sum pooling), as the manifest records it


def calibration_feeds(tokenizer, max_length: int) -> list[dict[str, np.ndarray]]:
    """The shipped calibration texts, one per feed, cut at `max_length` tokens."""
    feeds = []
    for text in optimize.calibration_texts():
        ids = np.array([tokenizer(text, truncation=True, max_length=max_length)["input_ids"]], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return feeds


def convert(cfg: ExportConfig, model: LoadedModel, work: Path, folder: Path) -> Graph:
    """Trace `model` into `work`, fuse it, and write `folder/model.onnx` in `cfg.precision`."""
    raw, fused = work / "raw.onnx", work / "fused.onnx"
    log.info("tracing %s (%s pooling, %s, top-k %s, opset %s, max length %s)", model.mlm_dir, model.pooling,
             model.activation, cfg.top_k, cfg.opset, model.max_length)
    # ONNX Runtime's quantizer quantizes a MatMul's weight only as its second input: a quantized head
    # keeps the token-major projection (int8 at twice the speed of fp32 beats the faster reduction)
    reduction = cfg.max_reduction
    if reduction == "reducemax" and cfg.precision == "int8" and cfg.int8_head:
        reduction = "reducemax-tokens"
    outputs = export_onnx(model.mlm, raw, tokenizer=model.tokenizer, pooling=model.pooling, top_k=cfg.top_k,
                          opset=cfg.opset, vocab_chunk=cfg.vocab_chunk, activation=model.activation,
                          max_reduction=reduction)
    fusions = optimize.fuse_transformer(raw, fused, num_heads=model.heads, hidden_size=model.hidden,
                                        attention=cfg.attention_fusion)
    raw.unlink()
    log.info("fusions: %s", ", ".join(f"{k}×{v}" for k, v in fusions.items()) or "none")
    final = folder / "model.onnx"
    if cfg.precision == "fp16":
        optimize.to_fp16(fused, final)
    elif cfg.precision == "int8" and cfg.int8_scales == "static":
        feeds = calibration_feeds(model.tokenizer, model.position_limit)  # the same scales whatever the max length
        frozen = optimize.to_int8_static(fused, final, feeds, quantize_head=cfg.int8_head)
        log.info("int8 with static activation scales: %d calibrated on %d texts", frozen, len(feeds))
    elif cfg.precision == "int8":
        optimize.to_int8(fused, final, quantize_head=cfg.int8_head)
    else:
        shutil.copyfile(fused, final)
    return Graph(model=final, fp32=fused, outputs=outputs, fusions=fusions,
                 max_reduction=reduction if model.pooling == "max" else "")
