"""p99 ÷ mean of an ideal server on loadgen's workload: how much of the spread is the texts' own.

    python -m benchmarks.ideal_queue --model models/splade-tiny-fp32 --clients 32 --requests 1200

Closed-loop clients (as in `benchmarks.loadgen`) in front of the server's default instances, each
running one request at a time, first come, first served, the moment it is free: no HTTP, tokenizing
or batching, only the engine's own cost per text (single texts of many lengths timed on one
instance, interpolated by length) plus `--overhead-ms` per request. With a few long documents among
short queries, the work queued ahead of a request varies from request to request, and so does its
wait. A fixed cost per request adds the same to every latency, so p99 ÷ mean falls as overhead grows:
the closer a server comes to the engine's throughput, the closer its p99 ÷ mean comes to the
ideal's. Averaged over several orders of the same texts.
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


def closed_loop(costs: list[float], clients: int, workers: int) -> tuple[list[float], float]:
    """Latency of each job when `clients` each send their next job the moment the last is answered and
    `workers` run the queue first come, first served, and when the last answer came. Jobs go out in
    list order."""
    latency = [0.0] * len(costs)
    sent: dict[int, float] = {}  # job -> when its client sent it
    queue: list[int] = []
    free_at = [0.0] * workers  # a heap: when each worker is next free
    done: list[tuple[float, int]] = []  # (finish time, job): answers in time order
    next_job = 0
    for _ in range(min(clients, len(costs))):
        sent[next_job] = 0.0
        queue.append(next_job)
        next_job += 1
    head, last = 0, 0.0
    while head < len(queue) or done:
        # start every queued job a worker is free for before the next answer comes back
        while head < len(queue) and (not done or free_at[0] <= done[0][0]):
            job = queue[head]
            head += 1
            start = max(heapq.heappop(free_at), sent[job])
            heapq.heappush(free_at, start + costs[job])
            heapq.heappush(done, (start + costs[job], job))
        finish, job = heapq.heappop(done)
        latency[job], last = finish - sent[job], finish
        if next_job < len(costs):  # its client sends the next one
            sent[next_job] = finish
            queue.append(next_job)
            next_job += 1
    return latency, last


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


def table(result: dict) -> str:
    m, costs = result["machine"], result["cost_ms"]
    lines = [f"Machine: {m['cpu']} ({m['cores']} cores); model {result['model']}; {result['clients']} clients, "
             f"{result['texts']} texts ({result['mix']}); {result['workers']} instance(s) of {result['threads_each']} "
             f"thread(s)", f"Command: `{result['command']}`", "",
             f"The engine's cost of one text on one instance: {costs['mean']:.2f} ms on average "
             f"({costs['min']:.2f}-{costs['max']:.1f} ms)", "",
             "| overhead per request, ms | texts/s | mean ms | p50 ms | p99 ms | p99 ÷ mean (orders: range) |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['overhead_ms']:g} | {row['texts_per_s']:.0f} | {row['mean_ms']:.1f} | {row['p50_ms']:.1f} "
                     f"| {row['p99_ms']:.1f} | {row['p99_over_mean']:.2f} ({row['p99_over_mean_min']:.2f}-"
                     f"{row['p99_over_mean_max']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ideal_queue", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients, one text per request. Default: %(default)s")
    p.add_argument("--requests", type=int, default=1200, help="texts per run. Default: %(default)s")
    p.add_argument("--mix", choices=list(MIXES), default="mixed", help="as in benchmarks.loadgen. Default: %(default)s")
    p.add_argument("--overhead-ms", type=float, nargs="+", default=[0.0, 0.5, 1.0],
                   help="a fixed cost added to every request, one row each. Default: 0 0.5 1")
    p.add_argument("--orders", type=int, default=8, help="orders of the texts to average over. Default: %(default)s")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="ideal-queue", help="result file stem. Default: %(default)s")
    args = p.parse_args(argv)
    texts = workload(args.requests, mix=args.mix)
    encoder = SpladeEncoder(args.model, provider="cpu")
    workers, threads = plan_instances(encoder.provider, None)  # the server's default instances
    instance = encoder.reopen(threads=threads) if workers > 1 else encoder
    costs = run_costs(instance, instance.tokenize(texts, EncodeOptions.of(truncate=True)).sequences)
    rows = []
    for overhead in args.overhead_ms:
        per_order = []
        for seed in range(args.orders):
            order = np.random.default_rng(seed).permutation(len(costs)) if seed else np.arange(len(costs))
            jobs = (costs[order] + overhead / 1000).tolist()
            latency, makespan = closed_loop(jobs, args.clients, workers)
            per_order.append({**percentiles(latency), "texts_per_s": len(jobs) / makespan})
        ratios = [r["p99_over_mean"] for r in per_order]
        rows.append({"overhead_ms": overhead, **{k: statistics.mean(r[k] for r in per_order) for k in per_order[0]},
                     "p99_over_mean_min": min(ratios), "p99_over_mean_max": max(ratios)})
    result = {"machine": machine(), "model": str(args.model), "mix": args.mix, "clients": args.clients,
              "texts": len(texts), "workers": workers, "threads_each": threads, "orders": args.orders,
              "cost_ms": {"mean": float(costs.mean() * 1000), "min": float(costs.min() * 1000),
                          "max": float(costs.max() * 1000)},
              "date": time.strftime("%Y-%m-%d"),
              "command": "python -m benchmarks.ideal_queue " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": rows}
    write_results(args.out, args.name, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
