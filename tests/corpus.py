"""Real English texts of mixed length for tests: Python's stdlib docstrings in a fixed shuffled order.

The same texts as benchmarks/corpus.py's `texts` (a copy on purpose: tests import nothing from benchmarks/).
"""

from __future__ import annotations

import importlib
import inspect
import random

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
