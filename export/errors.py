"""Export errors, under the runtime's `SpladeError` root so one `except SpladeError` catches both sides."""

from runtime.errors import SpladeError


class ExportError(SpladeError):
    """Root of the export's errors."""


class ModelSourceError(ExportError, ValueError):
    """The model could not be found locally nor fetched."""


class UnsupportedModelError(ExportError, ValueError):
    """The model loads but cannot become a SPLADE graph (no fast tokenizer, no Linear MLM head, bad length)."""


class ValidationError(ExportError, ValueError):
    """The exported graph differs from PyTorch beyond the bounds."""
