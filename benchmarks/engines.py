"""The engines compared: PyTorch eager, optimum's fill-mask ONNX graph + NumPy pooling, and ours.

Each takes the same padded token batch (`run`) or the same texts in the caller's order
(`encode_texts`) and returns dense [batch, vocab] SPLADE weights for the fidelity check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def splade_max(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """max over real tokens of log(1 + relu(logits)), in NumPy (what fill-mask users do today)."""
    act = np.log1p(np.maximum(logits, 0.0)) * mask[..., None]
    return act.max(axis=1)


class TorchEngine:
    """transformers AutoModelForMaskedLM + the SPLADE formula, eager mode."""

    def __init__(self, model_dir: Path, tokenizer, *, dtype: str = "fp32", device: str = "cpu"):
        import torch
        from transformers import AutoModelForMaskedLM

        self.torch = torch
        self.name = f"pytorch-{dtype}"
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self.device = device
        self.tokenizer = tokenizer
        self.model = AutoModelForMaskedLM.from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            t_ids = torch.from_numpy(ids).to(self.device)
            t_mask = torch.from_numpy(mask).to(self.device)
            logits = self.model(input_ids=t_ids, attention_mask=t_mask).logits
            act = torch.log1p(torch.relu(logits.float())) * t_mask.unsqueeze(-1)
            return act.amax(dim=1).cpu().numpy()

    def encode_texts(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        return _batched_in_order(self, texts, batch_size)


OPTIMUM_MISSING = ("optimum is not installed: it pins transformers<4.58, so it lives in the `peers` extra, "
                   "installed in its own venv (`pip install torch==2.13.0 && pip install -e '.[cpu,export,tiny,bench,peers]'`)")


def optimum_available() -> bool:
    """Whether optimum's ONNX Runtime model classes import here (the baseline is skipped otherwise)."""
    try:
        import optimum.onnxruntime  # noqa: F401
    except Exception:  # absent, or installed against a transformers it does not support
        return False
    return True


class OptimumEngine:
    """optimum ORTModelForMaskedLM (full [batch, seq, vocab] logits out of the graph) + NumPy pooling."""

    def __init__(self, model_dir: Path, tokenizer, *, threads: int, provider: str = "CPUExecutionProvider",
                 save_to: Path | None = None):
        """Exports `model_dir` with optimum, unless it already holds optimum's `model.onnx`."""
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForMaskedLM

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.name = "optimum-fill-mask"
        self.tokenizer = tokenizer
        exported = (Path(model_dir) / "model.onnx").exists()
        self.model = ORTModelForMaskedLM.from_pretrained(model_dir, export=not exported, provider=provider,
                                                         session_options=opts)
        if save_to is not None and not exported:
            self.model.save_pretrained(save_to)
            tokenizer.save_pretrained(save_to)
        self.needs_token_types = "token_type_ids" in {i.name for i in self.model.model.get_inputs()}

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if self.needs_token_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        logits = self.model.model.run(["logits"], feed)[0]
        return splade_max(logits, mask)

    def encode_texts(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        return _batched_in_order(self, texts, batch_size)


class OursEngine:
    """runtime.SpladeEncoder on an exported folder (pooling and top-k inside the graph)."""

    def __init__(self, folder: Path, *, provider: str = "cpu", threads: int | None = None, name: str | None = None):
        from runtime import SpladeEncoder

        self.encoder = SpladeEncoder(folder, provider=provider, threads=threads)
        self.name = name or f"ours-{self.encoder.manifest.precision}"
        self.vocab = self.encoder.manifest.vocab_size

    def run(self, ids: np.ndarray, mask: np.ndarray) -> list:
        sequences = [row[: int(m.sum())] for row, m in zip(ids, mask)]
        return self.encoder.infer(sequences, batch_size=len(sequences))

    def encode_texts(self, texts: list[str], batch_size: int = 32) -> list:
        return self.encoder.encode(texts, batch_size=batch_size)

    def dense(self, vectors) -> np.ndarray:
        return np.stack([v.to_dense(self.vocab) for v in vectors])


def _batched_in_order(engine, texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Baselines batch as given: caller's order, each batch padded to its longest text."""
    out = []
    for start in range(0, len(texts), batch_size):
        batch = engine.tokenizer(texts[start: start + batch_size], padding=True, truncation=True,
                                 max_length=512, return_tensors="np")
        out.extend(engine.run(batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)))
    return out


def as_dense(engine, output) -> np.ndarray:
    return engine.dense(output) if hasattr(engine, "dense") else np.asarray(output)
