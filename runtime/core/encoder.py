"""SpladeEncoder: the SPLADE graph behind the shared encode pipeline; `open_encoder` and query/document pairs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import create_backend
from runtime.core import batching
from runtime.core.memory import release_memory
from runtime.core.pipeline import SparseEncoder
from runtime.core.sparse import SparseVector, from_dense, from_topk, score
from runtime.core.tokenize import TextTokenizer
from runtime.errors import InferenceError, ModelFolderError
from runtime.manifest import load_manifest

# Trim the heap after any run this large (padded tokens), whose activations are what fragments it.
TRIM_AFTER_TOKENS = 8192


class SpladeEncoder(SparseEncoder):
    """Encode texts into SPLADE sparse vectors with an exported model folder.

    Example:
        >>> enc = SpladeEncoder("models/splade-tiny-fp32")
        >>> [vec] = enc.encode(["what is splade"])
        >>> sorted(enc.decode(vec).items(), key=lambda kv: -kv[1])[:3]

    Args:
        path: folder written by `python -m export` (its sha256 is checked against the manifest).
        provider: "auto" (TensorRT, then CUDA, then CPU: the first that really loads), or one of
            "tensorrt", "cuda", "cpu" (raises ProviderError if it cannot run), or "openvino": OpenVINO's
            runtime on the CPU, bf16 where the CPU has it natively, else f32 (the `openvino` extra).
        **options: the fields of `SessionOptions` (threads, max_batch_size, allow_spinning,
            provider_options, cache_dir, graph_buckets) and of `EncoderOptions` (max_batch_tokens,
            window_stride, max_windows, allow_failed_validation); anything else is a TypeError.
            On CUDA, small batches run as captured CUDA graphs (`enable_cuda_graph`, on by default;
            `provider_options={"cuda": {"enable_cuda_graph": 0}}` turns it off).
    """

    kind = "splade"
    kind_name = "SPLADE graph"

    def _load(self) -> None:
        self.tokenizer = TextTokenizer(self.path / self.manifest.tokenizer_file, max_length=self.manifest.max_length,
                                       stride=self.options.window_stride, max_windows=self.options.max_windows)
        self.backend = create_backend(self.path / self.manifest.model_file, self.manifest, self.session)

    @property
    def provider(self) -> str:
        """The provider actually running: "tensorrt", "cuda", "cpu" or "openvino"."""
        return self.backend.provider

    def running(self) -> dict[str, Any]:
        skipped = getattr(self.backend, "skipped", {})  # OpenVINO is only ever named, never fallen back to
        plan = {"openvino": self.backend.plan.config} if self.provider == "openvino" else {}
        return {"provider": self.provider, "providers_skipped": skipped, **plan}

    @property
    def max_batch_size(self) -> int:
        return self.session.max_batch_size

    @property
    def max_batch_tokens(self) -> int:
        return self.options.max_batch_tokens

    def infer_batches(self, sequences: Sequence[np.ndarray], *, batch_size: int, sort: bool = True,
                      shortest_first: bool = False) -> Iterator[tuple[list[int], list[SparseVector]]]:
        if self.provider == "tensorrt":  # an engine runs no batch beyond its optimization profile
            batch_size = min(batch_size, self.session.max_batch_size)
        for rows in batching.plan(batching.lengths_of(sequences), max_batch_size=batch_size,
                                  max_batch_tokens=self.options.max_batch_tokens, sort=sort,
                                  shortest_first=shortest_first):
            batch = batching.pad(sequences, rows, self.manifest.pad_token_id)
            outputs = self.backend.run(batch)
            if not np.isfinite(outputs[0]).all():  # e.g. an fp16 overflow: never a vector with inf or NaN in it
                raise InferenceError(f"the graph returned non-finite weights for a batch of {len(rows)} "
                                     f"(precision {self.manifest.precision}); no vector was produced")
            if len(outputs) == 1:
                vectors = [from_dense(w) for w in outputs[0]]
            else:
                vectors = [from_topk(v, i) for v, i in zip(*outputs)]
            if len(vectors) != len(rows):
                raise InferenceError(f"graph returned {len(vectors)} rows for a batch of {len(rows)}")
            if batch.tokens >= TRIM_AFTER_TOKENS:
                del outputs
                release_memory()
            yield batch.rows.tolist(), vectors


def open_encoder(path: str | Path, provider: str = "auto", **options: Any) -> SparseEncoder:
    """SpladeEncoder or, for a folder whose manifest kind is "static-query", a StaticQueryEncoder."""
    if load_manifest(path, verify=False).kind == "static-query":
        from runtime.core.static import StaticQueryEncoder

        return StaticQueryEncoder(path, provider, **options)
    return SpladeEncoder(path, provider, **options)


class SpladeEncoderPair:
    """Separate query and document models (efficient SPLADE ships one of each), each with its own max length.

    The query folder may be a static query model (inference-free sparse models): its queries then
    cost a tokenizer call and a lookup, no graph.

    Example:
        >>> pair = SpladeEncoderPair("models/q", "models/d")
        >>> pair.score(pair.encode_queries(["q"])[0], pair.encode_documents(["d1", "d2"]))
    """

    def __init__(self, query_path: str | Path, document_path: str | Path, provider: str = "auto", **options: Any):
        self.query = open_encoder(query_path, provider, **options)
        self.document = SpladeEncoder(document_path, provider, **options)
        if self.query.manifest.vocab_size != self.document.manifest.vocab_size:
            raise ModelFolderError(f"{query_path} and {document_path}: query and document models have different "
                                   f"vocabularies ({self.query.manifest.vocab_size} vs {self.document.manifest.vocab_size})")

    def encode_queries(self, texts: str | Sequence[str], **kwargs: Any) -> list[SparseVector]:
        """The query model's `encode_query` (its query prompt, if the folder has one)."""
        return self.query.encode_query(texts, **kwargs)

    def encode_documents(self, texts: str | Sequence[str], **kwargs: Any) -> list[SparseVector]:
        """The document model's `encode_document` (its document prompt, if the folder has one)."""
        return self.document.encode_document(texts, **kwargs)

    score = staticmethod(score)
