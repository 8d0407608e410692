"""Mixed-length English texts for tests: spans of this project's own documentation, in a fixed order.

From a few words (queries) to several hundred tokens (passages past a 512-token model's limit), drawn
with a fixed seed from the words of README.md and docs/*.md.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@cache
def _words() -> tuple[str, ...]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return tuple(w for f in files for w in f.read_text(encoding="utf-8").split() if w.isprintable())


def texts(n: int, seed: int = 0) -> list[str]:
    """n texts: half 3-10 words, a third 20-120 words, the rest 200-600 words (up to 3,000 characters)."""
    words, rng = _words(), random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        size = rng.randint(3, 10) if kind < 0.5 else rng.randint(20, 120) if kind < 0.83 else rng.randint(200, 600)
        start = rng.randrange(0, len(words) - size)
        out.append(" ".join(words[start: start + size])[:3000])
    return out
