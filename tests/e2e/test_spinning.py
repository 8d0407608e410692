"""ORT's thread spinning: a documented option on the encoder (on by default) and the server (off by default)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from runtime import SpladeEncoder
from runtime.__main__ import build_parser
from tests.conftest import TEXTS

REPO = Path(__file__).resolve().parents[2]
KEY = "session.intra_op.allow_spinning"


def test_encoder_option_reaches_the_session_and_changes_no_vector(fp32_dir):
    spinning = SpladeEncoder(fp32_dir, "cpu")
    sleeping = SpladeEncoder(fp32_dir, "cpu", allow_spinning=False)
    assert spinning.backend.session.get_session_options().get_session_config_entry(KEY) == "1"
    assert sleeping.backend.session.get_session_options().get_session_config_entry(KEY) == "0"
    for a, b in zip(spinning.encode(TEXTS), sleeping.encode(TEXTS)):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)


def test_server_flag_defaults_to_spinning():
    args = build_parser().parse_args(["serve", "--model", "m"])
    assert args.allow_spinning == 1  # ORT's default: measured better here (docs/cpu-precisions.md)
    assert build_parser().parse_args(["serve", "--model", "m", "--allow-spinning", "0"]).allow_spinning == 0


def test_measuring_script_runs(fp32_dir, tmp_path):
    """Timings are never asserted: only that both settings are measured in process and through the server."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.spinning", "--model", str(fp32_dir), "--queries", "5",
                           "--requests", "12", "--clients", "4", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "spinning.json").read_text())
    assert set(result["server"]) == {"spinning", "no-spinning"}
    assert all(r["answered_200"] == 12 for r in result["server"].values())
    assert set(result["in_process"]["alone"]) == {"spinning", "no-spinning"}
