"""Graph optimization and precision conversion with ONNX Runtime's own tools.

Order matters: transformer fusions run on the fp32 graph first (their patterns match fp32 ops),
then the fused graph is converted to fp16 or dynamically quantized to int8.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.onnx_model import OnnxModel
from onnxruntime.transformers.optimizer import optimize_model

log = logging.getLogger(__name__)


def fuse_transformer(src: Path, dst: Path, *, num_heads: int, hidden_size: int, attention: bool = True) -> dict[str, int]:
    """Apply ORT's BERT fusions (attention, skip/embed layer norm, bias-gelu); return what fused.

    `opt_level=0` keeps the saved graph provider-neutral: ORT's own level-1/2 optimizations run
    again when a session loads it, on whatever provider that is.
    """
    options = FusionOptions("bert")
    options.enable_attention = attention
    logging.getLogger("onnxruntime.transformers").setLevel(logging.WARNING)
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


def head_matmul(model: onnx.ModelProto, vocab_size: int) -> onnx.NodeProto:
    """The MatMul that projects hidden states onto the vocabulary (its weight is [hidden, vocab])."""
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2 and shapes[node.input[1]][1] == vocab_size:
            return node
    raise ValueError("could not find the vocabulary projection MatMul in the graph")


def _downstream(model: onnx.ModelProto, start: onnx.NodeProto) -> list[onnx.NodeProto]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: dict[str, onnx.NodeProto] = {}
    frontier = list(start.output)
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in seen:
                seen[node.name] = node
                frontier.extend(node.output)
    return list(seen.values())


def pooling_tail(model: onnx.ModelProto, vocab_size: int) -> list[str]:
    """Names of the nodes after the vocabulary reduction (or after the head for sum pooling).

    These are kept in fp32 by the fp16 conversion: bias, log(1 + relu(.)) and TopK run on the
    small [batch, vocab] tensor for max pooling, so keeping them exact costs nothing.
    """
    head = head_matmul(model, vocab_size)
    after = _downstream(model, head)
    reduce = next((n for n in after if n.op_type == "ReduceMax"), None)
    if reduce is not None:
        return [n.name for n in _downstream(model, reduce)]
    return [n.name for n in after]


def to_fp16(src: Path, dst: Path, *, vocab_size: int) -> None:
    """Half-precision weights and compute, fp32 inputs/outputs and pooling tail."""
    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(
        keep_io_types=True,
        node_block_list=pooling_tail(model.model, vocab_size),
        op_block_list=["LayerNormalization", "SimplifiedLayerNormalization"],
    )
    model.save_model_to_file(str(dst))


def to_int8(src: Path, dst: Path, *, vocab_size: int, quantize_head: bool = True) -> None:
    """Dynamic int8 quantization of MatMul/Attention weights for CPU deployment.

    `quantize_head=False` leaves the [hidden, vocab] projection in fp32: it decides which terms
    win, so it is the most sensitive layer, and for small models it is most of the cost.
    """
    model = onnx.load(str(src))
    exclude = [] if quantize_head else [head_matmul(model, vocab_size).name]
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
