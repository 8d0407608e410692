"""Backends: ONNX Runtime (TensorRT, CUDA, CPU) and OpenVINO; each runs a padded Batch and knows nothing of requests."""

from __future__ import annotations

from pathlib import Path

from runtime.backends.options import SessionOptions, default_threads
from runtime.manifest import Manifest


def create_backend(model_path: Path, manifest: Manifest, session: SessionOptions | None = None):
    """The backend for `session.provider`: ONNX Runtime's providers, or OpenVINO's own runtime when
    named ("auto" never picks it). Imported here, on first use, so neither loads unless it runs."""
    session = session or SessionOptions()
    if session.provider == "openvino":
        from runtime.backends.openvino import OpenVINOBackend

        return OpenVINOBackend(model_path, manifest, threads=session.threads or default_threads(),
                               options=(session.provider_options or {}).get("openvino"))
    from runtime.backends.ort import Backend

    return Backend(model_path, manifest, session)
