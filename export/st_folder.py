"""sentence-transformers SparseEncoder folders (`modules.json`), read without importing sentence-transformers.

A folder holds either one pipeline (a masked LM + SpladePooling, the MLM at the root or in a
subfolder) or a Router whose `encode_query` and `encode_document` routes are such pipelines or a
SparseStaticEmbedding (a tokenizer and one learned weight per vocabulary term, no transformer).

Both layouts sentence-transformers writes are read:
- 5.0 to 5.3: `sentence_transformers.sparse_encoder.models.MLMTransformer` (`max_seq_length` in
  `sentence_bert_config.json`), `...SpladePooling` (`word_embedding_dimension`), and
  `sentence_transformers.models.Router` (`default_route`);
- 5.4 and later (6.x): `sentence_transformers.base.modules.transformer.Transformer` with `transformer_task: "fill-mask"`
  in `sentence_bert_config.json` (the length is the tokenizer's `model_max_length`),
  `sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling` (`embedding_dimension`),
  and `sentence_transformers.base.modules.router.Router` (`default_route`, `route_mappings`).
Any other module (a dense Transformer, SparseAutoEncoder, a module from another package) is refused by name.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from export.errors import StFolderError

__all__ = ["Route", "SpladeRoute", "StFolderError", "StaticRoute", "is_st_folder", "read_prompts", "read_routes",
           "task_prompt"]

log = logging.getLogger("export")

MODULES_FILE = "modules.json"
ROUTER_CONFIG = "router_config.json"
ST_CONFIG = "config_sentence_transformers.json"
# The names sentence-transformers' Transformer reads its settings from, in its order (all but the first are legacy).
TRANSFORMER_CONFIGS = ("sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
                       "sentence_camembert_config.json", "sentence_albert_config.json",
                       "sentence_xlm-roberta_config.json", "sentence_xlnet_config.json")
_UNLIMITED = 1_000_000  # tokenizers saved without a length limit report 1e30
Task = Literal["query", "document"]


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

_MLM_KINDS = ("MLMTransformer", "Transformer")
_PIPELINE_KINDS = {*_MLM_KINDS, "SpladePooling", "SparseStaticEmbedding"}
_ROUTER_KINDS = {"Router", "Asym"}  # Asym: the Router's older name, still an alias in 5.x and 6.x
_SPARSE_KINDS = {"MLMTransformer", "SpladePooling", "SparseStaticEmbedding", *_ROUTER_KINDS}
_SUPPORTED = ("[Transformer (transformer_task fill-mask) or MLMTransformer, SpladePooling] and "
              "[SparseStaticEmbedding], alone or as a Router's routes")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StFolderError(f"{path}: cannot read ({exc})") from exc


def _read_dict(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when the file is absent."""
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict):
        raise StFolderError(f"{path}: expected a JSON object")
    return data


def _kind(type_name: object) -> str:
    """The class name of a sentence-transformers module type ("" for another package's, or no type)."""
    name = str(type_name or "")
    return name.rsplit(".", 1)[-1] if name.startswith("sentence_transformers.") else ""


def _entries(root: Path) -> list[dict[str, Any]]:
    entries = _read_json(root / MODULES_FILE)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise StFolderError(f"{root / MODULES_FILE}: expected a non-empty list of modules")
    return sorted(entries, key=lambda e: e.get("idx", 0))


def is_st_folder(folder: Path) -> bool:
    """A SparseEncoder folder; a dense sentence-transformers `modules.json` beside an MLM does not count."""
    if not (folder / MODULES_FILE).is_file():
        return False
    if _read_dict(folder / ST_CONFIG).get("model_type") == "SparseEncoder":
        return True
    entries = _read_json(folder / MODULES_FILE)
    if not isinstance(entries, list):
        return False
    kinds = [(_kind(e.get("type")), folder / str(e.get("path", ""))) for e in entries if isinstance(e, dict)]
    return any(k in _SPARSE_KINDS or (k == "Transformer" and _transformer_config(p)[1] == "fill-mask")
               for k, p in kinds)


def _transformer_config(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The Transformer's settings (the first config file present) and its `transformer_task` (None: unsaid)."""
    config = next((_read_dict(folder / name) for name in TRANSFORMER_CONFIGS if (folder / name).is_file()), {})
    task = config.get("transformer_task")
    return config, task if isinstance(task, str) else None


def _length(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < _UNLIMITED else None


def _mlm_length(kind: str, folder: Path, task: str) -> int | None:
    """Check a Transformer / MLMTransformer folder is an MLM this exporter reproduces; its max length for `task`.

    sentence-transformers 5 stores the length in sentence_bert_config.json (`max_seq_length`), 6 as
    the tokenizer's `model_max_length`, with optional per-task `query_length` / `document_length`.
    """
    config, transformer_task = _transformer_config(folder)
    transformer_task = transformer_task or ("fill-mask" if kind == "MLMTransformer" else "feature-extraction")
    if transformer_task != "fill-mask":
        raise StFolderError(f"{folder}: a {kind} with transformer_task {transformer_task!r}: not an MLM this exporter "
                            "can reproduce (SPLADE needs transformer_task 'fill-mask', whose logits SpladePooling pools)")
    text = (config.get("modality_config") or {"text": {}}).get("text")
    if not isinstance(text, dict) or text.get("method_output_name", "logits") != "logits":
        raise StFolderError(f"{folder}: {kind} modality_config {config.get('modality_config')!r}: expected the text "
                            "modality's MLM logits")
    if config.get("do_lower_case"):
        raise StFolderError(f"{folder}: {kind} with do_lower_case: sentence-transformers lowercases each text before "
                            "its tokenizer, which the exported folder's tokenizer would not")
    if config.get("query_expansion"):
        raise StFolderError(f"{folder}: {kind} with query_expansion (ColBERT-style): not a SPLADE input")
    if not (folder / "config.json").is_file():
        raise StFolderError(f"{folder}: {kind} folder without config.json")
    tokenizer_length = _length(_read_dict(folder / "tokenizer_config.json").get("model_max_length"))
    length = _length(config.get("max_seq_length")) or tokenizer_length
    per_task = {"query": _length(config.get("query_length")), "document": _length(config.get("document_length"))}
    if task == "" and per_task["query"] and per_task["query"] != (per_task["document"] or length):
        log.warning("%s: sentence-transformers cuts queries at %s tokens and documents at %s; the exported folder "
                    "cuts both at the document length", folder, per_task["query"], per_task["document"] or length)
    return per_task.get(task or "document") or length


def _pipeline(root: Path, modules: list[tuple[str, Path]], where: str, task: str) -> Route:
    """[Transformer|MLMTransformer, SpladePooling] or [SparseStaticEmbedding] -> a Route; anything else is refused."""
    kinds = [_kind(type_name) for type_name, _ in modules]
    unknown = [type_name for (type_name, _), kind in zip(modules, kinds) if kind not in _PIPELINE_KINDS]
    if unknown:
        raise StFolderError(f"{root}: {where} has module(s) this exporter cannot reproduce: "
                            f"{', '.join(repr(t) for t in unknown)}; it reads {_SUPPORTED}")
    if kinds == ["SparseStaticEmbedding"]:
        return StaticRoute(modules[0][1])
    if len(kinds) == 2 and kinds[0] in _MLM_KINDS and kinds[1] == "SpladePooling":
        mlm, pooling_dir = modules[0][1], modules[1][1]
        length = _mlm_length(kinds[0], mlm, task)
        cfg = _read_dict(pooling_dir / "config.json")
        pooling = cfg.get("pooling_strategy", "max")
        activation = cfg.get("activation_function", "relu")
        if pooling not in ("max", "sum") or activation not in ("relu", "log1p_relu"):
            raise StFolderError(f"{pooling_dir}: SpladePooling {pooling!r}/{activation!r} is not supported "
                                "(pooling_strategy max or sum, activation_function relu or log1p_relu)")
        return SpladeRoute(mlm, pooling, activation, length)
    raise StFolderError(f"{root}: {where} has modules {kinds}; supported are {_SUPPORTED}")


def _route_name(root: Path, task: Task, structure: dict[str, Any], parameters: dict[str, Any]) -> str:
    """The route sentence-transformers' `encode_<task>` takes for text: `route_mappings` (task and modality,
    either a wildcard), else the route named after the task (5.x and 6.x alike). No default route applies:
    sentence-transformers uses it only for calls without a task."""
    mappings: dict[tuple[Any, Any], Any] = {}
    for key, value in (parameters.get("route_mappings") or {}).items():
        try:
            parsed = ast.literal_eval(key) if isinstance(key, str) else key
        except (ValueError, SyntaxError):
            continue  # sentence-transformers skips it too
        if isinstance(parsed, tuple | list) and len(parsed) == 2:
            mapped_task, modality = parsed
            mappings[(mapped_task, tuple(sorted(modality)) if isinstance(modality, tuple | list) else modality)] = value
    key = next((k for k in ((task, "text"), (task, None), (None, "text"), (None, None)) if k in mappings), None)
    name = mappings[key] if key else task if task in structure else "text" if "text" in structure else None
    if name is None:
        raise StFolderError(f"{root}: the Router has no route for task {task!r} (routes {sorted(structure)}, "
                            f"route_mappings {parameters.get('route_mappings') or {}}); sentence-transformers' "
                            f"encode_{task} fails on it too")
    if name not in structure:
        raise StFolderError(f"{root}: the Router maps task {task!r} to route {name!r}, which it does not have")
    return str(name)


def read_routes(root: Path) -> dict[str, Route]:
    """Routes by name: {"": route} for a single pipeline, {"query": ..., "document": ...} for a Router
    (the routes `encode_query` and `encode_document` take).

    Raises:
        StFolderError: a module or Router this exporter cannot reproduce, named.
    """
    modules = [(str(e.get("type", "")), root / str(e.get("path", ""))) for e in _entries(root)]
    if not any(_kind(t) in _ROUTER_KINDS for t, _ in modules):
        return {"": _pipeline(root, modules, "modules.json", "")}
    if len(modules) != 1:
        raise StFolderError(f"{root}: a Router followed or preceded by other modules is not supported")
    router_dir = modules[0][1]
    config_path = router_dir / ROUTER_CONFIG
    config = _read_dict(config_path if config_path.is_file() else router_dir / "config.json")  # Asym's file name
    types, structure = config.get("types") or {}, config.get("structure") or {}
    if not isinstance(types, dict) or not isinstance(structure, dict) or not structure:
        raise StFolderError(f"{config_path}: expected 'types' and 'structure' objects")
    routes: dict[str, Route] = {}
    for task in ("query", "document"):
        name = _route_name(root, task, structure, config.get("parameters") or {})
        paths = structure[name] if isinstance(structure[name], list) else []
        routes[task] = _pipeline(root, [(str(types.get(p, "")), router_dir / str(p)) for p in paths],
                                 f"route {name!r}", task)
    return routes


def read_prompts(root: Path) -> tuple[dict[str, str], str | None]:
    """`prompts` and `default_prompt_name` as sentence-transformers (5.0 and later) holds them once it loads
    the folder: its defaults, an empty "query" and "document" prompt, overlaid with the folder's
    `config_sentence_transformers.json` (a null prompt reads as empty)."""
    path = root / ST_CONFIG
    config = _read_dict(path)
    saved = config.get("prompts") or {}
    if not isinstance(saved, dict) or not all(isinstance(v, str | None) for v in saved.values()):
        raise StFolderError(f"{path}: prompts must map names to strings, got {saved!r}")
    prompts = {"query": "", "document": "", **{str(k): v or "" for k, v in saved.items()}}
    default = config.get("default_prompt_name") or None
    if default is not None and default not in prompts:
        raise StFolderError(f"{path}: default_prompt_name {default!r} is not among the prompts {sorted(prompts)}")
    return prompts, default


def task_prompt(prompts: dict[str, str], default_prompt_name: str | None, task: str) -> str:
    """The text put before each text by `encode_query` ("query") or `encode_document` ("document"), as the
    runtime picks it (and sentence-transformers): "query"; "document", else "passage", else "corpus";
    with none of these, the default prompt."""
    candidates = ("query",) if task == "query" else ("document", "passage", "corpus")
    name = next((c for c in candidates if c in prompts), default_prompt_name)
    return prompts.get(name, "") if name is not None else ""
