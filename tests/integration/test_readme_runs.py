"""The README's commands run as written, offline: export splade-tiny to `models/tiny`, the Python snippet,
the encode commands (texts and a corpus), and the serve command with its curl request.

`models/tiny`, `corpus.jsonl` and `vectors.jsonl` are made in a temporary folder that the commands run in.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, assert_matches
from tests.unit.test_docs_commands import bash_blocks, logical_lines

README = (REPO / "README.md").read_text()


def readme_lines(prefix: str) -> list[str]:
    """README bash lines (comments dropped) that start with `prefix`."""
    return [shlex.join(shlex.split(line, comments=True)) for start, body in bash_blocks(README)
            for _, line in logical_lines(start, body) if line.startswith(prefix)]


def run(line: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    assert words[0] == "python"
    return subprocess.run([sys.executable, *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding `models/tiny`, exported by the README's own first export command."""
    folder = tmp_path_factory.mktemp("readme")
    [export] = [line for line in readme_lines("python -m export") if "models/tiny" in line]
    done = run(export, folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (folder / "models" / "tiny" / "splade.json").is_file()
    return folder


def test_python_snippet(workdir, reference):
    from runtime import SpladeEncoder

    snippet = re.search(r"```python\n(from runtime import SpladeEncoder.*?)```", README, re.S).group(1)
    code = snippet.replace('provider="auto"', 'provider="cpu"') + "\nprint(__import__('json').dumps(enc.decode(vecs[0])))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    terms = json.loads(done.stdout.strip().splitlines()[-1])
    enc = SpladeEncoder(workdir / "models" / "tiny", provider="cpu")
    [vec] = enc.encode(["what is splade"])
    assert terms == pytest.approx(enc.decode(vec)) and list(terms) == list(enc.decode(vec))
    assert_matches(vec, reference.encode("what is splade"))


def test_encode_commands(workdir, reference):
    from runtime import SpladeEncoder

    enc = SpladeEncoder(workdir / "models" / "tiny", provider="cpu")
    texts_line, corpus_line = readme_lines("python -m runtime encode")
    done = run(texts_line, workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    for text in ("what is splade", "capital of france"):
        top = enc.decode(enc.encode([text], top_k=10)[0])
        shown = ", ".join(f"{t} {w:.2f}" for t, w in top.items())
        assert f"{text!r} ({len(top)} terms): {shown}" in done.stdout
    texts = ["what is splade", "capital of france", "a long document " * 50]
    (workdir / "corpus.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    done = run(corpus_line, workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (workdir / "vectors.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    for row, text in zip(rows, texts, strict=True):
        vec = enc.encode([text])[0]
        assert list(row["vector"]) == list(enc.decode(vec))
        assert_matches(vec, reference.encode(text))
    again = run(corpus_line, workdir)  # resumable: nothing new, nothing twice
    assert again.returncode == 0 and len((workdir / "vectors.jsonl").read_text().splitlines()) == 3


def test_serve_and_curl(workdir):
    [serve] = readme_lines("python -m runtime serve")
    [curl] = readme_lines("curl ")
    port = re.search(r"--port (\d+)", serve).group(1)
    line = serve.replace("'[--query-model' 'DIR]'", "").replace("[--query-model DIR]", "").strip()
    words = shlex.split(line)
    proc = subprocess.Popen([sys.executable, *words[1:], "--provider", "cpu"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        body = json.loads(re.search(r"-d '([^']+)'", curl).group(1))
        request = urllib.request.Request(f"http://localhost:{port}/embed_sparse", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    from runtime import SpladeEncoder

    vec = SpladeEncoder(workdir / "models" / "tiny", provider="cpu").encode(body["inputs"])[0]
    assert [x["index"] for x in answer[0]] == vec.indices.tolist()
    assert np.allclose([x["value"] for x in answer[0]], vec.values, atol=1e-6)
