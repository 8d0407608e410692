"""Run exported SPLADE models with ONNX Runtime: no torch, transformers or optimum needed."""

from runtime.dynamic import DynamicBatcher
from runtime.encoder import SpladeEncoder, SpladeEncoderPair
from runtime.errors import InputTooLongError, ModelFolderError, ProviderError, SpladeError
from runtime.manifest import Manifest, load_manifest
from runtime.sparse import SparseVector, score, to_csr

__all__ = [
    "DynamicBatcher", "InputTooLongError", "Manifest", "ModelFolderError", "ProviderError", "SparseVector",
    "SpladeEncoder", "SpladeEncoderPair", "SpladeError", "load_manifest", "score", "to_csr",
]
