"""The export: load -> convert -> validate -> write, for each folder an export writes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from export import load, output, st_folder, st_reference, write
from export import validate as fidelity
from export.config import ExportConfig
from export.convert import convert
from export.errors import OutputFolderError, ValidationError
from export.sources import ModelSource, resolve_model
from export.static_query import validate_static_query, write_static_query
from runtime.manifest import Manifest

__all__ = ["ExportConfig", "ExportResult", "export_model"]

log = logging.getLogger("export")


@dataclass(frozen=True)
class ExportResult:
    """Every folder an export wrote and its manifest.

    `folders` and `manifests` are keyed "" for a single model folder (the output itself), or
    "document" and "query" for a sentence-transformers Router folder (`<output>/document`, `<output>/query`).
    """

    output: Path
    folders: dict[str, Path]
    manifests: dict[str, Manifest]
    replaced: bool = False  # a previous export in `output` was replaced

    @property
    def manifest(self) -> Manifest:
        """The document model's manifest (or the only one's)."""
        return self.manifests["document" if "document" in self.manifests else ""]


def export_model(cfg: ExportConfig) -> ExportResult:
    """Export `cfg.model` to self-describing folders and return what was written.

    A sentence-transformers Router folder (query and document routes) is written as two folders,
    `<output>/document` and `<output>/query` (a SPLADE graph, or a static query model for a
    SparseStaticEmbedding). The export is built in a sibling `.<name>.partial-<random>` and moved
    into place when complete, replacing a previous export of this tool, if any.

    Raises:
        ModelSourceError: the model cannot be found or fetched.
        StFolderError: a sentence-transformers folder this exporter cannot reproduce.
        ExportConfigError: bad settings, e.g. a `pooling` that contradicts the folder's SpladePooling.
        UnsupportedModelError: no fast tokenizer, no Linear MLM head, or a max length beyond the model's.
        OutputFolderError: before any work, an output that is the source folder, inside it or holds it, or
            that holds files other than a previous export; or writing the output failed.
        ValidationError: the graph differs from PyTorch beyond `cfg.bounds` (the folder is still
            written, with the failing figures in its manifest, for inspection: to the output when it is
            absent or empty, else to `<output>.failed`, leaving the export already there untouched).
    All derive from ExportError (a SpladeError).
    """
    out = cfg.output_folder()
    output.check_output(out, load.local_source(cfg.model))  # before any work: nothing is fetched or loaded yet
    source = resolve_model(cfg.model)
    output.check_output(out, source.path)
    targets = load.targets(cfg, source)
    manifests: dict[str, Manifest] = {}
    try:
        with output.Staging(out) as staging:
            for target in targets:
                folder, work = staging.folder(target.name), staging.scratch()
                manifest, failures = _export_target(cfg, source, target, folder, work)
                manifests[target.name] = manifest
                if failures:
                    where, _ = staging.publish(failed=True)
                    raise ValidationError(_failed_message(out, where, target.name, failures))
            where, replaced = staging.publish()
    except OSError as exc:
        raise OutputFolderError(f"{out}: writing the export failed ({exc}); a previous export there is left as it "
                                "was") from exc
    folders = {name: where / name if name else where for name in manifests}
    return ExportResult(output=where, folders=folders, manifests=manifests, replaced=replaced)


def _failed_message(out: Path, where: Path, name: str, failures: list[str]) -> str:
    message = f"{where / name if name else where}: validation failed: " + "; ".join(failures)
    if where != out:
        message += (f" (the failed export was written to {where} for inspection; the export already in {out} "
                    "is left as it was)")
    return message


def _export_target(cfg: ExportConfig, source: ModelSource, target: load.Target, folder: Path,
                   work: Path) -> tuple[Manifest, list[str]]:
    """One folder: its manifest, and the validation bounds it failed ([] when it passed or was not validated)."""
    if isinstance(target.route, st_folder.StaticRoute):
        manifest = write_static_query(target.route.folder, folder, source_name=target.source_name,
                                      source_revision=source.revision, versions=load.library_versions(),
                                      prompts=target.prompts, default_prompt_name=target.default_prompt_name)
        if target.st_route is None:
            return manifest, []
        reference = st_reference.st_reference(source.path, target.st_route, max_length=None, prompt=target.prompt)
        return validate_static_query(target.route.folder, folder, manifest, reference)

    model = load.load_mlm(cfg, target, target.mlm_dir or source.path)
    graph = convert(cfg, model, work, folder)
    manifest = write.write_folder(folder, write.splade_manifest(
        cfg, model, graph, revision=source.revision, versions=load.library_versions(), prompts=target.prompts,
        default_prompt_name=target.default_prompt_name), model.tokenizer)
    if not cfg.validate:
        return manifest, []
    folders: dict[str, Path] = {cfg.precision: folder}
    if cfg.precision != "fp32":  # the fused fp32 graph it came from is validated too, as a folder of its own
        folders = {"fp32": write.fp32_reference_folder(work / "fp32", manifest, graph, model.tokenizer), **folders}
    reference, reference_name = fidelity.reference_for(model, st_folder=source.path, st_route=target.st_route,
                                                       prompt=target.prompt)
    texts = fidelity.validation_texts(model.tokenizer, model.max_length)
    results = fidelity.validate_folders(folders, reference(texts), texts, top_k=cfg.top_k, vocab=model.vocab,
                                        task=target.task)
    failures = fidelity.check(results, cfg.bounds)
    manifest = write.record_validation(folder, manifest, results, failures, cfg.bounds, reference_name)
    fidelity.log_results(results, failures)
    return manifest, failures
