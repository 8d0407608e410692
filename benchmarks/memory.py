"""Peak memory of one engine on one token batch, in a fresh process (what a deployment would hold).

    python -m benchmarks.memory --engine ours --model DIR --batch batch.npy

Prints JSON: RSS after loading, and peak RSS (VmHWM) after one warm-up and one timed run. Only
the engine's own imports are loaded: ours never imports torch or transformers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True, choices=["pytorch-fp32", "pytorch-bf16", "optimum-fill-mask", "ours"])
    p.add_argument("--model", required=True, type=Path, help="HF folder (baselines) or exported folder (ours)")
    p.add_argument("--batch", required=True, type=Path, help=".npy file of input ids [batch, length]")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    ids = np.load(args.batch)
    mask = np.ones_like(ids)
    if args.engine == "ours":
        from benchmarks.engines import OursEngine

        engine = OursEngine(args.model, threads=args.threads)
    else:
        import torch
        from transformers import AutoTokenizer

        from benchmarks.engines import OptimumEngine, TorchEngine

        torch.set_num_threads(args.threads)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        if args.engine.startswith("pytorch-"):
            engine = TorchEngine(args.model, tokenizer, dtype=args.engine.split("-")[1])
        else:
            engine = OptimumEngine(args.model, tokenizer, threads=args.threads)
    loaded = rss_mib("VmRSS")
    engine.run(ids, mask)
    engine.run(ids, mask)
    print(json.dumps({"engine": args.engine, "rss_after_load_mib": loaded, "peak_rss_mib": rss_mib("VmHWM")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
