"""Load generator for `python -m runtime serve`: N concurrent clients, a query/document mix, bounded.

    python -m benchmarks.loadgen --model models/splade-tiny-fp32 --clients 32 --requests 1000

Starts the server itself on a free loopback port, once with dynamic batching and once without
(max batch size 1), and reports throughput, latency percentiles, the batch-size distribution from
/metrics, and a count check that every request got exactly one correct answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks import corpus
from benchmarks.machine import machine
from benchmarks.serverproc import Server
from export.validate import top_terms
from runtime import SparseVector, SpladeEncoder

RESULTS = Path(__file__).parent / "results"


def workload(n: int, seed: int = 0) -> list[str]:
    """70% short queries, 30% documents of mixed length, fixed order."""
    rng = random.Random(seed)
    docs = corpus.texts(300)
    queries = [" ".join(d.split()[:rng.randint(3, 10)]) for d in docs]
    return [rng.choice(queries) if rng.random() < 0.7 else rng.choice(docs) for _ in range(n)]


async def drive(url: str, texts: list[str], clients: int, time_limit: float) -> tuple[list, list[float], float]:
    """Each client sends its share one request at a time; returns answers, latencies, wall time."""
    answers: list = [None] * len(texts)
    latencies: list[float] = []
    next_index = iter(range(len(texts)))
    deadline = time.monotonic() + time_limit

    async def client(http: httpx.AsyncClient):
        for i in next_index:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            r = await http.post("/embed_sparse", json={"inputs": texts[i], "truncate": True})
            latencies.append(time.perf_counter() - start)
            answers[i] = r.json() if r.status_code == 200 else r.status_code

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return answers, latencies, time.perf_counter() - start


def batch_histogram(metrics: str) -> dict[str, float]:
    buckets = re.findall(r'splade_batch_requests_bucket\{le="([^"]+)"\} (\S+)', metrics)
    out, previous = {}, 0.0
    for le, count in buckets:
        out[le] = float(count) - previous
        previous = float(count)
    return out


def run(model: Path, texts: list[str], *, clients: int, batching: bool, time_limit: float) -> dict:
    flags = ["--max-concurrent-requests", str(clients * 2), "--max-client-batch-size", "1"]
    flags += ["--max-batch-size", "32", "--max-wait-ms", "5"] if batching else ["--max-batch-size", "1", "--max-wait-ms", "0"]
    server = Server(model, *flags)
    try:
        answers, latencies, wall = asyncio.run(drive(server.url, texts, clients, time_limit))
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    lat = np.array(latencies) * 1000
    done = [a for a in answers if isinstance(a, list)]
    return {
        "dynamic_batching": batching, "clients": clients, "requests_sent": len(latencies), "answered_200": len(done),
        "throughput_rps": len(done) / wall, "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)), "p99_ms": float(np.percentile(lat, 99)),
        "batch_requests_histogram": batch_histogram(metrics), "_answers": answers,
    }


def agrees(answer: list[dict], vec, vocab: int, exact: bool) -> bool:
    """fp32/fp16: every weight within 1e-4 of the in-process vector; int8: top-32 overlap >= 0.9."""
    got = SparseVector.from_dict({"indices": [x["index"] for x in answer], "values": [x["value"] for x in answer]})
    if exact:
        return bool(np.abs(got.to_dense(vocab) - vec.to_dense(vocab)).max() <= 1e-4)
    top = top_terms(vec.to_dense(vocab), 32)
    return len(top & top_terms(got.to_dense(vocab), 32)) >= 0.9 * len(top)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients. Default: %(default)s")
    p.add_argument("--requests", type=int, default=1000, help="requests per run. Default: %(default)s")
    p.add_argument("--time-limit", type=float, default=120, help="seconds per run at most. Default: %(default)s")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="loadgen", help="result file stem. Default: %(default)s")
    args = p.parse_args(argv)
    texts = workload(args.requests)
    encoder = SpladeEncoder(args.model, provider="cpu")
    expected = encoder.encode(texts)
    vocab = encoder.manifest.vocab_size
    exact = encoder.manifest.precision != "int8"  # dynamic int8 scales depend on the batch's contents
    runs = []
    for batching in (True, False):
        r = run(args.model, texts, clients=args.clients, batching=batching, time_limit=args.time_limit)
        answers = r.pop("_answers")
        sent = [i for i, a in enumerate(answers) if a is not None]
        r["exactly_one_answer"] = all(isinstance(answers[i], list) and len(answers[i]) == 1 for i in sent)
        r["matches_in_process"] = sum(
            agrees(answers[i][0], expected[i], vocab, exact) for i in sent if isinstance(answers[i], list)) / max(len(sent), 1)
        runs.append(r)
        print(json.dumps(r), file=sys.stderr)
    result = {"machine": machine(), "model": str(args.model), "command": "python -m benchmarks.loadgen "
              + " ".join(argv if argv is not None else sys.argv[1:]), "date": time.strftime("%Y-%m-%d"), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores); model {args.model}",
             f"Command: `{result['command']}`", "",
             "| dynamic batching | clients | requests | req/s | p50 ms | p95 ms | p99 ms | requests per batch "
             "| one answer each | agrees with in-process |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        hist = ", ".join(f"≤{k}: {int(v)}" for k, v in r["batch_requests_histogram"].items() if v)
        lines.append(f"| {'on' if r['dynamic_batching'] else 'off'} | {r['clients']} | {r['answered_200']}/{r['requests_sent']} "
                     f"| {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {hist} "
                     f"| {r['exactly_one_answer']} | {r['matches_in_process']:.1%} |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
