"""A folder whose export failed validation is refused by the encoder, the CLI and the server unless asked."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from export import ExportConfig, export_model
from export.config import Bounds
from export.validate import ValidationError
from runtime import ModelFolderError, SpladeEncoder
from tests.conftest import assert_matches
from tests.servers import AppServer, Server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def failed_dir(tmp_path_factory) -> Path:
    """A real export whose validation fails: an overlap bound no graph can meet (the fp32 figure is 1.0)."""
    out = tmp_path_factory.mktemp("failed") / "m"
    with pytest.raises(ValidationError):
        export_model(ExportConfig(model="splade-tiny", output=out, bounds=Bounds(min_top32_overlap=1.01)))
    assert json.loads((out / "splade.json").read_text())["validation"]["passed"] is False
    return out


def test_encoder_refuses_and_names_the_figure(failed_dir):
    with pytest.raises(ModelFolderError) as err:
        SpladeEncoder(failed_dir, provider="cpu")
    message = str(err.value)
    assert "failed its validation" in message and "fp32 top-32 overlap 1.000 < 1.01" in message
    assert "allow_failed_validation=True" in message


def test_encoder_loads_when_asked_and_logs_it(failed_dir, reference, caplog):
    with caplog.at_level(logging.WARNING, logger="runtime"):
        enc = SpladeEncoder(failed_dir, provider="cpu", allow_failed_validation=True)
    assert any("failed validation" in r.getMessage() and "1.01" in r.getMessage() for r in caplog.records)
    [vec] = enc.encode(["what is splade"])
    assert_matches(vec, reference.encode("what is splade"))


def test_passing_and_unvalidated_folders_load_without_a_word(fp32_dir, exports, caplog):
    with caplog.at_level(logging.WARNING, logger="runtime"):
        SpladeEncoder(fp32_dir, provider="cpu")
    assert not [r for r in caplog.records if "validation" in r.getMessage()]
    assert json.loads((fp32_dir / "splade.json").read_text())["validation"]["passed"] is True


def test_cli_refuses_then_allows(failed_dir):
    base = [sys.executable, "-m", "runtime", "encode", "--model", str(failed_dir), "--json", "what is splade"]
    refused = subprocess.run(base, cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 1 and "fp32 top-32 overlap 1.000 < 1.01" in refused.stderr
    allowed = subprocess.run([*base, "--allow-failed-validation"], cwd=REPO, capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
    assert "failed validation" in allowed.stderr and json.loads(allowed.stdout)[0]


def test_server_refuses_then_serves(failed_dir, caplog):
    with pytest.raises(RuntimeError, match="failed its validation"):  # `serve` exits before it listens
        Server(failed_dir)
    with caplog.at_level(logging.WARNING, logger="runtime"), AppServer(failed_dir, "--allow-failed-validation") as srv:
        r = srv.post("/embed_sparse", json={"inputs": "what is splade"})
        assert r.status_code == 200 and len(r.json()[0]) > 0
    assert "failed validation" in caplog.text
