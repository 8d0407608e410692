"""The server under hostile input: body limit (on the wire: a uvicorn subprocess on loopback), and in process
(the app `serve` builds, its lifespan running) window cap, odd text, error shape, metrics."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest

from runtime import SpladeEncoder
from tests.servers import AppServer, Server

LONG = "Sparse retrieval with learned term weights. " * 200  # ~1,400 tokens: 4 windows
FLAGS = ("--payload-limit", "100000", "--max-windows", "2", "--max-client-batch-size", "8")


@pytest.fixture(scope="module")
def server(fp32_dir):
    with AppServer(fp32_dir, *FLAGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def wire_server(fp32_dir):
    """The same flags in a real uvicorn process: the body limit as a client on a socket sees it."""
    srv = Server(fp32_dir, *FLAGS)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def encoder(fp32_dir):
    return SpladeEncoder(fp32_dir, provider="cpu")


def is_tei_error(r: httpx.Response, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "error_type"}, body
    if kind:
        assert body["error_type"] == kind
    assert "Traceback" not in body["error"] and "/runtime/" not in body["error"]
    return body


def test_payload_limit_refuses_before_parsing(wire_server):
    big = {"inputs": "word " * 30_000, "truncate": True}  # ~150 kB > 100 kB
    body = is_tei_error(httpx.post(wire_server.url + "/embed_sparse", json=big), 413, "validation")
    assert "payload limit of 100000 bytes" in body["error"]

    def chunks():  # no Content-Length: counted while streaming
        yield b'{"inputs": "'
        for _ in range(30):
            yield b"word " * 1000
        yield b'"}'

    streamed = httpx.post(wire_server.url + "/embed_sparse", content=chunks(), headers={"content-type": "application/json"})
    assert is_tei_error(streamed, 413)["error"].startswith("request body is larger")
    assert httpx.post(wire_server.url + "/embed_sparse", json={"inputs": "still serving"}).status_code == 200


def test_windows_beyond_max_windows_get_413(server, encoder):
    body = is_tei_error(server.post("/encode", json={"inputs": ["ok", LONG], "windows": True}), 413)
    assert re.search(r"inputs\[1\] needs [34] windows", body["error"]) and "max_windows=2" in body["error"]
    two = "Sparse retrieval with learned term weights. " * 70  # 2 windows
    r = server.post("/encode", json={"inputs": two, "windows": True})
    assert r.status_code == 200
    assert r.json()["data"][0]["indices"] == encoder.encode([two], truncate=False)[0].indices.tolist()
    over = is_tei_error(server.post("/embed_sparse", json={"inputs": LONG, "truncate": False}), 413)
    assert "inputs[0] is longer than the model's max length of 512" in over["error"]


@pytest.mark.parametrize("path", ["/embed_sparse", "/encode"])
def test_lone_surrogate_is_422_naming_the_input(server, path):
    raw = b'{"inputs": ["fine", "bad \\ud800 text"]}'
    r = server.post(path, content=raw, headers={"content-type": "application/json"})
    body = is_tei_error(r, 422, "validation")
    assert "inputs[1] holds an unpaired UTF-16 surrogate at character 4" in body["error"]
    assert server.post(path, json={"inputs": "fine"}).status_code == 200  # connection and server fine


@pytest.mark.parametrize("raw, status", [
    (b'{"inputs": "\xff\xfe bad utf-8"}', 400),
    (b"[" * 40_000 + b"]" * 40_000, 400),  # deeper than the JSON parser recurses
    (b"{not json", 422),
])
def test_every_error_has_the_tei_shape(server, raw, status):
    r = server.post("/embed_sparse", content=raw, headers={"content-type": "application/json"})
    is_tei_error(r, status)


def test_not_found_and_method_errors_have_the_tei_shape(server):
    is_tei_error(server.get("/no/such/path"), 404)
    is_tei_error(server.get("/embed_sparse"), 405)


def test_validation_detail_is_capped(server):
    r = server.post("/embed_sparse", json={"inputs": list(range(10_000))})
    body = is_tei_error(r, 422, "validation")
    assert len(r.content) < 2000 and re.search(r"and 999\d more$", body["error"])


def test_metrics_label_by_route_and_count_every_status(server):
    for i in range(200):
        server.get(f"/random-{i}")
    server.post("/embed_sparse", json={"inputs": "x" * 200_000})  # 413 from the body limit
    text = server.get("/metrics").text
    endpoints = set(re.findall(r'splade_requests_total\{endpoint="([^"]*)"', text))
    assert endpoints <= {"/embed_sparse", "/encode", "/health", "/info", "/metrics", "/openapi.json", "other"}
    assert re.search(r'splade_requests_total\{endpoint="other",status="404"\} (\d+)', text)
    assert float(re.search(r'endpoint="other",status="404"\} (\S+)', text).group(1)) >= 200
    assert re.search(r'splade_requests_total\{endpoint="/embed_sparse",status="413"\}', text)
    assert len(text) < 20_000


def test_unexpected_error_is_json_500(fp32_dir, tmp_path):
    """A tokenizer whose vocabulary runs past the model's makes ONNX Runtime fail inside the batch:
    the caller gets a JSON 500 (no traceback), /metrics counts it, and the server keeps serving."""
    import json
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(fp32_dir, folder)
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zzzzqqq"] = 10_000_000  # an id the embedding table does not have
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    with AppServer(folder, "--max-wait-ms", "1") as srv:
        r = srv.post("/encode", json={"inputs": "zzzzqqq"})
        body = is_tei_error(r, 500, "server")
        assert body["error"] == "internal server error"
        assert srv.post("/encode", json={"inputs": "fine"}).status_code == 200
        metrics = srv.get("/metrics").text
        assert 'splade_requests_total{endpoint="/encode",status="500"} 1.0' in metrics


def test_concurrent_valid_requests_unaffected_by_bad_ones(server, encoder):
    """Bad requests (surrogates, over-long, bad top_k) mixed with good ones: each good one gets its own answer."""
    import asyncio

    texts = [f"query {i} about {['cats', 'tea', 'rust'][i % 3]}" for i in range(60)]
    expected = encoder.encode(texts)

    async def main():
        async with server.async_client(timeout=60) as client:
            good = [client.post("/encode", json={"inputs": t}) for t in texts]
            bad = [client.post("/encode", json={"inputs": "x", "top_k": 1.5}),
                   client.post("/encode", content=b'{"inputs": "\\udc00"}', headers={"content-type": "application/json"}),
                   client.post("/encode", json={"inputs": LONG, "windows": True})]
            return await asyncio.gather(*good, *bad)

    responses = asyncio.run(main())
    for r, vec in zip(responses[: len(texts)], expected, strict=True):
        assert r.status_code == 200 and np.array_equal(r.json()["data"][0]["indices"], vec.indices)
    assert [r.status_code for r in responses[len(texts):]] == [422, 422, 413]


def test_serve_defaults_bind_loopback_and_read_server_limits():
    from runtime.__main__ import build_parser
    from runtime.serving.limits import ServerLimits

    args = build_parser().parse_args(["serve", "--model", "m"])
    assert args.host == "127.0.0.1"
    defaults = ServerLimits()
    for name in ("max_batch_tokens", "max_batch_size", "instances", "max_wait_ms", "max_concurrent_requests",
                 "max_client_batch_size", "payload_limit", "max_windows"):
        assert getattr(args, name) == getattr(defaults, name)
    assert defaults.payload_limit == 2_000_000
