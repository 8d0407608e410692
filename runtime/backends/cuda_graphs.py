"""CUDA graph capture and replay for bucketed batch shapes (ONNX Runtime's `enable_cuda_graph`).

A 10-token BERT-base query is a few microseconds of arithmetic behind a few hundred kernel launches
and ONNX Runtime's per-node host work. ORT can capture a run as one CUDA graph and replay it, but a
graph is fixed to its shapes and to the device addresses of its inputs and outputs. So each bucket
shape (runtime.core.batching.Buckets) gets its own graph id, device-resident input and output buffers
bound once, and every batch that fits the bucket is padded to it, copied into those buffers and
replayed. Batches that fit no bucket run normally in the same session (graph id -1).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from runtime.core.batching import Batch, Buckets, pad_to

log = logging.getLogger("runtime")

SKIP_GRAPH = "-1"  # ORT's gpu_graph_id for "run without capture or replay"
_NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}


def graph_run_options(graph_id: str, base: dict[str, str]) -> ort.RunOptions:
    options = ort.RunOptions()
    for key, value in {**base, "gpu_graph_id": graph_id}.items():
        options.add_run_config_entry(key, value)
    return options


@dataclass
class _Slot:
    """One bucket's captured graph: its id, bound device buffers and run options."""

    graph_id: str
    inputs: dict[str, ort.OrtValue]
    outputs: list[ort.OrtValue]
    binding: ort.IOBinding
    run_options: ort.RunOptions


class CudaGraphs:
    """Runs batches that fit a bucket through one captured CUDA graph per bucket shape.

    Calls are serialized (a graph's buffers are shared by every caller of its bucket, and ORT's
    replay is not safe to overlap with other runs of the session).
    """

    def __init__(self, session: ort.InferenceSession, *, buckets: Buckets, device_id: int, pad_id: int,
                 output_widths: dict[str, int], base_config: dict[str, str]):
        self.session = session
        self.buckets = buckets
        self.device_id = device_id
        self.pad_id = pad_id
        self.outputs = [(o.name, _NUMPY[o.type], output_widths[o.name]) for o in session.get_outputs()]
        self.base_config = base_config
        self.slots: dict[tuple[int, int], _Slot] = {}
        self.lock = threading.Lock()
        self.disabled: str | None = None

    def _slot(self, shape: tuple[int, int]) -> _Slot:
        slot = self.slots.get(shape)
        if slot is None:
            n, length = shape
            zeros = np.zeros(shape, dtype=np.int64)
            inputs = {name: ort.OrtValue.ortvalue_from_numpy(zeros, "cuda", self.device_id)
                      for name in ("input_ids", "attention_mask")}
            outputs = [ort.OrtValue.ortvalue_from_shape_and_type([n, width], dtype, "cuda", self.device_id)
                       for _, dtype, width in self.outputs]
            binding = self.session.io_binding()
            for name, value in inputs.items():
                binding.bind_ortvalue_input(name, value)
            for (name, _, _), value in zip(self.outputs, outputs):
                binding.bind_ortvalue_output(name, value)
            graph_id = str(len(self.slots) + 1)  # 0 is ORT's default id; ours start at 1
            slot = _Slot(graph_id, inputs, outputs, binding, graph_run_options(graph_id, self.base_config))
            self.slots[shape] = slot
        return slot

    def run(self, batch: Batch) -> list[np.ndarray] | None:
        """Outputs for `batch`, or None when it fits no bucket (or graphs turned out not to work here)."""
        n, length = batch.input_ids.shape
        shape = self.buckets.fit(n, length)
        if shape is None or self.disabled:
            return None
        padded = pad_to(batch, *shape, self.pad_id)
        with self.lock:
            slot = self._slot(shape)
            try:
                slot.inputs["input_ids"].update_inplace(padded.input_ids)
                slot.inputs["attention_mask"].update_inplace(padded.attention_mask)
                self.session.run_with_iobinding(slot.binding, slot.run_options)
                return [value.numpy()[:n] for value in slot.outputs]
            except Exception as exc:  # capture refused (e.g. a node outside CUDA): run without graphs from now on
                self.disabled = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                log.warning("CUDA graphs disabled: %s", self.disabled)
                return None
