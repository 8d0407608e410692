"""HTTP load comparison: our server against a real Triton server, same clients, same texts, every answer checked.

    python -m benchmarks.triton_load --model models/splade-tiny-fp32 --clients 32 --requests 400

Rows: `python -m runtime serve` with dynamic batching on and off (benchmarks.loadgen's runs), then
Triton's `splade` ensemble from the `--onnx-backend python` repository of the same model (the
wheel's tritonserver, CPU; batch cap 32 and a 5 ms queue delay, as our batching run), driven over
Triton's HTTP/JSON endpoint by the same client loop. Every answer is compared with SpladeEncoder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks import loadgen
from benchmarks.machine import machine, write_results
from runtime import SpladeEncoder
from runtime.triton.repository import TritonConfig, write_repository
from runtime.triton.server import TritonServer


def triton_request(text: str) -> tuple[str, dict]:
    """Triton's KServe v2 request for one text: (path, JSON body)."""
    return "/v2/models/splade/infer", {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}


def triton_answer(body: dict) -> list[list[dict]]:
    """Triton's top-k outputs in our server's answer shape (one text: its non-zero weights)."""
    out = {o["name"]: o["data"] for o in body["outputs"]}
    return [[{"index": i, "value": v} for i, v in zip(out["indices"], out["values"]) if v > 0]]


def run_triton(model: Path, texts: list[str], *, clients: int, time_limit: float) -> dict:
    """The load against Triton; batch sizes from its statistics endpoint (exact sizes, not buckets)."""
    with tempfile.TemporaryDirectory(prefix="triton-load-") as tmp:
        cfg = TritonConfig(onnx_backend="python", max_batch_size=32, preferred_batch_sizes=(8, 16, 32),
                           max_queue_delay_us=5000)
        with TritonServer(write_repository(model, tmp, cfg), ready_timeout=120) as server:
            url = f"http://{server.http_url}"
            answers, latencies, wall = asyncio.run(
                loadgen.drive(url, texts, clients, time_limit, triton_request, triton_answer))
            with httpx.Client() as http:  # closed before the server stops: Triton waits for open connections
                stats = http.get(f"{url}/v2/models/splade_onnx/stats").json()["model_stats"][0]
    sizes = {str(b["batch_size"]): float(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    return {"dynamic_batching": True, "clients": clients, **summary(answers, latencies, wall),
            "batch_requests_histogram": sizes, "_answers": answers}


def summary(answers: list, latencies: list[float], wall: float) -> dict:
    lat = np.array(latencies) * 1000
    done = [a for a in answers if isinstance(a, list)]
    return {"requests_sent": len(latencies), "answered_200": len(done), "throughput_rps": len(done) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99))}


def checked(r: dict, expected: list, vocab: int, exact: bool) -> dict:
    """The run's figures plus: every request answered once, and the share equal to the in-process vector."""
    answers = r.pop("_answers")
    sent = [i for i, a in enumerate(answers) if a is not None]
    r["exactly_one_answer"] = all(isinstance(answers[i], list) and len(answers[i]) == 1 for i in sent)
    r["matches_in_process"] = sum(loadgen.agrees(answers[i][0], expected[i], vocab, exact)
                                  for i in sent if isinstance(answers[i], list)) / max(len(sent), 1)
    return r


def table(result: dict) -> str:
    lines = [f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores); model {result['model']}, CPU",
             f"Command: `{result['command']}`", "",
             "| server | dynamic batching | clients | requests | req/s | p50 ms | p95 ms | p99 ms | requests per batch "
             "| one answer each | agrees with in-process |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        at = "≤" if r["server"] == "runtime serve" else ""  # our /metrics has buckets, Triton's stats exact sizes
        hist = ", ".join(f"{at}{k}: {int(v)}" for k, v in r["batch_requests_histogram"].items() if v)
        lines.append(f"| {r['server']} | {'on' if r['dynamic_batching'] else 'off'} | {r['clients']} "
                     f"| {r['answered_200']}/{r['requests_sent']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} "
                     f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {hist} | {r['exactly_one_answer']} "
                     f"| {r['matches_in_process']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.triton_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder (fp32 or int8: Triton runs on CPU)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients. Default: %(default)s")
    p.add_argument("--requests", type=int, default=400, help="requests per run. Default: %(default)s")
    p.add_argument("--time-limit", type=float, default=120, help="seconds per run at most. Default: %(default)s")
    p.add_argument("--out", type=Path, default=loadgen.RESULTS)
    p.add_argument("--name", default="loadgen-triton", help="result file stem. Default: %(default)s")
    args = p.parse_args(argv)
    texts = loadgen.workload(args.requests)
    encoder = SpladeEncoder(args.model, provider="cpu")
    expected, vocab = encoder.encode(texts), encoder.manifest.vocab_size
    exact = encoder.manifest.precision == "fp32"  # int8 scales depend on the batch: top-32 overlap instead
    del encoder
    runs = []
    for batching in (True, False):
        r = loadgen.run(args.model, texts, clients=args.clients, batching=batching, time_limit=args.time_limit)
        runs.append({"server": "runtime serve", **checked(r, expected, vocab, exact)})
        print(json.dumps(runs[-1]), file=sys.stderr)
    r = run_triton(args.model, texts, clients=args.clients, time_limit=args.time_limit)
    runs.append({"server": "triton (python backend)", **checked(r, expected, vocab, exact)})
    print(json.dumps(runs[-1]), file=sys.stderr)
    result = {"machine": machine(), "model": str(args.model), "date": time.strftime("%Y-%m-%d"), "runs": runs,
              "command": "python -m benchmarks.triton_load " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_results(args.out, args.name, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
