"""Run a model repository in the real `tritonserver` shipped by the `nvidia-pytriton` wheel (CPU, Python backend).

    python -m runtime.triton.server --repository triton-repo

The wheel carries the server binary, its shared libraries, the Python backend and one backend
stub per Python version, but not ONNX Runtime's Triton backend: run repositories written with
`--onnx-backend python`. The stub embeds Python and imports numpy, tokenizers and onnxruntime from
a Triton environment of its own (`make setup` makes `.venv-triton`; `SPLADE_TRITON_ENV` names
another): the stub is built against numpy 1.x, and with numpy 2 its tensors come out empty or
garbled, so that environment keeps the wheel's `numpy<2` while the project's own has numpy 2.
The embedded Python takes its prefix from the first `python3` on PATH, so that environment's
`bin` goes first; the stub for its Python version is copied into a private backend folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import SpladeError


class TritonServerError(SpladeError, RuntimeError):
    """tritonserver did not start, or stopped before it was ready."""


class TritonUnavailable(TritonServerError):
    """The `nvidia-pytriton` wheel (and so `tritonserver`) cannot run here; the message says why."""


PROJECT_ENV = Path(__file__).resolve().parents[2] / ".venv-triton"
_QUERY = """import json, sys, sysconfig
from importlib.metadata import version
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "purelib": sysconfig.get_paths()["purelib"],
                  "libdir": sysconfig.get_config_var("LIBDIR") if sysconfig.get_config_var("Py_ENABLE_SHARED") else None,
                  "numpy": version("numpy")}))"""


@dataclass(frozen=True)
class TritonDist:
    """A Triton environment: a venv holding nvidia-pytriton, numpy<2, tokenizers and onnxruntime."""

    env: Path  # the venv; its bin/python3 is what the stub embeds
    python: str  # "3.11"
    root: Path  # <site-packages>/pytriton/tritonserver
    libs: Path  # <site-packages>/nvidia_pytriton.libs
    libpython_dir: Path | None  # the env's own libpython, so the stub embeds that exact interpreter

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        return self.root / "python_backend_stubs" / self.python / "triton_python_backend_stub"


def find_dist(env: str | Path | None = None) -> TritonDist:
    """The Triton environment (`env`, else $SPLADE_TRITON_ENV, else the project's `.venv-triton`),
    or TritonUnavailable saying what is missing and how to get it."""
    if not sys.platform.startswith("linux"):
        raise TritonUnavailable(f"the nvidia-pytriton wheel's tritonserver runs on Linux only (this is {sys.platform})")
    env = Path(env or os.environ.get("SPLADE_TRITON_ENV") or PROJECT_ENV)
    python = env / "bin" / "python3"
    if not python.exists():
        raise TritonUnavailable(f"no Triton environment at {env} (`make setup` creates .venv-triton; "
                                "SPLADE_TRITON_ENV names another)")
    done = subprocess.run([str(python), "-c", _QUERY], capture_output=True, text=True)
    if done.returncode != 0:
        raise TritonUnavailable(f"{env}: cannot read the environment ({done.stderr.strip().splitlines()[-1:]})")
    facts = json.loads(done.stdout)
    if int(facts["numpy"].split(".")[0]) >= 2:
        raise TritonUnavailable(f"{env} has numpy {facts['numpy']}: the wheel's Python backend stub needs numpy<2")
    package = Path(facts["purelib"]) / "pytriton"
    dist = TritonDist(env, facts["python"], package / "tritonserver", package.parent / "nvidia_pytriton.libs",
                      Path(facts["libdir"]) if facts["libdir"] else None)
    for needed in (dist.binary, dist.libs, dist.root / "backends" / "python" / "libtriton_python.so"):
        if not needed.exists():
            raise TritonUnavailable(f"{needed}: missing (is nvidia-pytriton installed in {env}?)")
    if not dist.stub.is_file():
        raise TritonUnavailable(f"nvidia-pytriton has no Python backend stub for Python {dist.python} ({dist.stub})")
    return dist


def backend_folder(dist: TritonDist, workdir: Path) -> Path:
    """A backend directory with the wheel's Python backend and the stub for the running Python."""
    python = workdir / "backends" / "python"
    shutil.copytree(dist.root / "backends" / "python", python, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(dist.stub, python / "triton_python_backend_stub")
    return python.parent


def environment(dist: TritonDist, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the Triton env's `bin` first on PATH (the stub's embedded Python
    takes its prefix, so its site-packages, from the first `python3` there), and on LD_LIBRARY_PATH
    that env's own libpython (where it has one) before the wheel's bundled libraries."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(dist.env / "bin"), env.get("PATH", "")])
    for leak in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # the caller's, not the Triton env's
        env.pop(leak, None)
    libdirs = [str(dist.libpython_dir)] if dist.libpython_dir else []
    libdirs.append(str(dist.libs))
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs)
    return env


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (no orphaned servers)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """`tritonserver` in its own process on free loopback ports (HTTP, gRPC, metrics).

    Use as a context manager; the log goes to a file (a pipe nobody reads would fill and block it).

    Example:
        >>> with TritonServer("triton-repo") as server:  # doctest: +SKIP
        ...     tritonclient.http.InferenceServerClient(server.http_url)
    """

    def __init__(self, repository: str | Path, *, env: str | Path | None = None, ready_timeout: float = 60.0,
                 extra_args: tuple[str, ...] = ()):
        self.repository = Path(repository).resolve()
        self.ready_timeout = ready_timeout
        self.extra_args = extra_args
        self.dist = find_dist(env)
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> TritonServer:
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonserver-"))
        self.log_path = self.workdir / "server.log"
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        cmd = [str(self.dist.binary), "--model-repository", str(self.repository),
               "--backend-directory", str(backend_folder(self.dist, self.workdir)),
               "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
               "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
               "--allow-gpu-metrics", "false", "--exit-timeout-secs", "20", "--log-verbose", "0", *self.extra_args]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, env=environment(self.dist), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, preexec_fn=_die_with_parent)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll /v2/health/ready until every model loaded; fail early if the server exits."""
        deadline = time.monotonic() + self.ready_timeout
        proc = self.proc
        assert proc is not None, "start() the server first"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TritonServerError(f"tritonserver exited with {proc.returncode} before it was ready:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TritonServerError(f"tritonserver not ready after {self.ready_timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (Triton drains in-flight requests, then unloads its models); SIGKILL
        only if it outlives `timeout`. Returns the exit code."""
        code = 0
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
        shutil.rmtree(self.workdir / "backends", ignore_errors=True)
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.triton.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", required=True, type=Path, help="written by `python -m runtime.triton --onnx-backend python`")
    p.add_argument("--env", type=Path, help="Triton environment (default $SPLADE_TRITON_ENV, else .venv-triton)")
    p.add_argument("--ready-timeout", type=float, default=120, help="seconds to wait for the models. Default: %(default)s")
    args = p.parse_args(argv)
    try:
        server = TritonServer(args.repository, env=args.env, ready_timeout=args.ready_timeout).start()
    except SpladeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics 127.0.0.1:{server.metrics_port}; "
          f"log {server.log_path}; Ctrl-C stops it")
    try:
        if server.proc is not None:
            server.proc.wait()
    except KeyboardInterrupt:
        pass
    return server.stop()


if __name__ == "__main__":
    sys.exit(main())
