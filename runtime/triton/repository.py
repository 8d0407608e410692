"""`python -m runtime.triton`: a Triton Inference Server model repository for an exported folder.

Three models: `<name>_onnx` (dynamic batching; ONNX Runtime's Triton backend with an optional
TensorRT accelerator, or with `--onnx-backend python` a Python-backend model that runs the graph
through the runtime's own ONNX Runtime session, for a Triton without that backend),
`<name>_tokenizer` (Python backend, text -> ids) and `<name>` (an ensemble taking raw strings and
returning the graph's outputs), so a client sends text.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.errors import InvalidInputError, ModelFolderError, SpladeError
from runtime.manifest import MANIFEST_NAME, Manifest, load_manifest

TOKENIZER_SOURCE = Path(__file__).with_name("tokenizer_model.py")
ONNX_MODEL_SOURCE = Path(__file__).with_name("onnx_model.py")
RUNTIME_DIR = Path(__file__).resolve().parents[1]
# The Python-backend ONNX model imports these (and what they import in turn) from the runtime.
ONNX_MODEL_IMPORTS = ("backends.ort", "core.batching", "manifest")
OnnxBackend = Literal["onnxruntime", "python"]


class RepositoryError(SpladeError, OSError):
    """The repository could not be written."""


@dataclass(frozen=True)
class TritonConfig:
    """Serving choices for the repository (the graph's own contract comes from the manifest)."""

    name: str = "splade"
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 500
    instances: int = 1
    threads: int | None = None  # intra-op threads of each CPU instance (None: every core, for each instance)
    gpu: bool = False
    tensorrt: bool = False
    trt_cache_path: str = "/tmp/splade-trt-cache"
    pad_multiple: int = 16
    tokenizer_instances: int = 2
    onnx_backend: OnnxBackend = "onnxruntime"

    def __post_init__(self):
        if self.onnx_backend not in ("onnxruntime", "python"):
            raise InvalidInputError(f"onnx_backend must be 'onnxruntime' or 'python'; got {self.onnx_backend!r}")
        if self.tensorrt and not self.gpu:
            raise InvalidInputError("--tensorrt needs --gpu (TensorRT is a GPU accelerator)")
        if any(b > self.max_batch_size or b < 1 for b in self.preferred_batch_sizes):
            raise InvalidInputError("preferred batch sizes must be between 1 and max_batch_size")
        if self.instances < 1 or self.tokenizer_instances < 1:
            raise InvalidInputError("--instances and --tokenizer-instances must be >= 1")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise InvalidInputError(f"--threads must be an int >= 1, got {self.threads!r}")


def _io(name: str, dtype: str, dims: list[int]) -> str:
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}'


def _outputs(manifest) -> list[str]:
    if manifest.top_k == 0:
        return [_io("weights", "TYPE_FP32", [manifest.vocab_size])]
    return [_io("values", "TYPE_FP32", [manifest.top_k]), _io("indices", "TYPE_INT64", [manifest.top_k])]


def onnx_config(manifest, cfg: TritonConfig) -> str:
    kind = "KIND_GPU" if cfg.gpu else "KIND_CPU"
    inputs = [_io(n, "TYPE_INT64", [-1]) for n in manifest.inputs]
    text = [
        f'name: "{cfg.name}_onnx"',
        f'backend: "{cfg.onnx_backend}"',
        f"max_batch_size: {cfg.max_batch_size}",
        "input [\n" + ",\n".join(inputs) + "\n]",
        "output [\n" + ",\n".join(_outputs(manifest)) + "\n]",
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, cfg.preferred_batch_sizes))} ]\n"
        f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n}}",
        f"instance_group [ {{ count: {cfg.instances} kind: {kind} }} ]",
    ]
    if cfg.threads is not None and cfg.onnx_backend == "onnxruntime":  # the Python backend reads onnx_settings.json
        text.append(f'parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{cfg.threads}" }} }}')
    if cfg.tensorrt and cfg.onnx_backend == "onnxruntime":
        params = {"precision_mode": "FP16", "max_workspace_size_bytes": str(1 << 30),
                  "trt_engine_cache_enable": "1", "trt_engine_cache_path": cfg.trt_cache_path}
        body = "\n".join(f'        parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items())
        text.append("optimization { execution_accelerators {\n"
                    f'  gpu_execution_accelerator : [ {{\n        name : "tensorrt"\n{body}\n  }} ]\n}} }}')
    return "\n".join(text) + "\n"


def tokenizer_config(manifest, cfg: TritonConfig) -> str:
    outputs = [_io(n, "TYPE_INT64", [-1]) for n in manifest.inputs]
    return "\n".join([
        f'name: "{cfg.name}_tokenizer"',
        'backend: "python"',
        f"max_batch_size: {cfg.max_batch_size}",
        "input [\n" + _io("TEXT", "TYPE_STRING", [1]) + "\n]",
        "output [\n" + ",\n".join(outputs) + "\n]",
        f"instance_group [ {{ count: {cfg.tokenizer_instances} kind: KIND_CPU }} ]",
    ]) + "\n"


def ensemble_config(manifest, cfg: TritonConfig) -> str:
    def maps(kind: str, names) -> str:
        return " ".join(f'{kind} {{ key: "{n}" value: "{n}" }}' for n in names)

    tok_step = (f'    {{ model_name: "{cfg.name}_tokenizer" model_version: -1 {maps("input_map", ["TEXT"])} '
                f'{maps("output_map", manifest.inputs)} }}')
    onnx_step = (f'    {{ model_name: "{cfg.name}_onnx" model_version: -1 {maps("input_map", manifest.inputs)} '
                 f'{maps("output_map", manifest.outputs)} }}')
    return "\n".join([
        f'name: "{cfg.name}"',
        'platform: "ensemble"',
        f"max_batch_size: {cfg.max_batch_size}",
        "input [\n" + _io("TEXT", "TYPE_STRING", [1]) + "\n]",
        "output [\n" + ",\n".join(_outputs(manifest)) + "\n]",
        "ensemble_scheduling {\n  step [\n" + tok_step + ",\n" + onnx_step + "\n  ]\n}",
    ]) + "\n"


def runtime_modules(roots: tuple[str, ...] = ONNX_MODEL_IMPORTS) -> list[str]:
    """`runtime` modules (dotted, below `runtime.`) the roots need, following their `runtime.*` imports
    (read, not imported)."""
    needed, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for node in ast.walk(ast.parse((RUNTIME_DIR / f"{name.replace('.', '/')}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runtime."):
                todo.append(node.module.removeprefix("runtime."))
            elif isinstance(node, ast.Import):
                todo += [a.name.removeprefix("runtime.") for a in node.names if a.name.startswith("runtime.")]
    return sorted(needed)


def write_python_onnx_model(model_dir: Path, version_dir: Path, cfg: TritonConfig) -> None:
    """`model.py`, the manifest, the provider to plan, and a copy of the runtime modules it imports
    (a `runtime` package of those alone), so Triton needs only numpy and onnxruntime installed."""
    shutil.copyfile(ONNX_MODEL_SOURCE, version_dir / "model.py")
    shutil.copyfile(model_dir / "splade.json", version_dir / "splade.json")
    provider = "tensorrt" if cfg.tensorrt else "cuda" if cfg.gpu else "cpu"
    settings = {"provider": provider, "max_batch_size": cfg.max_batch_size, "threads": cfg.threads,
                "cache": cfg.trt_cache_path if cfg.tensorrt else None}
    (version_dir / "onnx_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    vendored = version_dir / "runtime"
    for name in runtime_modules():
        target = vendored / f"{name.replace('.', '/')}.py"
        for package in (vendored, *[p for p in target.parents if vendored in p.parents]):
            package.mkdir(parents=True, exist_ok=True)  # each package of the copy is a bare one: no lazy names
            init = package / "__init__.py"
            if not init.exists():
                init.write_text('"""The runtime modules the Python-backend ONNX model needs."""\n')
        shutil.copyfile(RUNTIME_DIR / f"{name.replace('.', '/')}.py", target)


def write_repository(model_dir: str | Path, repo: str | Path, cfg: TritonConfig = TritonConfig()) -> Path:
    """Write the three-model repository for `model_dir` (a folder from `python -m export`)."""
    model_dir, repo = Path(model_dir), Path(repo)
    manifest = load_manifest(model_dir)
    if manifest.precision == "fp16" and not cfg.gpu:
        raise ModelFolderError(f"{model_dir}: an fp16 model is for GPU instances; pass --gpu or export fp32/int8")
    try:
        return _write(model_dir, repo, manifest, cfg)
    except OSError as exc:  # an unwritable or full destination: named, as every other refusal
        raise RepositoryError(f"{exc.filename or repo}: {exc.strerror or exc}") from exc


def _write(model_dir: Path, repo: Path, manifest: Manifest, cfg: TritonConfig) -> Path:
    onnx_dir, tok_dir, ens_dir = (repo / f"{cfg.name}_onnx", repo / f"{cfg.name}_tokenizer", repo / cfg.name)
    for folder in (onnx_dir, tok_dir, ens_dir):
        (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / manifest.model_file, onnx_dir / "1" / "model.onnx")
    if cfg.onnx_backend == "python":
        write_python_onnx_model(model_dir, onnx_dir / "1", cfg)
    (onnx_dir / "config.pbtxt").write_text(onnx_config(manifest, cfg))
    shutil.copyfile(model_dir / manifest.tokenizer_file, tok_dir / "1" / "tokenizer.json")
    shutil.copyfile(TOKENIZER_SOURCE, tok_dir / "1" / "model.py")
    settings = {"max_length": manifest.max_length, "pad_token_id": manifest.pad_token_id, "pad_multiple": cfg.pad_multiple}
    (tok_dir / "1" / "tokenizer_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (tok_dir / "config.pbtxt").write_text(tokenizer_config(manifest, cfg))
    (ens_dir / "config.pbtxt").write_text(ensemble_config(manifest, cfg))
    shutil.copyfile(model_dir / MANIFEST_NAME, repo / MANIFEST_NAME)
    return repo


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags; every default is TritonConfig's own."""
    p = argparse.ArgumentParser(prog="python -m runtime.triton", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, type=Path, help="folder written by `python -m export`")
    p.add_argument("--output", required=True, type=Path, help="model repository to write")
    p.add_argument("--name", default=TritonConfig.name, help="ensemble name (models: NAME, NAME_onnx, NAME_tokenizer)")
    p.add_argument("--max-batch-size", type=int, default=TritonConfig.max_batch_size, help="Default: %(default)s")
    p.add_argument("--preferred-batch-sizes", type=int, nargs="+", default=list(TritonConfig.preferred_batch_sizes), help="Default: %(default)s")
    p.add_argument("--max-queue-delay-us", type=int, default=TritonConfig.max_queue_delay_us, help="dynamic batching delay. Default: %(default)s")
    p.add_argument("--instances", type=int, default=TritonConfig.instances, help="ONNX model instances. Default: %(default)s")
    p.add_argument("--threads", type=int, default=TritonConfig.threads,
                   help="intra-op threads of each CPU instance (default: every core, for each instance; with "
                        "--instances N on C cores, C/N keeps the instances off each other's cores)")
    p.add_argument("--onnx-backend", choices=["onnxruntime", "python"], default=TritonConfig.onnx_backend,
                   help="how Triton runs the graph: ONNX Runtime's Triton backend, or a Python-backend model "
                        "running the runtime's ONNX Runtime session (no onnxruntime backend needed). Default: %(default)s")
    p.add_argument("--gpu", action="store_true", help="KIND_GPU instances (default KIND_CPU)")
    p.add_argument("--tensorrt", action="store_true",
                   help="TensorRT accelerator, fp16, engine cache (needs --gpu); with --onnx-backend python, "
                        "ONNX Runtime's TensorRT provider with the runtime's own options")
    p.add_argument("--trt-cache-path", default=TritonConfig.trt_cache_path, help="engine cache in the container")
    p.add_argument("--pad-multiple", type=int, default=TritonConfig.pad_multiple,
                   help="tokenizer pads each request to a multiple of this, so similar lengths batch together")
    p.add_argument("--tokenizer-instances", type=int, default=TritonConfig.tokenizer_instances,
                   help="Python-backend tokenizer instances (CPU). Default: %(default)s")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = TritonConfig(name=args.name, max_batch_size=args.max_batch_size,
                           preferred_batch_sizes=tuple(args.preferred_batch_sizes),
                           max_queue_delay_us=args.max_queue_delay_us, instances=args.instances, threads=args.threads, gpu=args.gpu,
                           tensorrt=args.tensorrt, trt_cache_path=args.trt_cache_path, pad_multiple=args.pad_multiple,
                           onnx_backend=args.onnx_backend, tokenizer_instances=args.tokenizer_instances)
        repo = write_repository(args.model_dir, args.output, cfg)
    except SpladeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote Triton model repository {repo} (ensemble {cfg.name!r})")
    return 0
