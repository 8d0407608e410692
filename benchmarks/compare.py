"""Side-by-side benchmark: PyTorch eager vs optimum fill-mask + NumPy vs our fused graph, one process, one run.

    python -m benchmarks.compare --quick            # splade-tiny only, under two minutes here
    python -m benchmarks.compare                    # splade-tiny and a BERT-base-shaped model
    python -m benchmarks.compare --device cuda      # same comparison on a GPU (PyTorch fp32/fp16, ours on CUDA)

Every row is a ratio against PyTorch eager fp32 from the same run on the same inputs; results go to
benchmarks/results/ as JSON, a Markdown table and PNG plots, with machine, versions and command.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import corpus
from benchmarks.engines import OPTIMUM_MISSING, OptimumEngine, OursEngine, TorchEngine, as_dense, optimum_available
from benchmarks.fidelity import exported
from benchmarks.machine import cpu_has_bf16, machine
from export.validate import compare as fidelity

RESULTS = Path(__file__).parent / "results"
PEAK_KEY = {"cpu": "peak_rss_mib", "cuda": "peak_gpu_mib"}


# ---------------------------------------------------------------- memory and timing helpers

def peak_memory(engine_name: str, model: Path, ids: np.ndarray, work: Path, threads: int, device: str) -> dict:
    """Peak RSS (CPU) or GPU memory (CUDA) of the engine on this batch, in a fresh process (benchmarks.memory)."""
    batch = work / "memory-batch.npy"
    np.save(batch, ids)
    kind = ("ours-openvino" if "openvino" in engine_name else "ours") if engine_name.startswith("ours") else engine_name
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--engine", kind, "--model", str(model),
                           "--batch", str(batch), "--threads", str(threads), "--device", device],
                          capture_output=True, text=True)
    if done.returncode != 0:
        logging.warning("memory of %s not measured: %s", engine_name, done.stderr[-500:])
        return {PEAK_KEY[device]: float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(fn, *, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call, after warm-up calls on the same shape (first runs on a new shape are slow)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def corpus_passes(engine, texts: list[str], *, budget_s: float = 15.0, most: int = 3) -> list[float]:
    """Seconds per end-to-end pass over the corpus: up to `most` passes while they fit in `budget_s`.

    One pass includes the first sight of every batch shape, which a single fast pass does not average
    out (one such pass once read 0.5x of the same engine's steady rate); slow engines get one pass.
    """
    passes: list[float] = []
    while len(passes) < most and (not passes or sum(passes) + passes[-1] <= budget_s):
        start = time.perf_counter()
        engine.encode_texts(texts)
        passes.append(time.perf_counter() - start)
    return passes


# ---------------------------------------------------------------- models

def bert_base_folder(tokenizer_dir: Path, dest: Path) -> Path:
    """BertForMaskedLM(BertConfig()) with a fixed seed: the reference model's shape and cost."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    if not (dest / "config.json").exists():
        torch.manual_seed(0)
        BertForMaskedLM(BertConfig()).save_pretrained(dest)
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(dest)
    return dest


def source_folder(label: str, work: Path) -> Path:
    """The Hugging Face folder behind a built-in model label ("splade-tiny" or "bert-base")."""
    from export.sources import resolve_model

    tiny = resolve_model("splade-tiny").path
    return tiny if label == "splade-tiny" else bert_base_folder(tiny, work / "bert-base-src")


def ours_precisions(device: str) -> tuple[str, ...]:
    """int8 is the default export (static scales); int8-dynamic is the per-batch-scale variant beside it."""
    return ("fp32", "fp16") if device == "cuda" else ("fp32", "int8", "int8-dynamic")


# The export settings for GPU deployments (docs/gpu.md): larger vocabulary chunks and cuDNN pooling for the max.
GPU_EXPORT = {"vocab_chunk": 8192, "max_reduction": "globalmaxpool"}


def export_ours(src: str, dest: Path, precision: str, **options) -> Path:
    """Our export of `src` into `dest` (reused when already there); `options` are ExportConfig fields."""
    from export import ExportConfig, export_model

    if not exported(dest):
        # the BERT-base stand-in has random weights: its figures are timings, its fidelity is checked below
        scales = "dynamic" if precision == "int8-dynamic" else "static"
        export_model(ExportConfig(model=src, output=dest, precision=precision.split("-")[0], int8_scales=scales,
                                  validate=False, **options))
    return dest


def ours_folder(src: str, work: Path, label: str, precision: str, device: str) -> Path:
    """The folder each device's comparison runs: the default export on CPU, GPU_EXPORT on CUDA."""
    if device == "cuda":
        return export_ours(src, work / f"{label}-{precision}-gpu", precision, **GPU_EXPORT)
    return export_ours(src, work / f"{label}-{precision}", precision)


def openvino_bf16() -> bool:
    """OpenVINO's bf16 row runs only where the package is installed and the CPU has native bf16."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return False
    from runtime.backends.openvino import native_bf16

    return native_bf16()


# ---------------------------------------------------------------- workloads

def run_model(label: str, src_dir: Path, work: Path, args) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src_dir)
    threads = args.threads
    torch.set_num_threads(threads)
    ort_provider = "cuda" if args.device == "cuda" else "cpu"
    engines = [TorchEngine(src_dir, tokenizer, device=args.device)]
    folders = {engines[0].name: src_dir}
    if args.device == "cuda":
        engines.append(TorchEngine(src_dir, tokenizer, dtype="fp16", device="cuda"))
        folders[engines[-1].name] = src_dir
    else:
        if cpu_has_bf16():  # without native bf16 (AVX2 here) PyTorch emulates it: slower, not a real option
            engines.append(TorchEngine(src_dir, tokenizer, dtype="bf16"))
            folders[engines[-1].name] = src_dir
        if optimum_available():
            folders["optimum-fill-mask"] = work / f"{label}-optimum"
            engines.append(OptimumEngine(src_dir, tokenizer, threads=threads, save_to=folders["optimum-fill-mask"]))
        else:
            logging.warning("optimum-fill-mask skipped: %s", OPTIMUM_MISSING)
    for precision in ours_precisions(args.device):
        try:
            folder = ours_folder(str(src_dir), work, label, precision, args.device)
            engines.append(OursEngine(folder, provider=ort_provider, threads=threads, name=f"ours-{precision}"))
            folders[engines[-1].name] = folder
        except Exception as exc:  # e.g. no onnxruntime-gpu on the GPU box: record and go on
            logging.warning("ours-%s skipped: %s", precision, exc)
    if args.device == "cpu" and openvino_bf16():
        folder = export_ours(str(src_dir), work / f"{label}-fp32", "fp32")
        engines.append(OursEngine(folder, provider="openvino", threads=threads, name="ours-openvino-bf16"))
        folders[engines[-1].name] = folder

    texts = corpus.texts(args.corpus_size)
    workloads = {
        "query": corpus.token_batch(tokenizer, batch=1, length=10),
        "docs_32x128": corpus.token_batch(tokenizer, batch=32, length=128),
        "docs_32x256": corpus.token_batch(tokenizer, batch=32, length=256),
    }
    reps = args.repeats
    rows = []
    reference: dict[str, np.ndarray] = {}
    for engine in engines:
        if args.time_limit and time.monotonic() - args.started > args.time_limit:
            logging.warning("time limit reached: %s on %s and later rows skipped", engine.name, label)
            break
        row = {"engine": engine.name, "model": label}
        ids, mask = workloads["query"]
        lat = np.array(timed(lambda e=engine, i=ids, m=mask: e.run(i, m), repeats=args.query_repeats, warmup=5)) * 1000
        row["query_ms"] = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                           "p99": float(np.percentile(lat, 99))}
        for name in ("docs_32x128", "docs_32x256"):
            ids, mask = workloads[name]
            out = engine.run(ids, mask)  # warm-up, and the output for fidelity
            if name == "docs_32x256":
                row["memory_32x256"] = peak_memory(engine.name, folders[engine.name], ids, work, threads, args.device)
            secs = timed(lambda e=engine, i=ids, m=mask: e.run(i, m), repeats=reps, warmup=0)
            row[f"{name}_texts_per_s"] = float(ids.shape[0] / np.median(secs))
            if name == "docs_32x128":
                dense = as_dense(engine, out)
                if engine.name == "pytorch-fp32":
                    reference["docs"] = dense
                fid = fidelity(reference["docs"], dense, top_k=512)
                row["max_abs_diff"], row["top32_overlap"] = fid.max_abs_diff, fid.top32_overlap
        engine.encode_texts(texts[:8])  # warm-up
        row["corpus_texts_per_s"] = float(len(texts) / np.median(corpus_passes(engine, texts)))
        rows.append(row)
        logging.info("%s %s: %s", label, engine.name, json.dumps(row))
        del engine
        gc.collect()
    base = rows[0]
    for row in rows:
        row["ratio"] = {
            "query_p50": base["query_ms"]["p50"] / row["query_ms"]["p50"],
            "docs_32x128": row["docs_32x128_texts_per_s"] / base["docs_32x128_texts_per_s"],
            "docs_32x256": row["docs_32x256_texts_per_s"] / base["docs_32x256_texts_per_s"],
            "corpus": row["corpus_texts_per_s"] / base["corpus_texts_per_s"],
        }
        if "memory_32x256" in row:
            key = PEAK_KEY[args.device]
            row["ratio"]["memory_32x256"] = row["memory_32x256"][key] / base["memory_32x256"][key]
    return {"model": label, "corpus_size": len(texts), "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores, {result['machine'].get('simd', '')}"
             + (f", {result['machine']['gpu']}" if "gpu" in result["machine"] else "") + f"), threads {result['threads']}",
             f"Versions: {', '.join(f'{k} {v}' for k, v in result['machine']['versions'].items())}",
             f"Command: `{result['command']}`", ""]
    key = PEAK_KEY[result["device"]]
    memory = "peak GPU MiB" if result["device"] == "cuda" else "peak RSS MiB"
    lines.append("| model | engine | query p50 ms (×) | p95 / p99 ms | 32×128 texts/s (×) | 32×256 texts/s (×) "
                 f"| corpus texts/s (×) | {memory} 32×256 (×) | max abs diff | top-32 overlap |")
    lines.append("|" + "---|" * 10)
    for block in result["models"]:
        for r in block["rows"]:
            x = r["ratio"]
            lines.append(
                f"| {r['model']} | {r['engine']} | {r['query_ms']['p50']:.1f} ({x['query_p50']:.2f}×) "
                f"| {r['query_ms']['p95']:.1f} / {r['query_ms']['p99']:.1f} "
                f"| {r['docs_32x128_texts_per_s']:.1f} ({x['docs_32x128']:.2f}×) "
                f"| {r['docs_32x256_texts_per_s']:.1f} ({x['docs_32x256']:.2f}×) "
                f"| {r['corpus_texts_per_s']:.1f} ({x['corpus']:.2f}×) "
                + (f"| {r['memory_32x256'][key]:.0f} ({x['memory_32x256']:.2f}×) " if "memory_32x256" in r else "| – ")
                + f"| {r['max_abs_diff']:.1e} | {r['top32_overlap']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = result["models"]
    fig, axes = plt.subplots(len(blocks), 2, figsize=(12, 3.6 * len(blocks)), squeeze=False)
    for ax_row, block in zip(axes, blocks):
        names = [r["engine"] for r in block["rows"]]
        x = np.arange(len(names))
        for i, key in enumerate(("docs_32x128", "docs_32x256", "corpus")):
            ax_row[0].bar(x + (i - 1) * 0.27, [r["ratio"][key] for r in block["rows"]], 0.27, label=key)
        ax_row[0].axhline(1.0, color="grey", lw=0.8)
        ax_row[0].set_xticks(x, names, rotation=15)
        ax_row[0].set_ylabel("throughput × PyTorch fp32")
        ax_row[0].set_title(f"{block['model']}: throughput")
        ax_row[0].legend(fontsize=8)
        for i, p in enumerate(("p50", "p95", "p99")):
            ax_row[1].bar(x + (i - 1) * 0.27, [r["query_ms"][p] for r in block["rows"]], 0.27, label=p)
        ax_row[1].set_xticks(x, names, rotation=15)
        ax_row[1].set_ylabel("query latency, ms (batch 1, 10 tokens)")
        ax_row[1].set_title(f"{block['model']}: query latency")
        ax_row[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="splade-tiny only, few repeats (under two minutes)")
    p.add_argument("--models", nargs="+", choices=["splade-tiny", "bert-base", "hub"], default=None,
                   help="default: splade-tiny, bert-base and, when the hub is reachable, the reference model "
                   "(splade-tiny only with --quick)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every engine")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per document workload")
    p.add_argument("--query-repeats", type=int, default=None, help="timed single-query runs")
    p.add_argument("--corpus-size", type=int, default=None, help="texts in the end-to-end corpus")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder. Default: %(default)s")
    p.add_argument("--work", type=Path, default=None, help="folder for exported models (default: a temp folder)")
    p.add_argument("--name", default=None, help="result file stem (default: compare-<device>[-quick])")
    p.add_argument("--fidelity-pairs", type=int, default=None,
                   help="docstring pairs for the retrieval fidelity benchmark on splade-tiny (CPU; 0 skips it). "
                   "Default: 300, 40 with --quick")
    p.add_argument("--time-limit", type=float, default=0,
                   help="seconds; engines not started by then are skipped and the results so far written (0: none)")
    args = p.parse_args(argv)
    args.started = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for noisy in ("onnxruntime", "transformers", "optimum", "export", "runtime"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    models = args.models or (["splade-tiny"] if args.quick else ["splade-tiny", "bert-base", "hub"])
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.query_repeats = args.query_repeats or (20 if args.quick else 50)
    args.corpus_size = args.corpus_size or (48 if args.quick else 300)

    from export.sources import DEFAULT_MODEL, ModelSourceError, resolve_model

    result = {"machine": machine(), "threads": args.threads, "device": args.device,
              "command": "python -m benchmarks.compare " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for label in models:
            if label == "hub":
                try:
                    src, label = resolve_model(DEFAULT_MODEL).path, DEFAULT_MODEL.split("/")[-1]
                except ModelSourceError as exc:
                    logging.warning("reference model skipped: %s", exc)
                    continue
            else:
                src = source_folder(label, work)
            result["models"].append(run_model(label, src, work, args))
        pairs = args.fidelity_pairs if args.fidelity_pairs is not None else (40 if args.quick else 300)
        if args.device == "cpu" and pairs:
            from benchmarks import fidelity

            result["fidelity"] = fidelity.run(pairs, work)  # reuses the splade-tiny exports above
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"compare-{args.device}" + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    if "fidelity" in result:
        from benchmarks import fidelity

        block = fidelity.markdown({**result["fidelity"], "machine": result["machine"], "command": result["command"]})
        (args.out / f"{stem}.md").write_text(markdown(result) + "\n" + block)
    else:
        (args.out / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out / f"{stem}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
