"""Provider planning from the manifest alone: TensorRT profiles and caches, CUDA options, overrides (no GPU needed)."""

from __future__ import annotations

import math

import onnxruntime as ort
import pytest

from runtime.backends.options import default_threads, instances_share_a_session, plan_instances
from runtime.backends.ort import AUTO_ORDER, ORT_NAMES, ProviderPlan, plan_provider, session_options
from tests.unit.test_manifest import manifest


@pytest.fixture
def m():
    return manifest(max_length=512, sha256="ab" * 32)


def test_tensorrt_plan(m, tmp_path):
    trt = plan_provider("tensorrt", m, max_batch_size=16, cache=tmp_path)
    assert trt.ort_name == "TensorrtExecutionProvider" and trt.io_binding
    assert trt.options["trt_fp16_enable"] and trt.options["trt_engine_cache_enable"]
    cache = trt.options["trt_engine_cache_path"]
    assert cache.startswith(str(tmp_path)) and m.sha256[:16] in cache and ort.__version__ in cache
    assert trt.options["trt_profile_max_shapes"] == "input_ids:16x512,attention_mask:16x512"
    assert trt.options["trt_profile_opt_shapes"] == "input_ids:16x128,attention_mask:16x128"
    assert trt.options["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    name, opts = trt.entry()
    assert name == "TensorrtExecutionProvider" and opts["trt_fp16_enable"] == "True" and opts["device_id"] == 0


def test_cuda_plan_and_overrides(m):
    cuda = plan_provider("cuda", m, max_batch_size=16)
    assert cuda.io_binding and cuda.options["arena_extend_strategy"] == "kSameAsRequested"
    assert cuda.options["use_tf32"] == 0  # fp32 graphs stay fp32 on GPU, as validated
    assert not cuda.options["sdpa_kernel"] & 8 and cuda.options["sdpa_kernel"] & 1  # flash yes, cuDNN SDPA no
    custom = cuda.with_options({"sdpa_kernel": None, "device_id": 1})
    assert "sdpa_kernel" not in custom.options and custom.options["device_id"] == 1
    assert cuda.options["device_id"] == 0 and cuda.with_options(None) is cuda
    # only the CPU arena is shrunk after each run, whatever the device: the GPU arena keeps its blocks
    # (a captured CUDA graph uses them; shrinking cost a quarter of GPU document throughput)
    assert cuda.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0", "gpu_graph_id": "-1"}
    assert custom.run_config["memory.enable_memory_arena_shrinkage"] == "cpu:0"


def test_cpu_plan_and_names(m):
    cpu = plan_provider("cpu", m, max_batch_size=16)
    assert cpu == ProviderPlan("cpu") and not cpu.io_binding
    assert cpu.run_config == {"memory.enable_memory_arena_shrinkage": "cpu:0"}
    assert set(AUTO_ORDER) == set(ORT_NAMES) and AUTO_ORDER[-1] == "cpu"
    with pytest.raises(ValueError, match="one of auto, tensorrt, cuda, cpu"):
        plan_provider("rocm", m, max_batch_size=16)


def test_session_options():
    opts = session_options(3)
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 1 and not opts.enable_mem_pattern
    assert session_options(None).intra_op_num_threads >= 1


@pytest.mark.parametrize("provider, threads, asked, plan", [
    ("cpu", 2, 0, (2, 1)),  # the default on a 2-vCPU box: two 1-thread runs
    ("cpu", 16, 0, (2, 8)),
    ("cpu", 1, 0, (1, 1)),  # one thread: nothing to split
    ("cpu", 8, 4, (4, 2)),
    ("cpu", 2, 3, (3, 1)),  # more runs than threads: one thread each
    ("openvino", 4, 2, (2, 2)),
    ("cuda", None, 0, (1, None)),  # a GPU runs one batch at a time unless told otherwise
    ("tensorrt", None, 2, (2, None)),  # GPU runs share their session: threads are not split
    ("none (static weights)", 4, 0, (1, 4)),
])
def test_plan_instances(provider, threads, asked, plan):
    assert plan_instances(provider, threads, asked) == plan


@pytest.mark.parametrize("provider, threads, shared", [
    ("cpu", 1, True),  # a 1-thread run has no pool: one session serves every instance
    ("cpu", 4, False),  # runs of one session share its pool: a session each
    ("openvino", 1, False),  # one inference request at a time per session
    ("cuda", None, True), ("tensorrt", None, True),  # one device: concurrent runs of its one session
    ("none (static weights)", 4, True),
])
def test_instances_share_a_session(provider, threads, shared):
    assert instances_share_a_session(provider, threads) is shared


def test_plan_instances_counts_usable_cores_by_default():
    count, each = plan_instances("cpu", None)
    assert count == (2 if default_threads() >= 2 else 1) and each == max(1, default_threads() // count)


def test_server_limits_instances():
    from runtime.serving.limits import ServerLimits

    assert ServerLimits().instances == 0 and ServerLimits(instances=3).instances == 3
    assert ServerLimits(instances=64).instances == 64
    for bad in (-1, 1.5, True, None, 65, 100_000):  # each instance is a thread: a typo must not start 100k
        with pytest.raises(ValueError, match="--instances must be an integer from 0 to 64"):
            ServerLimits(instances=bad)
    with pytest.raises(ValueError, match="--max-batch-size must be an integer >= 1"):
        ServerLimits(max_batch_size=0)


@pytest.mark.parametrize("name, most", [("max_wait_ms", 60_000), ("client_timeout", 3600)])
@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0, 1e13, 10**400])
def test_server_limits_times_are_bounded(name, most, bad):
    """A wait past threading's largest timeout (or no number at all) is refused at startup with the bounds,
    never an OverflowError at the first batch."""
    from runtime.serving.limits import ServerLimits

    assert getattr(ServerLimits(**{name: most}), name) == most
    with pytest.raises(ValueError, match=f"--{name.replace('_', '-')} must be a finite number from .* to {most}, got"):
        ServerLimits(**{name: bad})
