"""`python -m export`: a thin argparse shell over `export.export_model`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from export.config import MAX_REDUCTIONS, Bounds
from export.pipeline import ExportConfig, export_model
from export.sources import DEFAULT_MODEL, TINY_ALIAS
from runtime.errors import SpladeError
from runtime.manifest import Precision

_D = ExportConfig()  # flag defaults are the config's own


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a SPLADE masked-LM to one ONNX graph (encoder + pooling + top-k), "
        "optimize it, validate it against PyTorch and write a self-describing model folder.",
    )
    src = p.add_argument_group("source and destination")
    src.add_argument("--model", default=DEFAULT_MODEL,
                     help=f"hub id, local folder, or '{TINY_ALIAS}' (the embedded 2-layer default). Default: %(default)s")
    src.add_argument("--output", type=Path, default=None,
                     help="folder to write (default: models/<model name>-<precision>): new, empty, or a previous export "
                     "of this tool, which is replaced once the new one is complete. Refused: the source folder, a "
                     "folder inside it, and a folder holding other files")
    prec = p.add_argument_group("precision (one of; default fp32)")
    excl = prec.add_mutually_exclusive_group()
    excl.add_argument("--fp16", action="store_true", help="half-precision weights and compute, for GPU providers")
    excl.add_argument("--int8", action="store_true",
                      help="int8 quantization for CPU deployment: static (activation scales calibrated once at export, "
                      "a text's vector does not depend on its batch) unless --int8-scales dynamic")
    prec.add_argument("--int8-scales", choices=["static", "dynamic"], default=_D.int8_scales,
                      help="with --int8: activation scales calibrated once on the shipped texts (a text's vector does "
                      "not depend on its batch) or taken per run (per batch). Default: %(default)s")
    prec.add_argument("--int8-keep-head-fp32", action="store_true",
                      help="with --int8: leave the [hidden, vocab] projection in fp32")
    graph = p.add_argument_group("graph")
    graph.add_argument("--top-k", type=int, default=_D.top_k,
                       help="terms returned per text, weight descending; 0 returns the full [batch, vocab] weights. Default: %(default)s")
    graph.add_argument("--pooling", choices=["max", "sum"], default=None,
                       help="aggregation over tokens. Default: a sentence-transformers folder's SpladePooling, else max "
                       "(a value that contradicts the folder is refused)")
    graph.add_argument("--max-length", type=int, default=None,
                       help="tokens per text the runtime feeds (default: the model's position limit, 512 for BERT)")
    graph.add_argument("--opset", type=int, default=_D.opset, help="ONNX opset. Default: %(default)s")
    graph.add_argument("--vocab-chunk", type=int, default=_D.vocab_chunk,
                       help="project the vocabulary in chunks of this many terms, each reduced over tokens before "
                       "the next (bounds memory, keeps the reduction in cache); 0 = all at once. Default: %(default)s")
    graph.add_argument("--max-reduction", choices=list(MAX_REDUCTIONS), default=_D.max_reduction,
                       help="how max pooling reduces each chunk over tokens: reducemax projects vocabulary-major and "
                       "reduces the innermost axis (fastest on CPU); reducemax-tokens reduces a [batch, tokens, chunk] "
                       "block (the layout of exports before it, and of int8 with a quantized head); globalmaxpool is "
                       "faster on CUDA (cuDNN pooling instead of cuDNN's reduce, which converts fp16 to fp32 first). "
                       "Default: %(default)s")
    graph.add_argument("--no-attention-fusion", action="store_true",
                       help="skip ORT's fused Attention op (other fusions still apply)")
    val = p.add_argument_group("validation")
    val.add_argument("--no-validate", action="store_true", help="skip the comparison with PyTorch")
    val.add_argument("--min-overlap", type=float, default=Bounds().min_top32_overlap,
                     help="fail when any precision's top-32 term overlap with PyTorch is below this. Default: %(default)s")
    p.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", force=True)
    for noisy in ("onnxruntime", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    precision: Precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    try:
        cfg = ExportConfig(
            model=args.model, output=args.output, precision=precision, pooling=args.pooling,
            top_k=args.top_k, max_length=args.max_length, opset=args.opset, validate=not args.no_validate,
            attention_fusion=not args.no_attention_fusion, vocab_chunk=args.vocab_chunk, int8_head=not args.int8_keep_head_fp32,
            max_reduction=args.max_reduction,
            int8_scales=args.int8_scales,
            bounds=Bounds(min_top32_overlap=args.min_overlap),
        )
        result = export_model(cfg)
    except SpladeError as exc:  # every export error, bad flag values and an unwritable output among them
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, folder in result.folders.items():
        m = result.manifests[name]
        what = (f"{m.precision}, {m.pooling} pooling, top-k {m.top_k}" if m.kind == "splade" else m.kind)
        print(f"wrote {folder} ({what}, max length {m.max_length})")
    if result.replaced:
        print(f"(replaced the previous export in {result.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
