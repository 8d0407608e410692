"""Load test of `python -m runtime serve`: what share of the engine's own throughput the server delivers.

    python -m benchmarks.loadgen --model models/splade-tiny-fp32 --clients 32 --requests 600

In one run, on the same texts: the in-process limit (every text through `SpladeEncoder.encode` in one
call, same provider and threads), then the server (started here on a free loopback port, default
flags unless told) under keep-alive clients: one text per request (the online case, with dynamic
batching and without) and 32 texts per request (the bulk case). Each row reports texts/s and that
as a fraction of the in-process limit, p50/p99/mean latency and p99 ÷ mean, the batch sizes from
/metrics, and a check that every request got exactly its own correct answer. `--latency-requests`
adds one client's sequential query latency beside the same queries' in-process latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks import corpus
from benchmarks.httpclient import Outcome, drive, post
from benchmarks.machine import machine, write_results
from export.validate import top_terms
from runtime import SparseVector, SpladeEncoder
from runtime.backends.options import plan_instances
from runtime.serving.process import ServerProcess as Server

RESULTS = Path(__file__).parent / "results"
BULK = 32  # texts per request in the bulk rows


MIXES = {"mixed": 0.7, "queries": 1.0, "passages": 0.0}  # the share of short queries


def workload(n: int, seed: int = 0, mix: str = "mixed") -> list[str]:
    """Short queries (3-10 words) and documents of mixed length, fixed order: 70% queries ("mixed"),
    queries only, or documents only ("passages")."""
    rng = random.Random(seed)
    docs = corpus.texts(300)
    queries = [" ".join(d.split()[:rng.randint(3, 10)]) for d in docs]
    share = MIXES[mix]
    return [rng.choice(queries) if rng.random() < share else rng.choice(docs) for _ in range(n)]


def in_process_limit(encoder: SpladeEncoder, texts: list[str], passes: int = 3, concurrent: int = 1) -> dict:
    """Texts/s of the same texts through one `encode` call (the engine alone): the median of `passes`.
    With `concurrent` > 1, that many threads each encode an interleaved share in one call, as the
    server's instances run (pass the encoder they share)."""
    encoder.encode(texts[:64])  # warm-up
    shares = [texts[i::concurrent] for i in range(concurrent)]
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        threads = [threading.Thread(target=encoder.encode, args=(share,)) for share in shares]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds.append(time.perf_counter() - start)
    return {"texts": len(texts), "passes": passes, "concurrent": concurrent,
            "threads_each": encoder.session.threads, "texts_per_s": len(texts) / statistics.median(seconds)}


def in_process_latency(encoder: SpladeEncoder, queries: list[str], repeats: int) -> dict:
    """The same queries through `SpladeEncoder.encode`, one at a time: what the server adds is the difference."""
    lat = []
    for i in range(repeats + 20):
        start = time.perf_counter()
        encoder.encode([queries[i % len(queries)]])
        if i >= 20:
            lat.append(time.perf_counter() - start)
    return {"requests": repeats, **percentiles(lat)}


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    mean = float(ms.mean())
    p99 = float(np.percentile(ms, 99))
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": p99, "mean_ms": mean, "p99_over_mean": p99 / mean}


def sequential_latency(url: str, queries: list[str], repeats: int) -> dict:
    """One client, one query at a time on a kept-alive connection (the same raw client as the load rows):
    the latency a lone caller sees. The first 20 requests capture CUDA graphs and warm caches, untimed."""
    host, port = url.removeprefix("http://").split(":")
    requests = [post(f"{host}:{port}", "/embed_sparse", {"inputs": queries[i % len(queries)], "truncate": True})
                for i in range(repeats + 20)]
    outcomes, _ = asyncio.run(drive(host, int(port), requests, 1, time_limit=600))
    timed = [o for o in outcomes[20:] if o is not None]
    ok = sum(o.status == 200 and isinstance(o.json(), list) for o in timed)
    return {"requests": repeats, "answered_200": ok, **percentiles([o.seconds for o in timed])}


def batch_histogram(metrics: str) -> dict[str, float]:
    buckets = re.findall(r'splade_batch_requests_bucket\{le="([^"]+)"\} (\S+)', metrics)
    out, previous = {}, 0.0
    for le, count in buckets:
        out[le] = float(count) - previous
        previous = float(count)
    return out


def agrees(answer: list[dict], vec: SparseVector, vocab: int, exact: bool) -> bool:
    """fp32: every weight within 1e-4 of the in-process vector; fp16, int8: top-32 overlap >= 0.9."""
    got = SparseVector.from_dict({"indices": [x["index"] for x in answer], "values": [x["value"] for x in answer]})
    if exact:
        return bool(np.abs(got.to_dense(vocab) - vec.to_dense(vocab)).max() <= 1e-4)
    top = top_terms(vec.to_dense(vocab), 32)
    return len(top & top_terms(got.to_dense(vocab), 32)) >= 0.9 * len(top)


def served(model: Path, flags: list[str], groups: list[list[str]], *, clients: int, time_limit: float) -> dict:
    """Start the server with `flags`, send each group of texts as one /embed_sparse request; outcomes and figures."""
    server = Server(model, *flags)
    try:
        host = f"127.0.0.1:{server.port}"
        requests = [post(host, "/embed_sparse", {"inputs": g, "truncate": True}) for g in groups]
        outcomes, wall = asyncio.run(drive("127.0.0.1", server.port, requests, clients, time_limit))
        metrics = httpx.get(server.url + "/metrics").text
        instances = httpx.get(server.url + "/info").json()["document"]["instances"]
    finally:
        server.stop()
    sent = [o for o in outcomes if o is not None]
    texts_done = sum(len(g) for g, o in zip(groups, outcomes) if o is not None and o.status == 200)
    return {"flags": " ".join(flags) or "(defaults)", "instances": instances, "clients": min(clients, len(groups)),
            "texts_per_request": max(len(g) for g in groups), "requests_sent": len(sent),
            "answered_200": sum(o.status == 200 for o in sent), "texts_per_s": texts_done / wall,
            **percentiles([o.seconds for o in sent]), "batch_requests_histogram": batch_histogram(metrics),
            "_outcomes": outcomes}


def check(row: dict, groups: list[list[int]], expected: list[SparseVector], vocab: int, exact: bool) -> dict:
    """Every request sent got exactly its own texts' vectors (fp32: every weight; else the top-32 terms)."""
    outcomes: list[Outcome | None] = row.pop("_outcomes")
    one_each, agreeing, total = True, 0, 0
    for group, outcome in zip(groups, outcomes):
        if outcome is None:
            continue
        answer = outcome.json() if outcome.status == 200 else None
        one_each &= isinstance(answer, list) and len(answer) == len(group)
        for i, vec in zip(group, answer or []):
            agreeing += agrees(vec, expected[i], vocab, exact)
        total += len(group)
    return {**row, "exactly_its_answers": one_each, "agrees_with_in_process": agreeing / max(total, 1)}


def as_served_line(result: dict) -> str:
    """The engine run in process as the server's default instances run it, when they are several."""
    served = result.get("in_process_as_served")
    if not served:
        return ""
    return (f"; run as the server's {served['concurrent']} instances run it ({served['concurrent']} concurrent `encode` "
            f"calls of {served['threads_each']} thread(s) each): {served['texts_per_s']:.1f} texts/s "
            f"({served['texts_per_s'] / result['in_process']['texts_per_s']:.2f}× one call)")


def table(result: dict) -> str:
    m, limit = result["machine"], result["in_process"]["texts_per_s"]
    gpu = f", {m['gpu']}" if "gpu" in m else ""
    lines = [f"Machine: {m['cpu']} ({m['cores']} cores{gpu}); model {result['model']}, provider {result['provider']}",
             f"Command: `{result['command']}`", "",
             f"In-process limit (the same {result['in_process']['texts']} texts through one `encode` call): "
             f"{limit:.1f} texts/s{as_served_line(result)}", "",
             "| server flags | instances | clients | texts per request | answered | texts/s | of in-process | p50 ms | p99 ms "
             "| mean ms | p99 ÷ mean | requests per batch | exactly its answers | agrees with in-process |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        hist = ", ".join(f"≤{k}: {int(v)}" for k, v in r["batch_requests_histogram"].items() if v)
        lines.append(f"| {r['flags']} | {r['instances']} | {r['clients']} | {r['texts_per_request']} | {r['answered_200']}/{r['requests_sent']} "
                     f"| {r['texts_per_s']:.1f} | {r['texts_per_s'] / limit:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                     f"| {r['mean_ms']:.1f} | {r['p99_over_mean']:.2f} | {hist} | {r['exactly_its_answers']} "
                     f"| {r['agrees_with_in_process']:.1%} |")
    if "sequential_query_latency" in result:
        q, i = result["sequential_query_latency"], result["in_process_query_latency"]
        lines += ["", f"One client, sequential queries: {q['answered_200']}/{q['requests']} answered, p50 "
                  f"{q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms; in process: p50 {i['p50_ms']:.2f} ms, p99 "
                  f"{i['p99_ms']:.2f} ms; the server adds {q['p50_ms'] - i['p50_ms']:.2f} ms at p50 "
                  f"({q['p50_ms'] / i['p50_ms']:.2f}× the in-process p50)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients, one text per request. Default: %(default)s")
    p.add_argument("--bulk-clients", type=int, default=4,
                   help=f"concurrent clients of the bulk rows ({BULK} texts per request; 0 skips them). Default: %(default)s")
    p.add_argument("--requests", type=int, default=600, help="texts per run. Default: %(default)s")
    p.add_argument("--mix", choices=list(MIXES), default="mixed",
                   help="70%% queries and 30%% documents, queries only, or documents only. Default: %(default)s")
    p.add_argument("--time-limit", type=float, default=120, help="seconds per run at most. Default: %(default)s")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="loadgen", help="result file stem. Default: %(default)s")
    p.add_argument("--provider", default="cpu", help="the server's --provider (and the in-process one's). Default: %(default)s")
    p.add_argument("--max-wait-ms", type=float, default=None,
                   help="the server's --max-wait-ms in the batching rows (default: the server's own)")
    p.add_argument("--flags", default="", help="more server flags for every row, e.g. '--max-batch-size 64'")
    p.add_argument("--no-unbatched", action="store_true", help="skip the online row without dynamic batching")
    p.add_argument("--latency-requests", type=int, default=0,
                   help="also measure one client's sequential query latency over this many requests (0: skip)")
    args = p.parse_args(argv)
    texts = workload(args.requests, mix=args.mix)
    encoder = SpladeEncoder(args.model, provider=args.provider)
    expected, vocab = encoder.encode(texts), encoder.manifest.vocab_size
    # fp32: every weight matches; int8 (scales depend on the batch) and fp16 (kernels depend on the batch
    # shape): the top-32 terms match
    exact = encoder.manifest.precision == "fp32"
    queries = [t for t in texts if len(t.split()) <= 10]
    limit = in_process_limit(encoder, texts)  # measured alone, before any server starts
    count, each = plan_instances(encoder.provider, None)  # the server's default instances
    as_served = in_process_limit(encoder.reopen(threads=each), texts, concurrent=count) if count > 1 else None
    in_process_query = in_process_latency(encoder, queries, args.latency_requests) if args.latency_requests else None
    del encoder
    base = ["--provider", args.provider, *args.flags.split()]
    single = [[i] for i in range(len(texts))]
    bulk = [list(range(s, min(s + BULK, len(texts)))) for s in range(0, len(texts), BULK)]
    batching = base + ([] if args.max_wait_ms is None else ["--max-wait-ms", f"{args.max_wait_ms:g}"])
    plans = [(batching, single, args.clients)]
    if not args.no_unbatched:
        plans.append((base + ["--max-batch-size", "1", "--max-wait-ms", "0"], single, args.clients))
    if args.bulk_clients:
        plans.append((batching, bulk, args.bulk_clients))
    runs = []
    for flags, groups, clients in plans:
        row = served(args.model, flags, [[texts[i] for i in g] for g in groups], clients=clients,
                     time_limit=args.time_limit)
        runs.append(check(row, groups, expected, vocab, exact))
        print(json.dumps(runs[-1]), file=sys.stderr)
    result = {"machine": machine(), "model": str(args.model), "provider": args.provider, "mix": args.mix,
              "date": time.strftime("%Y-%m-%d"),
              "command": "python -m benchmarks.loadgen " + " ".join(argv if argv is not None else sys.argv[1:]),
              "in_process": limit, "in_process_as_served": as_served, "runs": runs}
    if in_process_query is not None:
        server = Server(args.model, *base)
        try:
            result["sequential_query_latency"] = sequential_latency(server.url, queries, args.latency_requests)
        finally:
            server.stop()
        result["in_process_query_latency"] = in_process_query
    write_results(args.out, args.name, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
