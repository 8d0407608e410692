"""The encode pipeline every model shares: texts -> tokens -> batches -> vectors -> per-text vectors.

`SparseEncoder` declares the stages (`tokenize`, `infer_batches`, `collect`) and runs them in
`encode`; a model (the SPLADE graph, the static query model) supplies its tokenizer and its
`infer_batches`. The dynamic batcher, the corpus job, Ray and the server call the same stages, so an
option means the same thing on every path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from runtime.backends.options import SessionOptions
from runtime.core.checks import check_texts
from runtime.core.memory import release_memory
from runtime.core.options import Direction, EncodeOptions, EncoderOptions, Truncation
from runtime.core.sparse import SparseVector, max_merge, score
from runtime.core.tokenize import Tokenized
from runtime.errors import InputTypeError, InvalidInputError, ModelFolderError
from runtime.manifest import Manifest, check_validation, load_manifest

# encode() works through a call this many texts at a time, trimming the heap between chunks: peak
# memory then follows the chunk, not the call (docs/limits.md has the measured bounds).
CHUNK_TEXTS = 1024


class Tokenizer(Protocol):
    """Texts -> Tokenized under one truncation mode (`TextTokenizer`, `StaticTokenizer`)."""

    max_windows: int

    def encode(self, texts: list[str], *, truncate: bool | Truncation = True, max_windows: int | None = None,
               direction: Direction = "right", name: str = "texts", first_index: int = 0) -> Tokenized: ...

    def id_to_token(self, index: int) -> str: ...


def split_options(provider: str, options: dict[str, Any]) -> tuple[SessionOptions, EncoderOptions]:
    """An encoder's keyword options, each to its one owner; a misspelled option is a TypeError naming it."""
    session_names = {f.name for f in fields(SessionOptions)} - {"provider"}
    encoder_names = {f.name for f in fields(EncoderOptions)}
    unknown = set(options) - session_names - encoder_names
    if unknown:
        raise InputTypeError(f"unknown encoder option(s): {', '.join(sorted(unknown))}; "
                        f"expected among {', '.join(sorted(session_names | encoder_names))}")
    session = SessionOptions(provider=provider, **{k: v for k, v in options.items() if k in session_names})  # type: ignore[arg-type]
    encoder = EncoderOptions(**{k: v for k, v in options.items() if k in encoder_names})
    return session, encoder


class SparseEncoder(ABC):
    """A model folder that turns texts into SparseVectors, in the caller's order.

    Subclasses set `kind` (the manifest kind they open) and build `tokenizer` in `_load`; they run
    sequences in `infer_batches`. Everything else, including every check of texts and options, is here.
    """

    kind: ClassVar[str]  # the manifest kind this encoder opens
    kind_name: ClassVar[str]  # how messages call it
    tokenizer: Tokenizer

    def __init__(self, path: str | Path, provider: str = "auto", **options: Any):
        self.path = Path(path)
        self.session, self.options = split_options(provider, options)
        self.manifest: Manifest = load_manifest(self.path)
        if self.manifest.kind != self.kind:
            raise ModelFolderError(f"{self.path}: a {self.manifest.kind} model folder, not a {self.kind_name}; "
                                   f"open it with runtime.core.encoder.open_encoder (or as the query model of a pair)")
        check_validation(self.manifest, self.path, allow_failed=self.options.allow_failed_validation)
        self._load()

    @abstractmethod
    def _load(self) -> None:
        """Build `self.tokenizer` and whatever runs the sequences."""

    @property
    @abstractmethod
    def provider(self) -> str:
        """What runs the sequences: "tensorrt", "cuda", "cpu", "openvino", or none for static weights."""

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def reopen(self, **session: Any) -> SparseEncoder:
        """This folder again, on its own session, with `session`'s options changed (e.g. `threads`) and the
        provider this one runs: for runs concurrent with this encoder's that must not share its thread pool."""
        options = {f.name: getattr(o, f.name) for o in (self.session, self.options) for f in fields(o)} | session
        options.pop("provider")
        return type(self)(self.path, self.provider, **options)

    def running(self) -> dict[str, Any]:
        """What runs the model, for `info` and `/info`: the provider and what was skipped on the way."""
        return {"provider": self.provider, "providers_skipped": {}}

    def encode(self, texts: str | Sequence[str], options: EncodeOptions | None = None, *,
               truncate: bool | Truncation | None = None, **overrides: Any) -> list[SparseVector]:
        """Encode texts; one SparseVector per text, in the caller's order.

        Options are an `EncodeOptions` and/or its fields as keywords (`top_k`, `threshold`,
        `batch_size`, `max_windows`, `sort_by_length`); `truncate` is True ("cut" at max_length,
        the default), False ("windows": overlapping windows max-merged, up to `max_windows`), or
        "refuse". An empty text gives the vector of its special tokens alone, as the reference
        implementations do. Texts are cut at `max_length × 32` characters before tokenizing when
        cutting, and a call is worked through `CHUNK_TEXTS` texts at a time.

        Raises:
            InputTypeError: an item is not a str (a TypeError naming its position).
            InvalidInputError: an option is out of range, or `texts[i]` holds a lone surrogate (a ValueError).
            InputTooLongError: `texts[i]` is over what its truncation mode allows.
        """
        texts = check_texts(texts)
        options = EncodeOptions.of(options, truncate=truncate, **overrides)
        out: list[SparseVector] = []
        for start in range(0, len(texts), CHUNK_TEXTS):
            part = texts[start: start + CHUNK_TEXTS]
            tokenized = self.tokenize(part, options, first_index=start)
            rows = self.infer(tokenized.sequences, batch_size=options.batch_size, sort=options.sort_by_length)
            out.extend(self.collect(tokenized, rows, len(part), options))
            del tokenized, rows
            if len(texts) > CHUNK_TEXTS:
                release_memory()
        return out

    def encode_query(self, texts: str | Sequence[str], options: EncodeOptions | None = None,
                     **overrides: Any) -> list[SparseVector]:
        """`encode` with the folder's query prompt unless a prompt is named, as sentence-transformers' encode_query."""
        return self.encode(texts, self.for_task("query", EncodeOptions.of(options, **overrides)))

    def encode_document(self, texts: str | Sequence[str], options: EncodeOptions | None = None,
                        **overrides: Any) -> list[SparseVector]:
        """`encode` with the folder's document prompt ("document", "passage" or "corpus") unless one is named."""
        return self.encode(texts, self.for_task("document", EncodeOptions.of(options, **overrides)))

    def for_task(self, task: str, options: EncodeOptions) -> EncodeOptions:
        """`options` with the task's prompt (see `task_prompt_name`) when they name none."""
        name = self.task_prompt_name(task) if options.prompt_name is None else None
        return EncodeOptions.of(options, prompt_name=name) if name else options

    def tokenize(self, texts: list[str], options: EncodeOptions, *, name: str = "texts",
                 first_index: int = 0) -> Tokenized:
        """Checked texts -> token sequences: the prompt put before each, then `options.truncation`
        (InputTooLongError names `name[i]`)."""
        prompt = self.prompt(options.prompt_name)
        if prompt:
            texts = [prompt + t for t in texts]
        return self.tokenizer.encode(texts, truncate=options.truncation, max_windows=options.max_windows,
                                     direction=options.truncation_direction, name=name, first_index=first_index)

    def prompt(self, name: str | None) -> str:
        """The text a prompt name puts before each text ("" for none): `name`, else the folder's default.

        Raises:
            InvalidInputError: the folder has no prompt of that name (the message lists those it has).
        """
        name = name if name is not None else self.manifest.default_prompt_name
        if name is None:
            return ""
        if name not in self.manifest.prompts:
            known = ", ".join(sorted(self.manifest.prompts)) or "none"
            raise InvalidInputError(f"prompt_name {name[:100]!r} is not a prompt of this model (it has: {known})")
        return self.manifest.prompts[name]

    def task_prompt_name(self, task: str) -> str | None:
        """The prompt sentence-transformers' encode_query / encode_document pick for `task` ("query" or
        "document"), or None when the folder has none for it."""
        candidates = ("query",) if task == "query" else ("document", "passage", "corpus")
        return next((c for c in candidates if c in self.manifest.prompts), None)

    @abstractmethod
    def infer_batches(self, sequences: Sequence[np.ndarray], *, batch_size: int, sort: bool = True,
                      shortest_first: bool = False) -> Iterator[tuple[list[int], list[SparseVector]]]:
        """Run sequences a batch at a time: (positions in `sequences`, their unpruned vectors) as each batch
        finishes, so a caller sharing the run (the dynamic batcher) answers each text as soon as its batch is done."""

    def infer(self, sequences: Sequence[np.ndarray], *, batch_size: int = EncodeOptions.batch_size,
              sort: bool = True) -> list[SparseVector]:
        """Run token sequences; one unpruned SparseVector per sequence, in their order."""
        out: list[SparseVector | None] = [None] * len(sequences)
        for rows, vectors in self.infer_batches(sequences, batch_size=batch_size, sort=sort):
            for r, vec in zip(rows, vectors):
                out[r] = vec
        return out  # type: ignore[return-value]

    @staticmethod
    def collect(tokenized: Tokenized, rows: Sequence[SparseVector], n_texts: int,
                options: EncodeOptions) -> list[SparseVector]:
        """Per-sequence vectors -> per-text vectors: a text's windows max-merged, then pruned."""
        parts: list[list[SparseVector]] = [[] for _ in range(n_texts)]
        for owner, vec in zip(tokenized.owners, rows):
            parts[owner].append(vec)
        return [options.prune(max_merge(p)) for p in parts]

    def decode(self, vector: SparseVector) -> dict[str, float]:
        """token -> weight, the Elasticsearch `rank_features` / OpenSearch `sparse_vector` shape."""
        return {self.tokenizer.id_to_token(i): float(v) for i, v in zip(vector.indices, vector.values)}

    @staticmethod
    def score(query: SparseVector, docs: Sequence[SparseVector]) -> np.ndarray:
        """Dot product of the query with each document."""
        return score(query, docs)
