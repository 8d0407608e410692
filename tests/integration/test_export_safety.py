"""--output safety: an export never overwrites what is not a previous export of this tool, and never leaves a
previous export half-replaced (killed, failed validation, or replaced by a different model's files)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export import ExportConfig, OutputFolderError, ValidationError, export_model
from export.__main__ import main as export_cli
from export.config import Bounds
from runtime import SpladeEncoder
from runtime.manifest import load_manifest
from tests import tiny_models
from tests.conftest import REPO


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT source folder (64 positions, a few hundred terms: exports in seconds)."""
    root = tmp_path_factory.mktemp("safety-src")
    return {"bert": tiny_models.build("bert", root / "bert", {"wordpiece": tiny_models.wordpiece()})}


def hashes(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, relative path -> sha256 (or "dir")."""
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def siblings(folder: Path) -> list[str]:
    """What else lies beside `folder` (staging or moved-aside folders would show here)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def tiny(src: Path, out: Path, **kwargs) -> ExportConfig:
    return ExportConfig(model=str(src), output=out, top_k=0, **kwargs)


def test_source_folder_is_refused_and_left_byte_identical(sources):
    src = sources["bert"]
    before, around = hashes(src), siblings(src)
    with pytest.raises(OutputFolderError, match="is the source model folder") as err:
        export_model(tiny(src, src))
    assert str(src) in str(err.value) and "config.json" in str(err.value)
    with pytest.raises(OutputFolderError, match="inside the source model folder"):
        export_model(tiny(src, src / "exported"))
    assert hashes(src) == before and siblings(src) == around


def test_foreign_folder_is_refused_before_any_work(sources, tmp_path, monkeypatch, capsys):
    foreign = tmp_path / "notes"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "todo.txt").write_text("keep me")
    (foreign / "sub" / "data.bin").write_bytes(os.urandom(256))
    before = hashes(foreign)

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was resolved before the output was checked")

    monkeypatch.setattr("export.pipeline.resolve_model", no_loading)
    with pytest.raises(OutputFolderError) as err:
        export_model(tiny(sources["bert"], foreign))
    message = str(err.value)
    assert str(foreign) in message and "todo.txt" in message and "sub" in message and "not a previous export" in message
    assert export_cli(["--model", str(sources["bert"]), "--output", str(foreign), "-q"]) == 1
    assert "todo.txt" in capsys.readouterr().err
    assert hashes(foreign) == before and siblings(foreign) == []


def test_a_file_as_output_and_a_foreign_failed_sibling_are_refused(sources, fp32_dir, tmp_path):
    (tmp_path / "model").write_text("a file")
    with pytest.raises(OutputFolderError, match="not a folder"):
        export_model(tiny(sources["bert"], tmp_path / "model"))
    out = tmp_path / "m"
    shutil.copytree(fp32_dir, out)
    (tmp_path / "m.failed").mkdir()
    (tmp_path / "m.failed" / "mine.txt").write_text("not an export")
    before = hashes(tmp_path)
    with pytest.raises(OutputFolderError, match=r"m\.failed.*mine\.txt"):
        export_model(tiny(sources["bert"], out))
    assert hashes(tmp_path) == before


def router_folder(src: Path, dest: Path) -> Path:
    """A sentence-transformers Router folder (static query side, `src` as the document MLM), for a two-folder export."""
    pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (
        MLMTransformer,
        Router,
        SparseStaticEmbedding,
        SpladePooling,
    )

    tok = MLMTransformer(str(src)).tokenizer
    torch.manual_seed(0)
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=tok, weight=torch.rand(tok.vocab_size), frozen=True)],
        document_modules=[MLMTransformer(str(src)), SpladePooling("max")])
    SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu").save(str(dest))
    return dest


def test_previous_export_is_replaced_whole(sources, tmp_path):
    """A Router export (document/, query/) replaced by a single-folder one: nothing of the old one stays."""
    out = tmp_path / "out" / "m"
    first = export_model(tiny(router_folder(sources["bert"], tmp_path / "router"), out, validate=False))
    assert set(first.folders) == {"document", "query"} and (out / "query" / "query_weights.npy").is_file()
    result = export_model(tiny(sources["bert"], out))
    assert result.replaced and result.folders == {"": out} and result.manifest.architecture == "BertForMaskedLM"
    fresh = tmp_path / "fresh" / "m"
    export_model(tiny(sources["bert"], fresh))
    assert sorted(hashes(out)) == sorted(hashes(fresh)), "the folder holds exactly what one export writes"
    assert siblings(out) == [], "no staging or moved-aside folder is left beside it"
    assert len(SpladeEncoder(out, provider="cpu").encode(["what is splade"])[0]) > 0


def test_failed_validation_beside_a_good_export_leaves_it_untouched(sources, tmp_path):
    out = tmp_path / "m"
    export_model(tiny(sources["bert"], out))
    before = hashes(out)
    with pytest.raises(ValidationError) as err:
        export_model(tiny(sources["bert"], out, bounds=Bounds(min_top32_overlap=1.01)))
    message = str(err.value)
    assert "validation failed: fp32 top-32 overlap 1.000 < 1.01" in message
    assert f"{out}.failed" in message and "left as it was" in message
    assert hashes(out) == before
    assert load_manifest(out).validation["passed"] is True
    assert load_manifest(tmp_path / "m.failed").validation["passed"] is False
    assert siblings(out) == ["m.failed"]
    SpladeEncoder(out, provider="cpu").encode(["what is splade"])


def _stamp(folder: Path) -> list[tuple[str, int, int]]:
    return [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir())]


@pytest.mark.parametrize("stage, ready", [("tracing", None), ("validation", "splade.json")])
def test_killed_export_leaves_the_previous_one_loadable(fp32_dir, tmp_path, stage, ready):
    """SIGKILL while the new export traces (its staging folder just made) or validates (its graph and pending
    manifest written), or as soon as anything in the output changes: the previous export is byte-identical
    and loads."""
    out = tmp_path / "m"
    shutil.copytree(fp32_dir, out)
    before, stamp = hashes(out), _stamp(out)

    def moment() -> bool:
        staged = [p for p in tmp_path.glob(".m.partial-*") if ready is None or (p / ready).is_file()]
        return bool(staged) or _stamp(out) != stamp

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "export", "--model", "splade-tiny", "--int8", "--output", str(out),
                             "-q"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not moment():
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"the export ended before the {stage} moment: {err.decode()[-2000:]}"
    assert hashes(out) == before
    enc = SpladeEncoder(out, provider="cpu")
    assert enc.manifest.precision == "fp32" and len(enc.encode(["what is splade"])[0]) > 0


def test_a_previous_export_holding_other_files_is_not_replaced(sources, tmp_path):
    """Replacing a previous export deletes its folder: refused while it holds files no export writes."""
    out = tmp_path / "mine"
    export_model(tiny(sources["bert"], out))
    (out / "my-notes.txt").write_text("results of last week")
    (out / "runs").mkdir()
    before = hashes(out)
    with pytest.raises(OutputFolderError, match="holds a previous export and other files .*my-notes.txt.*runs/"):
        export_model(tiny(sources["bert"], out))
    assert hashes(out) == before and siblings(out) == []


def test_a_published_export_is_readable_by_others(sources, tmp_path):
    out = tmp_path / "shared"
    export_model(tiny(sources["bert"], out))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
