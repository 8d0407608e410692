"""sentence-transformers SparseEncoder folders (`modules.json`), read without importing sentence-transformers.

A folder holds either one pipeline (MLMTransformer + SpladePooling, the MLM at the root or in a
subfolder) or a Router whose routes (`query`, `document`) are such pipelines or a
SparseStaticEmbedding (a tokenizer and one learned weight per vocabulary term, no transformer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from export.errors import StFolderError

__all__ = ["Route", "SpladeRoute", "StFolderError", "StaticRoute", "is_st_folder", "read_routes"]

MODULES_FILE = "modules.json"
ROUTER_CONFIG = "router_config.json"
_UNLIMITED = 1_000_000  # tokenizers saved without a length limit report 1e30


@dataclass(frozen=True)
class SpladeRoute:
    """An MLM folder plus SpladePooling's settings."""

    mlm: Path
    pooling: Literal["max", "sum"]
    activation: Literal["relu", "log1p_relu"]
    max_seq_length: int | None  # the length sentence-transformers truncates to, when it says


@dataclass(frozen=True)
class StaticRoute:
    """A SparseStaticEmbedding folder: tokenizer files and `model.safetensors` holding `weight` [vocab]."""

    folder: Path


Route = SpladeRoute | StaticRoute


_SPARSE_KINDS = {"MLMTransformer", "SpladePooling", "SparseStaticEmbedding", "Router"}


def is_st_folder(folder: Path) -> bool:
    """A SparseEncoder folder; a dense sentence-transformers `modules.json` beside an MLM does not count."""
    path = folder / MODULES_FILE
    if not path.is_file():
        return False
    entries = _read_json(path)
    return isinstance(entries, list) and any(_kind(str(e.get("type", ""))) in _SPARSE_KINDS for e in entries)


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StFolderError(f"{path}: cannot read ({exc})") from exc


def _kind(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def _max_seq_length(folder: Path) -> int | None:
    """sentence-transformers 5 stores it in sentence_bert_config.json, 6 as the tokenizer's model_max_length."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        path = folder / name
        if path.is_file():
            value = _read_json(path).get(key)  # type: ignore[union-attr]
            if isinstance(value, int | float) and 0 < value < _UNLIMITED:
                return int(value)
    return None


def _pipeline(root: Path, modules: list[tuple[str, Path]], where: str) -> Route:
    """[MLMTransformer, SpladePooling] or [SparseStaticEmbedding] -> a Route; anything else is refused."""
    kinds = [kind for kind, _ in modules]
    if kinds == ["SparseStaticEmbedding"]:
        return StaticRoute(modules[0][1])
    if kinds == ["MLMTransformer", "SpladePooling"]:
        mlm, pooling_dir = modules[0][1], modules[1][1]
        if not (mlm / "config.json").is_file():
            raise StFolderError(f"{mlm}: MLMTransformer folder without config.json")
        cfg = _read_json(pooling_dir / "config.json") if (pooling_dir / "config.json").is_file() else {}
        pooling = cfg.get("pooling_strategy", "max")  # type: ignore[union-attr]
        activation = cfg.get("activation_function", "relu")  # type: ignore[union-attr]
        if pooling not in ("max", "sum") or activation not in ("relu", "log1p_relu"):
            raise StFolderError(f"{pooling_dir}: SpladePooling {pooling!r}/{activation!r} is not supported "
                                "(pooling_strategy max or sum, activation_function relu or log1p_relu)")
        return SpladeRoute(mlm, pooling, activation, _max_seq_length(mlm))
    raise StFolderError(f"{root}: {where} has modules {kinds}; supported are [MLMTransformer, SpladePooling] "
                        "and [SparseStaticEmbedding]")


def read_routes(root: Path) -> dict[str, Route]:
    """Routes by name: {"": route} for a single pipeline, {"query": ..., "document": ...} for a Router."""
    entries = _read_json(root / MODULES_FILE)
    if not isinstance(entries, list) or not entries:
        raise StFolderError(f"{root / MODULES_FILE}: expected a non-empty list of modules")
    modules = [(_kind(e.get("type", "")), root / e.get("path", "")) for e in sorted(entries, key=lambda e: e.get("idx", 0))]
    if "Router" not in {k for k, _ in modules}:
        return {"": _pipeline(root, modules, "modules.json")}
    if len(modules) != 1:
        raise StFolderError(f"{root}: a Router followed or preceded by other modules is not supported")
    router_dir = modules[0][1]
    config = _read_json(router_dir / ROUTER_CONFIG)
    types, structure = config.get("types", {}), config.get("structure", {})  # type: ignore[union-attr]
    routes = {}
    for name, paths in structure.items():
        routes[name] = _pipeline(root, [(_kind(types.get(p, "")), router_dir / p) for p in paths], f"route {name!r}")
    if set(routes) != {"query", "document"}:
        raise StFolderError(f"{root}: Router routes {sorted(routes)}; expected 'query' and 'document'")
    return routes
