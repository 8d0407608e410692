"""Run exported SPLADE models with ONNX Runtime: no torch, transformers or optimum needed.

Names are imported on first use, so that `runtime.manifest` and `runtime.errors` (the contract
`export` shares) load without onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.dynamic import DynamicBatcher
    from runtime.encoder import SpladeEncoder, SpladeEncoderPair
    from runtime.errors import InputTooLongError, ModelFolderError, ProviderError, SpladeError
    from runtime.manifest import Manifest, load_manifest
    from runtime.sparse import SparseVector, score, to_csr

_WHERE = {
    "DynamicBatcher": "runtime.dynamic",
    "SpladeEncoder": "runtime.encoder", "SpladeEncoderPair": "runtime.encoder",
    "InputTooLongError": "runtime.errors", "ModelFolderError": "runtime.errors",
    "ProviderError": "runtime.errors", "SpladeError": "runtime.errors",
    "Manifest": "runtime.manifest", "load_manifest": "runtime.manifest",
    "SparseVector": "runtime.sparse", "score": "runtime.sparse", "to_csr": "runtime.sparse",
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
