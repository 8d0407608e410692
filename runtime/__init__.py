"""Run exported SPLADE models with ONNX Runtime: no torch, transformers or optimum needed.

Names are imported on first use, so that `runtime.manifest` and `runtime.errors` (the contract
`export` shares) load without onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.core.encoder import SpladeEncoder, SpladeEncoderPair
    from runtime.core.sparse import SparseVector, score, to_csr
    from runtime.errors import InputTooLongError, ModelFolderError, ProviderError, SpladeError
    from runtime.manifest import Manifest, load_manifest
    from runtime.serving.batcher import DynamicBatcher

_WHERE = {
    "DynamicBatcher": "runtime.serving.batcher",
    "SpladeEncoder": "runtime.core.encoder", "SpladeEncoderPair": "runtime.core.encoder",
    "InputTooLongError": "runtime.errors", "ModelFolderError": "runtime.errors",
    "ProviderError": "runtime.errors", "SpladeError": "runtime.errors",
    "Manifest": "runtime.manifest", "load_manifest": "runtime.manifest",
    "SparseVector": "runtime.core.sparse", "score": "runtime.core.sparse", "to_csr": "runtime.core.sparse",
}

__all__ = [
    "DynamicBatcher", "InputTooLongError", "Manifest", "ModelFolderError", "ProviderError", "SparseVector",
    "SpladeEncoder", "SpladeEncoderPair", "SpladeError", "load_manifest", "score", "to_csr",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
