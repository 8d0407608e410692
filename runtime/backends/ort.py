"""The only module that touches ONNX Runtime: providers, their options, the session, and running a Batch."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from runtime.backends.cuda_graphs import SKIP_GRAPH, CudaGraphs
from runtime.backends.options import AUTO_ORDER, SessionOptions, check_provider, default_threads
from runtime.core.batching import Batch, Buckets
from runtime.errors import ModelFolderError, ProviderError, UnknownProviderError
from runtime.manifest import Manifest, cache_root

log = logging.getLogger("runtime")

ORT_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
# CUDA attention kernels ORT may pick (its `sdpa_kernel` bit mask): flash 1, memory-efficient 2,
# TRT fused 4, unfused 16, TRT flash/cross/causal 32/64/128 -- every one but cuDNN's (8). On Hopper,
# ORT prefers cuDNN SDPA for fp16, which builds a graph for every new (batch, length) shape: a
# 300-text corpus took 1.3 s on first sight instead of 0.3 s on an H100 (benchmarks/results/gpu-checks.json).
CUDA_SDPA_KERNELS = 1 | 2 | 4 | 16 | 32 | 64 | 128


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
    def cuda_graphs(self) -> bool:
        """Whether runs of bucketed shapes are captured and replayed as CUDA graphs."""
        return self.name == "cuda" and str(self.options.get("enable_cuda_graph", 0)).lower() in ("1", "true")

    @property
    def run_config(self) -> dict[str, str]:
        """Run options: the CPU arena is kept (reuse within a run avoids page faults on every [batch,
        seq, chunk] block) but shrunk after each run, so memory does not stay at the largest shape
        seen. The GPU arena is never shrunk: giving blocks back to the driver and allocating them
        again on the next run cost a quarter of BERT-base document throughput on an H100
        (benchmarks/results/gpu-checks.md), and a captured CUDA graph keeps using the blocks it was
        captured with. `gpu_mem_limit` bounds it instead."""
        config = {"memory.enable_memory_arena_shrinkage": "cpu:0"}
        if self.cuda_graphs:
            config["gpu_graph_id"] = SKIP_GRAPH  # shapes outside the buckets run as usual
        return config

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
            # bucketed small batches (queries) replay one captured graph instead of launching every kernel
            "enable_cuda_graph": 1,
        }, io_binding=True)
    if name == "cpu":
        return ProviderPlan("cpu")
    check_provider(name)
    raise UnknownProviderError(f"{name!r} is not one of ONNX Runtime's providers ({', '.join(AUTO_ORDER)})")


def session_options(threads: int | None, allow_spinning: bool = True) -> ort.SessionOptions:
    """`allow_spinning=False`: idle intra-op threads sleep instead of spinning, leaving the cores to the
    process's other threads (HTTP, tokenization); ORT spins by default, which saves the wake-up between ops."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    # Shapes vary with every batch: memory patterns would be planned (and kept) per shape.
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return opts


class Backend:
    """An InferenceSession on the first provider that really runs; `run(Batch)` -> output arrays."""

    def __init__(self, model_path: Path, manifest: Manifest, options: SessionOptions | None = None):
        self.manifest = manifest
        options = options or SessionOptions()
        provider, threads, allow_spinning = options.provider, options.threads, options.allow_spinning
        available = ort.get_available_providers()
        wanted = AUTO_ORDER if provider == "auto" else (provider,)
        if "CUDAExecutionProvider" in available and any(n != "cpu" for n in wanted):
            _preload_cuda_libraries()
        reasons: dict[str, str] = {}
        self.graphs_skipped: str | None = None  # why CUDA graphs are off although the plan asked for them
        for name in wanted:
            plan = plan_provider(name, manifest, max_batch_size=options.max_batch_size, cache=options.cache_dir)
            plan = plan.with_options((options.provider_options or {}).get(name))
            if plan.ort_name not in available:
                reasons[name] = f"{plan.ort_name} is not in this onnxruntime build ({ort.__version__}: {', '.join(available)})"
                continue
            if name == "tensorrt":
                Path(plan.options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
            try:
                session = _session(model_path, plan, threads, allow_spinning)
            except Exception as exc:  # a provider whose libraries are missing fails here
                if type(exc).__name__ in ("InvalidProtobuf", "InvalidGraph"):  # the file, on any provider
                    raise ModelFolderError(f"{model_path}: ONNX Runtime cannot load this model "
                                           f"({str(exc).splitlines()[0][:200]}); re-export it") from None
                reasons[name] = f"session creation failed: {str(exc).splitlines()[0][:300]}"
                if not plan.cuda_graphs:
                    continue
                plan = plan.with_options({"enable_cuda_graph": None})  # graph capture refused: try without
                try:
                    session = _session(model_path, plan, threads, allow_spinning)
                except Exception:
                    continue
                self.graphs_skipped = reasons.pop(name)
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
        self.graphs: CudaGraphs | None = None
        buckets = (options.graph_buckets or Buckets()).within(manifest.max_length)  # never pad past the position table
        if self.plan.cuda_graphs and buckets is not None:
            widths = {"weights": manifest.vocab_size, "values": manifest.top_k, "indices": manifest.top_k}
            self.graphs = CudaGraphs(self.session, buckets=buckets,
                                     device_id=int(self.plan.options.get("device_id", 0)),
                                     pad_id=manifest.pad_token_id, output_widths=widths, base_config=self.plan.run_config)

    @property
    def provider(self) -> str:
        return self.plan.name

    def run(self, batch: Batch) -> list[np.ndarray]:
        if self.graphs is not None:
            outputs = self.graphs.run(batch)
            if outputs is not None:
                return outputs
            with self.graphs.lock:  # ORT's graph replay must not overlap another run of the session
                return self._run(batch)
        return self._run(batch)

    def _run(self, batch: Batch) -> list[np.ndarray]:
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


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* Python packages, if that is where they are: a GPU build
    of ONNX Runtime otherwise finds them only after something else (torch) has loaded them."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # libraries installed system-wide: ORT finds them itself
            log.debug("onnxruntime.preload_dlls() failed: %s", exc)


def _session(model_path: Path, plan: ProviderPlan, threads: int | None, allow_spinning: bool) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(model_path), sess_options=session_options(threads, allow_spinning),
        providers=[plan.entry()] + ([] if plan.name == "cpu" else [("CPUExecutionProvider", {})]),
    )
