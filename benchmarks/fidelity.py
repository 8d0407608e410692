"""Retrieval fidelity on real offline text: each precision and provider against PyTorch fp32 on splade-tiny.

    python -m benchmarks.fidelity                  # 300 pairs, writes benchmarks/results/fidelity-cpu.{json,md}
    python -m benchmarks.fidelity --pairs 40 --out /tmp/f

The text is the docstrings of installed third-party packages, read with `ast` (nothing is imported): a
docstring's summary line is the query, the rest of it the document. Every engine encodes the same queries
and documents; we report MRR@10 (each query's own document among all documents, dot-product ranking) and
the top-32 term overlap of each vector with PyTorch fp32's (mean, and worst over all texts, queries and
documents). Two floor rows run PyTorch itself in bf16 and with int8 per-channel weights, so a format's own
loss is told apart from an engine's. Fidelity is not timing: this runs anywhere, any time.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata as md
import importlib.util
import json
import logging
import random
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
# Third-party packages whose docstrings are plain English prose; those installed are used, in this order.
PACKAGES = ("numpy", "scipy", "httpx", "pydantic", "fastapi", "starlette", "click", "jinja2", "packaging",
            "tokenizers", "transformers", "onnx", "psutil", "matplotlib", "networkx", "sympy", "requests", "urllib3")
MAX_FILES_PER_PACKAGE = 400


def exported(folder: Path) -> bool:
    """A folder of ours to reuse: exported by this version's graph (its manifest records max_reduction; one
    from before vocabulary-major pooling would time the old graph), else exported again."""
    manifest = folder / "splade.json"
    return manifest.exists() and "max_reduction" in json.loads(manifest.read_text())


@dataclass(frozen=True)
class Pair:
    query: str
    document: str
    where: str  # package/module.py:qualname


def _docstring_nodes(tree: ast.AST):
    """(name, docstring) of every def and class, in ast.walk's order, descending only through statements.

    A def can only sit in a statement list, so expressions (most of a module's nodes) are never visited.
    """
    queue = deque([tree])
    while queue:
        node = queue.popleft()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            doc = ast.get_docstring(node)
            if doc:
                yield node.name, doc
        queue.extend(child for child in ast.iter_child_nodes(node)
                     if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case))


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary line, prose body) or None when either is too short or the body is mostly code/tables."""
    paragraphs = [p.strip() for p in doc.strip().split("\n\n")]
    summary = " ".join(paragraphs[0].split())
    prose = []
    for p in paragraphs[1:]:
        if p.startswith((">>>", "..", "--", "==", "Parameters", "Returns", "Examples", "Args:", "Raises", "See Also")):
            break
        prose.append(" ".join(p.split()))
    body = " ".join(prose)
    if not 4 <= len(summary.split()) <= 25 or len(body.split()) < 30:
        return None
    return summary, body


def docstring_pairs(n: int, seed: int = 0) -> tuple[list[Pair], dict[str, str]]:
    """Up to n (query, document) pairs sampled with a fixed seed; also the package versions they came from."""
    found: list[Pair] = []
    versions = {}
    seen: set[str] = set()
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "?"
        root = Path(next(iter(spec.submodule_search_locations)))
        # test modules are judged by their place inside the package, never by where the package is installed
        files = sorted(p for p in root.rglob("*.py")
                       if "test" not in p.relative_to(root).as_posix().lower())[:MAX_FILES_PER_PACKAGE]
        for path in files:
            try:
                source = path.read_text(encoding="utf-8")
                if '"""' not in source and "'''" not in source:
                    continue  # no multi-paragraph docstring without a triple-quoted string: skip the parse
                tree = ast.parse(source)
            except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
                continue
            for name, doc in _docstring_nodes(tree):
                split = split_docstring(doc)
                if split is None or split[0] in seen:
                    continue
                seen.add(split[0])
                found.append(Pair(*split, where=f"{path.relative_to(root.parent)}:{name}"))
    random.Random(seed).shuffle(found)
    return found[:n], versions


def mrr_at_10(queries: np.ndarray, documents: np.ndarray) -> float:
    """Mean reciprocal rank of query i's own document i among all documents (0 beyond rank 10)."""
    scores = queries @ documents.T
    own = np.diag(scores)
    ranks = 1 + (scores > own[:, None]).sum(axis=1)
    return float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0)))


def top32_overlaps(reference: np.ndarray, got: np.ndarray, k: int = 32) -> np.ndarray:
    """Per row: share of the reference's top-k non-zero terms that the other vector also has in its top k."""
    out = []
    for r, g in zip(reference, got):
        top_r = np.argsort(-r)[:k]
        top_r = set(top_r[r[top_r] > 0].tolist())
        top_g = np.argsort(-g)[:k]
        top_g = set(top_g[g[top_g] > 0].tolist())
        out.append(len(top_r & top_g) / max(len(top_r), 1))
    return np.array(out)


def _splade_rows(model, tokenizer, texts: list[str], max_length: int, *, bf16: bool = False) -> np.ndarray:
    """SPLADE max-pooled weights one text at a time (no padding), optionally under CPU bf16 autocast."""
    import torch

    rows = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for text in texts:
            ids = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**{k: v for k, v in ids.items() if k in ("input_ids", "attention_mask")}).logits[0]
            rows.append(torch.log1p(torch.relu(logits.float())).amax(0).numpy())
    return np.stack(rows)


def int8_weight_floor(model) -> int:
    """Round every Linear weight to int8 per output channel (symmetric), in place; activations stay fp32.

    This is what our int8 graphs do to the weights, without quantizing activations: the fidelity
    no int8 graph with per-channel int8 weights can beat. The tied MLM decoder gets its own copy so the
    word embeddings (which our graphs keep in fp32) are untouched. Returns how many weights were rounded.
    """
    import torch

    done = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            weight = module.weight.detach().clone()
            scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            module.weight = torch.nn.Parameter(torch.clamp(torch.round(weight / scale), -127, 127) * scale)
            done += 1
    return done


def pytorch_weights(source: Path, texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    """PyTorch's SPLADE weights, one text at a time (no padding), the paper's formula, from one loaded model:
    fp32 (the reference), then the floors: bf16 under autocast and int8 weights with fp32 activations."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(source).float().eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    rows = {"pytorch-fp32": _splade_rows(model, tokenizer, texts, max_length),
            "pytorch-bf16-autocast": _splade_rows(model, tokenizer, texts, max_length, bf16=True)}
    int8_weight_floor(model)  # in place, so last
    rows["pytorch-int8-weights-only"] = _splade_rows(model, tokenizer, texts, max_length)
    return rows


def engines(work: Path) -> list[tuple[str, Path, str, dict]]:
    """(name, folder, provider, provider_options) for every precision and provider available here."""
    from export import ExportConfig, export_model

    folders = {}
    for name, precision, scales in (("fp32", "fp32", "static"), ("int8-static", "int8", "static"),
                                    ("int8-dynamic", "int8", "dynamic")):
        folder = work / f"splade-tiny-{'int8' if name == 'int8-static' else name}"  # benchmarks.compare's names
        if not exported(folder):
            export_model(ExportConfig(model="splade-tiny", output=folder, precision=precision, int8_scales=scales,
                                      validate=False))
        folders[name] = folder
    rows = [("ours-fp32", folders["fp32"], "cpu", {}), ("ours-int8-static", folders["int8-static"], "cpu", {}),
            ("ours-int8-dynamic", folders["int8-dynamic"], "cpu", {})]
    if importlib.util.find_spec("openvino") is not None:
        from runtime.backends.openvino import native_bf16

        if native_bf16():
            rows.append(("openvino-bf16", folders["fp32"], "openvino", {}))
        rows.append(("openvino-f32", folders["fp32"], "openvino", {"openvino": {"INFERENCE_PRECISION_HINT": "f32"}}))
    return rows


def run(pairs: int, work: Path) -> dict:
    from export.sources import resolve_model
    from runtime import SpladeEncoder

    found, versions = docstring_pairs(pairs)
    queries, documents = [p.query for p in found], [p.document for p in found]
    source = resolve_model("splade-tiny").path
    max_length = 512
    pytorch = pytorch_weights(source, queries + documents, max_length)
    reference = pytorch["pytorch-fp32"]
    n = len(queries)

    def row(name: str, q: np.ndarray, d: np.ndarray, **extra) -> dict:
        overlaps = top32_overlaps(reference, np.concatenate([q, d]))
        return {"engine": name, "mrr@10": mrr_at_10(q, d), "top32_overlap_mean": float(overlaps.mean()),
                "top32_overlap_worst": float(overlaps.min()), "query_worst": float(overlaps[:n].min()),
                "document_worst": float(overlaps[n:].min()), **extra}

    rows = [row(name, weights[:n], weights[n:], **({} if name == "pytorch-fp32" else {"floor": True}))
            for name, weights in pytorch.items()]
    for name, folder, provider, options in engines(work):
        encoder = SpladeEncoder(folder, provider, provider_options=options or None)
        vocab = encoder.manifest.vocab_size
        q = np.stack([v.to_dense(vocab) for v in encoder.encode(queries, batch_size=32)])
        d = np.stack([v.to_dense(vocab) for v in encoder.encode(documents, batch_size=32)])
        rows.append(row(name, q, d))
        logging.info("%s", json.dumps(rows[-1]))
    lengths = [len(d.split()) for d in documents]
    return {"model": "splade-tiny", "pairs": len(found), "document_words_median": int(np.median(lengths)),
            "sources": versions, "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"Retrieval fidelity, {result['model']}: {result['pairs']} docstring pairs (summary line = query, "
             f"rest = document, median {result['document_words_median']} words) from "
             + ", ".join(f"{k} {v}" for k, v in result["sources"].items()) + ".",
             f"Machine: {result.get('machine', {}).get('cpu', '?')} ({result.get('machine', {}).get('simd', '')}). "
             f"Command: `{result.get('command', 'python -m benchmarks.fidelity')}`", "",
             "| engine | MRR@10 | top-32 overlap vs PyTorch fp32, mean | worst | worst query | worst document |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        name = f"*{r['engine']}* (floor)" if r.get("floor") else r["engine"]
        lines.append(f"| {name} | {r['mrr@10']:.4f} | {r['top32_overlap_mean']:.4f} | {r['top32_overlap_worst']:.3f} | "
                     f"{r.get('query_worst', float('nan')):.3f} | {r.get('document_worst', float('nan')):.3f} |")
    lines += ["", "*Floor* rows are PyTorch itself in bf16 (autocast) and with int8 per-channel weights and fp32 "
              "activations: no engine in that format can be expected to beat them."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=300, help="query/document pairs. Default: %(default)s")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder. Default: %(default)s")
    p.add_argument("--work", type=Path, default=None, help="folder for exported models (default: a temp folder)")
    p.add_argument("--name", default="fidelity-cpu", help="result file stem. Default: %(default)s")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for noisy in ("onnxruntime", "transformers", "export", "runtime"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from benchmarks.machine import machine, write_results

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.pairs, work)
    result["machine"] = machine()
    result["command"] = "python -m benchmarks.fidelity " + " ".join(argv if argv is not None else sys.argv[1:])
    result["date"] = time.strftime("%Y-%m-%d")
    write_results(args.out, args.name, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
