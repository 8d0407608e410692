"""The server's lifecycle in process (503 until warmed up, 503 again once draining) and `serve --query-model`."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from runtime import SpladeEncoder
from runtime.serving.app import create_app
from tests.servers import AppServer

LONG = "Sparse retrieval with learned term weights. " * 120


def test_health_is_503_until_warmed_up_and_while_draining(fp32_dir):
    app = create_app(SpladeEncoder(fp32_dir, provider="cpu"))

    async def main():
        transport = httpx.ASGITransport(app=app)  # the app itself, in process; the lifespan is driven below
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            before = await client.get("/health")
            async with app.router.lifespan_context(app):  # start-up: batchers start, a warm-up batch runs
                during = await client.get("/health")
                encoded = await client.post("/embed_sparse", json={"inputs": "what is splade"})
            after = await client.get("/health")
        return before, during, encoded, after

    before, during, encoded, after = asyncio.run(main())
    assert before.status_code == 503 and before.json() == {"error": "warming up", "error_type": "unhealthy"}
    assert during.status_code == 200 and during.json() == {"status": "ok"}
    assert encoded.status_code == 200 and len(encoded.json()[0]) > 0
    assert after.status_code == 503


def test_serve_with_a_query_model(exports, fp32_dir):
    """`--query-model`: kind=query goes to the query folder (its own max length), documents to --model."""
    query_dir = exports(max_length=64, validate=False)
    with AppServer(fp32_dir, "--query-model", str(query_dir), "--max-wait-ms", "2") as srv:
        info = srv.get("/info").json()
        assert info["query"]["max_input_length"] == 64 and info["document"]["max_input_length"] == 512
        q = srv.post("/encode", json={"inputs": [LONG], "kind": "query"}).json()
        d = srv.post("/encode", json={"inputs": [LONG], "kind": "document"}).json()
        tei = srv.post("/embed_sparse", json={"inputs": LONG, "truncate": True}).json()
    query, document = SpladeEncoder(query_dir, provider="cpu"), SpladeEncoder(fp32_dir, provider="cpu")
    assert q["kind"] == "query" and q["data"][0]["indices"] == query.encode([LONG])[0].indices.tolist()
    assert np.allclose(q["data"][0]["values"], query.encode([LONG])[0].values, atol=1e-6)
    assert d["data"][0]["indices"] == document.encode([LONG])[0].indices.tolist()
    assert q["data"][0]["indices"] != d["data"][0]["indices"], "64 and 512 tokens of a long text must differ"
    assert [i["index"] for i in tei[0]] == d["data"][0]["indices"], "/embed_sparse uses the document model"
