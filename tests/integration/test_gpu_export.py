"""The GPU export setting `max_reduction="globalmaxpool"`: the max over tokens as GlobalMaxPool over
[batch, chunk, tokens] blocks; same vectors as the reference formula, on the CPU provider."""

from __future__ import annotations

import onnx
import pytest

from export import ExportConfig, export_model
from runtime import SpladeEncoder
from tests.conftest import TEXTS, assert_matches


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    root = tmp_path_factory.mktemp("gmp")
    folders = {}
    for precision in ("fp32", "fp16"):
        folders[precision] = root / precision
        export_model(ExportConfig(model="splade-tiny", output=folders[precision], precision=precision,
                                  vocab_chunk=8192, max_reduction="globalmaxpool"))
    return folders


def test_globalmaxpool_graph_matches_pytorch(pooled, reference):
    graph = onnx.load(str(pooled["fp32"] / "model.onnx"))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("GlobalMaxPool") == 4 and "ReduceMax" not in ops  # 30522 terms in 8192-term chunks
    encoder = SpladeEncoder(pooled["fp32"], provider="cpu")
    for text, vec in zip(TEXTS, encoder.encode(TEXTS), strict=True):
        assert_matches(vec, reference.encode(text))


def test_globalmaxpool_fp16_validates(pooled, reference):
    encoder = SpladeEncoder(pooled["fp16"], provider="cpu")
    assert encoder.manifest.validation["passed"]
    for text, vec in zip(TEXTS[:4], encoder.encode(TEXTS[:4]), strict=True):
        assert_matches(vec, reference.encode(text), atol=0.05)


def test_max_reduction_is_checked():
    with pytest.raises(ValueError, match="max_reduction"):
        from export.graph import SpladeGraph

        SpladeGraph(None, None, "max", 8, max_reduction="argmax")  # type: ignore[arg-type]
