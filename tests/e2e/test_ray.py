"""Ray Data bulk encoding on a local Ray instance, every row compared with SpladeEncoder.encode."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from runtime import SpladeEncoder  # noqa: E402
from runtime.jobs.ray import encode_dataset  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.corpus import texts as corpus_texts  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_encode_dataset_matches_encoder(local_ray, fp32_dir):
    texts = corpus_texts(300) + ["", "   "]
    ds = ray.data.from_items([{"id": i, "body": t} for i, t in enumerate(texts)], override_num_blocks=6)
    out = encode_dataset(ds, fp32_dir, text_column="body", batch_size=32, num_actors=2).take_all()
    assert len(out) == len(texts)
    expected = SpladeEncoder(fp32_dir, provider="cpu").encode(texts)
    for row in out:
        vec = expected[row["id"]]
        assert row["body"] == texts[row["id"]]
        assert np.array_equal(np.asarray(row["indices"]), vec.indices)
        assert np.allclose(np.asarray(row["values"]), vec.values, atol=1e-6)
    with pytest.raises(ValueError, match="no column 'text'"):
        encode_dataset(ds, fp32_dir)


def test_ray_cli_jsonl(fp32_dir, tmp_path):
    texts = corpus_texts(40)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    done = subprocess.run([sys.executable, "-m", "runtime", "encode", "--ray", "--model", str(fp32_dir),
                           "--input", str(src), "--output", str(tmp_path / "out"), "--num-actors", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.json*")) for line in f.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == list(range(len(texts)))
    expected = SpladeEncoder(fp32_dir, provider="cpu").encode(texts)
    for row in rows:
        assert row["indices"] == expected[row["id"]].indices.tolist()


def test_encode_files_parquet(local_ray, fp32_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runtime.jobs.ray import encode_files

    texts = corpus_texts(50)
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.table({"id": list(range(50)), "text": texts}), src / "part-0.parquet")
    assert encode_files(fp32_dir, src, tmp_path / "out", num_actors=1, batch_size=16, provider="cpu") == 50
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("indices").type == pa.list_(pa.int32())
    assert table.schema.field("values").type == pa.list_(pa.float32())
    expected = SpladeEncoder(fp32_dir, provider="cpu").encode(texts)
    for row in table.to_pylist():
        assert row["indices"] == expected[row["id"]].indices.tolist()
