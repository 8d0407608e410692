"""OpenVINO's own runtime behind the Backend interface: the exported fp32 folder run in bf16 where the CPU has it.

Chosen over ONNX Runtime's OpenVINO execution provider because the `openvino` wheel installs beside our
CPU `onnxruntime` (the EP ships as an alternative `onnxruntime-openvino` wheel that replaces it), and its
ONNX frontend reads ORT's fused contrib ops (Attention, SkipLayerNormalization, ...) so the whole graph runs
in one engine. See docs/cpu-precisions.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.core.batching import Batch
from runtime.errors import ProviderError
from runtime.manifest import Manifest

log = logging.getLogger("runtime")

# bf16 runs on dynamic shapes keep one buffer per vocabulary chunk alive ([rows, tokens, chunk] each, so
# the chunked projection's memory advantage is lost: 1.17 GB peak for splade-tiny 32×256 against 0.26 GB
# with ORT fp32). Typing the projection bf16 in the graph halves that; splitting each batch into runs of at
# most this many tokens bounds the rest (rows are independent, so the vectors do not change).
BF16_RUN_TOKENS = 2048
OUR_KEYS = ("max_run_tokens",)


def native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo's flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class OpenVINOPlan:
    """What compile_model gets, plus our own run budget; built from the options alone (testable)."""

    config: dict[str, Any]
    max_run_tokens: int  # 0: one run per batch

    @property
    def precision(self) -> str:
        return str(self.config["INFERENCE_PRECISION_HINT"])


def plan_openvino(threads: int, extra: Mapping[str, Any] | None = None, *, bf16: bool | None = None) -> OpenVINOPlan:
    """bf16 where native, else f32; `extra` holds OpenVINO CPU properties (and our `max_run_tokens`) on top.

    A None value removes one of ours (as with the ONNX Runtime providers' options).
    """
    bf16 = native_bf16() if bf16 is None else bf16
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    extra = dict(extra or {})
    budget = extra.pop("max_run_tokens", BF16_RUN_TOKENS if config["INFERENCE_PRECISION_HINT"] == "bf16" else 0)
    config.update(extra)
    config = {k: v for k, v in config.items() if v is not None}
    if "INFERENCE_PRECISION_HINT" not in config:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if str(config["INFERENCE_PRECISION_HINT"]).lower() not in ("bf16", "f32", "f16"):
        raise ProviderError(f"openvino INFERENCE_PRECISION_HINT must be bf16, f32 or f16; got {config['INFERENCE_PRECISION_HINT']!r}")
    if budget is None:
        budget = 0
    if not isinstance(budget, int) or budget < 0:
        raise ProviderError(f"openvino max_run_tokens must be an int >= 0 (0: no split); got {budget!r}")
    return OpenVINOPlan(config, budget)


def type_projection_bf16(model) -> int:
    """Make each vocabulary chunk's MatMul (-> Reshape) -> ReduceMax/ReduceSum explicitly bf16, converting after
    the reduction.

    Left to itself, the CPU plugin runs the chunk's MatMul in bf16 but the reduction (part of the graph's f32
    tail) in f32, with a [rows, tokens, chunk] bf16->f32 reorder between them that dynamic shapes never reuse.
    Max pooling over bf16 values is exact. A vocabulary-major export reshapes the product to [chunk, batch,
    tokens] before the reduction. Sum pooling's ReduceSum reads the masked activation, not the product: left as is.
    Returns how many chunks were retyped.
    """
    import openvino as ov
    from openvino import opset13 as ops

    done = 0
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        if kind not in ("ReduceMax", "ReduceSum"):
            continue
        matmul = reshape = node.input_value(0).get_node()
        if matmul.get_type_name() == "Reshape":
            matmul = reshape.input_value(0).get_node()
        else:
            reshape = None
        if matmul.get_type_name() != "MatMul":
            continue
        attrs = matmul.get_attributes()
        product = ops.matmul(ops.convert(matmul.input_value(0), ov.Type.bf16), ops.convert(matmul.input_value(1), ov.Type.bf16),
                             attrs["transpose_a"], attrs["transpose_b"])
        if reshape is not None:
            product = ops.reshape(product, reshape.input_value(1), reshape.get_attributes()["special_zero"])
        reduce = ops.reduce_max if kind == "ReduceMax" else ops.reduce_sum
        back = ops.convert(reduce(product, node.input_value(1), node.get_attributes()["keep_dims"]), ov.Type.f32)
        for target in list(node.output(0).get_target_inputs()):
            target.replace_source_output(back.output(0))
        done += 1
    return done


class OpenVINOBackend:
    """An OpenVINO compiled model on the CPU; `run(Batch)` -> output arrays, as Backend does."""

    provider = "openvino"

    def __init__(self, model_path: Path, manifest: Manifest, *, threads: int,
                 options: Mapping[str, Any] | None = None):
        try:
            import openvino as ov
        except ImportError as exc:
            raise ProviderError("provider 'openvino' needs the `openvino` package: pip install 'splade-onnx[openvino]'") from exc
        self.manifest = manifest
        self.plan = plan_openvino(threads, options)
        self.skipped: dict[str, str] = {}
        core = ov.Core()
        model = core.read_model(str(model_path))
        if self.plan.precision == "bf16" and manifest.precision == "fp32":
            log.debug("retyped %d projection chunks to bf16", type_projection_bf16(model))
        try:
            self.compiled = core.compile_model(model, "CPU", self.plan.config)
        except RuntimeError as exc:
            raise ProviderError(f"OpenVINO could not compile {model_path}: {str(exc).splitlines()[0][:300]}") from exc
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        inputs = {i.get_any_name() for i in self.compiled.inputs}
        if inputs != set(manifest.inputs) or tuple(self.output_names) != manifest.outputs:
            raise ProviderError(f"{model_path}: graph inputs/outputs do not match the manifest")
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # an InferRequest serves one call at a time
        log.info("running on OpenVINO %s CPU (%s%s)", ov.__version__, self.plan.precision,
                 f", runs of at most {self.plan.max_run_tokens} tokens" if self.plan.max_run_tokens else "")

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            result = self.request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
            return [np.array(result[out], copy=True) for out in self.compiled.outputs]

    def run(self, batch: Batch) -> list[np.ndarray]:
        rows, longest = batch.input_ids.shape
        budget = self.plan.max_run_tokens
        step = max(1, budget // max(longest, 1)) if budget else rows
        if step >= rows:
            return self._run(batch.input_ids, batch.attention_mask)
        parts = [self._run(batch.input_ids[i:i + step], batch.attention_mask[i:i + step]) for i in range(0, rows, step)]
        return [np.concatenate(chunks) for chunks in zip(*parts)]
