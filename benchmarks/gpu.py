"""GPU benchmark in one command: `python -m benchmarks.gpu --out DIR [--time-limit S]`.

Runs benchmarks.compare on CUDA: PyTorch eager fp32 and fp16 always; our engine (fp32 and fp16
graphs) on the CUDA provider where onnxruntime-gpu is installed (torch is imported first so that
its CUDA libraries are loaded). Then the GPU checks, on the BERT-base shape in fp16:
- query latency through `SpladeEncoder.encode` (tokenization included), CUDA graphs on and off,
  for each vocabulary chunk size exported;
- documents at 64×128, 128×128 and 32×256 against PyTorch fp16 and fp32 eager on the same tokens;
- where the GPU time goes: the CUDA kernels of one batch, from PyTorch's profiler (CUPTI sees every
  kernel of the process, ONNX Runtime's included), against the batch's wall time;
- which provider `auto` picks and why the others were skipped (TensorRT's libraries are usually
  absent), and what a never-seen batch shape costs.
Writes compare-gpu.json/.md/.png and gpu-checks.json/.md to DIR, naming the card.

`--prepare-only --work DIR` builds and exports the models (CPU work) without timing anything, so a
machine can do it while other files are still on their way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (before onnxruntime: its CUDA libraries then resolve)

from benchmarks import corpus
from benchmarks.compare import export_ours, machine, ours_folder, ours_precisions, source_folder
from benchmarks.compare import main as compare

# BERT-base fp16 export variants compared on the GPU: vocabulary chunk size (0: the whole vocabulary
# in one projection) and how the max over tokens is taken (ReduceMax vocabulary-major, the default; ReduceMax
# token-major, the layout before it; or GlobalMaxPool).
VARIANTS = {"chunk2048": {"vocab_chunk": 2048}, "chunk8192": {"vocab_chunk": 8192}, "chunk0": {"vocab_chunk": 0},
            "chunk2048-tokens": {"vocab_chunk": 2048, "max_reduction": "reducemax-tokens"},
            "chunk2048-pool": {"vocab_chunk": 2048, "max_reduction": "globalmaxpool"},
            "chunk8192-pool": {"vocab_chunk": 8192, "max_reduction": "globalmaxpool"}}
DOC_SHAPES = ((64, 128), (128, 128), (32, 256))


def prepare(models: list[str], work: Path) -> dict[str, Path]:
    """Exported folders for every model and GPU precision (and the BERT-base fp16 variants),
    reused when already in `work`."""
    folders = {}
    for label in models:
        src = source_folder(label, work)
        for precision in ours_precisions("cuda"):
            folders[f"{label}-{precision}"] = ours_folder(str(src), work, label, precision, "cuda")
        if label == "bert-base":
            for name, options in VARIANTS.items():
                folders[f"{label}-fp16-{name}"] = export_ours(str(src), work / f"{label}-fp16-{name}", "fp16", **options)
    return folders


def variant_folders(folders: dict[str, Path], label: str) -> dict[str, Path]:
    return {name: folders[f"{label}-fp16-{name}"] for name in VARIANTS if f"{label}-fp16-{name}" in folders}


def query_latency(folder: Path, queries: list[str], *, repeats: int, graphs: bool) -> dict:
    """p50/p99 of `encode([query])`, tokenization included, after every query was seen once."""
    from runtime import SpladeEncoder

    options = None if graphs else {"cuda": {"enable_cuda_graph": 0}}
    encoder = SpladeEncoder(folder, provider="cuda", provider_options=options)
    for q in queries:
        encoder.encode([q])
    lat = []
    for i in range(repeats):
        start = time.perf_counter()
        encoder.encode([queries[i % len(queries)]])
        lat.append(time.perf_counter() - start)
    ms = np.array(lat) * 1000
    g = encoder.backend.graphs
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "graphs": g is not None and g.disabled is None,
            "graph_buckets": sorted(g.slots) if g else [], "graphs_disabled": (g.disabled if g else encoder.backend.graphs_skipped)}


def per_batch_seconds(fn, repeats: int) -> float:
    fn()
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def documents(src: Path, variants: dict[str, Path], *, repeats: int) -> dict:
    """texts/s on fixed token batches: PyTorch eager fp32/fp16 against ours fp16 through `infer`
    (encode's own batching, after tokenization), for every export variant; for the default export
    also with CUDA graphs off, with the GPU arena shrunk after each run, and with ORT's own choice
    of attention kernel (cuDNN's SDPA, which builds a graph per new shape), alone and with every
    shape bucketed."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from benchmarks.engines import TorchEngine
    from runtime import SpladeEncoder
    from runtime.core.batching import Buckets

    tokenizer = AutoTokenizer.from_pretrained(src)
    batches = {f"{n}x{length}": corpus.token_batch(tokenizer, batch=n, length=length) for n, length in DOC_SHAPES}
    out: dict[str, dict] = {name: {} for name in batches}
    for dtype in ("fp32", "fp16"):
        engine = TorchEngine(src, tokenizer, dtype=dtype, device="cuda")
        for name, (ids, mask) in batches.items():
            out[name][f"pytorch-{dtype}"] = ids.shape[0] / per_batch_seconds(lambda e=engine, i=ids, m=mask: e.run(i, m), repeats)
        del engine
        torch.cuda.empty_cache()
    big = Buckets(lengths=(16, 32, 64, 128, 256), batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128), max_tokens=16384)
    runs = [(f"ours-fp16-{v}", folder, None, None) for v, folder in variants.items()]
    runs += [(f"ours-fp16-{v}, graphs up to 16384 tokens", folder, None, big) for v, folder in variants.items()]
    first, best = next(iter(variants.values())), variants.get("chunk8192-pool")
    runs += [("ours-fp16-chunk2048, no graphs", first, {"cuda": {"enable_cuda_graph": 0}}, None),
             ("ours-fp16-chunk2048, no graphs, GPU arena shrunk after each run", first, {"cuda": {"enable_cuda_graph": 0}}, "shrink")]
    if best is not None:
        runs += [("ours-fp16-chunk8192-pool, ORT's attention choice (cuDNN SDPA)", best, {"cuda": {"sdpa_kernel": None}}, None)]
    # cuDNN SDPA builds a graph per new shape: with every shape padded to a graph bucket there are at most
    # len(lengths) × len(batch_sizes) of them, built once, and its faster attention may then pay off
    for name in ("chunk2048-pool", "chunk8192-pool"):
        if name in variants:
            runs += [(f"ours-fp16-{name}, cuDNN SDPA, graphs up to 16384 tokens", variants[name],
                      {"cuda": {"sdpa_kernel": None}}, big)]
    for label, folder, options, buckets in runs:
        encoder = SpladeEncoder(folder, provider="cuda", provider_options=options,
                                graph_buckets=buckets if isinstance(buckets, Buckets) else None)
        if buckets == "shrink":
            encoder.backend.run_options = ort.RunOptions()
            encoder.backend.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0;gpu:0")
        for name, (ids, _) in batches.items():
            sequences = list(ids)
            out[name][label] = ids.shape[0] / per_batch_seconds(
                lambda e=encoder, s=sequences: e.infer(s, batch_size=len(s)), repeats)
        del encoder
    for name, row in out.items():
        base16, base32 = row["pytorch-fp16"], row["pytorch-fp32"]
        out[name] = {k: {"texts_per_s": round(v, 1), "x_pytorch_fp16": round(v / base16, 2),
                         "x_pytorch_fp32": round(v / base32, 2)} for k, v in row.items()}
    print(json.dumps(out, indent=1))
    return out


def kernel_profile(src: Path, folders: dict[str, Path], *, n: int = 32, length: int = 128, top: int = 15) -> dict:
    """Where one batch's time goes: CUDA kernel time by kernel (CUPTI sees ONNX Runtime's kernels
    too) against the batch's wall time, ours (each export variant given; graphs off, so every
    kernel is launched as usual) and PyTorch fp16."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from benchmarks.engines import TorchEngine
    from runtime import SpladeEncoder

    tokenizer = AutoTokenizer.from_pretrained(src)
    ids, mask = corpus.token_batch(tokenizer, batch=n, length=length)
    runs = {}
    for name, folder in folders.items():
        ours = SpladeEncoder(folder, provider="cuda", provider_options={"cuda": {"enable_cuda_graph": 0}})
        runs[f"ours-fp16-{name}"] = lambda e=ours: e.infer(list(ids), batch_size=n)
    pt = TorchEngine(src, tokenizer, dtype="fp16", device="cuda")
    runs["pytorch-fp16"] = lambda: pt.run(ids, mask)
    out = {}
    for name, fn in runs.items():
        wall = per_batch_seconds(fn, 5)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
        kernels = [e for e in prof.key_averages() if e.device_time_total > 0]
        total = sum(e.device_time_total for e in kernels) / 3 / 1000  # ms per batch
        kernels.sort(key=lambda e: -e.device_time_total)
        out[name] = {"wall_ms": round(wall * 1000, 3), "gpu_kernel_ms": round(total, 3),
                     "kernel_launches": int(sum(e.count for e in kernels) / 3),
                     "top_kernels": [{"kernel": e.key[:120], "ms": round(e.device_time_total / 3 / 1000, 3),
                                      "calls": e.count // 3} for e in kernels[:top]]}
    print(json.dumps(out, indent=1))
    return out


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
    p.add_argument("--query-repeats", type=int, default=300, help="timed queries per latency check. Default: %(default)s")
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
        checks: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                        "command": "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:])}
        texts = corpus.texts(300)
        if "bert-base" in args.models:
            src = source_folder("bert-base", work)
            variants = variant_folders(folders, "bert-base")
            queries = [" ".join(t.split()[:6]) for t in texts[:40]]  # 6 words: about 10 tokens
            checks["query_latency"] = {f"{v}, graphs on": attempt(query_latency, folder, queries, repeats=args.query_repeats,
                                                                  graphs=True) for v, folder in variants.items()}
            checks["query_latency"]["chunk2048, graphs off"] = attempt(
                query_latency, variants["chunk2048"], queries, repeats=args.query_repeats, graphs=False)
            print(json.dumps(checks["query_latency"], indent=1))
            checks["documents"] = attempt(documents, src, variants, repeats=10)
            checks["kernel_profile"] = attempt(kernel_profile, src, {v: variants[v] for v in ("chunk2048", "chunk8192-pool")})
        checks["providers"] = attempt(provider_report, folders[f"{args.models[0]}-fp32"])
        print(json.dumps(checks["providers"], indent=2))
        checks["new_shape_cost"] = {}
        for label in args.models:
            src = source_folder(label, work)
            checks["new_shape_cost"][label] = attempt(shape_costs, label, src, folders[f"{label}-fp16"], texts)
        (args.out / "gpu-checks.json").write_text(json.dumps(checks, indent=2) + "\n")
        (args.out / "gpu-checks.md").write_text(checks_markdown(checks))
        return done


def attempt(fn, *args, **kwargs) -> dict:
    """One check's result, or its error: a failing check must not cost the others (GPU time is scarce)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        logging.exception("%s failed", fn.__name__)
        return {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}


def checks_markdown(checks: dict) -> str:
    m = checks["machine"]
    lines = [f"Machine: {m['cpu']} ({m['cores']} cores), {m.get('gpu', 'no GPU')}",
             f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
             f"Command: `{checks['command']}` ({checks['date']})", ""]
    if "query_latency" in checks:
        lines += ["BERT-base shape, fp16, one query (about 10 tokens) through `SpladeEncoder.encode`, tokenization included:", "",
                  "| variant | p50 ms | p99 ms | mean ms | graph buckets used |", "|---|---|---|---|---|"]
        for name, q in checks["query_latency"].items():
            if "error" in q:
                lines.append(f"| {name} | {q['error'][:100]} | | | |")
                continue
            lines.append(f"| {name} | {q['p50_ms']:.3f} | {q['p99_ms']:.3f} | {q['mean_ms']:.3f} | {len(q['graph_buckets'])} |")
    if "error" not in checks.get("documents", {"error": ""}):
        lines += ["", "Documents, texts/s (× PyTorch fp16 eager, × PyTorch fp32 eager), same token batches:", ""]
        shapes = list(checks["documents"])
        lines += ["| engine | " + " | ".join(shapes) + " |", "|---" * (len(shapes) + 1) + "|"]
        for engine in checks["documents"][shapes[0]]:
            cells = [f"{checks['documents'][s][engine]['texts_per_s']:.0f} ({checks['documents'][s][engine]['x_pytorch_fp16']:.2f}×, "
                     f"{checks['documents'][s][engine]['x_pytorch_fp32']:.2f}×)" for s in shapes]
            lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    if "error" not in checks.get("kernel_profile", {"error": ""}):
        lines += ["", "Where one 32×128 batch's time goes (CUDA kernel time from CUPTI vs wall time):", ""]
        for name, prof in checks["kernel_profile"].items():
            lines.append(f"- {name}: wall {prof['wall_ms']:.2f} ms, kernels {prof['gpu_kernel_ms']:.2f} ms, "
                         f"{prof['kernel_launches']} launches; top: " + "; ".join(
                             f"{k['kernel'][:60]} {k['ms']:.3f} ms ×{k['calls']}" for k in prof["top_kernels"][:6]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
