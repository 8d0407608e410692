"""Fixtures shared by every tier: real exports of splade-tiny (once per session) and an independent PyTorch reference.

Tiers live in folders and get their marker from it: tests/unit (no export, no server, no
subprocess), tests/integration (real exports, runtime, server on loopback), tests/e2e (clean
install, Ray, Triton, benchmark smoke runs). Heavy imports (torch, export) happen inside the
fixtures, so the unit tier starts without them.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("onnxruntime").setLevel(logging.ERROR)

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")

TEXTS = [
    "what is splade",
    "",
    "   ",
    "how do learned sparse retrieval models expand documents with related terms?",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. " * 3,
    "東京は日本の首都です",
    "a",
    "SPLADE weights every vocabulary term; an inverted index then answers queries quickly. " * 12,
]


def _tier(item) -> str | None:
    parts = Path(str(item.fspath)).relative_to(REPO).parts
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS else None


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier (the folder it lives in), so `-m unit` and friends select by tier,
    and run the tiers in order, fastest first: a broken unit fails the run within seconds."""
    for item in items:
        tier = _tier(item)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
    items.sort(key=lambda item: TIERS.index(_tier(item) or "e2e"))


@pytest.fixture(scope="session")
def tiny_source() -> Path:
    from export.sources import resolve_model

    return resolve_model("splade-tiny").path


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Lazily exported model folders, keyed by (precision, pooling, top_k, max_length); each built once per session."""
    from export import ExportConfig, export_model

    root = tmp_path_factory.mktemp("models")
    made: dict[tuple, Path] = {}

    def get(precision="fp32", pooling="max", top_k=512, max_length=None, validate=True) -> Path:
        key = (precision, pooling, top_k, max_length)
        if key not in made:
            out = root / "-".join(str(k) for k in key)
            export_model(ExportConfig(model="splade-tiny", output=out, precision=precision, pooling=pooling,
                                      top_k=top_k, max_length=max_length, validate=validate))
            made[key] = out
        return made[key]

    return get


@pytest.fixture(scope="session")
def fp32_dir(exports) -> Path:
    return exports()


class TorchReference:
    """SPLADE straight from transformers: one text at a time (no padding), the paper's formula."""

    def __init__(self, source: Path):
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModelForMaskedLM.from_pretrained(source).eval()

    def from_ids(self, ids: list[int], pooling: str = "max") -> np.ndarray:
        import torch

        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0]
        act = torch.log1p(torch.relu(logits))
        return (act.amax(0) if pooling == "max" else act.sum(0)).numpy()

    def ids(self, text: str, max_length: int = 512) -> list[int]:
        return self.tokenizer(text, truncation=True, max_length=max_length)["input_ids"]

    def encode(self, text: str, max_length: int = 512, pooling: str = "max") -> np.ndarray:
        return self.from_ids(self.ids(text, max_length), pooling)

    def windows(self, text: str, max_length: int, stride: int) -> np.ndarray:
        """Over-long text as windows of max_length - 2 tokens overlapping by `stride`, max-merged."""
        body = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        size = max_length - 2
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        starts = range(0, max(len(body) - stride, 1), size - stride)
        rows = [self.from_ids([cls, *body[s: s + size], sep]) for s in starts]
        return np.max(rows, axis=0)


@pytest.fixture(scope="session")
def reference(tiny_source) -> TorchReference:
    return TorchReference(tiny_source)


def assert_matches(vec, expected: np.ndarray, atol: float = 1e-4) -> None:
    """Every non-zero weight of the reference within atol, same support, sorted descending."""
    dense = vec.to_dense(expected.shape[0])
    assert vec.indices.dtype == np.int32 and vec.values.dtype == np.float32
    assert np.all(np.diff(vec.values) <= 0), "values must be sorted descending"
    assert np.all(vec.values > 0)
    assert np.abs(dense - expected).max() <= atol
    strong = expected > atol
    assert np.all(dense[strong] > 0), "a reference term is missing"


def encode_concurrently(batcher, texts: list[str], *, together: bool = False, timeout: float = 120) -> list:
    """Each text from its own thread through `batcher.encode` (all released at once with `together`):
    its vector per text, in order. A caller left unanswered past `timeout` fails the test."""
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(texts))

    def call(i: int) -> None:
        if together:
            barrier.wait()
        results[i] = batcher.encode([texts[i]])[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert len(results) == len(texts), f"{len(texts) - len(results)} callers got no answer"
    return [results[i] for i in range(len(texts))]


@pytest.fixture(scope="session")
def mlm_source(tmp_path_factory) -> Path:
    """A tiny random BERT masked LM folder for sentence-transformers folders to wrap."""
    from tests import tiny_models

    return tiny_models.build("bert", tmp_path_factory.mktemp("st") / "mlm", {"wordpiece": tiny_models.wordpiece()})

