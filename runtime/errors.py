"""Exceptions the runtime raises; all derive from SpladeError so callers can catch one type."""


class SpladeError(Exception):
    """Root of the runtime's errors."""


class ModelFolderError(SpladeError, ValueError):
    """A model folder is missing, malformed, or does not match its manifest."""


class ProviderError(SpladeError, RuntimeError):
    """An explicitly requested execution provider cannot run here."""


class InputTooLongError(SpladeError, ValueError):
    """A text exceeds the model's max length and truncation was refused."""
