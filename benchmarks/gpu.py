"""GPU benchmark in one command: `python -m benchmarks.gpu --out DIR [--time-limit S]`.

Runs benchmarks.compare on CUDA: PyTorch eager fp32 and fp16 always; our engine (fp32 and fp16
graphs) on the CUDA provider where onnxruntime-gpu is installed (import torch first so its CUDA
libraries are loaded). Writes compare-gpu.json/.md/.png to DIR, naming the card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch  # noqa: F401  (before onnxruntime: its CUDA libraries then resolve)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the results")
    p.add_argument("--time-limit", type=float, default=420, help="seconds for the whole run. Default: %(default)s")
    p.add_argument("--models", nargs="+", default=["splade-tiny", "bert-base"])
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    from benchmarks.compare import main as compare

    return compare(["--device", "cuda", "--out", str(args.out), "--name", "compare-gpu", "--time-limit",
                    str(args.time_limit), "--models", *args.models, "--repeats", "5", "--query-repeats", "100"])


if __name__ == "__main__":
    sys.exit(main())
