"""`python -m benchmarks.readme` fills the generated blocks of docs/benchmarks.md from benchmarks/results/."""

from __future__ import annotations

from benchmarks import readme


def test_blocks_are_filled_from_the_result_files(tmp_path, monkeypatch):
    target = tmp_path / "benchmarks.md"
    target.write_text("intro\n<!-- compare-cpu -->\nstale\n<!-- /compare-cpu -->\nmiddle\n<!-- loadgen -->\n<!-- /loadgen -->\n")
    monkeypatch.setattr(readme, "TARGET", target)
    assert readme.main() == 0
    text = target.read_text()
    assert "stale" not in text and text.startswith("intro\n<!-- compare-cpu -->\n_compare-cpu.md: Machine:")
    assert "| splade-tiny | ours-fp32 |" in text and "| dynamic batching |" in text and "\nmiddle\n" in text


def test_the_docs_hold_the_current_tables():
    text = (readme.ROOT / "docs" / "benchmarks.md").read_text()
    for files in readme.SECTIONS.values():
        for name in files:
            assert readme.table(name) in text, f"{name}: run `python -m benchmarks.readme`"
