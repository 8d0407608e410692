"""Validation references from sentence-transformers itself (`SparseEncoder.encode_query/encode_document`), when installed."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("export")

Reference = Callable[[list[str]], np.ndarray]


def available() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


def version() -> str:
    import sentence_transformers

    return sentence_transformers.__version__


def st_reference(folder: Path, route: str, *, max_length: int | None) -> Reference:
    """texts -> dense weights [n, vocab] from sentence-transformers, for route "query", "document" or "" (plain).

    `max_length` overrides the model's max_seq_length so both sides truncate alike.
    """
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(str(folder), device="cpu", local_files_only=True)
    if max_length is not None and route != "query":
        model.max_seq_length = max_length
    encode = {"query": model.encode_query, "document": model.encode_document}.get(route, model.encode)

    def reference(texts: list[str]) -> np.ndarray:
        rows = encode(texts, batch_size=1, convert_to_tensor=True, convert_to_sparse_tensor=False,
                      show_progress_bar=False)
        return rows.to_dense().float().numpy() if rows.is_sparse else rows.float().numpy()

    return reference
