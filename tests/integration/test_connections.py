"""What only a real socket shows: a 413 a client that writes its whole body first can read, requests
whose headers or body never arrive are cut, and connections beyond the bound get 503 at once."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.servers import Server

LIMIT = 1000


@pytest.fixture(scope="module")
def server(fp32_dir):
    srv = Server(fp32_dir, "--payload-limit", str(LIMIT), "--client-timeout", "1.5", "--max-connections", "8")
    yield srv
    srv.stop()


def read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP response from a raw socket (headers, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                      b"0"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def post(server, body: bytes, **headers) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + "/embed_sparse", data=body,
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_client_that_writes_its_whole_body_reads_the_413(server):
    for size in (3 * LIMIT, 3_000_000):  # a little over, and megabytes over
        status, body = post(server, json.dumps({"inputs": ["x" * size]}).encode())
        assert status == 413 and body == {"error": f"request body is larger than the payload limit of {LIMIT} bytes",
                                          "error_type": "validation"}
    # a streamed (chunked) body with no Content-Length: refused once it passes the limit, still readable
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/embed_sparse", body=iter([b'{"inputs": ["', b"y" * 50_000, b'"]}']),
                 headers={"content-type": "application/json"}, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error_type"] == "validation"
    conn.close()
    assert post(server, b'{"inputs": ["still serving"]}')[0] == 200


def test_a_chunked_body_that_arrives_whole_gets_its_413_at_once(server):
    """The whole over-limit chunked body in one write: the server sees it as one final message, and
    answers without waiting for more body (there is none) or for the client to leave."""
    payload = b'{"inputs": ["' + b"z" * 5000 + b'"]}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /embed_sparse HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n" + chunked)
        sock.settimeout(1.0)  # under --client-timeout: an answer, not a cut
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"error_type":"validation"' in answer


def test_a_request_whose_headers_never_finish_is_cut(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /embed_sparse HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() - started < 10 and not answer:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # one header every 0.2 s, never the blank line
            except OSError:
                break
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                pass
        if answer:
            sock.settimeout(5)
            answer += read_answer(sock)  # the rest of it, if it came in more than one piece
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"error_type":"validation"' in answer and 1.4 < elapsed < 5


def test_a_body_that_never_finishes_is_cut(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /embed_sparse HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 500\r\n\r\n{\"inputs\": [\"")
        sock.settimeout(6)
        started = time.monotonic()
        data = sock.recv(4096)  # b"" once the server closes it
        assert data == b"" and 1.0 < time.monotonic() - started < 5
    assert post(server, b'{"inputs": ["still serving"]}')[0] == 200


def test_connections_over_the_bound_get_503_at_once(server):
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            extra.settimeout(2)
            answer = read_answer(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b'"error_type":"overloaded"' in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)  # the held ones are gone: the bound frees up
    assert post(server, b'{"inputs": ["after the flood"]}')[0] == 200


@pytest.mark.parametrize("path", ["/encode", "/embed_sparse", "/opensearch/sparse_encoding"])
def test_a_streamed_413_is_drained_and_the_connection_serves_on(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", path, body=iter([b'{"inputs": ["', b"y" * 50_000, b'"]}']),
                 headers={"content-type": "application/json"}, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error_type"] == "validation"
    conn.request("GET", "/health")  # the same connection: the refused body did not leak into the next request
    assert conn.getresponse().status == 200
    conn.close()


def test_a_413_to_expect_100_continue_closes_the_connection(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n"
                     b"expect: 100-continue\r\n\r\n")
        sock.settimeout(5)
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower()
        assert sock.recv(100) == b""  # closed: the body it never sent cannot be taken for a next request


def test_an_idle_connection_is_closed_without_an_answer(server):
    """Nothing of a request arrived: no 408 a pooled client could take for the answer to its next request."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(6)
        started = time.monotonic()
        assert sock.recv(100) == b"" and 1.0 < time.monotonic() - started < 5
