"""Start and stop `python -m runtime serve` as a subprocess on a free loopback port (tests, load generator)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The real server in its own process; its log goes to a temporary file (a pipe nobody reads
    would fill up with access-log lines and block the server)."""

    def __init__(self, model: Path, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve", "--model", str(model), "--port", str(self.port), *flags],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.output())
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        """SIGTERM, wait for the graceful exit, return everything the server printed."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        out = self.output()
        self.log.close()
        return out
