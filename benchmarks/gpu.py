"""GPU benchmark in one command: `python -m benchmarks.gpu --out DIR [--time-limit S]`.

Runs benchmarks.compare on CUDA: PyTorch eager fp32 and fp16 always; our engine (fp32 and fp16
graphs) on the CUDA provider where onnxruntime-gpu is installed (torch is imported first so that
its CUDA libraries are loaded). After timing, it records which provider `auto` picks and why the
others were skipped (TensorRT's libraries are usually absent), and what a never-seen batch shape
costs in fp16 with our CUDA attention kernels, with ORT's own choice and in PyTorch. Writes
compare-gpu.json/.md/.png and gpu-checks.json to DIR, naming the card.

`--prepare-only --work DIR` builds and exports the models (CPU work) without timing anything, so a
machine can do it while other files are still on their way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: F401  (before onnxruntime: its CUDA libraries then resolve)

from benchmarks import corpus
from benchmarks.compare import export_ours, ours_precisions, source_folder
from benchmarks.compare import main as compare


def prepare(models: list[str], work: Path) -> dict[str, Path]:
    """Exported folders for every model and GPU precision, reused when already in `work`."""
    folders = {}
    for label in models:
        src = source_folder(label, work)
        for precision in ours_precisions("cuda"):
            folders[f"{label}-{precision}"] = export_ours(str(src), work / f"{label}-{precision}", precision)
    return folders


def provider_report(folder: Path) -> dict:
    """What `auto` picks on this machine, why the rest were skipped, and how a forced TensorRT fails."""
    import onnxruntime as ort

    from runtime import ProviderError, SpladeEncoder

    report: dict = {"onnxruntime": ort.__version__, "available": ort.get_available_providers()}
    auto = SpladeEncoder(folder, provider="auto")
    report["auto"] = {"provider": auto.provider, "skipped": auto.backend.skipped}
    for forced in ("tensorrt", "cuda"):
        try:
            encoder = SpladeEncoder(folder, provider=forced)
            options = encoder.backend.session.get_provider_options().get(encoder.backend.plan.ort_name, {})
            report[forced] = {"provider": encoder.provider,
                              "options": {k: options.get(k) for k in ("use_tf32", "sdpa_kernel", "device_id")}}
        except ProviderError as exc:
            report[forced] = {"error": str(exc)[:600]}
    return report


def shape_costs(label: str, src: Path, folder: Path, texts: list[str]) -> dict:
    """Seconds to encode the corpus twice, in fp16: the first pass meets every batch shape for the first time.

    Ours with the runtime's CUDA attention kernels and with ORT's own choice (`sdpa_kernel` dropped),
    and PyTorch with and without its cuDNN attention backend.
    """
    from transformers import AutoTokenizer

    from benchmarks.engines import TorchEngine
    from runtime import SpladeEncoder

    def passes(encode) -> dict:
        encode(texts[:4])
        first = time.perf_counter()
        encode(texts)
        second = time.perf_counter()
        encode(texts)
        return {"first_pass_s": round(second - first, 4), "second_pass_s": round(time.perf_counter() - second, 4)}

    out = {}
    for name, options in (("ours-fp16", None), ("ours-fp16, ORT's attention choice", {"cuda": {"sdpa_kernel": None}})):
        out[name] = passes(SpladeEncoder(folder, provider="cuda", provider_options=options).encode)
    engine = TorchEngine(src, AutoTokenizer.from_pretrained(src), dtype="fp16", device="cuda")
    out["pytorch-fp16"] = passes(engine.encode_texts)
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        out["pytorch-fp16, cuDNN attention off"] = passes(engine.encode_texts)
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
    print(label, json.dumps(out))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="folder for the results (required unless --prepare-only)")
    p.add_argument("--work", type=Path, default=None, help="folder for exported models (default: a temp folder)")
    p.add_argument("--time-limit", type=float, default=420, help="seconds for the whole run. Default: %(default)s")
    p.add_argument("--models", nargs="+", choices=["splade-tiny", "bert-base"], default=["splade-tiny", "bert-base"])
    p.add_argument("--prepare-only", action="store_true", help="export the models into --work and stop")
    args = p.parse_args(argv)
    if args.prepare_only:
        if args.work is None:
            p.error("--prepare-only needs --work")
        for name, folder in prepare(args.models, args.work).items():
            print(f"{name}: {folder}")
        return 0
    if args.out is None:
        p.error("--out is required")
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        args.out.mkdir(parents=True, exist_ok=True)
        folders = prepare(args.models, work)
        done = compare(["--device", "cuda", "--out", str(args.out), "--name", "compare-gpu", "--time-limit",
                        str(args.time_limit), "--models", *args.models, "--repeats", "5", "--query-repeats", "100",
                        "--work", str(work)])
        # after the comparison: these checks warm caches (PyTorch's cuDNN graphs) that would flatter its corpus row
        checks = {"providers": provider_report(folders[f"{args.models[0]}-fp32"]), "new_shape_cost": {}}
        print(json.dumps(checks["providers"], indent=2))
        texts = corpus.texts(300)
        for label in args.models:
            src = source_folder(label, work)
            checks["new_shape_cost"][label] = shape_costs(label, src, folders[f"{label}-fp16"], texts)
        (args.out / "gpu-checks.json").write_text(json.dumps(checks, indent=2) + "\n")
        return done


if __name__ == "__main__":
    sys.exit(main())
