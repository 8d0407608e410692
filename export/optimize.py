"""Graph optimization and precision conversion with ONNX Runtime's own tools.

Order matters: transformer fusions run on the fp32 graph first (their patterns match fp32 ops),
then the fused graph is converted to fp16 or dynamically quantized to int8.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.onnx_model import OnnxModel
from onnxruntime.transformers.optimizer import optimize_model

from export.errors import UnsupportedModelError


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
    """The ReduceMax/ReduceSum (or GlobalMaxPool) nodes over the sequence axis, one per vocabulary chunk."""
    found = [n for n in model.graph.node if n.op_type in ("ReduceMax", "ReduceSum", "GlobalMaxPool")]
    if not found:
        raise UnsupportedModelError("could not find the pooling reduction in the graph")
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


CALIBRATION_TEXTS = Path(__file__).with_name("calibration.txt")


def calibration_texts() -> list[str]:
    """The shipped calibration set: Python standard-library docstrings (summary lines, bodies, long joins)."""
    return [line for line in CALIBRATION_TEXTS.read_text(encoding="utf-8").splitlines() if line.strip()]


def activation_ranges(model: onnx.ModelProto, names: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """Min and max of each named tensor over the feeds, read by exposing them as graph outputs."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    lo = dict.fromkeys(names, 0.0)
    hi = dict.fromkeys(names, 0.0)
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            lo[name], hi[name] = min(lo[name], float(value.min())), max(hi[name], float(value.max()))
    return {n: (lo[n], hi[n]) for n in names}


def freeze_activation_scales(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> int:
    """Replace each DynamicQuantizeLinear with a QuantizeLinear whose uint8 scale and zero point are constants.

    A dynamic scale is taken per tensor, i.e. per batch, so a text's vector moved with its batch neighbours;
    a calibrated constant makes every row's quantization its own. ORT still fuses MatMulInteger -> Cast -> Mul
    into MatMulIntegerToFloat, so the int8 kernels are the same. Returns how many were frozen.
    """
    done = 0
    for index, node in enumerate(list(model.graph.node)):
        if node.op_type != "DynamicQuantizeLinear":
            continue
        lo, hi = ranges[node.input[0]]
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / 255.0 or 1.0
        zero_point = int(np.clip(round(-lo / scale), 0, 255))
        quantized, scale_name, zp_name = node.output
        model.graph.initializer.extend([
            onnx.numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
            onnx.numpy_helper.from_array(np.array(zero_point, dtype=np.uint8), zp_name),
        ])
        frozen = onnx.helper.make_node("QuantizeLinear", [node.input[0], scale_name, zp_name], [quantized], name=node.name)
        model.graph.node.remove(node)
        model.graph.node.insert(index, frozen)
        done += 1
    return done


def fuse_integer_matmuls(model: onnx.ModelProto) -> int:
    """MatMulInteger -> Cast -> Mul(a_scale * b_scale) as one MatMulIntegerToFloat (the int8 GEMM with its scaling).

    ORT fuses this itself only when the activation scale comes from DynamicQuantizeLinear: with constant scales,
    its constant folding merges the scale product first and the pattern no longer matches. Returns how many fused.
    """
    producers = _producers(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    done = 0
    for node in list(model.graph.node):
        if node.op_type != "MatMulInteger":
            continue
        casts = consumers.get(node.output[0], [])
        if len(casts) != 1 or casts[0].op_type != "Cast":
            continue
        muls = consumers.get(casts[0].output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        scales = producers.get(muls[0].input[1])
        if scales is None or scales.op_type != "Mul":
            continue
        a_q, b_q, a_zp, b_zp = node.input
        fused = onnx.helper.make_node("MatMulIntegerToFloat", [a_q, b_q, scales.input[0], scales.input[1], a_zp, b_zp],
                                      [muls[0].output[0]], name=node.name + "_to_float", domain="com.microsoft")
        index = list(model.graph.node).index(node)
        for old in (node, casts[0], muls[0]):
            model.graph.node.remove(old)
        model.graph.node.insert(index, fused)
        if len(consumers.get(scales.output[0], [])) == 1:
            model.graph.node.remove(scales)
        done += 1
    return done


def to_int8_static(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], *, quantize_head: bool = True) -> int:
    """int8 whose vectors do not depend on their batch: dynamic int8's graph with calibrated activation scales.

    `feeds` are calibration inputs, one text per feed (no padding to skew the ranges). Returns the number of
    activations whose scale was frozen.
    """
    to_int8(src, dst, quantize_head=quantize_head)
    model = onnx.load(str(dst))
    names = [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    ranges = activation_ranges(onnx.load(str(src)), names, feeds)
    done = freeze_activation_scales(model, ranges)
    fuse_integer_matmuls(model)
    onnx.save(model, str(dst))
    return done
