"""`python -m runtime`: argument encoding, JSONL corpus with resume after a kill, info."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from runtime import SpladeEncoder
from runtime.core.sparse import SparseVector
from runtime.jobs.corpus import done_ids
from tests.conftest import REPO, assert_matches


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, **kwargs)


def test_encode_texts_json(fp32_dir, reference):
    done = run_cli("encode", "--model", fp32_dir, "--json", "what is splade", "")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    enc = SpladeEncoder(fp32_dir, provider="cpu")
    for text, row in zip(["what is splade", ""], rows, strict=True):
        expected = reference.encode(text)
        assert len(row) == int((expected > 0).sum())
        for token, weight in row.items():
            index = enc.tokenizer.token_to_id(token)
            assert abs(expected[index] - weight) < 1e-4
    plain = run_cli("encode", "--model", fp32_dir, "--top-k", "3", "capital of france")
    assert plain.returncode == 0 and "(3 terms)" in plain.stdout


def test_info_and_errors(fp32_dir, tmp_path):
    info = run_cli("info", "--model", fp32_dir)
    assert info.returncode == 0
    shown = json.loads(info.stdout)
    assert shown["provider"] == "cpu" and shown["manifest"]["sha256"]
    missing = run_cli("encode", "--model", tmp_path, "x")
    assert missing.returncode == 1 and "splade.json: missing" in missing.stderr and "Traceback" not in missing.stderr


def test_corpus_resume_after_kill(fp32_dir, reference, tmp_path):
    texts = {f"d{i}": f"document {i} about {['cats', 'rust', 'paris', 'onnx'][i % 4]} " * (1 + i % 40) for i in range(900)}
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    cmd = [sys.executable, "-m", "runtime", "encode", "--model", str(fp32_dir), "--input", str(src),
           "--output", str(dst), "--format", "indices", "--batch-size", "8"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not dst.exists() or dst.stat().st_size == 0):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(done_ids(dst))
    assert 0 < first < len(texts), "the kill must land mid-run"
    with open(dst, "a") as fh:
        fh.write('{"id": "d899", "indi')  # a torn line, as a kill mid-write leaves
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"encoded {len(texts) - first} new texts" in done.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(texts), "every id exactly once"
    for row in rows[:: 97]:
        assert_matches(SparseVector.from_dict(row), reference.encode(texts[row["id"]]))
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert "encoded 0 new texts" in again.stderr and len(dst.read_text().splitlines()) == len(texts)


def test_corpus_bad_line(fp32_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "ok"}\n{"id": 2}\n')
    done = run_cli("encode", "--model", fp32_dir, "--input", src, "--output", tmp_path / "o.jsonl")
    assert done.returncode == 1 and "in.jsonl:2" in done.stderr
