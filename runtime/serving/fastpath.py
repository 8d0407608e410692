"""`/embed_sparse` for well-formed bodies without the framework's request machinery (the hot path).

A body that is exactly TEI's shape (a JSON object with `inputs` a string or a non-empty list of
strings, and optionally `truncate`, `truncation_direction`, `prompt_name` of the right types) is
answered here, by the same handler the FastAPI route calls. Anything else (other content types,
malformed JSON, unknown keys, wrong types) goes on to FastAPI unchanged, body replayed, so every
error keeps its exact status and message. Runs inside the Guard: body limit and counting as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.serving.schemas import EmbedSparseRequest

PATH = "/embed_sparse"
_DIRECTIONS = {"left", "right", "Left", "Right"}
Handler = Callable[[str | list[str], dict[str, Any]], Awaitable[Response]]


def parse(body: bytes) -> EmbedSparseRequest | None:
    """The request, if `body` is exactly TEI's shape with valid types; None sends it to FastAPI."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.keys() <= EmbedSparseRequest.model_fields.keys():
        return None
    inputs = data.get("inputs")
    if not (isinstance(inputs, str) or (isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs))):
        return None
    if not isinstance(data.get("truncate", False), bool) or data.get("truncation_direction", "right") not in _DIRECTIONS:
        return None
    if not isinstance(data.get("prompt_name", ""), str | None):
        return None
    return EmbedSparseRequest.model_construct(**data)


class EmbedSparseFastPath:
    def __init__(self, app: ASGIApp, *, handle: Handler):
        self.app, self.handle = app, handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or not _json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the framework see it as before
                await self.app(scope, _replay(b"".join(chunks), receive, message), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        request = parse(body)
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        response = await self.handle(request.inputs, request.options())
        await response(scope, receive, send)


def _json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


def _replay(body: bytes, receive: Receive, last: Message | None = None) -> Receive:
    """A receive that hands the framework the body already read, then (or `last`, if the client left) the rest."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if last is not None and not body:
                return last
            return {"type": "http.request", "body": body, "more_body": False}
        return last if last is not None else await receive()

    return replay
