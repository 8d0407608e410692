"""A real Triton server (the nvidia-pytriton wheel's tritonserver) running the `--onnx-backend python`
repository of splade-tiny on loopback, checked with tritonclient over HTTP and gRPC against SpladeEncoder."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks import loadgen, triton_load
from benchmarks.httpclient import drive
from runtime import SpladeEncoder
from runtime.triton.repository import TritonConfig, write_repository
from runtime.triton.server import TritonServer, TritonUnavailable
from tests import corpus
from tests.conftest import TEXTS

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed (`make setup`)")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (`make setup`)")
from tritonclient.utils import InferenceServerException  # noqa: E402

DOCS = [t for t in corpus.texts(300) if len(t) > 1500][:3]  # several hundred tokens, truncated at 512
MIXED = TEXTS + DOCS
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repo(fp32_dir, tmp_path_factory) -> Path:
    cfg = TritonConfig(onnx_backend="python", instances=2, threads=1)  # two instances, each on one core
    return write_repository(fp32_dir, tmp_path_factory.mktemp("triton-python"), cfg)


@pytest.fixture(scope="module")
def server(repo):
    """The server for this module; CI (CI=true) fails where it cannot run, elsewhere it is skipped."""
    try:
        server = TritonServer(repo, ready_timeout=60)
    except TritonUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"real Triton server required on CI: {exc}")
        pytest.skip(f"real Triton server unavailable: {exc}")
    with server:
        yield server


@pytest.fixture(scope="module")
def encoder(fp32_dir) -> SpladeEncoder:
    return SpladeEncoder(fp32_dir, provider="cpu")


def text_input(module, texts: list[str]):
    tensor = module.InferInput("TEXT", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
    return tensor


def assert_same(values: np.ndarray, indices: np.ndarray, vec, vocab: int) -> None:
    """One Triton row (top-k values, indices; zeros past the support) equals the encoder's vector."""
    dense = np.zeros(vocab, dtype=np.float32)
    keep = values > 0
    dense[indices[keep]] = values[keep]
    assert int(keep.sum()) == len(vec)
    assert np.abs(dense - vec.to_dense(vocab)).max() <= 1e-4


def test_python_variant_differs_only_in_the_onnx_backend(repo, fp32_dir, tmp_path):
    """Same inputs, outputs, batching, tokenizer and ensemble as the onnxruntime variant; the graph
    runs through the runtime's own modules, copied next to it, with the provider planned from --gpu."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    def parse(path: Path):
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())

    other = write_repository(fp32_dir, tmp_path / "ort", TritonConfig(instances=2))
    py_cfg, ort_cfg = parse(repo / "splade_onnx" / "config.pbtxt"), parse(other / "splade_onnx" / "config.pbtxt")
    assert (py_cfg.backend, ort_cfg.backend) == ("python", "onnxruntime")
    ort_cfg.backend = "python"
    assert py_cfg == ort_cfg
    for name in ("splade/config.pbtxt", "splade_tokenizer/config.pbtxt", "splade_tokenizer/1/model.py"):
        assert (repo / name).read_text() == (other / name).read_text()
    version = repo / "splade_onnx" / "1"
    vendored = {p.relative_to(version / "runtime").as_posix() for p in (version / "runtime").rglob("*.py")}
    assert vendored >= {"backends/ort.py", "core/batching.py", "errors.py", "manifest.py"}
    settings = json.loads((version / "onnx_settings.json").read_text())
    assert settings["provider"] == "cpu" and settings["threads"] == 1  # each instance's session: one thread
    gpu = write_repository(fp32_dir, tmp_path / "gpu", TritonConfig(onnx_backend="python", gpu=True, tensorrt=True))
    gpu_cfg = parse(gpu / "splade_onnx" / "config.pbtxt")
    assert gpu_cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert not gpu_cfg.optimization.HasField("execution_accelerators")  # TensorRT comes from the runtime's plan
    gpu_settings = json.loads((gpu / "splade_onnx" / "1" / "onnx_settings.json").read_text())
    assert gpu_settings["provider"] == "tensorrt" and gpu_settings["cache"] == "/tmp/splade-trt-cache"
    with pytest.raises(ValueError, match="onnx_backend"):
        TritonConfig(onnx_backend="tensorrt")
    done = subprocess.run([sys.executable, "-m", "runtime.triton", "--model-dir", str(fp32_dir), "--output",
                           str(tmp_path / "cli"), "--onnx-backend", "python"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert parse(tmp_path / "cli" / "splade_onnx" / "config.pbtxt").backend == "python"


def test_http_and_grpc_answers_equal_the_encoder(server, encoder):
    expected = encoder.encode(MIXED)
    vocab = encoder.manifest.vocab_size
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert http.is_model_ready("splade") and grpc.is_model_ready("splade")
        whole = http.infer("splade", [text_input(httpclient, MIXED)])  # one request, the whole mix
        for row, vec in enumerate(expected):
            assert_same(whole.as_numpy("values")[row], whole.as_numpy("indices")[row], vec, vocab)
        for text, vec in zip(MIXED, expected):  # one request per text over gRPC
            r = grpc.infer("splade", [text_input(grpcclient, [text])])
            assert_same(r.as_numpy("values")[0], r.as_numpy("indices")[0], vec, vocab)
    finally:
        http.close()
        grpc.close()


def batch_counts(stats: dict) -> dict[int, int]:
    """{batch size: executions} of splade_onnx from Triton's statistics endpoint."""
    model = next(m for m in stats["model_stats"] if m["name"] == "splade_onnx")
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model.get("batch_stats", [])}


def test_concurrent_requests_get_their_own_answers_in_batches(server, encoder):
    texts = [f"question {i}: " + t[: 40 + 7 * (i % 50)] for i, t in enumerate(corpus.texts(200, seed=1))]
    expected = encoder.encode(texts)
    vocab = encoder.manifest.vocab_size
    stats_url = f"http://{server.http_url}/v2/models/splade_onnx/stats"

    async def one(client: httpx.AsyncClient, text: str) -> dict:
        body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}
        r = await client.post("/v2/models/splade/infer", json=body)
        assert r.status_code == 200, r.text
        return {o["name"]: o["data"] for o in r.json()["outputs"]}

    async def all_at_once() -> list[dict]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=f"http://{server.http_url}", timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client, t) for t in texts))

    before = batch_counts(httpx.get(stats_url).json())
    answers = asyncio.run(all_at_once())
    after = batch_counts(httpx.get(stats_url).json())
    for answer, vec in zip(answers, expected):
        assert_same(np.array(answer["values"], dtype=np.float32), np.array(answer["indices"]), vec, vocab)
    ran = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(size * count for size, count in ran.items()) == len(texts)
    assert max(size for size, count in ran.items() if count) > 1, f"no batch formed: {ran}"


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, encoder):
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for module, client in ((httpclient, http), (grpcclient, grpc)):
            wrong_name = module.InferInput("TEXTS", [1, 1], "BYTES")
            wrong_name.set_data_from_numpy(np.array([[b"what is splade"]], dtype=object))
            with pytest.raises(InferenceServerException, match="TEXTS"):
                client.infer("splade", [wrong_name])
            wrong_type = module.InferInput("TEXT", [1, 1], "INT64")
            wrong_type.set_data_from_numpy(np.array([[7]], dtype=np.int64))
            with pytest.raises(InferenceServerException, match="(?i)data.?type|INT64"):
                client.infer("splade", [wrong_type])
            no_text = module.InferInput("TEXT", [0, 1], "BYTES")
            no_text.set_data_from_numpy(np.zeros((0, 1), dtype=object))
            with pytest.raises(InferenceServerException):
                client.infer("splade", [no_text])
            too_many = module.InferInput("TEXT", [33, 1], "BYTES")
            too_many.set_data_from_numpy(np.array([[b"a"]] * 33, dtype=object))
            with pytest.raises(InferenceServerException, match="batch-size must be <= 32"):
                client.infer("splade", [too_many])
            bad_utf8 = module.InferInput("TEXT", [1, 1], "BYTES")
            bad_utf8.set_data_from_numpy(np.array([[b"\xff\xfe"]], dtype=object))
            with pytest.raises(InferenceServerException, match="utf-8"):
                client.infer("splade", [bad_utf8])
        # an empty string is text: the [CLS] [SEP] vector, as SpladeEncoder and our server give it
        (vec,) = encoder.encode([""])
        r = grpc.infer("splade", [text_input(grpcclient, [""])])
        assert_same(r.as_numpy("values")[0], r.as_numpy("indices")[0], vec, encoder.manifest.vocab_size)
        assert server.proc.poll() is None
        assert http.is_server_live() and http.is_model_ready("splade")
    finally:
        http.close()
        grpc.close()


def test_load_generator_drives_triton_and_checks_every_answer(server, encoder):
    """benchmarks.triton_load's Triton row: the same keep-alive clients as our rows, answers in our server's shape."""
    texts = loadgen.workload(24)
    host, port = server.http_url.split(":")
    requests = [triton_load.triton_request(server.http_url, t) for t in texts]
    outcomes, _ = asyncio.run(drive(host, int(port), requests, 4, 60))
    assert all(o is not None and o.status == 200 for o in outcomes)
    answers = [triton_load.triton_answer(o.json()) for o in outcomes]
    assert all(len(a) == 1 for a in answers)
    expected = encoder.encode(texts)
    assert all(loadgen.agrees(a[0], vec, encoder.manifest.vocab_size, exact=True) for a, vec in zip(answers, expected))
    assert not loadgen.agrees(answers[0][0], expected[1], encoder.manifest.vocab_size, exact=True) or texts[0] == texts[1]


def processes_under(folder: Path) -> list[str]:
    """Command lines of live processes started from `folder` (the server and its backend stubs)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and str(folder) in cmdline:
            found.append(cmdline)
    return found


def test_sigterm_stops_the_server_cleanly(server):
    assert processes_under(server.workdir), "the backend stubs should be running"
    start = time.monotonic()
    assert server.stop() == 0, server.output()[-2000:]
    assert time.monotonic() - start < 20
    assert server.proc.poll() == 0
    assert processes_under(server.workdir) == []
    assert "successfully unloaded 'splade_onnx'" in server.output()
