"""Resumable JSONL corpus encoding: each id written exactly once, even across kills and restarts."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from runtime.encoder import SpladeEncoder
from runtime.sparse import SparseVector

Format = Literal["tokens", "indices"]


def read_corpus(path: Path) -> Iterator[tuple[str, str]]:
    """(id, text) per line of `{"id": ..., "text": ...}`; a bad line raises ValueError naming it."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                doc_id, text = row["id"], row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected a JSON object with 'id' and 'text' ({exc})") from None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: 'text' must be a string")
            yield str(doc_id), text


def done_ids(path: Path) -> set[str]:
    """Ids already in the output; a torn last line (killed mid-write) is cut off so it is redone."""
    if not path.exists():
        return set()
    ids: set[str] = set()
    good = 0
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                ids.add(str(json.loads(raw)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                break
            if not raw.endswith(b"\n"):
                ids.discard(str(json.loads(raw)["id"]))
                break
            good += len(raw)
    if good != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return ids


def record(encoder: SpladeEncoder, doc_id: str, vec: SparseVector, fmt: Format) -> dict:
    if fmt == "tokens":
        return {"id": doc_id, "vector": encoder.decode(vec)}
    return {"id": doc_id, **vec.to_qdrant()}


def encode_corpus(encoder: SpladeEncoder, src: Path, dst: Path, *, fmt: Format = "tokens", chunk: int = 256,
                  batch_size: int = 32, top_k: int | None = None, threshold: float = 0.0,
                  truncate: bool = True, progress: bool = True) -> int:
    """Encode `src` into `dst` (appending); returns how many texts were encoded in this run."""
    skip = done_ids(dst)
    total = sum(1 for _ in read_corpus(src))
    written = 0
    started = time.monotonic()

    def flush(rows: list[tuple[str, str]], out) -> None:
        vectors = encoder.encode([t for _, t in rows], batch_size=batch_size, top_k=top_k,
                                 threshold=threshold, truncate=truncate)
        out.write("".join(json.dumps(record(encoder, i, v, fmt)) + "\n" for (i, _), v in zip(rows, vectors)))
        out.flush()
        os.fsync(out.fileno())

    with open(dst, "a", encoding="utf-8") as out:
        pending: list[tuple[str, str]] = []
        seen = set(skip)
        for doc_id, text in read_corpus(src):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            pending.append((doc_id, text))
            if len(pending) >= chunk:
                flush(pending, out)
                written += len(pending)
                pending = []
                if progress:
                    _progress(len(skip) + written, total, started, written)
        if pending:
            flush(pending, out)
            written += len(pending)
    if progress:
        _progress(len(skip) + written, total, started, written)
        print(file=sys.stderr)
    return written


def _progress(done: int, total: int, started: float, this_run: int) -> None:
    rate = this_run / max(time.monotonic() - started, 1e-9)
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} texts, {rate:.1f}/s")
    sys.stderr.flush()
