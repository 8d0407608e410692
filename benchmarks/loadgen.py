"""Load generator for `python -m runtime serve`: N concurrent clients, a query/document mix, bounded.

    python -m benchmarks.loadgen --model models/splade-tiny-fp32 --clients 32 --requests 1000

Starts the server itself on a free loopback port, once with dynamic batching and once without
(max batch size 1), and reports throughput, latency percentiles, the batch-size distribution from
/metrics, and a count check that every request got exactly one correct answer.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import re
import sys
import time
from collections.abc import Callable
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


def embed_sparse(text: str) -> tuple[str, dict]:
    """Our server's request for one text: (path, JSON body)."""
    return "/embed_sparse", {"inputs": text, "truncate": True}


async def drive(url: str, texts: list[str], clients: int, time_limit: float,
                request: Callable[[str], tuple[str, dict]] = embed_sparse,
                answer: Callable[[dict], list] = lambda body: body) -> tuple[list, list[float], float]:
    """Each client sends its share one request at a time; returns answers, latencies, wall time.
    `request` makes a text's (path, body); `answer` turns a 200's JSON into our server's answer shape."""
    answers: list = [None] * len(texts)
    latencies: list[float] = []
    next_index = iter(range(len(texts)))
    deadline = time.monotonic() + time_limit

    async def client(http: httpx.AsyncClient):
        for i in next_index:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            path, body = request(texts[i])
            r = await http.post(path, json=body)
            latencies.append(time.perf_counter() - start)
            answers[i] = answer(r.json()) if r.status_code == 200 else r.status_code

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


def _percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def in_process_latency(encoder: SpladeEncoder, queries: list[str], repeats: int) -> dict:
    """The same queries through `SpladeEncoder.encode`, one at a time: what the server adds is the difference."""
    lat = []
    for i in range(repeats + 20):
        start = time.perf_counter()
        encoder.encode([queries[i % len(queries)]])
        if i >= 20:
            lat.append(time.perf_counter() - start)
    return {"requests": repeats, **_percentiles(lat)}


def sequential_latency(url: str, queries: list[str], repeats: int) -> dict:
    """One client, one query at a time on a kept-alive connection: the latency a lone caller sees.

    http.client rather than httpx: the client's own overhead would otherwise be part of the figure."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    lat, ok = [], 0
    try:
        for i in range(repeats + 20):
            body = json.dumps({"inputs": queries[i % len(queries)], "truncate": True})
            start = time.perf_counter()
            conn.request("POST", "/embed_sparse", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if i >= 20:  # the first requests capture CUDA graphs and warm caches
                lat.append(time.perf_counter() - start)
                ok += response.status == 200 and isinstance(json.loads(data), list)
    finally:
        conn.close()
    return {"requests": repeats, "answered_200": ok, **_percentiles(lat)}


def run(model: Path, texts: list[str], *, clients: int, batching: bool, time_limit: float, provider: str = "auto",
        max_wait_ms: float = 5.0) -> dict:
    flags = ["--max-concurrent-requests", str(clients * 2), "--max-client-batch-size", "1", "--provider", provider]
    flags += ["--max-batch-size", "32", "--max-wait-ms", str(max_wait_ms)] if batching else ["--max-batch-size", "1", "--max-wait-ms", "0"]
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
        "batch_requests_histogram": batch_histogram(metrics), "_answers": answers, "max_wait_ms": max_wait_ms if batching else 0,
    }


def agrees(answer: list[dict], vec, vocab: int, exact: bool) -> bool:
    """fp32: every weight within 1e-4 of the in-process vector; fp16, int8: top-32 overlap >= 0.9."""
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
    p.add_argument("--provider", default="cpu", help="the server's --provider (and the in-process check's). Default: %(default)s")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="the batching run's --max-wait-ms. Default: %(default)s")
    p.add_argument("--latency-requests", type=int, default=0,
                   help="also measure one client's sequential query latency over this many requests (0: skip)")
    args = p.parse_args(argv)
    texts = workload(args.requests)
    encoder = SpladeEncoder(args.model, provider=args.provider)
    expected = encoder.encode(texts)
    vocab = encoder.manifest.vocab_size
    # fp32: every weight matches; int8 (scales depend on the batch) and fp16 (kernels and rounding depend
    # on the batch shape): the top-32 terms match
    exact = encoder.manifest.precision == "fp32"
    queries = [t for t in texts if len(t.split()) <= 10]
    if args.latency_requests:  # before the servers start: measured alone, on the same queries
        in_process = in_process_latency(encoder, queries, args.latency_requests)
    del encoder
    runs = []
    for batching in (True, False):
        r = run(args.model, texts, clients=args.clients, batching=batching, time_limit=args.time_limit,
                provider=args.provider, max_wait_ms=args.max_wait_ms)
        answers = r.pop("_answers")
        sent = [i for i, a in enumerate(answers) if a is not None]
        r["exactly_one_answer"] = all(isinstance(answers[i], list) and len(answers[i]) == 1 for i in sent)
        r["matches_in_process"] = sum(
            agrees(answers[i][0], expected[i], vocab, exact) for i in sent if isinstance(answers[i], list)) / max(len(sent), 1)
        runs.append(r)
        print(json.dumps(r), file=sys.stderr)
    result = {"machine": machine(), "model": str(args.model), "command": "python -m benchmarks.loadgen "
              + " ".join(argv if argv is not None else sys.argv[1:]), "date": time.strftime("%Y-%m-%d"), "runs": runs}
    if args.latency_requests:
        server = Server(args.model, "--provider", args.provider, "--max-wait-ms", "0")
        try:
            result["sequential_query_latency"] = sequential_latency(server.url, queries, args.latency_requests)
        finally:
            server.stop()
        result["in_process_query_latency"] = in_process
        print(json.dumps(result["sequential_query_latency"]), json.dumps(in_process), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    gpu = f", {result['machine']['gpu']}" if "gpu" in result["machine"] else ""
    lines = [f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores{gpu}); model {args.model}, provider {args.provider}",
             f"Command: `{result['command']}`", "",
             "| dynamic batching | clients | requests | req/s | p50 ms | p95 ms | p99 ms | requests per batch "
             "| one answer each | agrees with in-process |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        hist = ", ".join(f"≤{k}: {int(v)}" for k, v in r["batch_requests_histogram"].items() if v)
        mode = f"on (wait {r['max_wait_ms']:g} ms)" if r["dynamic_batching"] else "off"
        lines.append(f"| {mode} | {r['clients']} | {r['answered_200']}/{r['requests_sent']} "
                     f"| {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {hist} "
                     f"| {r['exactly_one_answer']} | {r['matches_in_process']:.1%} |")
    if "sequential_query_latency" in result:
        q = result["sequential_query_latency"]
        lines += ["", f"One client, sequential queries (--max-wait-ms 0): {q['answered_200']}/{q['requests']} answered, "
                  f"p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms, mean {q['mean_ms']:.2f} ms"]
        if "in_process_query_latency" in result:
            i = result["in_process_query_latency"]
            lines.append(f"The same queries through `SpladeEncoder.encode` in process: p50 {i['p50_ms']:.2f} ms, "
                         f"p99 {i['p99_ms']:.2f} ms; the server adds {q['p50_ms'] - i['p50_ms']:.2f} ms at p50.")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
