"""Backends: ONNX Runtime (TensorRT, CUDA, CPU) and OpenVINO; each runs a padded Batch and knows nothing of requests."""
