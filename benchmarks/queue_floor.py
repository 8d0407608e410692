"""How low p99 ÷ mean can go on loadgen's workload, whatever the server does: a queueing model.

    python -m benchmarks.queue_floor --model models/splade-tiny-fp32 --clients 32 --requests 1200

Closed-loop clients (as in `benchmarks.loadgen`) in front of `workers` engine instances that run each
request alone, first come, first served, the moment an instance is free, with no HTTP, tokenizing or
batching cost at all. A request's cost is the engine's own: single texts of many lengths timed on one instance,
interpolated by length. What is left of p99 ÷ mean is the workload's: with a few long documents
among short queries, the work queued ahead of a request varies from request to request. Averaged
over several orders of the same texts.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.loadgen import MIXES, RESULTS, percentiles, workload
from benchmarks.machine import machine, write_results
from runtime import SpladeEncoder
from runtime.backends.options import plan_instances
from runtime.core.options import EncodeOptions


def closed_loop(costs: list[float], clients: int, workers: int) -> list[float]:
    """Latency of each job when `clients` each send their next job the moment the last is answered and
    `workers` run the queue first come, first served. Jobs go out in list order."""
    latency = [0.0] * len(costs)
    sent = {}  # job -> when its client sent it
    queue: list[int] = []
    free_at = [0.0] * workers  # a heap: when each worker is next free
    done: list[tuple[float, int]] = []  # (finish time, job): answers in time order
    next_job = 0
    for _ in range(min(clients, len(costs))):
        sent[next_job] = 0.0
        queue.append(next_job)
        next_job += 1
    head = 0
    while head < len(queue) or done:
        # start every queued job a worker is free for before the next answer comes back
        while head < len(queue) and (not done or free_at[0] <= done[0][0]):
            job = queue[head]
            head += 1
            start = max(heapq.heappop(free_at), sent[job])
            heapq.heappush(free_at, start + costs[job])
            heapq.heappush(done, (start + costs[job], job))
        finish, job = heapq.heappop(done)
        latency[job] = finish - sent[job]
        if next_job < len(costs):  # its client sends the next one
            sent[next_job] = finish
            queue.append(next_job)
            next_job += 1
    return latency


def run_costs(encoder: SpladeEncoder, sequences: list[np.ndarray], points: int = 16, repeats: int = 7) -> np.ndarray:
    """Seconds one instance takes to run each sequence alone: timed (the median of `repeats`) at `points`
    lengths spread over the texts' range, interpolated between them (cost grows faster than length on
    long texts, so no straight line fits both ends)."""
    lengths = np.array([len(s) for s in sequences])
    order = np.argsort(lengths, kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, points).astype(int))]
    timed = []
    for i in picks:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            list(encoder.infer_batches([sequences[i]], batch_size=1))
            times.append(time.perf_counter() - start)
        timed.append(statistics.median(times))
    return np.interp(lengths, lengths[picks], timed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.queue_floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients, one text per request. Default: %(default)s")
    p.add_argument("--requests", type=int, default=1200, help="texts per run. Default: %(default)s")
    p.add_argument("--mix", choices=list(MIXES), default="mixed", help="as in benchmarks.loadgen. Default: %(default)s")
    p.add_argument("--orders", type=int, default=8, help="orders of the texts to average over. Default: %(default)s")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="queue-floor", help="result file stem. Default: %(default)s")
    args = p.parse_args(argv)
    texts = workload(args.requests, mix=args.mix)
    encoder = SpladeEncoder(args.model, provider="cpu")
    workers, threads = plan_instances(encoder.provider, None)  # the server's default instances
    instance = encoder.reopen(threads=threads) if workers > 1 else encoder
    sequences = instance.tokenize(texts, EncodeOptions.of(truncate=True)).sequences
    costs = run_costs(instance, sequences)
    rows = []
    for seed in range(args.orders):
        order = np.random.default_rng(seed).permutation(len(costs)) if seed else np.arange(len(costs))
        latency = closed_loop(costs[order].tolist(), args.clients, workers)
        rows.append({"order": seed, **percentiles(latency)})
    ratios = [r["p99_over_mean"] for r in rows]
    result = {"machine": machine(), "model": str(args.model), "mix": args.mix, "clients": args.clients,
              "workers": workers, "threads_each": threads,
              "cost_ms": {"mean": float(costs.mean() * 1000), "min": float(costs.min() * 1000), "max": float(costs.max() * 1000)},
              "date": time.strftime("%Y-%m-%d"),
              "command": "python -m benchmarks.queue_floor " + " ".join(argv if argv is not None else sys.argv[1:]),
              "orders": rows, "p99_over_mean": {"mean": statistics.mean(ratios), "min": min(ratios), "max": max(ratios)}}
    m = result["machine"]
    table = (f"Machine: {m['cpu']} ({m['cores']} cores); model {args.model}; {args.clients} clients, {args.requests} texts "
             f"({args.mix}); {workers} instance(s) of {threads} thread(s)\nCommand: `{result['command']}`\n\n"
             f"Cost of one text on one instance: {costs.mean() * 1000:.2f} ms on average ({costs.min() * 1000:.2f}-"
             f"{costs.max() * 1000:.1f} ms)\n\n"
             "| order | mean ms | p50 ms | p99 ms | p99 ÷ mean |\n|---|---|---|---|---|\n"
             + "".join(f"| {r['order']} | {r['mean_ms']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p99_over_mean']:.2f} |\n"
                       for r in rows)
             + f"\nFirst come, first served with no serving cost: p99 ÷ mean {statistics.mean(ratios):.2f} "
             f"(orders: {min(ratios):.2f}-{max(ratios):.2f}).\n")
    write_results(args.out, args.name, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
