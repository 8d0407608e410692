"""Resumable JSONL corpus encoding: each id written exactly once, even across kills and restarts."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from runtime.core.checks import check_texts
from runtime.core.options import EncodeOptions
from runtime.core.pipeline import SparseEncoder
from runtime.core.sparse import SparseVector
from runtime.errors import CorpusError, InputTooLongError, InvalidInputError
from runtime.jobs.lock import exclusive_output

Format = Literal["tokens", "indices"]
DocId = str | int | float | bool
_OURS = b'{"id": '  # how every line this tool writes starts (json.dumps of a dict whose first key is id)


def id_key(doc_id: DocId) -> str:
    """Ids keep their JSON type: 1 and "1" are different ids."""
    return json.dumps(doc_id)


def _check_id(doc_id: object) -> str | None:
    """None if `doc_id` is a usable id (a JSON string, number or boolean), else what is wrong."""
    if doc_id is None or not isinstance(doc_id, str | int | float):
        return f"'id' must be a string or a number, got {json.dumps(doc_id)[:60]}"
    if isinstance(doc_id, float) and not math.isfinite(doc_id):
        return "'id' must be a finite number"
    return None


def read_corpus(path: Path, *, keep_first_duplicate: bool = False) -> Iterator[tuple[DocId, str]]:
    """(id, text) per line of `{"id": ..., "text": ...}`; a bad line raises ValueError naming `file:line`.

    A repeated id is refused with both line numbers, unless `keep_first_duplicate` (later ones skipped).
    """
    first_seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                doc_id, text = row["id"], row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CorpusError(f"{path}:{number}: expected a JSON object with 'id' and 'text' ({exc})") from None
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{number}: 'text' must be a string")
            problem = _check_id(doc_id)
            if problem:
                raise CorpusError(f"{path}:{number}: {problem}")
            try:
                check_texts([text], "text")
            except InvalidInputError as exc:
                message = str(exc).replace("text[0]", "'text'")
                raise CorpusError(f"{path}:{number}: {message}") from None
            key = id_key(doc_id)
            if key in first_seen:
                if keep_first_duplicate:
                    continue
                raise CorpusError(f"{path}:{number}: id {key} repeats line {first_seen[key]}; ids must be unique "
                                 f"(--keep-first-duplicate keeps the first and skips the rest)")
            first_seen[key] = number
            yield doc_id, text


def check_paths(src: Path, dst: Path) -> None:
    """--output must not be --input (appending to the corpus being read would corrupt it)."""
    if src.resolve() == dst.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)):
        raise CorpusError(f"{dst}: --output is the same file as --input; choose another output")


def _row_format(row: object) -> Format | None:
    if not isinstance(row, dict) or _check_id(row.get("id")) is not None:
        return None
    if isinstance(row.get("vector"), dict):
        return "tokens"
    if isinstance(row.get("indices"), list) and isinstance(row.get("values"), list):
        return "indices"
    return None


def done_ids(path: Path, fmt: Format | None = None) -> set[str]:
    """Keys (`id_key`) of the ids already in an output this tool wrote, for resuming.

    Only a torn last line (no newline, as a kill mid-write leaves) is cut, so that it is redone.
    Anything else that is not this tool's JSONL, or rows of another `fmt`, is refused with
    `file:line` and the file is left untouched.
    """
    if not path.exists():
        return set()
    if not path.is_file():
        raise CorpusError(f"{path}: --output exists and is not a file")
    ids: set[str] = set()
    good = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n") and raw.startswith(_OURS):
                break  # torn last line: cut below, redone
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                row = None
            found = _row_format(row)
            if found is None or not raw.endswith(b"\n"):
                raise CorpusError(f"{path}:{number}: not a line this tool writes; refusing to append to or cut "
                                 f"{path} (choose another --output)")
            if fmt is not None and found != fmt:
                raise CorpusError(f"{path}:{number}: holds --format {found} rows, not {fmt}; choose another --output "
                                 f"or the same --format")
            ids.add(id_key(row["id"]))
            good += len(raw)
    if good != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return ids


def record(encoder: SparseEncoder, doc_id: DocId, vec: SparseVector, fmt: Format) -> dict:
    if fmt == "tokens":
        return {"id": doc_id, "vector": encoder.decode(vec)}
    return {"id": doc_id, **vec.to_qdrant()}


def encode_corpus(encoder: SparseEncoder, src: Path, dst: Path, options: EncodeOptions | None = None, *,
                  fmt: Format = "tokens", chunk: int = 256, progress: bool = True,
                  keep_first_duplicate: bool = False, kind: str = "document", **overrides) -> int:
    """Encode `src` into `dst` (appending); returns how many texts were encoded in this run.

    Options are an `EncodeOptions` and/or its fields as keywords, as in `encode`; the texts are
    `kind` ("document" or "query"): the folder's prompt for that kind applies unless one is named, as
    in `encode_document` / `encode_query` and the server's `/encode`. The whole input is
    checked first (bad lines, ids, repeated ids, lone surrogates: CorpusError naming `file:line`), then
    the output (see `done_ids`); nothing is written before both pass.
    """
    options = encoder.for_task(kind, EncodeOptions.of(options, **overrides))
    try:
        return _encode_corpus(encoder, src, dst, options, fmt=fmt, chunk=chunk, progress=progress,
                              keep_first_duplicate=keep_first_duplicate)
    except OSError as exc:  # unreadable input, unwritable output, a full disk: named, as every other refusal
        raise CorpusError(f"{exc.filename or dst}: {exc.strerror or exc}") from exc


def _encode_corpus(encoder: SparseEncoder, src: Path, dst: Path, options: EncodeOptions, *, fmt: Format,
                   chunk: int, progress: bool, keep_first_duplicate: bool) -> int:
    check_paths(src, dst)
    if not src.is_file():  # these two before the lock, so a refused run leaves nothing beside the output
        raise CorpusError(f"{src}: --input is not a file")
    if dst.is_dir():
        raise CorpusError(f"{dst}: --output exists and is not a file")
    with exclusive_output(dst):  # before done_ids, which may cut a torn last line
        return _encode_locked(encoder, src, dst, options, fmt=fmt, chunk=chunk, progress=progress,
                              keep_first_duplicate=keep_first_duplicate)


def _encode_locked(encoder: SparseEncoder, src: Path, dst: Path, options: EncodeOptions, *, fmt: Format,
                   chunk: int, progress: bool, keep_first_duplicate: bool) -> int:
    total = sum(1 for _ in read_corpus(src, keep_first_duplicate=keep_first_duplicate))
    skip = done_ids(dst, fmt)
    written = 0
    started = time.monotonic()

    def flush(rows: list[tuple[DocId, str]], out) -> None:
        try:
            vectors = encoder.encode([t for _, t in rows], options)
        except InputTooLongError as exc:  # name the text by its id, not its place in this chunk
            found = re.search(r"texts\[(\d+)\]", str(exc))
            doc = id_key(rows[int(found.group(1))][0]) if found else "?"
            detail = re.sub(r"texts\[\d+\] ", "", str(exc), count=1)
            raise InputTooLongError(f"{src}: id {doc}: {detail}") from None
        out.write("".join(json.dumps(record(encoder, i, v, fmt)) + "\n" for (i, _), v in zip(rows, vectors)))
        out.flush()
        os.fsync(out.fileno())

    with open(dst, "a", encoding="utf-8") as out:
        pending: list[tuple[DocId, str]] = []
        for doc_id, text in read_corpus(src, keep_first_duplicate=keep_first_duplicate):
            if id_key(doc_id) in skip:
                continue
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
