"""Peak memory of one engine on one token batch, in a fresh process (what a deployment would hold).

    python -m benchmarks.memory --engine ours --model DIR --batch batch.npy [--device cuda]

Prints JSON. On CPU: RSS after loading, and peak RSS (VmHWM) after one warm-up and one timed run;
only the engine's own imports are loaded (ours never imports torch or transformers). On CUDA: GPU
memory in use after loading and at its sampled peak, above what the process held before loading
(the CUDA context), read from the driver so that PyTorch's and ONNX Runtime's allocators both count.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import numpy as np

ENGINES = ["pytorch-fp32", "pytorch-bf16", "pytorch-fp16", "optimum-fill-mask", "ours", "ours-openvino"]


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class GpuSampler:
    """Device memory in use, polled from a thread: ORT's CUDA arena shrinks after each run, so the
    peak only exists while a run is in flight."""

    def __init__(self):
        import torch

        self.torch = torch
        torch.cuda.init()
        torch.zeros(1, device="cuda")  # the CUDA context belongs to the baseline
        self.base = self.used()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def used(self) -> int:
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.used())
            self._stop.wait(0.0002)

    def __enter__(self):
        sys.setswitchinterval(0.0002)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mib(self, value: int) -> float:
        return (value - self.base) / 2**20


def load(engine: str, model: Path, device: str, threads: int):
    if engine.startswith("ours"):
        from benchmarks.engines import OursEngine

        return OursEngine(model, provider="openvino" if engine == "ours-openvino" else device, threads=threads)
    import torch
    from transformers import AutoTokenizer

    from benchmarks.engines import OPTIMUM_MISSING, OptimumEngine, TorchEngine, optimum_available

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    if engine.startswith("pytorch-"):
        return TorchEngine(model, tokenizer, dtype=engine.split("-")[1], device=device)
    if not optimum_available():
        raise SystemExit(f"error: {engine}: {OPTIMUM_MISSING}")
    return OptimumEngine(model, tokenizer, threads=threads)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True, choices=ENGINES)
    p.add_argument("--model", required=True, type=Path, help="HF folder (baselines) or exported folder (ours)")
    p.add_argument("--batch", required=True, type=Path, help=".npy file of input ids [batch, length]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args(argv)
    ids = np.load(args.batch)
    mask = np.ones_like(ids)
    if args.device == "cpu":
        engine = load(args.engine, args.model, args.device, args.threads)
        loaded = rss_mib("VmRSS")
        engine.run(ids, mask)
        engine.run(ids, mask)
        print(json.dumps({"engine": args.engine, "rss_after_load_mib": loaded, "peak_rss_mib": rss_mib("VmHWM")}))
        return 0
    with GpuSampler() as gpu:
        engine = load(args.engine, args.model, args.device, args.threads)
        loaded = gpu.used()
        for _ in range(5):
            engine.run(ids, mask)
    print(json.dumps({"engine": args.engine, "gpu_after_load_mib": gpu.mib(loaded), "peak_gpu_mib": gpu.mib(gpu.peak)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
