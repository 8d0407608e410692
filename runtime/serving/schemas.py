"""The HTTP bodies: TEI's `/embed_sparse`, our `/encode`, OpenSearch's remote-model shape, and errors.

Pydantic checks types and shapes here (the OpenAPI schema); values are checked once, by
`EncodeOptions`, which every route builds from its body.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from runtime.core.options import Truncation
from runtime.errors import InvalidInputError

Inputs = StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
# TEI spells the directions "Left"/"Right"; both spellings are taken.
DirectionName = Literal["left", "right", "Left", "Right"]
PruneType = Literal["none", "top_k", "abs_value", "max_ratio", "alpha_mass"]


class EmbedSparseRequest(BaseModel):
    """TEI's `/embed_sparse` body."""

    model_config = ConfigDict(extra="forbid")
    inputs: Inputs
    truncate: StrictBool = False
    truncation_direction: DirectionName = "right"
    prompt_name: StrictStr | None = Field(None, description="a prompt of the model folder, put before each input")

    def options(self) -> dict[str, Any]:
        return {"truncation": "cut" if self.truncate else "refuse", "prompt_name": self.prompt_name,
                "truncation_direction": self.truncation_direction.lower()}


class EncodeRequest(BaseModel):
    """Our `/encode` body: pruning, token strings, query/document model, windows for long texts."""

    model_config = ConfigDict(extra="forbid")
    inputs: Inputs
    kind: Literal["query", "document"] = "document"
    top_k: Annotated[StrictInt, Field(ge=1)] | None = None
    threshold: Annotated[StrictFloat | StrictInt, Field(ge=0)] = 0.0
    max_ratio: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None = Field(
        None, description="keep weights >= max_ratio × the text's largest (OpenSearch's max_ratio)")
    alpha_mass: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None = Field(
        None, description="keep the heaviest terms holding this share of the total weight (OpenSearch's alpha_mass)")
    return_tokens: StrictBool = False
    truncate: StrictBool = True
    truncation_direction: DirectionName = "right"
    windows: StrictBool = Field(False, description="encode over-long texts as overlapping windows, max-merged")
    prompt_name: StrictStr | None = Field(None, description="a prompt of the model folder (default: the kind's own)")

    def options(self) -> dict[str, Any]:
        truncation: Truncation = "windows" if self.windows else "cut" if self.truncate else "refuse"
        return {"truncation": truncation, "top_k": self.top_k, "threshold": float(self.threshold),
                "max_ratio": self.max_ratio, "alpha_mass": self.alpha_mass, "prompt_name": self.prompt_name,
                "truncation_direction": self.truncation_direction.lower()}


def prune_options(prune_type: str, prune_ratio: float | None) -> dict[str, Any]:
    """OpenSearch's `prune_type` / `prune_ratio` as encode options (its sparse_encoding processor's meanings)."""
    if prune_type == "none":
        if prune_ratio is not None:
            raise InvalidInputError("prune_ratio needs a prune_type other than none")
        return {}
    if prune_ratio is None:
        raise InvalidInputError(f"prune_type {prune_type} needs a prune_ratio")
    if prune_type == "top_k":
        if prune_ratio != int(prune_ratio) or prune_ratio < 1:
            raise InvalidInputError(f"prune_ratio for top_k must be a positive integer, got {prune_ratio!r}")
        return {"top_k": int(prune_ratio)}
    if prune_type == "abs_value":  # OpenSearch keeps float weights >= the value; `threshold` drops weights <= it:
        # the float32 just below the value, so that exactly the weights >= it stay
        return {"threshold": float(np.nextafter(np.float32(prune_ratio), np.float32(-np.inf)))}
    return {prune_type: prune_ratio}


class SparseValue(BaseModel):
    index: int
    value: float


class EncodedVector(BaseModel):
    indices: list[int]
    values: list[float]
    tokens: dict[str, float] | None = None


class EncodeResponse(BaseModel):
    kind: str
    data: list[EncodedVector]


class ErrorResponse(BaseModel):
    error: str
    error_type: str
