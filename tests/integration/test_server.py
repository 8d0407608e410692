"""The HTTP server with splade-tiny: in process (the app `serve` builds, its lifespan running), and as a
uvicorn subprocess on a free loopback port where the process itself is under test (flood then exit, SIGTERM)."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import httpx
import numpy as np
import pytest

from runtime import SpladeEncoder
from tests.conftest import assert_matches
from tests.servers import AppServer, Server

LONG = "Sparse retrieval with learned term weights. " * 120


@pytest.fixture(scope="module")
def server(fp32_dir):
    with AppServer(fp32_dir, "--max-client-batch-size", "8", "--max-wait-ms", "5") as srv:
        yield srv


@pytest.fixture(scope="module")
def encoder(fp32_dir):
    return SpladeEncoder(fp32_dir, provider="cpu")


def test_embed_sparse_is_tei_shaped_and_equals_encode(server, encoder, reference):
    texts = ["what is splade", "", "Paris is the capital of France."]
    r = server.post("/embed_sparse", json={"inputs": texts})
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list) and len(body) == 3
    for text, row, vec in zip(texts, body, encoder.encode(texts), strict=True):
        assert all(set(item) == {"index", "value"} for item in row)
        assert isinstance(row[0]["index"], int) and isinstance(row[0]["value"], float)
        assert [i["index"] for i in row] == vec.indices.tolist()
        assert np.allclose([i["value"] for i in row], vec.values, atol=1e-6)
        values = [i["value"] for i in row]
        assert values == sorted(values, reverse=True) and min(values) > 0
        assert_matches(vec, reference.encode(text))
    single = server.post("/embed_sparse", json={"inputs": "what is splade"}).json()
    assert single == [body[0]]


def test_encode_endpoint_options(server, encoder):
    r = server.post("/encode", json={"inputs": ["capital of france"], "top_k": 4, "return_tokens": True})
    assert r.status_code == 200
    row = r.json()["data"][0]
    vec = encoder.encode(["capital of france"], top_k=4)[0]
    assert row["indices"] == vec.indices.tolist() and list(row["tokens"]) == list(encoder.decode(vec))
    windowed = server.post("/encode", json={"inputs": LONG, "windows": True}).json()["data"][0]
    assert windowed["indices"] == encoder.encode([LONG], truncate=False)[0].indices.tolist()
    q = server.post("/encode", json={"inputs": "x", "kind": "query", "threshold": 0.5}).json()
    assert q["kind"] == "query" and all(v > 0.5 for v in q["data"][0]["values"])


def test_200_concurrent_requests_get_their_own_answers(server, encoder):
    texts = [f"request {i} asks about {['cats', 'rust', 'paris', 'onnx', 'tea'][i % 5]}" for i in range(200)]
    expected = {t: v.indices.tolist() for t, v in zip(texts, encoder.encode(texts), strict=True)}

    async def main():
        async with server.async_client(timeout=60) as client:
            return await asyncio.gather(*(client.post("/embed_sparse", json={"inputs": [t]}) for t in texts))

    responses = asyncio.run(main())
    assert all(r.status_code == 200 for r in responses)
    for text, r in zip(texts, responses, strict=True):
        assert [i["index"] for i in r.json()[0]] == expected[text]


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 422, "invalid request"),
    ({"inputs": 5}, 422, "inputs"),
    ({"inputs": ["ok", None]}, 422, "inputs"),
    ({"inputs": []}, 422, "inputs"),
    ({"input": "typo"}, 422, "inputs"),
    ({"inputs": "x", "truncate": "yes"}, 422, "truncate"),
    ({"inputs": ["q"] * 9}, 413, "maximum allowed batch size 8"),
    ({"inputs": LONG, "truncate": False}, 413, "max length of 512"),
])
def test_bad_inputs(server, body, status, message):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = server.post("/embed_sparse", **kwargs)
    assert r.status_code == status
    assert message in r.json()["error"]


def test_truncate_true_accepts_long_input(server, encoder):
    r = server.post("/embed_sparse", json={"inputs": LONG, "truncate": True})
    assert r.status_code == 200 and [i["index"] for i in r.json()[0]] == encoder.encode([LONG])[0].indices.tolist()
    bad = server.post("/encode", json={"inputs": "x", "top_k": 0})
    assert bad.status_code == 422 and "top_k" in bad.json()["error"]


def test_info_openapi_and_metrics(server):
    info = server.get("/info").json()
    assert info["document"]["precision"] == "fp32" and info["limits"]["max_client_batch_size"] == 8
    spec = server.get("/openapi.json").json()
    assert {"/embed_sparse", "/encode", "/health", "/info", "/metrics"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    # TEI's body: inputs, truncate, and its prompt_name and truncation_direction
    assert set(schemas["EmbedSparseRequest"]["properties"]) == {"inputs", "truncate", "prompt_name",
                                                                "truncation_direction"}
    assert {"top_k", "threshold", "return_tokens", "kind", "windows"} <= set(schemas["EncodeRequest"]["properties"])
    before = server.get("/metrics").text
    server.post("/embed_sparse", json={"inputs": "metrics probe"})
    server.post("/embed_sparse", json={"inputs": []})
    text = server.get("/metrics").text

    def count(metric_text, status):
        m = re.search(rf'splade_requests_total{{endpoint="/embed_sparse",status="{status}"}} (\S+)', metric_text)
        return float(m.group(1)) if m else 0.0

    assert count(text, "200") == count(before, "200") + 1
    assert count(text, "422") == count(before, "422") + 1
    for series in ("splade_batch_sequences_bucket", "splade_batch_tokens_bucket", "splade_queue_wait_seconds_bucket",
                   "splade_inference_seconds_bucket"):
        assert series in text


def test_flood_gets_429_and_nothing_is_lost(fp32_dir, encoder):
    srv = Server(fp32_dir, "--max-concurrent-requests", "2", "--max-wait-ms", "30", "--max-batch-size", "2")
    texts = [f"flood {i} " + "word " * 200 for i in range(60)]
    try:
        async def main():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
                return await asyncio.gather(*(client.post("/embed_sparse", json={"inputs": t}) for t in texts))

        responses = asyncio.run(main())
        refused = [r for r in responses if r.status_code == 429]
        assert refused and all(r.headers["retry-after"] == "1" and r.json()["error_type"] == "overloaded" for r in refused)
        expected = encoder.encode(texts)
        for r, vec in zip(responses, expected, strict=True):
            assert r.status_code in (200, 429)
            if r.status_code == 200:
                assert [i["index"] for i in r.json()[0]] == vec.indices.tolist()
        metrics = httpx.get(srv.url + "/metrics").text
        assert f'status="429"}} {float(len(refused))}' in metrics
    finally:
        out = srv.stop()
    # uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is a clean exit too
    assert srv.proc.returncode in (0, -signal.SIGTERM) and "Finished server process" in out


def test_sigterm_finishes_accepted_requests(fp32_dir, encoder):
    srv = Server(fp32_dir, "--max-wait-ms", "300")
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(r=httpx.post(srv.url + "/embed_sparse", json={"inputs": LONG, "truncate": True}, timeout=30)))
    t.start()
    time.sleep(0.1)  # accepted, waiting in the batcher
    srv.stop()
    t.join()
    assert result["r"].status_code == 200
    assert [i["index"] for i in result["r"].json()[0]] == encoder.encode([LONG])[0].indices.tolist()
