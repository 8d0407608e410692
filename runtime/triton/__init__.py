"""Triton Inference Server: model repositories for an exported folder, and a real server for tests."""
