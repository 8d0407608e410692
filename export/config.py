"""`ExportConfig`: everything `python -m export` decides, checked when it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from export.errors import ExportConfigError
from runtime.manifest import Pooling, Precision

# How max pooling reduces each vocabulary chunk over tokens in the graph.
MaxReduction = Literal["reducemax", "reducemax-tokens", "globalmaxpool"]
MAX_REDUCTIONS: tuple[MaxReduction, ...] = ("reducemax", "reducemax-tokens", "globalmaxpool")


@dataclass(frozen=True)
class Bounds:
    """Validation's pass bounds: fp32 must match numerically; every precision must keep the top terms."""

    fp32_max_abs_diff: float = 1e-4
    min_top32_overlap: float = 0.9


@dataclass(frozen=True)
class ExportConfig:
    """Everything `python -m export` decides; one frozen object so the CLI stays a thin shell.

    Raises:
        ExportConfigError: a value out of range (also a ValueError).
    """

    model: str = "naver/splade-cocondenser-ensembledistil"
    output: Path | None = None  # None: models/<model name>-<precision>
    precision: Precision = "fp32"
    pooling: Pooling | None = None  # None: the folder's SpladePooling, else max
    top_k: int = 512
    max_length: int | None = None
    opset: int = 17
    validate: bool = True
    attention_fusion: bool = True
    int8_head: bool = True
    # int8 activation scales: "static" (calibrated constants: a text's vector does not depend on its batch)
    # or "dynamic" (one scale per tensor per run, i.e. per batch).
    int8_scales: Literal["static", "dynamic"] = "static"
    vocab_chunk: int = 2048
    max_reduction: MaxReduction = "reducemax"
    bounds: Bounds = field(default_factory=Bounds)

    def __post_init__(self):
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ExportConfigError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.int8_scales not in ("static", "dynamic"):
            raise ExportConfigError(f"int8_scales must be 'static' or 'dynamic', got {self.int8_scales!r}")
        if self.pooling not in ("max", "sum", None):
            raise ExportConfigError(f"pooling must be 'max' or 'sum', got {self.pooling!r}")
        if self.max_reduction not in MAX_REDUCTIONS:
            raise ExportConfigError(f"max_reduction must be one of {', '.join(MAX_REDUCTIONS)}, got {self.max_reduction!r}")
        if self.top_k < 0:
            raise ExportConfigError("top_k must be >= 0 (0 returns the full weights)")
        if self.vocab_chunk < 0:
            raise ExportConfigError("vocab_chunk must be >= 0 (0: project the whole vocabulary at once)")
        if self.opset < 14:
            raise ExportConfigError("opset must be >= 14 (LayerNormalization export and TopK with a dynamic k)")

    def output_folder(self) -> Path:
        """`output`, or the default `models/<last part of the model's name>-<precision>` (known before resolving it)."""
        if self.output is not None:
            return Path(self.output)
        local = Path(self.model).expanduser()
        name = local.resolve().name if local.is_dir() else Path(self.model).name
        return Path("models") / f"{name}-{self.precision}"
