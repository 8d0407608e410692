"""Validate: a written folder, run through the runtime's own encoder on CPU, against PyTorch (the transformers
MLM plus the SPLADE formula, or sentence-transformers itself); the figures, bounds and manifest block."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.config import Bounds
from export.errors import ValidationError
from export.st_reference import Reference

if TYPE_CHECKING:  # torch and the runtime's encoder load only when a validation runs (loadgen needs top_terms alone)
    from export.load import LoadedModel
    from runtime.core.encoder import SpladeEncoder

log = logging.getLogger("export")


__all__ = ["Bounds", "Fidelity", "ValidationError", "check", "compare", "record", "reference_for", "top_terms",
           "validate_folders", "validation_texts"]

_PASSAGE = (
    "The Manhattan Project was a research and development undertaking during World War II that "
    "produced the first nuclear weapons. It was led by the United States with the support of the "
    "United Kingdom and Canada. Sparse retrieval models such as SPLADE expand documents with related "
    "terms and weight them, so that an inverted index can answer queries quickly and precisely. "
)


def validation_texts(tokenizer, max_length: int) -> list[str]:
    """Fixed texts: queries, a ~128-token passage, one reaching max length exactly, one over it, another script, empty.

    The passage is repeated as often as the model's length needs, so the longest positions are
    always exercised (for an 8192-token model too).
    """
    per_copy = max(1, len(tokenizer(_PASSAGE, add_special_tokens=False)["input_ids"]))
    words = (_PASSAGE * (-(-(max_length + 64) // per_copy) + 1)).split()

    def passage(tokens: int) -> str:
        lo, hi = 1, len(words)  # binary search for the fewest words reaching `tokens` tokens
        while lo < hi:
            mid = (lo + hi) // 2
            if len(tokenizer(" ".join(words[:mid]))["input_ids"]) >= tokens:
                hi = mid
            else:
                lo = mid + 1
        return " ".join(words[:lo])

    return [
        "what is splade",
        "how do sparse retrieval models expand queries",
        passage(min(128, max_length)),
        passage(max_length),
        passage(max_length + 64),
        "東京は日本の首都であり、世界有数の大都市です。",
        "",
    ]


def reference_weights(mlm, tokenizer, texts: list[str], *, pooling: str, max_length: int,
                      activation: str = "relu") -> np.ndarray:
    """SPLADE weights [n, vocab] straight from the MLM logits, the paper's formula, fp32."""
    import torch

    mlm = mlm.float().eval()
    rows = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all on the reference side
            batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=max_length)
            logits = mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            act = torch.log1p(torch.relu(logits[0]))
            if activation == "log1p_relu":
                act = torch.log1p(act)
            rows.append((act.amax(0) if pooling == "max" else act.sum(0)).numpy())
    return np.stack(rows)


def runtime_weights(encoder: SpladeEncoder, texts: list[str], vocab: int, task: str = "document") -> np.ndarray:
    """Dense weights [n, vocab] from a written folder through the runtime's own encoder, in one padded batch:
    its `encode_document` (or `encode_query` for task "query"), so with the prompt the folder's manifest names.

    The texts' lengths differ, so the batch exercises the attention mask; `sort_by_length=False` keeps
    them in one batch (sorted, the encoder would group only texts of similar length). Where the texts
    at max length exceed the encoder's tokens-per-batch budget (max length over ~2,300), it runs a few
    batches, each still padded.
    """
    encode = encoder.encode_query if task == "query" else encoder.encode_document
    vectors = encode(texts, truncate=True, batch_size=len(texts), sort_by_length=False)
    dense = np.zeros((len(texts), vocab), dtype=np.float32)
    for row, vec in enumerate(vectors):
        dense[row, vec.indices] = vec.values
    return dense


def validate_folders(folders: dict[str, Path], reference: np.ndarray, texts: list[str], *, top_k: int,
                     vocab: int, task: str = "document") -> dict[str, Fidelity]:
    """Each precision's folder, loaded as users load it (SpladeEncoder on CPU, `encode_<task>`), against the
    reference weights (computed with the same prompt).

    A folder the CPU provider cannot run (e.g. an ORT build without fp16 CPU kernels) is recorded as skipped.
    """
    from runtime.core.encoder import SpladeEncoder
    from runtime.errors import ProviderError

    results = {}
    for precision, folder in folders.items():
        try:
            encoder = SpladeEncoder(folder, provider="cpu", allow_failed_validation=True)
        except ProviderError as exc:
            results[precision] = Fidelity.skip(f"CPU provider cannot run it: {str(exc).splitlines()[0][:300]}")
            continue
        try:
            got = runtime_weights(encoder, texts, vocab, task)
        except RuntimeError as exc:  # e.g. non-finite weights (an fp16 overflow), refused by the encoder
            raise ValidationError(f"{folder}: the {precision} graph could not encode the validation texts "
                                  f"({str(exc).splitlines()[0][:300]})") from exc
        results[precision] = compare(reference, got, top_k=top_k)
    return results


def reference_for(model: LoadedModel, *, st_folder: Path | None, st_route: str | None,
                  prompt: str = "") -> tuple[Reference, str]:
    """What the graph is compared with, and its name for the manifest: sentence-transformers' own
    encode_document / encode_query for a SparseEncoder folder (when installed), else the transformers MLM
    and the SPLADE formula; either puts `prompt` before each text, as the runtime's side does."""
    if st_folder is not None and st_route is not None:
        from export import st_reference

        name = f"sentence-transformers {st_reference.version()} " + (f"encode_{st_route}" if st_route else "encode")
        return st_reference.st_reference(st_folder, st_route, max_length=model.max_length, prompt=prompt), name

    def formula(texts: list[str]) -> np.ndarray:
        return reference_weights(model.mlm, model.tokenizer, [prompt + t for t in texts], pooling=model.pooling,
                                 max_length=model.max_length, activation=model.activation)

    return formula, "transformers MLM + SPLADE formula"


def log_results(results: dict[str, Fidelity], failures: list[str]) -> None:
    for precision, fid in results.items():
        if fid.skipped:
            log.info("-[!] %s validation skipped: %s", precision, fid.skipped)
        else:
            log.info("-[%s] %s: max |diff| %.2e, top-32 overlap %.3f, cosine %.6f",
                     "x" if any(f.startswith(precision) for f in failures) else "✓",
                     precision, fid.max_abs_diff, fid.top32_overlap, fid.cosine)


@dataclass(frozen=True)
class Fidelity:
    """How close a graph's weights are to the reference, worst case over the validation texts.

    A precision that could not run gives `Fidelity.skip(reason)`: no figures (null in the
    manifest, never NaN) and the reason in `skipped`.
    """

    max_abs_diff: float | None
    top32_overlap: float | None
    cosine: float | None
    skipped: str | None = None

    @classmethod
    def skip(cls, reason: str) -> Fidelity:
        return cls(None, None, None, skipped=reason)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.skipped is None:
            del data["skipped"]
        return data


def keep_top(weights: np.ndarray, top_k: int) -> np.ndarray:
    """A copy with all but each row's top_k weights zeroed (top_k=0 keeps everything)."""
    out = weights.copy()
    if top_k and top_k < out.shape[1]:
        np.put_along_axis(out, np.argsort(-out, axis=1)[:, top_k:], 0.0, axis=1)
    return out


def top_terms(weights: np.ndarray, k: int) -> set[int]:
    """Indices of the k largest non-zero weights."""
    order = np.argsort(-weights)[:k]
    return set(order[weights[order] > 0].tolist())


def compare(reference: np.ndarray, got: np.ndarray, *, top_k: int, k: int = 32) -> Fidelity:
    """Max |diff| (both cut to their own top_k, as the graph returns), min top-k overlap, min cosine."""
    ref, got = keep_top(reference, top_k), keep_top(got, top_k)
    overlaps, cosines = [], []
    for r, g in zip(ref, got):
        top_r, top_g = top_terms(r, k), top_terms(g, k)
        overlaps.append(len(top_r & top_g) / len(top_r) if top_r else float(not top_g))  # both empty: agree
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        cosines.append(float(r @ g) / denom if denom else float(np.array_equal(r, g)))
    return Fidelity(float(np.abs(ref - got).max()), float(min(overlaps)), float(min(cosines)))


def record(results: dict[str, Fidelity], failures: list[str], bounds: Bounds, provider: str) -> dict[str, Any]:
    """The manifest's `validation` block.

    `passed` is true only when every precision ran and met the bounds, false when one failed, and
    null when none failed but one could not run (listed in `skipped`): an unvalidated graph is
    never reported as passed.
    """
    skipped = sorted(p for p, f in results.items() if f.skipped)
    passed: bool | None = False if failures else (None if skipped else True)
    return {**{p: f.as_dict() for p, f in results.items()}, "provider": provider, "passed": passed,
            "skipped": skipped, "bounds": asdict(bounds)}


def check(results: dict[str, Fidelity], bounds: Bounds) -> list[str]:
    """Every bound violation, collected (not just the first)."""
    failures = []
    for precision, fid in results.items():
        if fid.max_abs_diff is None or fid.top32_overlap is None:  # skipped: nothing to bound
            continue
        if precision == "fp32" and fid.max_abs_diff > bounds.fp32_max_abs_diff:
            failures.append(f"fp32 max |diff| {fid.max_abs_diff:.2e} > {bounds.fp32_max_abs_diff:.0e}")
        if fid.top32_overlap < bounds.min_top32_overlap:
            failures.append(f"{precision} top-32 overlap {fid.top32_overlap:.3f} < {bounds.min_top32_overlap}")
    return failures
