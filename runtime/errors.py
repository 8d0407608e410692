"""The one error tree of both packages: every error either raises derives from SpladeError.

Each also derives from the builtin a caller would expect (ValueError for bad input, TypeError for a
wrong type, RuntimeError for a failure while running), so `except ValueError` keeps working.
"""


class SpladeError(Exception):
    """Root of every error the runtime and the exporter raise."""


class InvalidInputError(SpladeError, ValueError):
    """A text or an argument is out of range or malformed (the message names which: `texts[3]`, `top_k`)."""


class InputTypeError(SpladeError, TypeError):
    """A text or an argument has the wrong type (the message names which)."""


class InputTooLongError(InvalidInputError):
    """A text exceeds what its truncation mode allows (over max_length with "refuse", over max_windows)."""


class ModelFolderError(SpladeError, ValueError):
    """A model folder is missing, malformed, or does not match its manifest."""


class ProviderError(SpladeError, RuntimeError):
    """An execution provider name is unknown, or an explicitly requested one cannot run here."""


class UnknownProviderError(ProviderError, ValueError):
    """A provider name that is not one of ours."""


class InferenceError(SpladeError, RuntimeError):
    """A run produced no usable vectors (non-finite weights, a row count that does not match the batch)."""


class OverloadedError(SpladeError, RuntimeError):
    """Too much work in flight (HTTP 429), or the batcher is closed and takes no more."""


class CorpusError(InvalidInputError):
    """A corpus input or output file is not usable (the message names `file:line`); nothing was written."""
