"""`export` reaches `runtime` only through the manifest: light modules load without the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "onnxruntime", "optimum")


def loaded_after(*modules: str) -> set[str]:
    """Which heavy libraries a fresh interpreter holds after importing `modules`."""
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            f"print(__import__('json').dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout))


def test_manifest_triton_and_sources_need_no_torch_nor_onnxruntime():
    assert loaded_after("runtime.manifest", "runtime.errors", "export.errors", "export.sources", "runtime.triton",
                        "export.validate", "benchmarks.machine") == set()


def test_loadgen_needs_no_torch():
    assert loaded_after("benchmarks.loadgen") <= {"onnxruntime"}  # onnxruntime loads with the first session


def test_triton_cli_runs_without_torch(fp32_dir, tmp_path):
    code = ("import sys, runpy\nsys.argv = ['runtime.triton', '--model-dir', sys.argv[1], '--output', sys.argv[2]]\n"
            "try:\n    runpy.run_module('runtime.triton', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nassert 'torch' not in sys.modules and 'transformers' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, str(fp32_dir), str(tmp_path / "repo")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "repo" / "splade_onnx" / "config.pbtxt").is_file()
