"""Every encoder is one SparseEncoder: the same stages, options checked once, misspelled options refused,
and the static query model served by the same batcher as the graph."""

from __future__ import annotations

import pytest

from runtime import DynamicBatcher, EncodeOptions, SparseEncoder, SpladeEncoder, StaticQueryEncoder
from runtime.errors import InputTooLongError, InputTypeError, InvalidInputError, SpladeError
from tests.conftest import TEXTS
from tests.integration.test_static_query import static_folder  # noqa: F401  (the fixture)

LONG = "sparse retrieval with learned term weights " * 200


def test_both_encoders_are_one_pipeline(fp32_dir, static_folder):  # noqa: F811
    _, out, _ = static_folder
    graph, static = SpladeEncoder(fp32_dir, provider="cpu"), StaticQueryEncoder(out)
    for enc in (graph, static):
        assert isinstance(enc, SparseEncoder)
        options = EncodeOptions(top_k=5)
        tokenized = enc.tokenize(["paris", "what is splade"], options)
        rows = enc.infer(tokenized.sequences, batch_size=8)
        assert [v.to_qdrant() for v in enc.collect(tokenized, rows, 2, options)] == \
               [v.to_qdrant() for v in enc.encode(["paris", "what is splade"], options)]
        with DynamicBatcher(enc, max_wait_ms=1) as batcher:
            assert [v.to_qdrant() for v in batcher.encode(TEXTS, top_k=5)] == \
                   [v.to_qdrant() for v in enc.encode(TEXTS, top_k=5)]


@pytest.mark.parametrize("misspelled", [{"thread": 2}, {"max_window": 3}, {"allow_failed": True}])
def test_misspelled_encoder_options_are_refused_by_both(fp32_dir, static_folder, misspelled):  # noqa: F811
    _, out, _ = static_folder
    for make in (lambda: SpladeEncoder(fp32_dir, "cpu", **misspelled), lambda: StaticQueryEncoder(out, **misspelled)):
        with pytest.raises(InputTypeError, match=f"unknown encoder option.*{next(iter(misspelled))}"):
            make()


def test_options_are_checked_once_where_they_enter(fp32_dir):
    enc = SpladeEncoder(fp32_dir, provider="cpu")
    for bad in ({"top_k": 0}, {"threshold": float("nan")}, {"batch_size": True}, {"truncation": "chop"},
                {"max_windows": 0}, {"truncation_direction": "up"}):
        with pytest.raises(InvalidInputError):
            EncodeOptions(**bad)
    with pytest.raises(TypeError, match="unknown encode option"):
        enc.encode(["x"], topk=3)
    with pytest.raises(InputTooLongError, match=r"texts\[0\] is longer than the model's max length"):
        enc.encode([LONG], truncate="refuse")
    assert len(enc.encode([LONG], truncate="cut")) == 1


def test_every_error_either_package_defines_is_a_splade_error():
    import importlib
    import pkgutil

    import export
    import runtime

    classes = set()
    for package in (runtime, export):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith(("__main__", "onnx_model", "tokenizer_model")):  # CLIs; Triton's own modules
                continue
            loaded = importlib.import_module(module.name)
            classes |= {c for c in vars(loaded).values() if isinstance(c, type) and issubclass(c, Exception)
                        and c.__module__.split(".")[0] in ("runtime", "export")}
    assert len(classes) >= 14, classes
    assert [c for c in classes if not issubclass(c, SpladeError)] == []
