"""Bulk encoding on Ray Data: one SpladeEncoder per actor, `indices`/`values` columns out (`ray` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.backend import ProviderName


class _EncodeBatch:
    """Ray actor body: loads the model once, then encodes every batch it is handed."""

    def __init__(self, model_dir: str, text_column: str, provider: ProviderName, top_k: int | None, truncate: bool):
        from runtime.encoder import SpladeEncoder

        self.encoder = SpladeEncoder(model_dir, provider=provider)
        self.text_column, self.top_k, self.truncate = text_column, top_k, truncate

    def __call__(self, batch):
        import pyarrow as pa

        texts = batch.column(self.text_column).to_pylist()
        vectors = self.encoder.encode(texts, top_k=self.top_k, truncate=self.truncate)
        indices = pa.array([v.indices for v in vectors], type=pa.list_(pa.int32()))
        values = pa.array([v.values for v in vectors], type=pa.list_(pa.float32()))
        return batch.append_column("indices", indices).append_column("values", values)


def encode_dataset(ds, model_dir: str | Path, *, text_column: str = "text", batch_size: int = 64,
                   num_actors: int = 1, num_gpus_per_actor: float = 0, provider: str = "auto",
                   top_k: int | None = None, truncate: bool = True):
    """Add `indices` (int32 lists) and `values` (float32 lists) columns to a Ray Dataset.

    Example:
        >>> ds = ray.data.read_parquet("corpus/")
        >>> encode_dataset(ds, "models/splade-tiny-fp32", num_actors=4).write_parquet("vectors/")

    Args:
        ds: a `ray.data.Dataset` with a string column `text_column`.
        model_dir: folder written by `python -m export`, readable from every worker.
        num_actors: actors in the pool, each holding one model (`map_batches` with `concurrency`).
        num_gpus_per_actor: GPUs each actor reserves (0 for CPU; with provider "auto" a GPU is used
            when onnxruntime-gpu is installed on the workers).
    """
    if text_column not in ds.schema().names:
        raise ValueError(f"dataset has no column {text_column!r} (columns: {ds.schema().names})")
    return ds.map_batches(
        _EncodeBatch,
        fn_constructor_args=(str(model_dir), text_column, provider, top_k, truncate),
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=num_actors,
        num_gpus=num_gpus_per_actor,
    )


def encode_files(model_dir: Path, src: Path, dst: Path, *, num_actors: int = 1, batch_size: int = 64,
                 num_gpus_per_actor: float = 0, provider: str = "auto", top_k: int | None = None,
                 truncate: bool = True) -> int:
    """Read Parquet or JSONL shards (a file or folder), encode, write shards of the same format to `dst`."""
    import ray

    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    parquet = src.suffix == ".parquet" or (src.is_dir() and any(src.glob("*.parquet")))
    ds = ray.data.read_parquet(str(src)) if parquet else ray.data.read_json(str(src), lines=True)
    out = encode_dataset(ds, model_dir, batch_size=batch_size, num_actors=num_actors,
                         num_gpus_per_actor=num_gpus_per_actor, provider=provider, top_k=top_k, truncate=truncate)
    out = out.materialize()
    (out.write_parquet if parquet else out.write_json)(str(dst))
    return out.count()
