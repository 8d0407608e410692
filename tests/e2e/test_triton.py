"""Triton repository: configs parse with Triton's own protobuf; the tokenizer model runs as Triton calls it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtime import SpladeEncoder
from runtime.errors import ModelFolderError
from runtime.triton.repository import TritonConfig, write_repository
from runtime.triton.repository import main as triton_cli

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402  (comes with tritonclient[grpc])

from tests.conftest import REPO  # noqa: E402

TEXTS = ["what is splade", "", "Paris is the capital of France and its largest city. " * 20, "東京"]


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


class FakePbUtils(types.ModuleType):
    """Only the pieces of triton_python_backend_utils the tokenizer model touches (test-only fake)."""

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, array

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class InferenceRequest:
        def __init__(self, inputs):
            self.inputs = inputs

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class TritonError(Exception):
        pass

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return next((t for t in request.inputs if t.name() == name), None)


@pytest.fixture(scope="module")
def repo(fp32_dir, tmp_path_factory):
    return write_repository(fp32_dir, tmp_path_factory.mktemp("triton"), TritonConfig(max_batch_size=16,
                            preferred_batch_sizes=(4, 16), max_queue_delay_us=200, instances=2, threads=1))


def test_configs_parse_and_match_the_manifest(repo, fp32_dir):
    onnx_cfg = parse(repo / "splade_onnx" / "config.pbtxt")
    assert onnx_cfg.backend == "onnxruntime" and onnx_cfg.max_batch_size == 16
    assert [i.name for i in onnx_cfg.input] == ["input_ids", "attention_mask"]
    assert all(list(i.dims) == [-1] and i.data_type == model_config_pb2.TYPE_INT64 for i in onnx_cfg.input)
    assert [(o.name, list(o.dims)) for o in onnx_cfg.output] == [("values", [512]), ("indices", [512])]
    assert list(onnx_cfg.dynamic_batching.preferred_batch_size) == [4, 16]
    assert onnx_cfg.dynamic_batching.max_queue_delay_microseconds == 200
    assert onnx_cfg.instance_group[0].count == 2 and onnx_cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert onnx_cfg.parameters["intra_op_thread_count"].string_value == "1"  # each instance on its own core
    tok = parse(repo / "splade_tokenizer" / "config.pbtxt")
    assert tok.backend == "python" and tok.input[0].data_type == model_config_pb2.TYPE_STRING
    ens = parse(repo / "splade" / "config.pbtxt")
    assert ens.platform == "ensemble"
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["splade_tokenizer", "splade_onnx"]
    assert dict(steps[1].output_map) == {"values": "values", "indices": "indices"}
    session = ort.InferenceSession(str(repo / "splade_onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in onnx_cfg.input]
    assert [o.name for o in session.get_outputs()] == [o.name for o in onnx_cfg.output]


def test_gpu_tensorrt_config(fp32_dir, tmp_path):
    write_repository(fp32_dir, tmp_path, TritonConfig(gpu=True, tensorrt=True, trt_cache_path="/cache"))
    cfg = parse(tmp_path / "splade_onnx" / "config.pbtxt")
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_engine_cache_path"] == "/cache"
    with pytest.raises(ValueError, match="needs --gpu"):
        TritonConfig(tensorrt=True)


def test_fp16_needs_gpu_and_cli(exports, tmp_path):
    with pytest.raises(ModelFolderError, match="fp16"):
        write_repository(exports(precision="fp16"), tmp_path / "r")
    done = subprocess.run([sys.executable, "-m", "runtime.triton", "--model-dir", str(tmp_path / "none"),
                           "--output", str(tmp_path / "r2")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1 and "does not exist" in done.stderr


def test_cli_sets_every_config_field(fp32_dir, tmp_path):
    assert triton_cli(["--model-dir", str(fp32_dir), "--output", str(tmp_path), "--name", "sp", "--instances", "3",
                       "--tokenizer-instances", "4", "--max-batch-size", "8", "--preferred-batch-sizes", "2", "8"]) == 0
    tok = parse(tmp_path / "sp_tokenizer" / "config.pbtxt")
    assert tok.instance_group[0].count == 4 and tok.max_batch_size == 8
    onnx_cfg = parse(tmp_path / "sp_onnx" / "config.pbtxt")
    assert onnx_cfg.instance_group[0].count == 3 and list(onnx_cfg.dynamic_batching.preferred_batch_size) == [2, 8]
    assert (tmp_path / "splade.json").read_text() == (fp32_dir / "splade.json").read_text()


def test_tokenizer_model_and_ensemble_match_the_encoder(repo, fp32_dir, monkeypatch):
    fake = FakePbUtils("triton_python_backend_utils")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    spec = importlib.util.spec_from_file_location("tok_model", repo / "splade_tokenizer" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(repo / "splade_tokenizer"), "model_version": "1"})
    # Triton hands a [batch, 1] TYPE_STRING tensor as a numpy object array of bytes
    requests = [fake.InferenceRequest([fake.Tensor("TEXT", np.array([[t.encode()] for t in TEXTS], dtype=object))]),
                fake.InferenceRequest([fake.Tensor("TEXT", np.array([[b"\xff\xfe"]], dtype=object))])]
    good, bad = model.execute(requests)
    assert bad.error is not None and good.error is None
    outs = {t.name(): t.as_numpy() for t in good.output_tensors}
    ids, mask = outs["input_ids"], outs["attention_mask"]
    assert ids.dtype == np.int64 and ids.shape[0] == len(TEXTS) and ids.shape[1] % 16 == 0
    encoder = SpladeEncoder(fp32_dir, provider="cpu")
    tokenized = encoder.tokenizer.encode(TEXTS)
    for row, seq in enumerate(tokenized.sequences):
        assert ids[row, : mask[row].sum()].tolist() == seq.tolist()
    session = ort.InferenceSession(str(repo / "splade_onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    values, indices = session.run(None, {"input_ids": ids, "attention_mask": mask})
    for row, vec in enumerate(encoder.encode(TEXTS)):
        assert indices[row, : len(vec)].tolist() == vec.indices.tolist()
        assert np.allclose(values[row, : len(vec)], vec.values, atol=1e-5)
