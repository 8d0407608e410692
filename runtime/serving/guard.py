"""ASGI guard around the server: a body limit before parsing, every status counted, no bare 500s."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("runtime")
OTHER = "other"  # the one metrics label of every path that is no route (bounded cardinality)
# Body bytes read and discarded after a 413, so that a client that writes its whole body before
# reading (urllib, requests) gets the 413 instead of a connection reset. Nothing is kept: memory
# stays one chunk; a body beyond this is cut (the connection closes) instead of read forever.
DRAIN_BYTES = 64 << 20


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    """TEI's error shape, used for every error the server sends: `{"error": ..., "error_type": ...}`."""
    return JSONResponse({"error": message, "error_type": kind}, status_code=status, headers=headers)


def route_label(scope: Scope, paths: Collection[str] = ()) -> str:
    """The route template that served the request (`/encode`), or OTHER: never an unknown raw path.

    A request refused before routing (a body over the limit) is labelled by its path when that path
    is one of the app's own routes (`paths`), so a 413 on /embed_sparse is counted as /embed_sparse.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope.get("path") in paths else OTHER


class Guard:
    """Outermost middleware (inside Starlette's own error layer).

    - A body over `limit` bytes gets 413 before anything parses it: at once from Content-Length,
      or as soon as a streamed body passes the limit.
    - An exception nothing else answered becomes a JSON 500 (no traceback or path in the body).
    - Every response, 5xx included, is counted by `count(route template, status)`; `paths` are the
      app's route paths (filled once its routes exist), for requests refused before routing.
    """

    def __init__(self, app: ASGIApp, *, limit: int, count: Callable[[str, str], None], paths: Collection[str] = ()):
        self.app, self.limit, self.count, self.paths = app, limit, count, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # drained here, whoever answers (a route's handler or the Guard); after the last
                    # part, receive() would wait for the client to leave
                    whole = not message.get("more_body", False) or await drain(scope, receive, started=True)
                    raise HTTPException(413, self._too_large(), headers=None if whole else {"connection": "close"})
            return message

        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
                whole = await drain(scope, receive, started=False)
                await self._reply(scope, receive, tracked, 413, self._too_large(), "validation", close=not whole)
                return
            await self.app(scope, limited, tracked)
        except HTTPException as exc:  # raised while reading the body outside any route (the fast path)
            if not status:
                await self._reply(scope, receive, tracked, exc.status_code, str(exc.detail), "validation",
                                  close=bool(exc.headers))
        except Exception:
            log.exception("unhandled error on %s", route_label(scope, self.paths))
            if not status:
                await self._reply(scope, receive, tracked, 500, "internal server error", "server")
            else:
                status.append(500)
        finally:
            self.count(route_label(scope, self.paths), str(status[-1] if status else 500))

    def _too_large(self) -> str:
        return f"request body is larger than the payload limit of {self.limit} bytes"

    @staticmethod
    async def _reply(scope: Scope, receive: Receive, send: Send, code: int, message: str, kind: str,
                     close: bool = False) -> None:
        """`close`: the body was not read to its end, so the connection cannot carry another request."""
        await error_response(code, message, kind, headers={"connection": "close"} if close else None)(
            scope, receive, send)


async def drain(scope: Scope, receive: Receive, *, started: bool) -> bool:
    """Read and discard the rest of a refused request's body, up to DRAIN_BYTES; True if it was read to its end.

    A client that waits for `100 Continue` (curl) and was not yet asked for its body (`started`
    False) has sent nothing: it is not asked to send (and the connection is closed after the answer).
    """
    headers = dict(scope.get("headers") or [])
    if not started and headers.get(b"expect", b"").lower() == b"100-continue":
        return False
    read = 0
    while read <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return False
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


__all__ = ["DRAIN_BYTES", "Guard", "OTHER", "drain", "error_response", "route_label"]
