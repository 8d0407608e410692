"""Export a Hugging Face SPLADE model to one ONNX graph with pooling and top-k fused in.

Names are imported on first use: `python -m runtime.triton` writes text files and must not pay
for (or need) torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from export.config import Bounds, ExportConfig
    from export.errors import (
        ExportConfigError,
        ExportError,
        ModelSourceError,
        OutputFolderError,
        StFolderError,
        UnsupportedModelError,
        ValidationError,
    )
    from export.pipeline import ExportResult, export_model

_WHERE = {
    "Bounds": "export.config",
    "ExportConfig": "export.config", "ExportResult": "export.pipeline", "export_model": "export.pipeline",
    **{name: "export.errors" for name in ("ExportError", "ExportConfigError", "ModelSourceError", "OutputFolderError",
                                          "StFolderError", "UnsupportedModelError", "ValidationError")},
}

__all__ = [
    "Bounds", "ExportConfig", "ExportConfigError", "ExportError", "ExportResult", "ModelSourceError",
    "OutputFolderError", "StFolderError", "UnsupportedModelError", "ValidationError", "export_model",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
