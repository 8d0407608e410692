"""SpladeEncoder: text -> tokens -> batches -> session -> SparseVector, in the caller's order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from runtime.core import batching
from runtime.backends.ort import ProviderName, ProviderOptions, create_backend
from runtime.core.batching import Buckets
from runtime.core.checks import DEFAULT_MAX_WINDOWS, check_positive_int, check_texts, check_threshold, check_top_k
from runtime.core.memory import release_memory
from runtime.core.sparse import SparseVector, from_dense, from_topk, score
from runtime.core.tokenize import TextTokenizer, per_text
from runtime.errors import ModelFolderError
from runtime.manifest import Manifest, check_validation, load_manifest

DEFAULT_MAX_BATCH_TOKENS = 16384
# encode() works through a call this many texts at a time, trimming the heap between chunks: peak
# memory then follows the chunk, not the call (docs/limits.md has the measured bounds).
CHUNK_TEXTS = 1024
# ...and after any run this large (padded tokens), whose activations are what fragments the heap.
TRIM_AFTER_TOKENS = 8192


class SpladeEncoder:
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
        threads: intra-op threads (default: the cores this process may use).
        max_batch_tokens: cap on batch × longest sequence per run, bounding activation memory.
        max_batch_size: the largest batch TensorRT's optimization profile is built for; on TensorRT,
            `encode(batch_size=...)` above it runs in batches of this size (other providers take any size).
        window_stride: overlap in tokens between windows when `truncate=False` (default max_length/4).
        max_windows: windows one text may take when `truncate=False`; a longer text raises
            InputTooLongError (a ValueError) instead of holding the encoder for seconds.
        provider_options: ONNX Runtime options per provider, on top of ours, e.g.
            `{"cuda": {"device_id": 1, "gpu_mem_limit": 8 << 30}}`; a None value drops one of ours. For
            "openvino", CPU properties such as `{"openvino": {"INFERENCE_PRECISION_HINT": "f32"}}`.
            On CUDA, small batches run as captured CUDA graphs (`enable_cuda_graph`, on by default;
            `{"cuda": {"enable_cuda_graph": 0}}` turns it off).
        allow_spinning: ONNX Runtime's idle worker threads spin (True, its default: no wake-up delay between
            ops, best for bulk encoding) or sleep (False: leaves the cores to the process's other threads,
            as other work sharing the cores may prefer). Not used by "openvino".
        allow_failed_validation: load a folder whose export failed its validation against PyTorch
            (refused by default with ModelFolderError naming the failed figure; logged when allowed).
        graph_buckets: the (batch, length) shapes small batches are padded to for CUDA graphs
            (default `Buckets()`: lengths up to 128, batches up to 32, at most 4096 tokens).
    """

    def __init__(self, path: str | Path, provider: ProviderName = "auto", *, threads: int | None = None,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS, max_batch_size: int = 64,
                 window_stride: int | None = None, cache_dir: str | Path | None = None,
                 provider_options: ProviderOptions | None = None, graph_buckets: Buckets | None = None,
                 max_windows: int = DEFAULT_MAX_WINDOWS, allow_failed_validation: bool = False,
                 allow_spinning: bool = True):
        self.path = Path(path)
        self.manifest: Manifest = load_manifest(self.path)
        if self.manifest.kind != "splade":
            raise ModelFolderError(f"{self.path}: a {self.manifest.kind} model folder, not a SPLADE graph; open it with "
                                   f"runtime.core.encoder.open_encoder (or as the query model of a pair)")
        check_validation(self.manifest, self.path, allow_failed=allow_failed_validation)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = check_positive_int(max_batch_size, "max_batch_size")
        self.tokenizer = TextTokenizer(self.path / self.manifest.tokenizer_file,
                                       max_length=self.manifest.max_length, stride=window_stride,
                                       max_windows=max_windows)
        self.backend = create_backend(self.path / self.manifest.model_file, self.manifest, provider=provider,
                                      threads=threads, max_batch_size=max_batch_size,
                                      cache=Path(cache_dir) if cache_dir else None, provider_options=provider_options,
                                      allow_spinning=allow_spinning, graph_buckets=graph_buckets)

    @property
    def provider(self) -> str:
        """The provider actually running: "tensorrt", "cuda", "cpu" or "openvino"."""
        return self.backend.provider

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def encode(self, texts: str | Sequence[str], *, batch_size: int = 32, top_k: int | None = None,
               threshold: float = 0.0, truncate: bool = True, sort_by_length: bool = True,
               max_windows: int | None = None) -> list[SparseVector]:
        """Encode texts; returns one SparseVector per text, in the caller's order.

        An empty or whitespace-only text gives the vector of `[CLS] [SEP]` alone, as the
        reference implementations do. `truncate=False` encodes over-long texts as overlapping
        windows and max-merges them, up to `max_windows` per text (default: the encoder's).
        Texts are cut at `max_length × 32` characters before tokenizing when truncating (see
        `runtime.core.checks.CHARS_PER_TOKEN`), and a call is worked through `CHUNK_TEXTS` at a time.

        Raises:
            TypeError: an item is not a str (the message names its position).
            ValueError: an argument is out of range, or `texts[i]` holds a lone surrogate.
            InputTooLongError: with `truncate=False`, `texts[i]` needs more than `max_windows` windows.
        """
        texts = check_texts(texts)
        batch_size = check_positive_int(batch_size, "batch_size")
        top_k, threshold = check_top_k(top_k), check_threshold(threshold)
        if max_windows is not None:
            check_positive_int(max_windows, "max_windows")
        out: list[SparseVector] = []
        for start in range(0, len(texts), CHUNK_TEXTS):
            part = texts[start: start + CHUNK_TEXTS]
            tokenized = self.tokenizer.encode(part, truncate=truncate, max_windows=max_windows,
                                              name="texts", first_index=start)
            rows = self.infer(tokenized.sequences, batch_size=batch_size, sort=sort_by_length)
            out.extend(self.collect(tokenized, rows, n_texts=len(part), top_k=top_k, threshold=threshold))
            del tokenized, rows
            if len(texts) > CHUNK_TEXTS:
                release_memory()
        return out

    def infer(self, sequences: Sequence[np.ndarray], *, batch_size: int = 32, sort: bool = True) -> list[SparseVector]:
        """Run token sequences through the graph; one unpruned SparseVector per sequence."""
        out: list[SparseVector | None] = [None] * len(sequences)
        for rows, vectors in self.infer_batches(sequences, batch_size=batch_size, sort=sort):
            for r, vec in zip(rows, vectors):
                out[r] = vec
        return out  # type: ignore[return-value]

    def infer_batches(self, sequences: Sequence[np.ndarray], *, batch_size: int = 32, sort: bool = True,
                      shortest_first: bool = False) -> Iterator[tuple[list[int], list[SparseVector]]]:
        """`infer` one batch at a time: (positions in `sequences`, their vectors) as each batch finishes,
        so that a caller sharing the run (the DynamicBatcher, shortest first) answers short texts first."""
        if self.provider == "tensorrt":  # an engine runs no batch beyond its optimization profile
            batch_size = min(batch_size, self.max_batch_size)
        for rows in batching.plan(batching.lengths_of(sequences), max_batch_size=batch_size,
                                  max_batch_tokens=self.max_batch_tokens, sort=sort, shortest_first=shortest_first):
            batch = batching.pad(sequences, rows, self.manifest.pad_token_id)
            outputs = self.backend.run(batch)
            if not np.isfinite(outputs[0]).all():  # e.g. an fp16 overflow: never a vector with inf or NaN in it
                raise RuntimeError(f"the graph returned non-finite weights for a batch of {len(rows)} "
                                   f"(precision {self.manifest.precision}); no vector was produced")
            if len(outputs) == 1:
                vectors = [from_dense(w) for w in outputs[0]]
            else:
                vectors = [from_topk(v, i) for v, i in zip(*outputs)]
            if len(vectors) != len(rows):
                raise RuntimeError(f"graph returned {len(vectors)} rows for a batch of {len(rows)}")
            if batch.tokens >= TRIM_AFTER_TOKENS:
                del outputs
                release_memory()
            yield batch.rows.tolist(), vectors

    collect = staticmethod(per_text)  # per-sequence vectors -> per-text vectors (windows max-merged, pruned)

    def decode(self, vector: SparseVector) -> dict[str, float]:
        """token -> weight, the Elasticsearch `rank_features` / OpenSearch `sparse_vector` shape."""
        return {self.tokenizer.id_to_token(i): float(v) for i, v in zip(vector.indices, vector.values)}

    @staticmethod
    def score(query: SparseVector, docs: Sequence[SparseVector]) -> np.ndarray:
        """Dot product of the query with each document."""
        return score(query, docs)


def open_encoder(path: str | Path, provider: ProviderName = "auto", **kwargs):
    """SpladeEncoder or, for a folder whose manifest kind is "static-query", a StaticQueryEncoder."""
    if load_manifest(path, verify=False).kind == "static-query":
        from runtime.core.static import StaticQueryEncoder

        return StaticQueryEncoder(path, **kwargs)
    return SpladeEncoder(path, provider, **kwargs)


class SpladeEncoderPair:
    """Separate query and document models (efficient SPLADE ships one of each), each with its own max length.

    The query folder may be a static query model (inference-free sparse models): its queries then
    cost a tokenizer call and a lookup, no graph.

    Example:
        >>> pair = SpladeEncoderPair("models/q", "models/d")
        >>> pair.score(pair.encode_queries(["q"])[0], pair.encode_documents(["d1", "d2"]))
    """

    def __init__(self, query_path: str | Path, document_path: str | Path, provider: ProviderName = "auto", **kwargs):
        self.query = open_encoder(query_path, provider, **kwargs)
        self.document = SpladeEncoder(document_path, provider, **kwargs)
        if self.query.manifest.vocab_size != self.document.manifest.vocab_size:
            raise ValueError("query and document models have different vocabularies")

    def encode_queries(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        return self.query.encode(texts, **kwargs)

    def encode_documents(self, texts: str | Sequence[str], **kwargs) -> list[SparseVector]:
        return self.document.encode(texts, **kwargs)

    score = staticmethod(score)
