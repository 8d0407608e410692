"""Export a Hugging Face SPLADE model to one ONNX graph with pooling and top-k fused in."""

from export.pipeline import ExportConfig, export_model
from export.sources import ModelSourceError
from export.validate import Bounds, ValidationError

__all__ = ["Bounds", "ExportConfig", "ModelSourceError", "ValidationError", "export_model"]
