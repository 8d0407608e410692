"""Ray bulk encoding never hangs (as many actors as local CPUs) and applies the corpus CLI's checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from runtime import SpladeEncoder  # noqa: E402
from runtime.jobs.ray import actor_resources  # noqa: E402
from tests.corpus import texts as corpus_texts  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def ray_cli(model, src, dst, *extra, timeout=420):
    return subprocess.run([sys.executable, "-m", "runtime", "encode", "--ray", "--model", str(model), "--input", str(src),
                           "--output", str(dst), *map(str, extra)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_as_many_actors_as_cpus_finishes(fp32_dir, tmp_path):
    """The local Ray instance has one CPU per core; with that many actors the read task used to wait forever."""
    cpus = len(os.sched_getaffinity(0))
    texts = corpus_texts(60)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    done = ray_cli(fp32_dir, src, tmp_path / "out", "--num-actors", cpus, "--threshold", "0.5", "--top-k", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.json*")) for line in f.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == list(range(len(texts)))
    expected = SpladeEncoder(fp32_dir, provider="cpu").encode(texts, threshold=0.5, top_k=20)
    for row in rows:
        assert row["indices"] == expected[row["id"]].indices.tolist() and min(row["values"]) > 0.5
    too_many = ray_cli(fp32_dir, src, tmp_path / "out2", "--num-actors", cpus + 1)
    assert too_many.returncode == 1 and f"at most {cpus} actors fit" in too_many.stderr


def test_actor_resources_leave_a_cpu_for_reads():
    assert actor_resources(2, 2) == (0.5, 1)
    assert actor_resources(8, 1) == (1.0, 8)
    assert actor_resources(1, 1) == (0.0, 1)
    with pytest.raises(ValueError, match="at most 2 actors fit"):
        actor_resources(2, 3)


@pytest.mark.parametrize("rows, extra, message", [
    ([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}], [], "in.jsonl:2: id 1 repeats"),
    ([{"id": None, "text": "a"}], [], "'id' must be a string or a number"),
    ([{"id": 1, "text": "a"}], ["--format", "tokens"], "--format tokens is not available with --ray"),
])
def test_ray_path_applies_corpus_checks(fp32_dir, tmp_path, rows, extra, message):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = ray_cli(fp32_dir, src, tmp_path / "out", *extra, timeout=120)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_ray_refuses_foreign_or_same_output(fp32_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "text": "a"}) + "\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    done = ray_cli(fp32_dir, src, notes, timeout=120)
    assert done.returncode == 1 and "not an empty folder" in done.stderr and notes.read_text() == "keep me"
    same = ray_cli(fp32_dir, src, src, timeout=120)
    assert same.returncode == 1 and "same file as --input" in same.stderr
