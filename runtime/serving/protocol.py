"""What a connection may hold: a bound on open connections, and on the time a request takes to arrive.

uvicorn's own limits cover idle keep-alive connections (`timeout_keep_alive`) and requests in
flight (`limit_concurrency`, checked once a request's headers are in). Neither cuts a client that
opens a connection and then sends its headers or body a byte every few seconds, and each such
connection holds a file descriptor. This protocol (uvicorn's httptools one, plus two timers' worth of
state) answers over `max_connections` with 503 at once, and cuts a request whose headers and body
have not all arrived `client_timeout` seconds after it began: 408 while its headers are incomplete;
once the app has it, the connection closes and the app sees the client leave.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def refusal(status: int, message: str, kind: str) -> bytes:
    """A whole HTTP/1.1 response with TEI's error body, for a connection that never reaches the app."""
    body = orjson.dumps({"error": message, "error_type": kind})
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def bounded_protocol(max_connections: int, client_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with both bounds (pass it as `uvicorn.run(..., http=...)`)."""

    class BoundedHttpProtocol(HttpToolsProtocol):
        _arrival: asyncio.TimerHandle | None = None
        _headers_in = False
        _started = False  # a byte of the timed request has arrived

        def data_received(self, data: bytes) -> None:
            self._started = True
            super().data_received(data)

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                self._refuse(503, f"too many open connections (the server holds at most {max_connections}); "
                                  f"retry later", "overloaded")
                return
            self._arm()  # a connection that sends nothing is cut too

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._headers_in = False
            if self._arrival is None:  # a new request on a kept-alive connection; a first one is timed from connect
                self._arm()
                self._started = True

        def on_headers_complete(self) -> None:
            self._headers_in = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, fresh: bool = True) -> None:
            self._disarm()
            if fresh:
                self._started = False
            self._arrival = self.loop.call_later(client_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._arrival is not None:
                self._arrival.cancel()
                self._arrival = None

        def _timed_out(self) -> None:
            self._arrival = None
            if self.transport.is_closing():
                return
            if self.pipeline or self.flow.read_paused:  # the server is why it has not arrived: time it again
                self._arm(fresh=False)
            elif self._headers_in:  # the app is reading a body that stalled: closing tells it the client is gone
                self.transport.close()
            elif self.cycle is not None and not self.cycle.response_complete:
                self._arm(fresh=False)  # never a 408 into the middle of a response still going out
            elif not self._started:  # nothing of a request arrived: an idle connection, closed without a word
                self.transport.close()
            else:
                self._refuse(408, f"the request did not arrive within {client_timeout:g} s", "validation")

        def _refuse(self, status: int, message: str, kind: str) -> None:
            self.transport.write(refusal(status, message, kind))
            self.transport.close()

    return BoundedHttpProtocol
