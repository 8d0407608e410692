"""Graph optimization and precision conversion with ONNX Runtime's own tools.

Order matters: transformer fusions run on the fp32 graph first (their patterns match fp32 ops),
then the fused graph is converted to fp16 or dynamically quantized to int8.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.onnx_model import OnnxModel
from onnxruntime.transformers.optimizer import optimize_model


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """ORT's optimizer and quantizer log progress and advice through the root logger: hush them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def fuse_transformer(src: Path, dst: Path, *, num_heads: int, hidden_size: int, attention: bool = True) -> dict[str, int]:
    """Apply ORT's BERT fusions (attention, skip/embed layer norm, bias-gelu); return what fused.

    `opt_level=0` keeps the saved graph provider-neutral: ORT's own level-1/2 optimizations run
    again when a session loads it, on whatever provider that is.
    """
    options = FusionOptions("bert")
    options.enable_attention = attention
    with quiet_root_logger():
        model = optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=options,
            opt_level=0,
        )
        stats = {op: int(n) for op, n in model.get_fused_operator_statistics().items() if n}
        model.save_model_to_file(str(dst))
    return stats


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def pooling_reductions(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The ReduceMax/ReduceSum nodes over the sequence axis, one per vocabulary chunk."""
    found = [n for n in model.graph.node if n.op_type in ("ReduceMax", "ReduceSum")]
    if not found:
        raise ValueError("could not find the pooling reduction in the graph")
    return found


def head_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMuls projecting hidden states onto (chunks of) the vocabulary, found upstream of the pooling."""
    producers = _producers(model)
    heads = []
    for node in pooling_reductions(model):
        while node is not None and node.op_type != "MatMul":
            node = producers.get(node.input[0])
        if node is not None:
            heads.append(node)
    return heads


def _downstream(model: onnx.ModelProto, starts: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: dict[str, onnx.NodeProto] = {}
    frontier = [out for start in starts for out in start.output]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in seen:
                seen[node.name] = node
                frontier.extend(node.output)
    return list(seen.values())


def pooling_tail(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the sequence reduction: concat, bias, log(1 + relu(.)), TopK.

    They run on the small [batch, vocab] tensor, so keeping them in fp32 costs nothing.
    """
    return [n.name for n in _downstream(model, pooling_reductions(model))]


def to_fp16(src: Path, dst: Path) -> None:
    """Half-precision weights and compute, fp32 inputs/outputs and pooling tail."""
    model = OnnxModel(onnx.load(str(src)))
    with quiet_root_logger():
        model.convert_float_to_float16(
            keep_io_types=True,
            node_block_list=pooling_tail(model.model),
            op_block_list=["LayerNormalization", "SimplifiedLayerNormalization"],
        )
        model.save_model_to_file(str(dst))


def to_int8(src: Path, dst: Path, *, quantize_head: bool = True) -> None:
    """Dynamic int8 quantization of MatMul/Attention weights for CPU deployment.

    `quantize_head=False` leaves the [hidden, vocab] projection in fp32: it decides which terms
    win, so it is the most sensitive layer, and for small models it is most of the cost.
    """
    model = onnx.load(str(src))
    exclude = [] if quantize_head else [n.name for n in head_matmuls(model)]
    with quiet_root_logger():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=exclude,
            # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
