"""Export errors, under the runtime's `SpladeError` root so one `except SpladeError` catches both sides.

Each also derives from the builtin a caller would expect (ValueError for bad settings or input), so
`except ValueError` keeps working.
"""

from runtime.errors import SpladeError


class ExportError(SpladeError):
    """Root of the export's errors."""


class ExportConfigError(ExportError, ValueError):
    """A setting of `ExportConfig` is out of range, or contradicts the model folder (e.g. its SpladePooling)."""


class ModelSourceError(ExportError, ValueError):
    """The model could not be found locally nor fetched."""


class StFolderError(ExportError, ValueError):
    """A sentence-transformers folder describes a pipeline this exporter cannot reproduce."""


class UnsupportedModelError(ExportError, ValueError):
    """The model loads but cannot become a SPLADE graph (no fast tokenizer, no Linear MLM head, bad length)."""


class OutputFolderError(ExportError):
    """`--output` is refused before any work (the source folder, inside it, or a folder holding other files),
    or writing it failed (an OSError, named with the folder)."""


class ValidationError(ExportError, ValueError):
    """The exported graph differs from PyTorch beyond the bounds."""
