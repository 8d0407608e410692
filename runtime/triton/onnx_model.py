"""Triton Python-backend model: input_ids, attention_mask -> the graph's outputs, through ONNX Runtime.

Copied as `1/model.py` of `<name>_onnx` by `python -m runtime.triton --onnx-backend python`, for a
Triton without ONNX Runtime's own backend. The session comes from the runtime's `Backend` (provider
planning, session options, io binding), vendored next to this file as the `runtime` package, so
the model needs only `numpy` and `onnxruntime` (or `onnxruntime-gpu`) where Triton runs.
Triton's dynamic batcher hands `execute` several requests; those of one width run as one batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the vendored runtime wins over any installed one

from runtime.backends.options import SessionOptions  # noqa: E402
from runtime.backends.ort import Backend  # noqa: E402
from runtime.core.batching import Batch  # noqa: E402
from runtime.errors import InvalidInputError, ModelFolderError  # noqa: E402
from runtime.manifest import Manifest, sha256_of  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        settings = json.loads((HERE / "onnx_settings.json").read_text())
        self.manifest = Manifest.from_dict(json.loads((HERE / "splade.json").read_text()))
        if sha256_of(HERE / self.manifest.model_file) != self.manifest.sha256:
            raise ModelFolderError(f"{HERE / self.manifest.model_file}: sha256 does not match splade.json; rewrite the repository")
        options = None
        if settings["provider"] != "cpu":  # KIND_GPU instances: the device Triton gave this instance
            options = {settings["provider"]: {"device_id": int(args.get("model_instance_device_id") or 0)}}
        session = SessionOptions(provider=settings["provider"], threads=settings.get("threads"),
                                 max_batch_size=int(settings["max_batch_size"]), provider_options=options,
                                 cache_dir=Path(settings["cache"]) if settings.get("cache") else None)
        self.backend = Backend(HERE / self.manifest.model_file, self.manifest, session)
        self.names = list(self.manifest.inputs)

    def read(self, request) -> tuple[np.ndarray, np.ndarray]:
        """The request's [batch, width] ids and mask, checked beyond what Triton's config enforces."""
        arrays = []
        for name in self.names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise InvalidInputError(f"missing input {name!r}")
            arrays.append(tensor.as_numpy())
        ids, mask = arrays
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise InvalidInputError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be one [batch, width] shape")
        if ids.shape[1] > self.manifest.max_length:
            raise InvalidInputError(f"width {ids.shape[1]} exceeds the model's max length {self.manifest.max_length}")
        return ids.astype(np.int64, copy=False), mask.astype(np.int64, copy=False)

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for i, request in enumerate(requests):
            try:
                ids, mask = self.read(request)
                groups.setdefault(ids.shape[1], []).append((i, ids, mask))
            except Exception as exc:  # one bad request must not fail the others
                responses[i] = error(exc)
        for members in groups.values():
            try:
                ids = np.concatenate([m[1] for m in members])
                mask = np.concatenate([m[2] for m in members])
                outputs = self.backend.run(Batch(ids, mask, np.arange(len(ids))))
                start = 0
                for i, rows, _ in members:
                    stop = start + len(rows)
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[
                        pb_utils.Tensor(name, np.ascontiguousarray(out[start:stop]))
                        for name, out in zip(self.backend.output_names, outputs)])
                    start = stop
            except Exception as exc:
                for i, _, _ in members:
                    responses[i] = error(exc)
        return responses


def error(exc: Exception):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
