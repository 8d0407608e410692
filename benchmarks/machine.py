"""The machine a benchmark ran on: CPU model and SIMD flags, GPU, library versions (no torch import)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
from pathlib import Path


def cpu_simd() -> str:
    """The vector and matrix extensions that decide CPU kernel speed (AVX2, AVX-512, VNNI, AMX)."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    keep = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")
    return " ".join(f for f in line.split(":", 1)[1].split() if f in keep)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "simd": cpu_simd()}
    torch = sys.modules.get("torch")  # only when the caller runs torch: loadgen must not need it
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    versions = {}
    for name in ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "optimum", "optimum-onnx", "numpy"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:  # the package that answers `import onnxruntime` (onnxruntime-gpu shadows the CPU build when both exist)
        import onnxruntime as ort

        versions["onnxruntime (imported)"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    info["versions"] = versions
    return info


def write_results(out: Path, stem: str, result: dict, table: str) -> None:
    """A benchmark's result as `stem.json` (everything, machine and command included) and `stem.md`
    (the table), in `out`; the table is printed too."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    print(table)
