"""Benchmark inputs: real English texts of mixed length (Python's stdlib docstrings) and fixed token batches."""

from __future__ import annotations

import importlib
import inspect
import random

import numpy as np

_MODULES = ("json", "os", "re", "collections", "itertools", "functools", "pathlib", "subprocess", "argparse",
            "logging", "threading", "asyncio", "datetime", "decimal", "fractions", "statistics", "string",
            "textwrap", "dataclasses", "heapq", "bisect", "random", "shutil", "tempfile", "csv",
            "zipfile", "tarfile", "gzip", "socket", "http.client", "urllib.request", "email.message",
            "sqlite3", "unittest", "doctest", "pickle", "copy", "enum", "contextlib", "inspect", "ast")


def texts(n: int, seed: int = 0) -> list[str]:
    """n docstring paragraphs, a few words to several hundred tokens, in a fixed shuffled order."""
    seen: set[str] = set()
    pool: list[str] = []
    for name in _MODULES:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
            if not doc or doc in seen:
                continue
            seen.add(doc)
            flat = " ".join(doc.split())
            if len(flat) > 40:
                pool.append(flat[:3000])
    random.Random(seed).shuffle(pool)
    if len(pool) < n:
        pool = (pool * (n // max(len(pool), 1) + 1))
    return pool[:n]


def token_batch(tokenizer, *, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """A [batch, length] batch of real text, every row exactly `length` tokens (no padding)."""
    long_texts = [t for t in texts(400) if len(t) > 4 * length] or texts(400)
    rows = []
    for text in long_texts:
        ids = tokenizer(text, truncation=True, max_length=length)["input_ids"]
        if len(ids) == length:
            rows.append(ids)
        if len(rows) == batch:
            break
    while len(rows) < batch:  # short corpus: repeat real rows
        rows.append(rows[len(rows) % max(len(rows), 1)])
    ids = np.asarray(rows, dtype=np.int64)
    return ids, np.ones_like(ids)
