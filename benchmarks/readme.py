"""`python -m benchmarks.readme`: copy the committed result tables into docs/benchmarks.md (between markers)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"compare-cpu": ["compare-cpu.md"], "compare-gpu": ["compare-gpu.md"], "loadgen": ["loadgen-splade-tiny-fp32.md", "loadgen-splade-tiny-fp32-queries.md",
                                                                                     "loadgen-splade-tiny-fp32-passages.md", "loadgen-triton.md",
                                                                                     "loadgen-bert-base-int8.md", "loadgen-gpu-bert-base-fp16.md",
                                                                                     "ideal-queue.md"], "gpu-checks": ["gpu-checks.md"]}


VERBATIM = {"gpu-checks.md"}  # several tables with prose between them: copied whole


def table(name: str) -> str:
    """The result file's table rows (its header lines name machine, versions and command)."""
    text = (ROOT / "benchmarks" / "results" / name).read_text()
    if name in VERBATIM:
        return f"_{name}:_\n\n" + text.strip()
    head = [line for line in text.splitlines() if line and not line.startswith("|")]
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return "\n".join([f"_{name}: " + "; ".join(head) + "_", "", *rows])


TARGET = ROOT / "docs" / "benchmarks.md"


def main() -> int:
    readme = TARGET
    text = readme.read_text()
    for marker, files in SECTIONS.items():
        body = "\n\n".join(table(f) for f in files if (ROOT / "benchmarks" / "results" / f).exists())
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
        text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
