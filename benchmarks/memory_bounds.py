"""Peak RSS of one `SpladeEncoder.encode()` call, each case in a fresh process (the per-call bound).

    python -m benchmarks.memory_bounds --model models/splade-tiny-fp32 [--out benchmarks/results/memory-bounds.json]

Cases: 10,000 short texts (a few tokens each), 2,000 texts of 512 tokens, and one 20 MB text with
truncation (the character cut). Each runs in its own interpreter, so one case's heap never inflates
another's; the figure is VmHWM (the kernel's peak resident set) after the call, and VmRSS what is
still resident after it returns. Memory only: the machine may be busy, no time is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

CASES = {
    "short-10000": "10,000 short texts (3-8 tokens)",
    "long-2000": "2,000 texts of 512 tokens (truncated)",
    "huge-1": "one 20 MB text, truncate=True",
}


def texts_for(case: str) -> list[str]:
    words = ["sparse", "retrieval", "paris", "tea", "onnx", "query", "vector", "model", "index", "cat"]
    if case == "short-10000":
        return [" ".join(words[(i + j) % 10] for j in range(1 + i % 6)) + f" {i}" for i in range(10_000)]
    if case == "long-2000":  # ~700 words: well past 512 tokens, cut by truncation
        return [" ".join(words[(i * 7 + j) % 10] for j in range(700)) for i in range(2_000)]
    if case == "huge-1":
        return ["lorem ipsum dolor " * (20_000_000 // 18)]
    raise ValueError(case)


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(model: str, case: str) -> None:
    """Runs in the fresh process: load, build the texts, encode once, print the figures."""
    from runtime import SpladeEncoder

    encoder = SpladeEncoder(model, provider="cpu")
    texts = texts_for(case)
    before = status_mib("VmRSS")
    vectors = encoder.encode(texts)
    out_kib = sum(v.indices.nbytes + v.values.nbytes for v in vectors) / 1024
    print(json.dumps({"case": case, "texts": len(texts), "rss_before_call_mib": round(before, 1),
                      "peak_rss_mib": round(status_mib("VmHWM"), 1), "rss_after_call_mib": round(status_mib("VmRSS"), 1),
                      "vectors_kib": round(out_kib, 1)}))


def machine() -> dict:
    flags = ""
    model_name = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and not model_name:
            model_name = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "fma")
    versions = {}
    for name in ("onnxruntime", "tokenizers", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    import os
    return {"cpu": model_name, "cpus": os.cpu_count(), "flags": [f for f in wanted if f in flags.split()],
            "python": platform.python_version(), "glibc": " ".join(platform.libc_ver()), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="fp32 splade-tiny folder written by `python -m export`")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.model, args.child)
        return 0
    rows = []
    for case in args.cases:
        done = subprocess.run([sys.executable, "-m", "benchmarks.memory_bounds", "--model", args.model, "--child", case],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["description"] = CASES[case]
        rows.append(row)
        print(json.dumps(row))
    result = {"command": "python -m benchmarks.memory_bounds " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
