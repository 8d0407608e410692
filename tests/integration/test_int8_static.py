"""int8 with calibrated (static) activation scales: a text's vector is the same alone, in any batch, in any order."""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest

from export.optimize import calibration_texts
from runtime import SpladeEncoder
from tests.conftest import TEXTS


@pytest.fixture(scope="module")
def static_int8(exports):
    return SpladeEncoder(exports("int8"), provider="cpu")


def mixed_texts() -> list[str]:
    """32 texts of mixed lengths: the test texts plus held-out calibration-style lines, queries to passages."""
    extra = [t for t in calibration_texts()[::5]]
    return (TEXTS + extra)[:32]


def test_static_graph_has_no_dynamic_quantization(exports):
    folder = exports("int8")
    graph = onnx.load(str(folder / "model.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert "DynamicQuantizeLinear" not in ops and "MatMulIntegerToFloat" in ops and "QuantizeLinear" in ops
    assert SpladeEncoder(folder, provider="cpu").manifest.quantization == "int8-static"


def test_same_vector_alone_in_a_batch_and_shuffled(static_int8):
    texts = mixed_texts()
    assert len(texts) == 32
    alone = [static_int8.encode([t])[0].to_dense(30522) for t in texts]
    batched = [v.to_dense(30522) for v in static_int8.encode(texts, batch_size=32)]
    order = list(range(32))
    random.Random(7).shuffle(order)
    shuffled = static_int8.encode([texts[i] for i in order], batch_size=32, sort_by_length=False)
    for k, i in enumerate(order):
        assert np.abs(shuffled[k].to_dense(30522) - alone[i]).max() <= 1e-5
    assert max(np.abs(a - b).max() for a, b in zip(alone, batched)) <= 1e-5


def test_dynamic_scales_remain_available_and_do_depend_on_the_batch(tmp_path):
    from export import ExportConfig, export_model

    manifest = export_model(ExportConfig(model="splade-tiny", output=tmp_path / "dyn", precision="int8", int8_scales="dynamic")).manifest
    assert manifest.quantization == "int8-dynamic"
    enc = SpladeEncoder(tmp_path / "dyn", provider="cpu")
    texts = mixed_texts()
    alone = [enc.encode([t])[0].to_dense(30522) for t in texts]
    batched = [v.to_dense(30522) for v in enc.encode(texts, batch_size=32)]
    assert max(np.abs(a - b).max() for a, b in zip(alone, batched)) > 1e-3  # why static is the default


@pytest.mark.parametrize("max_length", [128, 256])
def test_static_int8_passes_validation_at_each_max_length(exports, max_length):
    folder = exports("int8", max_length=max_length)
    manifest = SpladeEncoder(folder, provider="cpu").manifest
    assert manifest.validation["passed"] is True and manifest.validation["int8"]["top32_overlap"] >= 0.9
