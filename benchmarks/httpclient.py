"""Keep-alive HTTP/1.1 clients on raw asyncio streams, for load tests on a shared machine.

Each client holds one connection, as production clients do, and sends pre-built requests; a response
is read by its Content-Length and kept as bytes, parsed only after the clock stops. On a 2-vCPU box
the load generator shares the cores with the server, so its own cost per request must stay far
below the server's: a request here costs a write and two reads, where an httpx client spends
hundreds of microseconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson


def post(host: str, path: str, body: object) -> bytes:
    """A whole POST request with a JSON body, ready to write."""
    data = orjson.dumps(body)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode("ascii") + data


@dataclass
class Outcome:
    """One request's status and body (bytes: parsed after the run), and its latency in seconds."""

    status: int
    body: bytes
    seconds: float

    def json(self):
        return orjson.loads(self.body)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    writer.write(raw)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def drive(host: str, port: int, requests: list[bytes], clients: int,
                time_limit: float) -> tuple[list[Outcome | None], float]:
    """`clients` connections take the requests in order, one at a time each, until done or `time_limit`.

    Returns each request's outcome (None if never sent) and the wall time of the whole run.
    """
    outcomes: list[Outcome | None] = [None] * len(requests)
    order = iter(range(len(requests)))
    deadline = time.monotonic() + time_limit

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in order:
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                status, body = await _exchange(reader, writer, requests[i])
                outcomes[i] = Outcome(status, body, time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(clients, len(requests)))))
    return outcomes, time.perf_counter() - start
