"""One run per output: a second corpus or Ray run on the same output is refused naming the running one,
two started together leave every id once, and a run killed with SIGKILL leaves no stale lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime import SpladeEncoder
from runtime.errors import CorpusError
from runtime.jobs.lock import exclusive_output, lock_path

REPO = Path(__file__).resolve().parents[2]
N = 600


def write_corpus(path: Path, n: int = N) -> Path:
    words = "sparse retrieval learned term weights inverted index query expansion".split()
    rows = [{"id": i, "text": " ".join(words[(i + j) % len(words)] for j in range(3 + i % 40))} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def start(model: Path, src: Path, dst: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime", "encode", "--model", str(model), "--provider", "cpu",
                             "--threads", "1", "--input", str(src), "--output", str(dst), "--format", "indices"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ids_in(dst: Path) -> list:
    return [json.loads(line)["id"] for line in dst.read_text().splitlines()]


def test_a_second_run_is_refused_naming_the_running_one(fp32_dir, tmp_path):
    src, dst = write_corpus(tmp_path / "c.jsonl", 20), tmp_path / "v.jsonl"
    dst.write_text("")
    with exclusive_output(dst):  # this test process is "the running one"
        done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--model", str(fp32_dir), "--input", str(src),
                               "--output", str(dst)], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert f"another run is writing this output (pid {os.getpid()}" in done.stderr
        assert dst.read_text() == ""  # refused before anything was read or cut
    assert lock_path(dst).exists() and dst.read_text() == ""


def test_two_runs_started_together_leave_each_id_once(fp32_dir, tmp_path):
    src, dst = write_corpus(tmp_path / "c.jsonl"), tmp_path / "v.jsonl"
    first, second = start(fp32_dir, src, dst), start(fp32_dir, src, dst)
    outcomes = [p.wait(timeout=300) for p in (first, second)]
    errors = [p.stderr.read() for p in (first, second)]
    assert sorted(outcomes) in ([0, 0], [0, 1]), errors
    if 1 in outcomes:  # the usual case: one ran, the other was refused naming it
        loser = outcomes.index(1)
        assert f"pid {(first, second)[1 - loser].pid}" in errors[loser]
    got = ids_in(dst)
    assert sorted(got) == list(range(N)) and len(got) == N


def test_a_killed_run_leaves_no_stale_lock_and_resumes(fp32_dir, tmp_path):
    src, dst = write_corpus(tmp_path / "c.jsonl", 3000), tmp_path / "v.jsonl"
    proc = start(fp32_dir, src, dst)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not dst.exists() or dst.stat().st_size == 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and 0 < len(ids_in(dst)) < 3000
    done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--model", str(fp32_dir), "--input", str(src),
                           "--output", str(dst), "--format", "indices"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    got = ids_in(dst)
    assert sorted(got) == list(range(3000)) and len(got) == 3000
    # the resumed rows are the same vectors a fresh encode gives
    enc = SpladeEncoder(fp32_dir, provider="cpu")
    texts = {json.loads(line)["id"]: json.loads(line)["text"] for line in src.read_text().splitlines()}
    rows = [json.loads(line) for line in dst.read_text().splitlines()][-5:]
    for row, vec in zip(rows, enc.encode([texts[r["id"]] for r in rows]), strict=True):
        assert row["indices"] == vec.indices.tolist() and np.allclose(row["values"], vec.values, atol=1e-6)


def test_a_second_ray_run_is_refused_before_ray_starts(fp32_dir, tmp_path):
    from runtime.jobs.ray import encode_files

    src, dst = write_corpus(tmp_path / "c.jsonl", 10), tmp_path / "shards"
    with exclusive_output(dst):
        with pytest.raises(CorpusError, match=f"another run is writing this output \\(pid {os.getpid()}"):
            encode_files(fp32_dir, src, dst, provider="cpu")
    assert not dst.exists()  # nothing was written for the refused run


def test_refusals_before_the_lock_leave_nothing_and_a_planted_symlink_is_not_followed(fp32_dir, tmp_path):
    from runtime.jobs.corpus import encode_corpus

    enc = SpladeEncoder(fp32_dir, provider="cpu")
    with pytest.raises(CorpusError, match="--input is not a file"):
        encode_corpus(enc, tmp_path / "missing.jsonl", tmp_path / "v.jsonl")
    with pytest.raises(CorpusError, match="--output exists and is not a file"):
        encode_corpus(enc, write_corpus(tmp_path / "c.jsonl", 3), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # no lock file left anywhere here
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".v.jsonl.lock").symlink_to(victim)  # planted where the lock goes
    with pytest.raises(CorpusError, match="lock file"):
        encode_corpus(enc, tmp_path / "c.jsonl", tmp_path / "v.jsonl")
    assert victim.read_text() == "precious" and not (tmp_path / "v.jsonl").exists()
