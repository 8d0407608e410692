"""The only module that touches ONNX Runtime: providers, their options, the session, and running a Batch."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from runtime.batching import Batch
from runtime.errors import ProviderError
from runtime.manifest import Manifest, cache_root

log = logging.getLogger("runtime")

ProviderName = Literal["auto", "tensorrt", "cuda", "cpu"]
ORT_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
# CUDA attention kernels ORT may pick (its `sdpa_kernel` bit mask): flash 1, memory-efficient 2,
# TRT fused 4, unfused 16, TRT flash/cross/causal 32/64/128 -- every one but cuDNN's (8). On Hopper,
# ORT prefers cuDNN SDPA for fp16, which builds a graph for every new (batch, length) shape: a
# 300-text corpus took 1.3 s on first sight instead of 0.3 s on an H100 (benchmarks/results/gpu-checks.json).
CUDA_SDPA_KERNELS = 1 | 2 | 4 | 16 | 32 | 64 | 128
ProviderOptions = Mapping[str, Mapping[str, Any]]


def default_threads() -> int:
    """Intra-op threads: the cores this process may run on (ORT's own default counts all cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ProviderPlan:
    """One provider with its options, ready for `InferenceSession(providers=[...])`."""

    name: str  # our short name
    options: dict[str, Any] = field(default_factory=dict)
    io_binding: bool = False

    @property
    def ort_name(self) -> str:
        return ORT_NAMES[self.name]

    @property
    def run_config(self) -> dict[str, str]:
        """Run options: arenas are kept (reuse within a run avoids page faults on every [batch, seq,
        chunk] block) but shrunk after each run, so memory does not stay at the largest shape seen.
        The CUDA arena to shrink is the one on the plan's own device_id (callers may override it)."""
        arenas = "cpu:0" + (f";gpu:{self.options.get('device_id', 0)}" if self.name == "cuda" else "")
        return {"memory.enable_memory_arena_shrinkage": arenas}

    def with_options(self, extra: Mapping[str, Any] | None) -> ProviderPlan:
        """This plan with the caller's ORT provider options on top; a None value removes ours."""
        if not extra:
            return self
        options = {**self.options, **extra}
        return replace(self, options={k: v for k, v in options.items() if v is not None})

    def entry(self) -> tuple[str, dict[str, Any]]:
        return self.ort_name, {k: str(v) if isinstance(v, bool | int) and k.startswith("trt_") else v for k, v in self.options.items()}


def plan_provider(name: str, manifest: Manifest, *, max_batch_size: int, device_id: int = 0, cache: Path | None = None) -> ProviderPlan:
    """Options for one provider, from the manifest alone (so they are testable without a GPU)."""
    if name == "tensorrt":
        folder = (cache or cache_root()) / "trt" / f"{manifest.sha256[:16]}-ort{ort.__version__}"
        lo, hi = "1x1", f"{max_batch_size}x{manifest.max_length}"
        opt = f"{max_batch_size}x{min(128, manifest.max_length)}"
        names = manifest.inputs
        return ProviderPlan("tensorrt", {
            "device_id": device_id,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(folder),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(folder),
            "trt_profile_min_shapes": ",".join(f"{n}:{lo}" for n in names),
            "trt_profile_opt_shapes": ",".join(f"{n}:{opt}" for n in names),
            "trt_profile_max_shapes": ",".join(f"{n}:{hi}" for n in names),
        }, io_binding=True)
    if name == "cuda":
        return ProviderPlan("cuda", {
            "device_id": device_id,
            "arena_extend_strategy": "kSameAsRequested",
            "cudnn_conv_algo_search": "HEURISTIC",
            "use_tf32": 0,  # an fp32 graph computes in fp32, as validated; fp16 graphs are the fast path
            "sdpa_kernel": CUDA_SDPA_KERNELS,
        }, io_binding=True)
    if name == "cpu":
        return ProviderPlan("cpu")
    raise ValueError(f"provider must be one of auto, tensorrt, cuda, cpu; got {name!r}")


def session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    # Shapes vary with every batch: memory patterns would be planned (and kept) per shape.
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    return opts


class Backend:
    """An InferenceSession on the first provider that really runs; `run(Batch)` -> output arrays."""

    def __init__(self, model_path: Path, manifest: Manifest, *, provider: ProviderName = "auto",
                 threads: int | None = None, max_batch_size: int = 32, cache: Path | None = None,
                 provider_options: ProviderOptions | None = None):
        self.manifest = manifest
        unknown = set(provider_options or {}) - set(ORT_NAMES)
        if unknown:
            raise ProviderError(f"provider_options keys must be among {', '.join(ORT_NAMES)}; got {', '.join(sorted(unknown))}")
        available = ort.get_available_providers()
        wanted = AUTO_ORDER if provider == "auto" else (provider,)
        if provider != "auto" and provider not in ORT_NAMES:
            raise ProviderError(f"provider must be one of auto, tensorrt, cuda, cpu; got {provider!r}")
        reasons: dict[str, str] = {}
        for name in wanted:
            plan = plan_provider(name, manifest, max_batch_size=max_batch_size, cache=cache)
            plan = plan.with_options((provider_options or {}).get(name))
            if plan.ort_name not in available:
                reasons[name] = f"{plan.ort_name} is not in this onnxruntime build ({ort.__version__}: {', '.join(available)})"
                continue
            if name == "tensorrt":
                Path(plan.options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
            try:
                session = ort.InferenceSession(
                    str(model_path), sess_options=session_options(threads),
                    providers=[plan.entry()] + ([] if name == "cpu" else [("CPUExecutionProvider", {})]),
                )
            except Exception as exc:  # a provider whose libraries are missing fails here
                reasons[name] = f"session creation failed: {str(exc).splitlines()[0][:300]}"
                continue
            if session.get_providers()[0] != plan.ort_name:
                reasons[name] = f"{plan.ort_name} did not load (libraries missing?); session runs {session.get_providers()[0]}"
                continue
            self.session, self.plan = session, plan
            break
        else:
            detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
            raise ProviderError(f"provider {provider!r} cannot run here: {detail}")
        skipped = ", ".join(f"{k} ({v})" for k, v in reasons.items())
        log.info("running on %s%s", self.plan.ort_name, f"; skipped {skipped}" if skipped else "")
        self.skipped = reasons
        self.run_options = ort.RunOptions()
        for key, value in self.plan.run_config.items():
            self.run_options.add_run_config_entry(key, value)
        self.output_names = [o.name for o in self.session.get_outputs()]
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != set(manifest.inputs) or tuple(self.output_names) != manifest.outputs:
            raise ProviderError(f"{model_path}: graph inputs/outputs do not match the manifest")

    @property
    def provider(self) -> str:
        return self.plan.name

    def run(self, batch: Batch) -> list[np.ndarray]:
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if not self.plan.io_binding:
            return self.session.run(self.output_names, feed, self.run_options)
        binding = self.session.io_binding()  # inputs go up once; outputs are small top-k arrays
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name in self.output_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding, self.run_options)
        return binding.copy_outputs_to_cpu()
