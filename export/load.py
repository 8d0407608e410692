"""Load: which folders an export writes (one, or a Router's document and query), and for a SPLADE one the
tokenizer, config and masked LM, with the pooling, activation and max length it will be exported with."""

from __future__ import annotations

import importlib.metadata as md
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from export import st_folder, st_reference
from export.config import ExportConfig
from export.errors import ExportConfigError, StFolderError, UnsupportedModelError
from export.graph import Activation, mlm_head
from export.sources import ModelSource
from runtime.manifest import Pooling

log = logging.getLogger("export")


@dataclass(frozen=True)
class Target:
    """One folder an export writes: "" (the output itself), or a Router's "document" or "query" subfolder."""

    name: str
    route: st_folder.Route | None  # None: a plain transformers MLM folder
    source_name: str  # what the manifest records as source_model
    st_route: str | None = None  # the sentence-transformers route validated against; None: the SPLADE formula
    prompts: dict[str, str] = field(default_factory=dict)  # the folder's sentence-transformers prompts
    default_prompt_name: str | None = None

    @property
    def mlm_dir(self) -> Path | None:
        return self.route.mlm if isinstance(self.route, st_folder.SpladeRoute) else None

    @property
    def task(self) -> st_folder.Task:
        """What the folder is validated for: "query" for a Router's query side, else "document"."""
        return "query" if self.name == "query" else "document"

    @property
    def prompt(self) -> str:
        """The text the runtime's `encode_<task>` puts before each text (as sentence-transformers does)."""
        return st_folder.task_prompt(self.prompts, self.default_prompt_name, self.task)


def targets(cfg: ExportConfig, source: ModelSource) -> list[Target]:
    """The folders `source` exports to, in the order they are written.

    Raises:
        StFolderError: a sentence-transformers folder this exporter cannot reproduce.
    """
    if not st_folder.is_st_folder(source.path):
        return [Target("", None, source.name)]
    routes = st_folder.read_routes(source.path)
    prompts, default = st_folder.read_prompts(source.path)
    use_st = cfg.validate and st_reference.available()
    if not use_st and cfg.validate:
        log.info("sentence-transformers is not installed: validating against the SPLADE formula instead")
    if "" in routes:
        route = routes[""]
        if isinstance(route, st_folder.StaticRoute):
            raise StFolderError(f"{source.path}: only a SparseStaticEmbedding; nothing to export for documents")
        return [Target("", route, source.name, "document" if use_st else None, prompts, default)]
    return [Target(name, routes[name], f"{source.name}#{name}", name if use_st else None, prompts, default)
            for name in ("document", "query")]


@dataclass(frozen=True)
class LoadedModel:
    """A masked LM ready to trace, and every decision the graph and its manifest depend on."""

    name: str  # source_model in the manifest
    mlm_dir: Path
    mlm: nn.Module
    tokenizer: Any  # a transformers PreTrainedTokenizerFast
    config: Any  # its transformers PretrainedConfig
    pooling: Pooling
    activation: Activation
    max_length: int
    position_limit: int
    vocab: int

    @property
    def heads(self) -> int:
        return int(getattr(self.config, "num_attention_heads", None) or self.config.n_heads)

    @property
    def hidden(self) -> int:
        return int(getattr(self.config, "hidden_size", None) or self.config.dim)


def position_limit(mlm: nn.Module, config) -> int:
    """Tokens per text the model can embed, read from the model itself.

    A learned position table whose rows start after a padding index (RoBERTa, XLM-R, CamemBERT,
    MPNet: positions start at padding_idx + 1) loses those rows; rotary models (ModernBERT) have
    no table and take `max_position_embeddings` as is.
    """
    table = next((m for name, m in mlm.named_modules()
                  if name.endswith("position_embeddings") and isinstance(m, nn.Embedding)), None)
    if table is None:
        return int(getattr(config, "max_position_embeddings", 512))
    offset = table.padding_idx + 1 if table.padding_idx is not None else 0
    return int(table.num_embeddings) - offset


def load_mlm(cfg: ExportConfig, target: Target, mlm_dir: Path) -> LoadedModel:
    """Load `mlm_dir` (a plain folder, or a sentence-transformers route's MLM) and decide how to export it.

    Raises:
        ExportConfigError: `cfg.pooling` contradicts the folder's SpladePooling.
        UnsupportedModelError: transformers cannot load it, no fast tokenizer, or a max length beyond its positions.
    """
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    route = target.route if isinstance(target.route, st_folder.SpladeRoute) else None
    pooling: Pooling = cfg.pooling or (route.pooling if route else "max")
    activation: Activation = route.activation if route else "relu"
    if route is not None and cfg.pooling is not None and cfg.pooling != route.pooling:
        raise ExportConfigError(f"--pooling {cfg.pooling} contradicts {target.source_name.split('#')[0]}: its "
                                f"SpladePooling uses pooling_strategy {route.pooling!r}; drop --pooling (the folder's "
                                "setting is used)")
    try:
        config = AutoConfig.from_pretrained(mlm_dir)
        tokenizer = AutoTokenizer.from_pretrained(mlm_dir)
    except (OSError, ValueError, KeyError) as exc:  # missing or unreadable files, an unknown model type
        raise UnsupportedModelError(f"{mlm_dir}: transformers could not read its config or tokenizer "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    if not tokenizer.is_fast:
        raise UnsupportedModelError(f"{target.source_name}: no fast (Rust) tokenizer; the runtime needs tokenizer.json")
    try:
        mlm = AutoModelForMaskedLM.from_pretrained(mlm_dir, attn_implementation="eager").float().eval()
    except (AttributeError, KeyError, TypeError, RuntimeError, OSError, ValueError) as exc:  # e.g. a head it cannot tie
        raise UnsupportedModelError(f"{target.source_name}: transformers could not load it as a masked LM "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    limit = position_limit(mlm, config)
    default = min(limit, route.max_seq_length) if route and route.max_seq_length else limit
    max_length = cfg.max_length or default
    if not 2 <= max_length <= limit:
        raise UnsupportedModelError(f"--max-length {max_length} must be between 2 and the model's position limit {limit}")
    return LoadedModel(name=target.source_name, mlm_dir=mlm_dir, mlm=mlm, tokenizer=tokenizer, config=config,
                       pooling=pooling, activation=activation, max_length=max_length, position_limit=limit,
                       vocab=int(mlm_head(mlm).weight.shape[0]))


def library_versions() -> dict[str, str]:
    """Versions of the libraries an export depends on, as the manifest records them."""
    names = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def local_source(model: str) -> Path | None:
    """`--model` as a local folder, before resolving it (None for the splade-tiny alias or a hub id)."""
    from export.sources import TINY_ALIAS

    local = Path(model).expanduser()
    return local if model != TINY_ALIAS and local.is_dir() else None
