"""Triton Python-backend model: TEXT (bytes) -> input_ids, attention_mask. Copied as `1/model.py`.

Self-contained on purpose: the Triton container needs only `pip install tokenizers numpy`.
Each request's texts are padded to their longest, rounded up to `pad_multiple` tokens (capped at
max length), so that the ONNX model's dynamic batcher can merge requests of similar length
(Triton batches only requests whose shapes match).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        here = Path(args["model_repository"]) / str(args["model_version"])
        settings = json.loads((here / "tokenizer_settings.json").read_text())
        self.max_length = int(settings["max_length"])
        self.pad_id = int(settings["pad_token_id"])
        self.pad_multiple = max(1, int(settings.get("pad_multiple", 1)))
        self.tokenizer = Tokenizer.from_file(str(here / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        longest = max(len(e.ids) for e in encodings)
        width = min(self.max_length, -(-longest // self.pad_multiple) * self.pad_multiple)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        return ids, mask

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
                texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
                ids, mask = self.tokenize(texts)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)]))
            except Exception as exc:  # one bad request must not fail the others
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses
