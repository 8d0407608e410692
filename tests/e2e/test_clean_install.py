"""A fresh venv with only the base install and the `cpu` extra encodes, and holds none of the heavy packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from runtime.core.sparse import SparseVector
from tests.conftest import REPO, assert_matches


@pytest.mark.skipif(os.environ.get("SKIP_CLEAN_ENV") == "1", reason="SKIP_CLEAN_ENV=1")
def test_runtime_installs_and_runs_without_torch(fp32_dir, tmp_path, reference):
    """A fresh venv with the base install + `cpu` extra: no torch/transformers/optimum (nor the optional
    server, Triton or Ray packages), and it encodes."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{REPO}[cpu]"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    script = (
        "import importlib.util, json, sys\n"
        "for name in ('torch', 'transformers', 'optimum', 'ray', 'tritonclient', 'fastapi'):\n"
        "    assert importlib.util.find_spec(name) is None, name + ' is installed'\n"
        "from runtime import SpladeEncoder\n"
        f"vec = SpladeEncoder({str(fp32_dir)!r}, provider='cpu').encode(['what is splade'])[0]\n"
        "print(json.dumps(vec.to_qdrant()))\n"
    )
    out = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert_matches(SparseVector.from_dict(json.loads(out.stdout)), reference.encode("what is splade"))
    assert np.isfinite(json.loads(out.stdout)["values"]).all()
