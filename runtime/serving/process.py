"""`python -m runtime serve` in its own process on a free loopback port: for load tests and wire-level tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from runtime.errors import SpladeError


class ServerStartError(SpladeError, RuntimeError):
    """The server process exited, or did not become healthy, before serving; the message holds its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """The real server, started with `flags` and returned once `/health` answers 200.

    Its log goes to a temporary file (a pipe nobody reads would fill with access-log lines and block
    the server). `stop()` sends SIGTERM, waits for the graceful exit and returns what it printed.

    Example:
        >>> server = ServerProcess("models/splade-tiny-fp32", "--max-wait-ms", "2")
        >>> server.url   # http://127.0.0.1:<port>
        >>> server.stop()
    """

    def __init__(self, model: str | Path, *flags: str, ready_timeout: float = 60):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve", "--model", str(model), "--port", str(self.port), *flags],
            stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._healthy():
                return
            if self.proc.poll() is not None:
                raise ServerStartError(self.output())
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait()
        raise ServerStartError("server did not become healthy:\n" + self.output())

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        """SIGTERM, wait for the graceful exit, return everything the server printed."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)  # past uvicorn's 30 s graceful shutdown
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out = self.output()
        self.log.close()
        return out
