"""`python -m runtime serve` for tests: in this process (no socket) or, where the wire matters, as a subprocess.

`AppServer` builds the app from the same flags `serve` takes (`build_parser` then `build_app`) and runs
its lifespan through Starlette's TestClient: start-up starts the batchers and runs the warm-up batch,
`close()` drains them. Requests reach the app without a socket: `server.post("/embed_sparse", json=...)`
(plain, from any thread) or `async with server.async_client() as client` for many at once from a test's
own `asyncio.run`; both are served by one event loop, as uvicorn would serve them.

`Server` is the real thing (`runtime.serving.process.ServerProcess`: uvicorn in its own process on a
free loopback port) for what only a socket or a process shows: SIGTERM drain, the exit and log of the
process, a body limit as seen on the wire.
(Not named tests/http.py: run as a script from tests/, that would shadow the standard library's `http`.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from runtime.serving.process import ServerProcess


class AppServer:
    """The app `python -m runtime serve --model MODEL *flags` would serve, in process, lifespan running."""

    url = "http://testserver"

    def __init__(self, model: Path, *flags: str):
        from runtime.__main__ import build_parser
        from runtime.serving.cli import build_app

        args = build_parser().parse_args(["serve", "--model", str(model), *flags])
        self.app = build_app(args)
        # as on the wire: a server error is a 500 response, not an exception; redirects are not followed
        self.client = TestClient(self.app, base_url=self.url, raise_server_exceptions=False, follow_redirects=False)
        self.client.__enter__()  # lifespan start-up: batchers start, a warm-up batch runs

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def async_client(self, **kwargs) -> httpx.AsyncClient:
        """An AsyncClient for the caller's own event loop; its requests run concurrently on the app's loop."""
        return httpx.AsyncClient(transport=_AppLoopTransport(self.app, self.client.portal), base_url=self.url, **kwargs)

    def close(self) -> None:
        """Lifespan shutdown: the batchers finish what they accepted."""
        self.client.__exit__(None, None, None)

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _AppLoopTransport(httpx.AsyncBaseTransport):
    """httpx's ASGITransport, run on the event loop that ran the app's lifespan (TestClient's portal),
    awaited from any other loop."""

    def __init__(self, app, portal):
        self.asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.portal = portal

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()  # the body as bytes: the caller's async iterators stay on the caller's loop

        async def call() -> tuple[int, httpx.Headers, bytes]:
            response = await self.asgi.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = await asyncio.wrap_future(self.portal.start_task_soon(call))
        return httpx.Response(status, headers=headers, content=content, request=request)


# The real server in its own process: the product's own launcher, as the load generator uses it.
Server = ServerProcess
