"""ONNX Runtime's spinning worker threads, on and off: in-process query latency and the server under load.

    python -m benchmarks.spinning --model models/splade-tiny-fp32            # on a quiet machine
    python -m benchmarks.spinning --model DIR --queries 20 --requests 40     # plumbing check

In-process: single-query latency with spinning on and off, interleaved query by query, once alone and
once beside a Python thread that keeps tokenizing (as the server's HTTP and tokenization threads do).
Server: `benchmarks.loadgen`'s workload against `python -m runtime serve --allow-spinning 1|0`.
Writes benchmarks/results/spinning.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.httpclient import drive, post
from benchmarks.loadgen import workload
from benchmarks.machine import machine, write_results
from runtime import SpladeEncoder
from runtime.serving.process import ServerProcess as Server

RESULTS = Path(__file__).parent / "results"


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "p99_ms": float(np.percentile(a, 99))}


def in_process(model: Path, queries: list[str], *, busy: bool, threads: int | None) -> dict[str, dict]:
    encoders = {spin: SpladeEncoder(model, "cpu", threads=threads, allow_spinning=spin) for spin in (True, False)}
    for enc in encoders.values():
        enc.encode(queries[:5])
    stop = threading.Event()

    def tokenize_forever(enc: SpladeEncoder, texts: list[str]) -> None:
        while not stop.is_set():
            enc.tokenizer.encode(texts, truncate=True)

    worker = threading.Thread(target=tokenize_forever, args=(encoders[True], workload(64, seed=1)), daemon=True)
    if busy:
        worker.start()
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for q in queries:  # interleaved: drift on the machine hits both settings alike
            for spin, enc in encoders.items():
                start = time.perf_counter()
                enc.encode([q])
                times[spin].append((time.perf_counter() - start) * 1000)
    finally:
        stop.set()
    return {("spinning" if spin else "no-spinning"): percentiles(ms) for spin, ms in times.items()}


def server(model: Path, texts: list[str], *, spin: bool, clients: int, time_limit: float) -> dict:
    srv = Server(model, "--allow-spinning", "1" if spin else "0", "--max-concurrent-requests", str(clients * 2),
                 "--max-client-batch-size", "1", "--max-batch-size", "32", "--max-wait-ms", "5")
    try:
        host = f"127.0.0.1:{srv.port}"
        requests = [post(host, "/embed_sparse", {"inputs": t, "truncate": True}) for t in texts]
        outcomes, wall = asyncio.run(drive("127.0.0.1", srv.port, requests, clients, time_limit))
    finally:
        srv.stop()
    sent = [o for o in outcomes if o is not None]
    done = sum(o.status == 200 for o in sent)
    return {"answered_200": done, "throughput_rps": done / wall, **percentiles([o.seconds * 1000 for o in sent])}


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores, {result['machine']['simd']}). "
             f"Command: `{result['command']}`", "", "| where | spinning | p50 ms | p95 ms | p99 ms | req/s |", "|---|---|---|---|---|---|"]
    for where, block in result["in_process"].items():
        for setting, r in block.items():
            lines.append(f"| in-process, {where} | {setting} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | – |")
    for setting, r in result["server"].items():
        lines.append(f"| server, {result['clients']} clients | {setting} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
                     f"| {r['p99_ms']:.1f} | {r['throughput_rps']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.spinning", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder")
    p.add_argument("--queries", type=int, default=300, help="in-process single queries per setting. Default: %(default)s")
    p.add_argument("--requests", type=int, default=1000, help="server requests per setting. Default: %(default)s")
    p.add_argument("--clients", type=int, default=32, help="concurrent server clients. Default: %(default)s")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: usable cores)")
    p.add_argument("--time-limit", type=float, default=120, help="seconds per server run at most. Default: %(default)s")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="spinning", help="result file stem. Default: %(default)s")
    args = p.parse_args(argv)
    queries = [t for t in workload(args.queries * 4) if len(t.split()) <= 10][: args.queries]
    result = {"machine": machine(), "clients": args.clients, "date": time.strftime("%Y-%m-%d"),
              "command": "python -m benchmarks.spinning " + " ".join(argv if argv is not None else sys.argv[1:]),
              "in_process": {where: in_process(args.model, queries, busy=where == "beside a tokenizing thread",
                                               threads=args.threads)
                             for where in ("alone", "beside a tokenizing thread")},
              "server": {}}
    texts = workload(args.requests)
    for spin in (True, False):
        result["server"]["spinning" if spin else "no-spinning"] = server(args.model, texts, spin=spin, clients=args.clients,
                                                                         time_limit=args.time_limit)
    write_results(args.out, args.name, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
