"""Tiny random checkpoints of the architectures public sparse models use, exported and compared with PyTorch.

Each has a small trained vocabulary (hundreds of terms: the tracing inputs must come from the
model's own tokenizer) and a 64-token position limit (MPNet and the RoBERTa family reserve two
extra rows for their padding offset).
"""

from __future__ import annotations

import importlib.metadata as md
import json

import numpy as np
import pytest
import torch

from export import ExportConfig, export_model
from export.validate import validation_texts
from runtime import SpladeEncoder
from tests import tiny_models
from tests.tiny_models import MAX_LENGTH

ARCHS = ["bert", "roberta", "xlm-roberta", "modernbert", "mpnet", "distilbert"]
LONG = "sparse retrieval " * 80  # well over MAX_LENGTH tokens in every vocabulary
TEXTS = ["what is splade", "", "Tokyo is the capital of Japan", "an inverted index answers queries", LONG]


@pytest.fixture(scope="session")
def tiny_tokenizers():
    return {"wordpiece": tiny_models.wordpiece(), "bpe": tiny_models.byte_bpe()}


@pytest.fixture(scope="session")
def arch_exports(tmp_path_factory, tiny_tokenizers):
    """(source folder, exported folder, manifest) per architecture, built lazily once per session."""
    root = tmp_path_factory.mktemp("archs")
    made = {}

    def get(arch: str):
        if arch not in made:
            src = tiny_models.build(arch, root / f"{arch}-src", tiny_tokenizers)
            manifest = export_model(ExportConfig(model=str(src), output=root / arch, top_k=0)).manifest
            made[arch] = (src, root / arch, manifest)
        return made[arch]

    return get


def torch_reference(src, texts: list[str], max_length: int) -> np.ndarray:
    """SPLADE max pooling from the transformers model, one text at a time (default attention implementation)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForMaskedLM.from_pretrained(src).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=max_length)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0]
            rows.append(torch.log1p(torch.relu(logits)).amax(0).numpy())
    return np.stack(rows)


def has_architecture(arch: str) -> bool:
    import transformers

    return hasattr(transformers, {"modernbert": "ModernBertForMaskedLM"}.get(arch, "BertForMaskedLM"))


@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_exports_and_matches_pytorch(arch, arch_exports, tiny_tokenizers):
    if not has_architecture(arch):
        pytest.skip(f"transformers {md.version('transformers')} has no {arch}")
    src, folder, manifest = arch_exports(arch)
    vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    assert vocab < 7593, "the vocabulary must be smaller than the ids the old tracing inputs used"
    assert manifest.max_length == MAX_LENGTH, "usable length: the position table minus any padding offset"
    assert manifest.validation["passed"] and manifest.validation["fp32"]["max_abs_diff"] < 1e-4
    encoder = SpladeEncoder(folder, provider="cpu")
    got = np.stack([v.to_dense(vocab) for v in encoder.encode(TEXTS)])
    expected = torch_reference(src, TEXTS, MAX_LENGTH)
    assert np.abs(got - expected).max() < 1e-4
    assert len(encoder.tokenizer.encode([LONG]).sequences[0]) == MAX_LENGTH, "the long text reaches the max length"


def test_validation_always_reaches_the_max_length(tiny_tokenizers, tmp_path):
    from transformers import AutoTokenizer

    tiny_models.save_tokenizer(tiny_tokenizers["wordpiece"], tmp_path, bpe=False)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    for max_length in (64, 8192):  # 8192 (ModernBERT): beyond 40 copies of the passage (~5,000 tokens here)
        lengths = sorted(len(tokenizer(t)["input_ids"]) for t in validation_texts(tokenizer, max_length))
        reaching = [n for n in lengths if n >= max_length]
        assert len(reaching) >= 2, "one text reaching the max length (cut to it exactly), one well past it"
        assert reaching[0] - max_length < 8 and reaching[-1] >= max_length + 64


def test_fusions_per_architecture_are_recorded(arch_exports):
    """What ORT's BERT fusions do per architecture (docs/models.md lists it): BERT gets all of them."""
    _, _, manifest = arch_exports("bert")
    assert manifest.fusions.get("Attention", 0) == 2 and manifest.fusions.get("EmbedLayerNormalization", 0) == 1
    _, _, manifest = arch_exports("roberta")
    assert manifest.fusions.get("SkipLayerNormalization", 0) > 0
