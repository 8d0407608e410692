"""HTTP load comparison: our server against a real Triton server, same clients, same texts, every answer checked.

    python -m benchmarks.triton_load --model models/splade-tiny-fp32 --clients 32 --requests 400

Rows: `python -m runtime serve` with its default flags (dynamic batching) and without batching
(benchmarks.loadgen's rows), then Triton's `splade` ensemble from the `--onnx-backend python`
repository of the same model (the wheel's tritonserver, CPU; batch cap 32 and a 5 ms queue delay):
one instance on every core, and, where our server runs several, as many instances on as many threads each,
driven over Triton's HTTP/JSON endpoint by the same keep-alive clients. Every answer is compared with
SpladeEncoder, and every row is also a share of the in-process limit on the same texts.
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
import orjson

from benchmarks import loadgen
from benchmarks.httpclient import Outcome, drive, post
from benchmarks.machine import machine, write_results
from runtime import SpladeEncoder
from runtime.backends.options import plan_instances
from runtime.triton.repository import TritonConfig, write_repository
from runtime.triton.server import TritonServer


def triton_request(host: str, text: str) -> bytes:
    """Triton's KServe v2 request for one text."""
    return post(host, "/v2/models/splade/infer",
                {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]})


def triton_answer(body: dict) -> list[list[dict]]:
    """Triton's top-k outputs in our server's answer shape (one text: its non-zero weights)."""
    out = {o["name"]: o["data"] for o in body["outputs"]}
    return [[{"index": i, "value": v} for i, v in zip(out["indices"], out["values"]) if v > 0]]


def run_triton(model: Path, texts: list[str], *, clients: int, time_limit: float, instances: int = 1,
               threads: int | None = None) -> dict:
    """The load against Triton, by the same clients; batch sizes from its statistics endpoint (exact sizes)."""
    with tempfile.TemporaryDirectory(prefix="triton-load-") as tmp:
        cfg = TritonConfig(onnx_backend="python", max_batch_size=32, preferred_batch_sizes=(8, 16, 32),
                           max_queue_delay_us=5000, instances=instances, threads=threads)
        with TritonServer(write_repository(model, tmp, cfg), ready_timeout=120) as server:
            host, port = server.http_url.split(":")
            requests = [triton_request(server.http_url, t) for t in texts]
            outcomes, wall = asyncio.run(drive(host, int(port), requests, clients, time_limit))
            with httpx.Client() as http:  # closed before the server stops: Triton waits for open connections
                stats = http.get(f"http://{server.http_url}/v2/models/splade_onnx/stats").json()["model_stats"][0]
    sizes = {str(b["batch_size"]): float(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    sent = [o for o in outcomes if o is not None]
    answers = [None if o is None else Outcome(o.status, orjson.dumps(triton_answer(o.json())) if o.status == 200
                                              else o.body, o.seconds) for o in outcomes]
    each = f", {threads} thread(s) each" if threads else ""
    return {"flags": f"triton ensemble (python backend{each})", "instances": instances, "clients": clients,
            "texts_per_request": 1,
            "requests_sent": len(sent), "answered_200": sum(o.status == 200 for o in sent),
            "texts_per_s": sum(o.status == 200 for o in sent) / wall, **loadgen.percentiles([o.seconds for o in sent]),
            "batch_requests_histogram": sizes, "_outcomes": answers}


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
    limit = loadgen.in_process_limit(encoder, texts)
    del encoder
    groups = [[i] for i in range(len(texts))]
    runs = []
    for flags in (["--provider", "cpu"], ["--provider", "cpu", "--max-batch-size", "1", "--max-wait-ms", "0"]):
        row = loadgen.served(args.model, flags, [[t] for t in texts], clients=args.clients, time_limit=args.time_limit)
        runs.append(loadgen.check(row, groups, expected, vocab, exact))
        print(json.dumps(runs[-1]), file=sys.stderr)
    count, each = plan_instances("cpu", None)  # Triton as it comes, then with our server's instances
    for instances, threads in sorted({(1, None), (count, each if count > 1 else None)}, key=lambda p: p[0]):
        row = run_triton(args.model, texts, clients=args.clients, time_limit=args.time_limit, instances=instances,
                         threads=threads)
        runs.append(loadgen.check(row, groups, expected, vocab, exact))
        print(json.dumps(runs[-1]), file=sys.stderr)
    result = {"machine": machine(), "model": str(args.model), "provider": "cpu", "date": time.strftime("%Y-%m-%d"),
              "in_process": limit, "runs": runs,
              "command": "python -m benchmarks.triton_load " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_results(args.out, args.name, result, loadgen.table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
