"""ONNX variants of the FP32 export, and checks that an INT8 file is really integer.

So far: ONNX Runtime dynamic INT8 (``quantize_dynamic``), the baseline of the study
we reproduce: weights stored as int8 (per channel or per tensor), activations
quantized at run time (DynamicQuantizeLinear -> MatMulInteger).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import onnx
from onnx import TensorProto

from .onnx_export import load_onnx
from .provenance import atomic_path

INTEGER_TYPES = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8"}
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear",
               "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul", "QAttention",
               "QEmbedLayerNormalization", "QGemm", "QLinearAdd", "ConvInteger", "QLinearConv")


def quantize_dynamic_int8(src: str | os.PathLike, dst: str | os.PathLike, per_channel: bool = True,
                          weight_type: str = "qint8") -> Path:
    """ONNX Runtime dynamic quantization of ``src`` into ``dst`` (written atomically)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    load_onnx(src)  # a clear error for a missing or corrupt input
    dst = Path(dst)
    wt = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[weight_type]
    with atomic_path(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=wt, per_channel=per_channel)
    return dst


def graph_stats(path: str | os.PathLike) -> dict:
    """What is inside an ONNX file: op counts, integer ops, initializers by type and bytes."""
    m = load_onnx(path)
    ops = Counter(n.op_type for n in m.graph.node)
    by_type: Counter = Counter()
    bytes_by_type: Counter = Counter()
    for init in m.graph.initializer:
        tname = TensorProto.DataType.Name(init.data_type).lower()
        by_type[tname] += 1
        n = 1
        for d in init.dims:
            n *= d
        bytes_by_type[tname] += n * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    total = sum(bytes_by_type.values()) or 1
    int_bytes = sum(v for k, v in bytes_by_type.items() if k in INTEGER_TYPES.values())
    return {
        "nodes": int(sum(ops.values())),
        "op_counts": dict(sorted(ops.items())),
        "integer_ops": {k: int(ops[k]) for k in INTEGER_OPS if ops.get(k)},
        "initializers_by_type": dict(by_type),
        "initializer_bytes_by_type": {k: int(v) for k, v in bytes_by_type.items()},
        "integer_weight_fraction": int_bytes / total,
        "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None),
    }
