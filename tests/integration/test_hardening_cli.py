"""The corpus CLI never destroys what it did not write; ids keep their JSON type; odd text names its line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.core.sparse import SparseVector
from tests.conftest import assert_matches

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def corpus(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def encode(model, src, dst, *extra):
    return run_cli("encode", "--model", model, "--input", src, "--output", dst, "--format", "indices", *extra)


def test_foreign_output_is_left_untouched(fp32_dir, tmp_path):
    src = corpus(tmp_path / "in.jsonl", [{"id": "a", "text": "alpha"}])
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nsecond line")  # no newline at the end, like a torn line
    done = encode(fp32_dir, src, notes)
    assert done.returncode == 1 and f"{notes}:1: not a line this tool writes" in done.stderr
    assert notes.read_text() == "my notes\nsecond line"
    one_line = tmp_path / "one.txt"
    one_line.write_text("just this")
    assert encode(fp32_dir, src, one_line).returncode == 1 and one_line.read_text() == "just this"


def test_malformed_middle_line_is_refused_and_kept(fp32_dir, tmp_path):
    src = corpus(tmp_path / "in.jsonl", [{"id": i, "text": f"text {i}"} for i in range(4)])
    dst = tmp_path / "out.jsonl"
    assert encode(fp32_dir, src, dst).returncode == 0
    lines = dst.read_text().splitlines(keepends=True)
    damaged = lines[0] + "garbage\n" + "".join(lines[1:])
    dst.write_text(damaged)
    done = encode(fp32_dir, src, dst)
    assert done.returncode == 1 and f"{dst}:2: not a line this tool writes" in done.stderr
    assert dst.read_text() == damaged
    wrong_format = run_cli("encode", "--model", fp32_dir, "--input", src, "--output", tmp_path / "x.jsonl")
    assert wrong_format.returncode == 0
    mixed = encode(fp32_dir, src, tmp_path / "x.jsonl")
    assert mixed.returncode == 1 and "holds --format tokens rows, not indices" in mixed.stderr


def test_torn_last_line_is_cut_and_redone(fp32_dir, tmp_path, reference):
    rows = [{"id": i, "text": f"document {i} about paris"} for i in range(3)]
    src, dst = corpus(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert encode(fp32_dir, src, dst).returncode == 0
    full = dst.read_text()
    dst.write_text(full[: full.rindex("\n", 0, len(full) - 1) + 1] + full.splitlines()[-1][:15])
    done = encode(fp32_dir, src, dst)
    assert done.returncode == 0 and "encoded 1 new texts" in done.stderr
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert sorted(r["id"] for r in out) == [0, 1, 2]
    for r in out:
        assert_matches(SparseVector.from_dict(r), reference.encode(rows[r["id"]]["text"]))


def test_output_equal_to_input_is_refused(fp32_dir, tmp_path):
    src = corpus(tmp_path / "in.jsonl", [{"id": 1, "text": "x"}])
    before = src.read_text()
    done = encode(fp32_dir, src, tmp_path / "." / "in.jsonl")
    assert done.returncode == 1 and "same file as --input" in done.stderr and src.read_text() == before


def test_ids_keep_their_json_type_and_duplicates_are_refused(fp32_dir, tmp_path):
    src = corpus(tmp_path / "in.jsonl", [{"id": 1, "text": "one"}, {"id": "1", "text": "string one"},
                                         {"id": 2.5, "text": "float"}, {"id": True, "text": "bool"}])
    dst = tmp_path / "out.jsonl"
    assert encode(fp32_dir, src, dst).returncode == 0
    ids = [json.loads(line)["id"] for line in dst.read_text().splitlines()]
    assert ids == [1, "1", 2.5, True] and type(ids[0]) is int and type(ids[3]) is bool
    again = encode(fp32_dir, src, dst)  # resume recognises every typed id
    assert "encoded 0 new texts" in again.stderr

    dup = corpus(tmp_path / "dup.jsonl", [{"id": "a", "text": "first"}, {"id": "b", "text": "x"},
                                          {"id": "a", "text": "second"}])
    out = tmp_path / "dup-out.jsonl"
    done = encode(fp32_dir, dup, out)
    assert done.returncode == 1 and f'{dup}:3: id "a" repeats line 1' in done.stderr and not out.exists()
    kept = encode(fp32_dir, dup, out, "--keep-first-duplicate")
    assert kept.returncode == 0 and [json.loads(r)["id"] for r in out.read_text().splitlines()] == ["a", "b"]


@pytest.mark.parametrize("bad_id, message", [(None, "'id' must be a string or a number, got null"),
                                             ([1], "'id' must be a string or a number, got [1]"),
                                             ({"k": 1}, "'id' must be a string or a number")])
def test_non_scalar_ids_are_refused(fp32_dir, tmp_path, bad_id, message):
    src = corpus(tmp_path / "in.jsonl", [{"id": "ok", "text": "x"}, {"id": bad_id, "text": "y"}])
    done = encode(fp32_dir, src, tmp_path / "out.jsonl")
    assert done.returncode == 1 and f"in.jsonl:2: {message}" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_lone_surrogate_names_file_and_line(fp32_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": "bad \\ud800 here"}\n')
    done = encode(fp32_dir, src, tmp_path / "out.jsonl")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{src}:2: 'text' holds an unpaired UTF-16 surrogate at character 4" in done.stderr


def test_window_cap_names_the_id(fp32_dir, tmp_path):
    long = "Sparse retrieval with learned term weights. " * 4000  # far over 32 windows
    src = corpus(tmp_path / "in.jsonl", [{"id": "short", "text": "x"}, {"id": "long", "text": long}])
    done = encode(fp32_dir, src, tmp_path / "out.jsonl", "--no-truncate")
    assert done.returncode == 1 and f'{src}: id "long": needs' in done.stderr and "max_windows=32" in done.stderr


def test_ray_refuses_options_it_cannot_honour(fp32_dir, tmp_path):
    """--ray refuses, before starting Ray, the options its actors would ignore."""
    from runtime.__main__ import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "paris"}\n')
    for flag, words in (("--allow-failed-validation", "--allow-failed-validation is not available with --ray"),
                        ("--keep-first-duplicate", "--keep-first-duplicate is not available with --ray")):
        with pytest.raises(SystemExit, match=words):
            main(["encode", "--ray", "--model", str(fp32_dir), "--input", str(src), "--output", str(tmp_path / "o"), flag])
