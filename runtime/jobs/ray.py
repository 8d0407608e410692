"""Bulk encoding on Ray Data: one SpladeEncoder per actor, `indices`/`values` columns out (`ray` extra)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.core.options import EncodeOptions
from runtime.errors import CorpusError, InvalidInputError
from runtime.jobs.corpus import _check_id, check_paths, id_key, read_corpus
from runtime.jobs.lock import exclusive_output


class _EncodeBatch:
    """Ray actor body: loads the model once, then encodes every batch it is handed."""

    def __init__(self, model_dir: str, text_column: str, provider: str, options: EncodeOptions,
                 threads: int | None = None, kind: str = "document"):
        from runtime.core.encoder import SpladeEncoder

        self.encoder = SpladeEncoder(model_dir, provider, threads=threads)
        self.text_column, self.options = text_column, self.encoder.for_task(kind, options)

    def __call__(self, batch):
        import pyarrow as pa

        texts = batch.column(self.text_column).to_pylist()
        vectors = self.encoder.encode(texts, self.options)
        indices = pa.array([v.indices for v in vectors], type=pa.list_(pa.int32()))
        values = pa.array([v.values for v in vectors], type=pa.list_(pa.float32()))
        return batch.append_column("indices", indices).append_column("values", values)


def encode_dataset(ds, model_dir: str | Path, options: EncodeOptions | None = None, *, text_column: str = "text",
                   batch_size: int = 64, num_actors: int = 1, num_gpus_per_actor: float = 0, provider: str = "auto",
                   threads: int | None = None, num_cpus_per_actor: float | None = None, kind: str = "document",
                   **overrides):
    """Add `indices` (int32 lists) and `values` (float32 lists) columns to a Ray Dataset.

    Example:
        >>> ds = ray.data.read_parquet("corpus/")
        >>> encode_dataset(ds, "models/splade-tiny-fp32", num_actors=4).write_parquet("vectors/")

    Args:
        ds: a `ray.data.Dataset` with a string column `text_column`.
        options: an `EncodeOptions` and/or its fields as keywords (top_k, threshold, truncate, ...), as in `encode`.
        kind: "document" (default) or "query": the folder's prompt for that kind applies unless one is named.
        model_dir: folder written by `python -m export`, readable from every worker.
        num_actors: actors in the pool, each holding one model (`map_batches` with `concurrency`).
        num_gpus_per_actor: GPUs each actor reserves (0 for CPU; with provider "auto" a GPU is used
            when onnxruntime-gpu is installed on the workers).
        threads, num_cpus_per_actor: ORT threads and Ray CPUs per actor (default: `actor_resources`).
    """
    options = EncodeOptions.of(options, **overrides)
    if text_column not in ds.schema().names:
        raise InvalidInputError(f"dataset has no column {text_column!r} (columns: {ds.schema().names})")
    import ray

    planned_cpus, planned_threads = actor_resources(ray.cluster_resources().get("CPU", 1.0), num_actors)
    return ds.map_batches(
        _EncodeBatch,
        fn_constructor_args=(str(model_dir), text_column, provider, options, threads or planned_threads, kind),
        num_cpus=planned_cpus if num_cpus_per_actor is None else num_cpus_per_actor,
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=num_actors,
        num_gpus=num_gpus_per_actor,
    )


def actor_resources(cluster_cpus: float, num_actors: int) -> tuple[float, int]:
    """(Ray CPUs, ORT threads) per actor, leaving one CPU for Ray Data's read and write tasks.

    Actors that took every CPU starved the read task forever (a job with 2 actors on 2 CPUs never
    started); more actors than CPUs are refused.
    """
    if num_actors < 1:
        raise InvalidInputError(f"--num-actors must be >= 1, got {num_actors}")
    if num_actors > cluster_cpus:
        raise InvalidInputError(f"--num-actors {num_actors} is more than the {cluster_cpus:g} CPUs of this Ray cluster; "
                         f"at most {int(cluster_cpus)} actors fit")
    cpus = min(1.0, max(0.0, cluster_cpus - 1) / num_actors)
    return cpus, max(1, int(cluster_cpus // num_actors))


def check_inputs(src: Path, dst: Path, *, parquet: bool) -> None:
    """The corpus CLI's rules on the Ray path: a new output folder, and unique scalar ids."""
    check_paths(src, dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CorpusError(f"{dst}: --output exists and is not an empty folder; Ray writes new shards and would mix "
                         f"them with what is there: choose a new --output")
    files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
    first_seen: dict[str, str] = {}
    for path in files:
        rows: Iterable[tuple[int, Any]]
        if parquet:
            import pyarrow.parquet as pq

            if path.suffix != ".parquet" or "id" not in pq.read_schema(path).names:
                continue
            rows = list(enumerate(pq.read_table(path, columns=["id"]).column("id").to_pylist(), 1))
            where = "row"
            for number, doc_id in rows:
                if _check_id(doc_id):
                    raise CorpusError(f"{path}: row {number}: {_check_id(doc_id)}")
        else:
            rows = enumerate((doc_id for doc_id, _ in read_corpus(path)), 1)  # streamed: ids only
            where = "line"
        for number, doc_id in rows:
            key = id_key(doc_id)
            if key in first_seen:
                raise CorpusError(f"{path}:{number}: id {key} repeats {first_seen[key]}; ids must be unique")
            first_seen[key] = f"{path.name} {where} {number}"


def encode_files(model_dir: Path, src: Path, dst: Path, options: EncodeOptions | None = None, *, num_actors: int = 1,
                 batch_size: int = 64, num_gpus_per_actor: float = 0, provider: str = "auto",
                 threads: int | None = None, kind: str = "document", **overrides) -> int:
    """Read Parquet or JSONL shards (a file or folder), encode, write shards of the same format to `dst`.

    Checked before Ray starts any work: no other run holds `dst` (its lock is held until the shards
    are written, see `runtime.jobs.lock`); `dst` is new (or an empty folder) and not `src`; ids are
    unique JSON scalars (as the corpus CLI requires); the actors fit the cluster.
    """
    options = EncodeOptions.of(options, **overrides)
    check_paths(src, dst)
    if not src.exists():
        raise CorpusError(f"{src}: --input does not exist")
    try:
        with exclusive_output(dst):
            return _encode_files(model_dir, src, dst, options, num_actors=num_actors, batch_size=batch_size,
                                 num_gpus_per_actor=num_gpus_per_actor, provider=provider, threads=threads,
                                 kind=kind)
    except OSError as exc:  # unreadable input, unwritable output: named, as the corpus job does
        raise CorpusError(f"{exc.filename or dst}: {exc.strerror or exc}") from exc


def _encode_files(model_dir: Path, src: Path, dst: Path, options: EncodeOptions, *, num_actors: int,
                  batch_size: int, num_gpus_per_actor: float, provider: str, threads: int | None, kind: str) -> int:
    import ray

    parquet = src.suffix == ".parquet" or (src.is_dir() and any(src.glob("*.parquet")))
    check_inputs(src, dst, parquet=parquet)
    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    actor_resources(ray.cluster_resources().get("CPU", 1.0), num_actors)  # refuse before reading
    ds = ray.data.read_parquet(str(src)) if parquet else ray.data.read_json(str(src), lines=True)
    out = encode_dataset(ds, model_dir, options, batch_size=batch_size, num_actors=num_actors,
                         num_gpus_per_actor=num_gpus_per_actor, provider=provider, threads=threads, kind=kind)
    out = out.materialize()
    (out.write_parquet if parquet else out.write_json)(str(dst))
    return out.count()
