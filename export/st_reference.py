"""Validation references from sentence-transformers itself (`SparseEncoder.encode_query/encode_document`), when installed."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.st_folder import task_prompt

log = logging.getLogger("export")

Reference = Callable[[list[str]], np.ndarray]


def available() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


def version() -> str:
    import sentence_transformers

    return sentence_transformers.__version__


def st_reference(folder: Path, route: str, *, max_length: int | None, prompt: str | None = None) -> Reference:
    """texts -> dense weights [n, vocab] from sentence-transformers, for route "query", "document" or "" (plain).

    `max_length` overrides the model's max_seq_length so both sides truncate alike. `prompt` (the text the
    exported folder's `encode_query` / `encode_document` puts before each text) is passed explicitly, so
    both sides apply the same one; where sentence-transformers would pick another by itself, a warning says so.
    """
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(str(folder), device="cpu", local_files_only=True)
    if max_length is not None:
        model.max_seq_length = max_length
        for module in model.modules():  # 6.x per-task lengths override max_seq_length for encode_<task>
            for attr in ("query_length", "document_length"):
                if isinstance(getattr(module, attr, None), int):
                    setattr(module, attr, max_length)
    encode = {"query": model.encode_query, "document": model.encode_document}.get(route, model.encode)
    if prompt is not None and route in ("query", "document"):
        held = {str(name): text or "" for name, text in model.prompts.items()}
        own = task_prompt(held, model.default_prompt_name, route)  # the same rule, over the prompts it holds
        if own != prompt:
            log.warning("%s: sentence-transformers %s's encode_%s puts %r before each text, the exported folder %r; "
                        "validating with %r on both sides", folder, version(), route, own, prompt, prompt)

    def reference(texts: list[str]) -> np.ndarray:
        rows = encode(texts, batch_size=1, convert_to_tensor=True, convert_to_sparse_tensor=False,
                      show_progress_bar=False, **({} if prompt is None else {"prompt": prompt}))
        return rows.to_dense().float().numpy() if rows.is_sparse else rows.float().numpy()

    return reference

