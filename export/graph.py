"""The SPLADE graph: MLM encoder, padding mask, pooling and top-k as one torch module, traced to ONNX."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from export.config import MAX_REDUCTIONS, MaxReduction
from export.errors import ExportConfigError, UnsupportedModelError
from runtime.manifest import Pooling

# How max pooling reduces each chunk over tokens. "reducemax": one projection of every token in the
# batch, vocabulary-major ([chunk, H] @ [H, batch × tokens]), then ReduceMax over the innermost (token)
# axis. ONNX Runtime's CPU ReduceMax over a middle axis of [batch, tokens, chunk] is 3-5× slower per
# row at batch 1 (its kernel for a reduced leading axis): a lone 512-token document on one thread spent
# 29 ms of its 57 ms there, and 2 ms once the tokens are innermost (docs/performance.md). "reducemax-tokens":
# ReduceMax over the tokens of a [batch, tokens, chunk] block, the layout int8's quantizer needs.
# "globalmaxpool": GlobalMaxPool over a [batch, chunk, tokens] block (W^T @ h^T per row). On CUDA,
# ONNX Runtime runs ReduceMax through cuDNN's reduce, which for fp16 first converts the block to fp32:
# a quarter of a BERT-base document batch's GPU time; cuDNN's pooling reads the fp16 block once.
Activation = Literal["relu", "log1p_relu"]


def mlm_head(mlm: nn.Module) -> nn.Linear:
    """The MLM's vocabulary projection, or UnsupportedModelError when it is not a Linear."""
    get = getattr(mlm, "get_output_embeddings", None)
    decoder = get() if callable(get) else None
    if not isinstance(decoder, nn.Linear):
        raise UnsupportedModelError(
            f"{type(mlm).__name__}: output embeddings are {type(decoder).__name__}, expected a Linear "
            "vocabulary projection (BERT, DistilBERT, RoBERTa and other *ForMaskedLM heads have one)")
    return decoder


@contextlib.contextmanager
def decoder_removed(mlm: nn.Module) -> Iterator[nn.Linear]:
    """Swap the MLM's vocabulary projection for Identity (and put it back afterwards).

    The model then returns the transformed hidden states [batch, seq, hidden]; the graph applies
    the projection itself so that, for max pooling, it can reduce before adding the bias and
    before the activation. Works for any `*ForMaskedLM` whose `get_output_embeddings()` is a
    Linear (BERT, DistilBERT, RoBERTa, ...).
    """
    decoder = mlm_head(mlm)
    parent, attr = next(
        (module, name)
        for module in mlm.modules()
        for name, child in module.named_children()
        if child is decoder
    )
    setattr(parent, attr, nn.Identity())
    try:
        yield decoder
    finally:
        setattr(parent, attr, decoder)


class SpladeGraph(nn.Module):
    """input_ids, attention_mask [batch, seq] -> values, indices [batch, k] (or weights [batch, vocab]).

    Max pooling uses max_i log(1 + relu(x_i)) = log(1 + relu(max_i x_i)) (the activation is
    monotone) and max_i (h_i . w + b) = b + max_i (h_i . w): the only [batch, seq, vocab] work is
    the projection and a ReduceMax, chunk by chunk. Padded positions are replaced by the first
    token's hidden state, which cannot change a max, so no mask pass over [batch, seq, vocab] is needed.
    Max pooling with "reducemax" projects vocabulary-major, so that the reduction runs over the innermost
    axis; with "reducemax-tokens", token-major ([batch, seq, chunk], the head's weight
    as the MatMul's second input, as int8's quantizer needs it).
    """

    def __init__(self, mlm: nn.Module, decoder: nn.Linear, pooling: Pooling, top_k: int, vocab_chunk: int = 0,
                 max_reduction: MaxReduction = "reducemax", activation: Activation = "relu"):
        super().__init__()
        if pooling not in ("max", "sum"):
            raise ExportConfigError(f"pooling must be 'max' or 'sum', got {pooling!r}")
        if max_reduction not in MAX_REDUCTIONS:
            raise ExportConfigError(f"max_reduction must be one of {', '.join(MAX_REDUCTIONS)}, got {max_reduction!r}")
        if activation not in ("relu", "log1p_relu"):
            raise ExportConfigError(f"activation must be 'relu' or 'log1p_relu', got {activation!r}")
        self.mlm = mlm
        self.pooling = pooling
        self.activation = activation
        self.pooled_by_pool = pooling == "max" and max_reduction == "globalmaxpool"
        self.vocab_major = pooling == "max" and max_reduction == "reducemax"
        vocab = decoder.weight.shape[0]
        self.top_k = min(top_k, vocab)
        self.vocab_chunk = vocab_chunk if 0 < vocab_chunk < vocab else vocab
        bias = decoder.bias if decoder.bias is not None else torch.zeros(vocab)
        self.register_buffer("bias", bias.detach().clone())
        # One buffer per chunk, so each is its own initializer (a traced Split is not constant-folded,
        # and the quantizer only quantizes MatMuls whose weight is an initializer).
        proj = decoder.weight.detach().t()  # [hidden, vocab]
        starts = range(0, vocab, self.vocab_chunk)
        self.chunks = len(starts)
        for i, start in enumerate(starts):
            block = proj[:, start: start + self.vocab_chunk]
            self.register_buffer(f"proj_{i}", (block.t() if self.pooled_by_pool or self.vocab_major else block).contiguous())
            self.register_buffer(f"bias_{i}", self.bias[start: start + self.vocab_chunk].clone())

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        """log(1 + relu(x)), and once more log1p for "log1p_relu" (OpenSearch's models); both monotone."""
        out = torch.log1p(torch.relu(x))
        return torch.log1p(out) if self.activation == "log1p_relu" else out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, S, H]
        mask = attention_mask.unsqueeze(-1).to(torch.bool)
        # The vocabulary is projected in chunks: each chunk's block of scores is reduced over tokens to
        # [batch, chunk] (or [chunk, batch]) and freed before the next, so the [batch, seq, vocab] tensor never exists.
        projs = [getattr(self, f"proj_{i}") for i in range(self.chunks)]
        biases = [getattr(self, f"bias_{i}") for i in range(self.chunks)]
        if self.pooled_by_pool:  # [chunk, H] @ [B, H, S] -> [B, chunk, S], pooled over S
            hidden = torch.where(mask, hidden, hidden[:, :1, :]).transpose(1, 2)
            pooled = torch.cat([F.adaptive_max_pool1d(torch.matmul(p, hidden), 1).squeeze(-1) for p in projs], dim=-1) + self.bias
            weights = self._activate(pooled)
        elif self.vocab_major:  # [chunk, H] @ [H, B × S] -> [chunk, B, S], max over S -> [B, vocab]
            hidden = torch.where(mask, hidden, hidden[:, :1, :])
            batch, seq = hidden.shape[0], hidden.shape[1]
            tokens = hidden.reshape(-1, hidden.shape[2]).t()
            pooled = torch.cat([torch.matmul(p, tokens).reshape(-1, batch, seq).amax(dim=2) for p in projs], dim=0)
            weights = self._activate(pooled.t() + self.bias)
        elif self.pooling == "max":  # [B, S, H] @ [H, chunk] -> [B, S, chunk], max over S
            hidden = torch.where(mask, hidden, hidden[:, :1, :])
            pooled = torch.cat([torch.matmul(hidden, p).amax(dim=1) for p in projs], dim=-1) + self.bias
            weights = self._activate(pooled)
        else:
            weight = mask.to(hidden.dtype)
            weights = torch.cat([(self._activate(torch.matmul(hidden, p) + b) * weight).sum(dim=1)
                                 for p, b in zip(projs, biases)], dim=-1)
        if self.top_k == 0:
            return weights
        values, indices = torch.topk(weights, self.top_k, dim=-1)
        return values, indices


def output_names(top_k: int) -> tuple[str, ...]:
    return ("weights",) if top_k == 0 else ("values", "indices")


def example_inputs(tokenizer, vocab: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A tracing batch built from token ids, so it always has a padded row, whatever the tokenizer and vocabulary.

    Row 0 is the tokenizer's special tokens around four in-vocabulary ids, row 1 the same around one id, then
    three pad ids (the tokenizer's, else 0, as the manifest records): tracing sees a real mask. The special
    tokens are found by encoding a text with and without them; every id is below `vocab` (the input embedding's rows).
    """
    size = min(len(tokenizer), vocab) if vocab else len(tokenizer)
    text = "what is a test"
    framed = [int(i) for i in tokenizer(text)["input_ids"]]
    body = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    start = next((i for i in range(len(framed) - len(body) + 1) if body and framed[i: i + len(body)] == body), None)
    prefix, suffix = (framed[:start], framed[start + len(body):]) if start is not None else ([], [])
    special = set(getattr(tokenizer, "all_special_ids", []))
    fillers = [i for i in range(size) if i not in special][:4] or list(range(min(size, 4)))
    body = [i for i in body if i < size] + fillers
    body = (body * 4)[:4]
    prefix, suffix = [i for i in prefix if i < size], [i for i in suffix if i < size]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None and tokenizer.pad_token_id < size else 0
    long, short = prefix + body + suffix, prefix + body[:1] + suffix
    ids = torch.tensor([long, short + [int(pad)] * (len(long) - len(short))], dtype=torch.int64)
    mask = torch.tensor([[1] * len(long), [1] * len(short) + [0] * (len(long) - len(short))], dtype=torch.int64)
    return ids, mask


def export_onnx(mlm: nn.Module, path: Path, *, tokenizer, pooling: Pooling, top_k: int, opset: int,
                vocab_chunk: int = 0, activation: Activation = "relu",
                max_reduction: MaxReduction = "reducemax") -> tuple[str, ...]:
    """Trace the SPLADE graph to `path` with dynamic batch and sequence axes; return output names."""
    mlm.eval()
    outputs = output_names(top_k)
    embeddings = mlm.get_input_embeddings() if callable(getattr(mlm, "get_input_embeddings", None)) else None
    ids, mask = example_inputs(tokenizer, int(embeddings.weight.shape[0]) if embeddings is not None else None)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch"} for name in outputs})
    with decoder_removed(mlm) as decoder, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = SpladeGraph(mlm, decoder, pooling, top_k, vocab_chunk, max_reduction, activation).eval()
        torch.onnx.export(
            graph,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return outputs
