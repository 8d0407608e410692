"""Run exported SPLADE models with ONNX Runtime: no torch, transformers or optimum needed.

Names are imported on first use, so that `runtime.manifest` and `runtime.errors` (the contract
`export` shares) load without onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.backends.options import SessionOptions
    from runtime.core.encoder import SpladeEncoder, SpladeEncoderPair, open_encoder
    from runtime.core.options import EncodeOptions, EncoderOptions
    from runtime.core.pipeline import SparseEncoder
    from runtime.core.sparse import SparseVector, score, to_csr
    from runtime.core.static import StaticQueryEncoder
    from runtime.errors import (
        InputTooLongError,
        InvalidInputError,
        ModelFolderError,
        OverloadedError,
        ProviderError,
        SpladeError,
    )
    from runtime.manifest import Manifest, load_manifest
    from runtime.serving.batcher import DynamicBatcher

_WHERE = {
    "SessionOptions": "runtime.backends.options",
    "SpladeEncoder": "runtime.core.encoder", "SpladeEncoderPair": "runtime.core.encoder",
    "open_encoder": "runtime.core.encoder",
    "EncodeOptions": "runtime.core.options", "EncoderOptions": "runtime.core.options",
    "SparseEncoder": "runtime.core.pipeline", "StaticQueryEncoder": "runtime.core.static",
    "SparseVector": "runtime.core.sparse", "score": "runtime.core.sparse", "to_csr": "runtime.core.sparse",
    **{name: "runtime.errors" for name in ("InputTooLongError", "InvalidInputError", "ModelFolderError",
                                           "OverloadedError", "ProviderError", "SpladeError")},
    "Manifest": "runtime.manifest", "load_manifest": "runtime.manifest",
    "DynamicBatcher": "runtime.serving.batcher",
}

__all__ = [
    "DynamicBatcher", "EncodeOptions", "EncoderOptions", "InputTooLongError", "InvalidInputError",
    "Manifest", "ModelFolderError", "OverloadedError", "ProviderError", "SessionOptions", "SparseEncoder",
    "SparseVector", "SpladeEncoder", "SpladeEncoderPair", "SpladeError", "StaticQueryEncoder",
    "load_manifest", "open_encoder", "score", "to_csr",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
