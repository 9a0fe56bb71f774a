"""The ONNX transformations the variants' recipes use (``variants``), and what is inside a file.

ONNX Runtime dynamic INT8 (``quantize_dynamic``: int8 weights, activations quantized at run time),
static QDQ INT8 (``quantize_static``: calibrated or QAT-learned activation scales stored in the file),
ONNX Runtime's transformer optimizer, and FP16 without the type mismatch the seed study hit.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model

from .onnx_export import load_onnx
from .ort_inspect import integer_ops
from .predict import ORT_CPU_DISABLED_OPTIMIZERS
from .provenance import atomic_path

INTEGER_TYPES = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8"}


def quantize_dynamic_int8(src: str | os.PathLike, dst: str | os.PathLike, per_channel: bool = True,
                          weight_type: str = "qint8") -> Path:
    """ONNX Runtime dynamic quantization of ``src`` into ``dst`` (written atomically). A graph from the
    transformer optimizer works too: its fused Attention and EmbedLayerNormalization become QAttention
    and QEmbedLayerNormalization. The source's metadata (e.g. optimizers to leave off) is kept."""
    load_onnx(src)  # a clear error for a missing or corrupt input
    dst = Path(dst)
    wt = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[weight_type]
    with atomic_path(dst) as tmp:
        # the optimizer's output lacks value types for some weights; FLOAT is what they are
        quantize_dynamic(str(src), str(tmp), weight_type=wt, per_channel=per_channel,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def per_token_activations(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A dynamic INT8 file (``quantize_dynamic``'s output) whose activations get one scale and zero point
    per token (per row of the matrix product) instead of one per tensor: batch-invariant, since no other
    text of the batch, nor its padding, enters a token's scale.

    Each DynamicQuantizeLinear is replaced by its own arithmetic (ONNX's definition: range widened to
    include 0, scale = range / 255, zero point = round(-min / scale), saturated to uint8) reduced over the
    last axis only. ONNX Runtime's MatMulInteger takes one activation zero point per tensor, so each
    consumer gets none and the zero point is taken out exactly in int32 afterwards:
    sum_k (q_k - zp) (w_k - wzp) = sum_k q_k (w_k - wzp) - zp * sum_k (w_k - wzp)."""
    m = load_onnx(src)
    g = m.graph
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    init = {i.name: i for i in g.initializer}
    consumers: dict = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dql = [n for n in g.node if n.op_type == "DynamicQuantizeLinear"]
    if not dql:
        raise ValueError(f"{src}: no DynamicQuantizeLinear node (not a dynamic INT8 file)")
    H = onnx.helper
    const = lambda name, arr: g.initializer.append(numpy_helper.from_array(np.asarray(arr), name))  # noqa: E731
    const("pt_zero_f", np.float32(0.0))
    const("pt_255_f", np.float32(255.0))
    const("pt_tiny_f", np.float32(np.finfo(np.float32).tiny))
    if opset >= 18:
        const("pt_axes", np.array([-1], dtype=np.int64))
    reduce = lambda op, x, y: (H.make_node(op, [x, "pt_axes"], [y], keepdims=1) if opset >= 18  # noqa: E731
                               else H.make_node(op, [x], [y], axes=[-1], keepdims=1))
    after: dict = {}                 # node name -> the nodes that replace it (DQL) or follow it (MatMulInteger)
    for n in dql:
        x, (q, s, zp) = n.input[0], n.output
        p = n.name + "_pt"
        after[n.name] = [
            reduce("ReduceMin", x, p + "_rmin"), reduce("ReduceMax", x, p + "_rmax"),
            H.make_node("Min", [p + "_rmin", "pt_zero_f"], [p + "_lo"]),
            H.make_node("Max", [p + "_rmax", "pt_zero_f"], [p + "_hi"]),
            H.make_node("Sub", [p + "_hi", p + "_lo"], [p + "_range"]),
            H.make_node("Div", [p + "_range", "pt_255_f"], [p + "_s0"]),
            H.make_node("Max", [p + "_s0", "pt_tiny_f"], [s]),                 # a constant row: no 0 / 0
            H.make_node("Div", [p + "_lo", s], [p + "_lo_s"]),
            H.make_node("Neg", [p + "_lo_s"], [p + "_nzp"]),
            H.make_node("Round", [p + "_nzp"], [p + "_zpr"]),
            H.make_node("Clip", [p + "_zpr", "pt_zero_f", "pt_255_f"], [p + "_zpf"]),
            H.make_node("Cast", [p + "_zpf"], [zp], to=TensorProto.INT32),      # [..., 1] int32, exact
            H.make_node("Div", [x, s], [p + "_xs"]),
            H.make_node("Round", [p + "_xs"], [p + "_xr"]),
            H.make_node("Add", [p + "_xr", p + "_zpf"], [p + "_xz"]),
            H.make_node("Clip", [p + "_xz", "pt_zero_f", "pt_255_f"], [p + "_xc"]),
            H.make_node("Cast", [p + "_xc"], [q], to=TensorProto.UINT8),
        ]
        for c in consumers.get(q, []):
            if c.op_type != "MatMulInteger" or len(c.input) < 3 or c.input[2] != zp or c.input[1] not in init:
                raise ValueError(f"{src}: {c.name} ({c.op_type}) reads {q} in a form the per-token rewrite "
                                 f"does not handle")
            w = numpy_helper.to_array(init[c.input[1]]).astype(np.int32)
            wzp = (numpy_helper.to_array(init[c.input[3]]).astype(np.int32) if len(c.input) > 3 and c.input[3]
                   else np.zeros(w.shape[-1], np.int32))
            colsum = c.name + "_pt_colsum"
            const(colsum, (w - wzp.reshape(1, -1)).sum(axis=0).astype(np.int32))
            y = c.output[0]
            c.output[0] = y + "_pt_raw"
            c.input[2] = ""                  # no activation zero point: taken out below, per token
            after[c.name] = [H.make_node("Mul", [zp, colsum], [y + "_pt_corr"]),
                             H.make_node("Sub", [y + "_pt_raw", y + "_pt_corr"], [y])]
    order = []
    for n in g.node:
        if n.op_type == "DynamicQuantizeLinear":
            order += after[n.name]
        else:
            order += [n] + after.get(n.name, [])
    del g.node[:]
    g.node.extend(order)
    onnx.checker.check_model(m)
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(m, str(tmp))
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
        "integer_ops": integer_ops(dict(sorted(ops.items()))),   # the one rule: ort_inspect.is_integer_op
        "initializers_by_type": dict(by_type),
        "initializer_bytes_by_type": {k: int(v) for k, v in bytes_by_type.items()},
        "integer_weight_fraction": int_bytes / total,
        "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None),
    }


# --------------------------------------------------------------------------- graph optimizer
def optimize_transformer(src: str | os.PathLike, dst: str | os.PathLike, num_heads: int, hidden_size: int,
                         model_type: str = "bert", skip_layer_norm: bool = True) -> dict:
    """ONNX Runtime's transformer optimizer (fusions such as Attention, SkipLayerNormalization,
    BiasGelu); returns the fused-operator counts, i.e. which fusions fired.

    ``skip_layer_norm=False`` leaves each residual Add and its LayerNormalization apart, and records
    in the file's metadata (``predict.ORT_CPU_DISABLED_OPTIMIZERS``) that ONNX Runtime's load-time
    ``SkipLayerNormFusion`` is to stay off on the CPU provider, which would fuse them again: ORT's
    SkipLayerNormalization CPU kernel is a scalar loop, slower than the two operators it replaces
    (measured in the benchmark's operator profile). Other providers fuse as usual."""
    load_onnx(src)
    options = FusionOptions(model_type)
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = bool(skip_layer_norm)
    opt = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                         opt_level=0,  # graph fusions only; ORT's own level-1/2 passes run at load time
                         optimization_options=options)
    fused = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    if not skip_layer_norm:
        onnx.helper.set_model_props(opt.model, {**{p.key: p.value for p in opt.model.metadata_props},
                                                ORT_CPU_DISABLED_OPTIMIZERS: "SkipLayerNormFusion"})
    with atomic_path(dst) as tmp:
        opt.save_model_to_file(str(tmp))
    return fused


# --------------------------------------------------------------------------- static QDQ
class TextCalibrationReader:
    """ONNX Runtime calibration data: tokenized batches of held-apart texts."""

    def __init__(self, tokenizer, texts, max_length: int, input_names, batch_size: int = 16):
        self.batches = []
        texts = list(texts)
        if not texts:
            raise ValueError("calibration needs at least one text, got none")
        # one fixed shape: the entropy / percentile calibrators stack the batches into one array, so a short last
        # batch breaks them (76 validation texts in batches of 16 did). Every text is kept: the batch is the
        # largest divisor of the number of texts that is <= batch_size.
        self.batch_size = max(d for d in range(1, min(batch_size, len(texts)) + 1) if len(texts) % d == 0)
        for s in range(0, len(texts), self.batch_size):
            enc = tokenizer(texts[s:s + self.batch_size], padding="max_length", truncation=True,
                            max_length=max_length, return_tensors="np")
            self.batches.append({n: enc[n].astype("int64") for n in input_names})
        self._it = iter(self.batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.batches)


CALIBRATION = ("minmax", "entropy", "percentile")


def _scope(module_name: str) -> str:
    """The TorchScript exporter's node scope of a module: ``a.layer.0.b`` -> ``a/layer.0/b``."""
    return re.sub(r"\.(?!\d)", "/", module_name)


def module_nodes(path: str | os.PathLike, module_names, op_types=("MatMul", "Gemm")) -> dict:
    """Module name (``bert.encoder.layer.0.attention.self.query``) -> its node (MatMul / Gemm
    for a Linear, Gather for an Embedding) in an export made by ``onnx_export``, whose node
    names follow the module path."""
    nodes = {n.name: n for n in load_onnx(path).graph.node}
    out = {}
    for name in module_names:
        cands = [f"/model/{_scope(name)}/{op}" for op in op_types]
        found = [nodes[c] for c in cands if c in nodes]
        if not found:
            raise KeyError(f"no {'/'.join(op_types)} node for module {name!r} in {path} (looked for {cands})")
        out[name] = found[0]
    return out


def quantize_static_int8(src: str | os.PathLike, dst: str | os.PathLike, reader, method: str = "minmax",
                         nodes_to_quantize=None, op_types=("MatMul", "Gemm", "Gather"), per_channel: bool = True,
                         activation_type: str = "quint8", overrides: dict | None = None,
                         percentile: float = 99.999, symmetric_activations: bool = False) -> Path:
    """Static QDQ quantization: int8 weights stored as int8 initializers, activations
    quantized with scales fixed in the file (from calibration, or from ``overrides``:
    tensor name -> (scale, zero_point), e.g. the scales QAT learned). ``op_types=None`` and
    ``nodes_to_quantize=None`` quantize every operator ORT can quantize. ``activation_type="qint8"``
    with ``symmetric_activations``: every zero point 0, the explicit-quantization format that
    TensorRT takes. The float nodes that compute integers only (``integer_islands``, e.g. MPNet's
    relative-position buckets) are never quantized: quantizing them moves the indices they compute."""
    islands = integer_islands(load_onnx(src))     # integer indices computed in float: never quantized
    if method not in CALIBRATION:
        raise ValueError(f"calibration method must be one of {CALIBRATION}, got {method!r}")
    if activation_type not in ("quint8", "qint8"):
        raise ValueError(f"activation_type must be 'quint8' or 'qint8', got {activation_type!r}")
    act = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}[activation_type]
    np_act = np.uint8 if activation_type == "quint8" else np.int8
    # Only the inputs of the chosen nodes are quantized: outputs stay FP32, and consumers that are
    # not quantized (residual Adds) read the FP32 tensor, as the QAT fake quantizers simulate.
    extra = {"WeightSymmetric": True, "ActivationSymmetric": symmetric_activations, "CalibPercentile": percentile,
             "DedicatedQDQPair": True, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}
    if overrides:
        extra["TensorQuantOverrides"] = {
            t: [{"scale": np.array(s, dtype=np.float32), "zero_point": np.array(z, dtype=np_act)}]
            for t, (s, z) in overrides.items()}
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    dst = Path(dst)
    if hasattr(reader, "rewind"):
        reader.rewind()
    with atomic_path(dst) as tmp:
        quantize_static(str(src), str(tmp), reader, quant_format=QuantFormat.QDQ, activation_type=act,
                        weight_type=QuantType.QInt8, per_channel=per_channel, calibrate_method=cm,
                        op_types_to_quantize=list(op_types) if op_types else None,
                        nodes_to_quantize=nodes_to_quantize, nodes_to_exclude=islands or None,
                        extra_options=extra)
        m = onnx.load(str(tmp))
        if op_types and _float_consumers_read_float(m, set(op_types)):
            onnx.save(m, str(tmp))
    return dst


def _float_consumers_read_float(m: onnx.ModelProto, quantized_ops: set) -> int:
    """Rewire nodes that are not quantized (e.g. a residual Add) from an activation's
    Q -> DQ output back to the FP32 tensor: ORT's quantizer can route them through the
    Q/DQ pair meant for a MatMul, which adds an error no fake quantizer simulates."""
    producer = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name for i in m.graph.initializer}
    rewired = 0
    for node in m.graph.node:
        if node.op_type in quantized_ops or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
                continue
            src = producer.get(q.input[0])
            if src is not None and src.op_type == "Gather":
                # DQ(table) -> Gather -> Q -> DQ: ORT runs the Gather on the uint8 table only while
                # this pattern is intact; rewired, it dequantizes the whole table on every call
                continue
            node.input[k] = q.input[0]
            rewired += 1
    return rewired


def qdq_scales(path: str | os.PathLike) -> dict:
    """Scales stored in a QDQ file: for each MatMul / Gather node, the (scale, zero point)
    of its quantized activation input and the weight scales."""
    m = load_onnx(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type not in ("MatMul", "Gemm", "Gather"):
            continue
        rec = {}
        for role, inp in zip(("a", "b"), n.input):
            dq = producer.get(inp)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            scale = inits.get(dq.input[1])
            zp = inits.get(dq.input[2]) if len(dq.input) > 2 else None
            kind = "weight" if dq.input[0] in inits else "activation"
            rec[kind] = {"scale": np.asarray(scale).reshape(-1).tolist(),
                         "zero_point": None if zp is None else np.asarray(zp).reshape(-1).tolist(),
                         "dtype": None if dq.input[0] not in inits else str(inits[dq.input[0]].dtype)}
        if rec:
            out[n.name] = rec
    return out


# --------------------------------------------------------------------------- FP16
def fold_initializer_identities(m: onnx.ModelProto) -> int:
    """Remove ``Identity`` nodes that only copy an initializer (the exporter emits them for
    tied or reused weights); their consumers read the initializer itself. Left in place, the
    FP16 converter casts the initializer but not the Identity's recorded float32 output type:
    the ``tensor(float16)`` vs ``tensor(float)`` mismatch the seed study hit."""
    inits = {i.name for i in m.graph.initializer}
    graph_outputs = {o.name for o in m.graph.output}
    alias = {n.output[0]: n.input[0] for n in m.graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in graph_outputs}
    if not alias:
        return 0
    keep = [n for n in m.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        for k, name in enumerate(n.input):
            if name in alias:
                n.input[k] = alias[name]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    vi = [v for v in m.graph.value_info if v.name not in alias]
    del m.graph.value_info[:]
    m.graph.value_info.extend(vi)
    return len(alias)


def unshare_mixed_initializers(m: onnx.ModelProto, block_ops) -> int:
    """Give a separate copy of an initializer to the nodes that stay FP32 (``block_ops``) when
    other nodes that become FP16 read it too (the exporter merges identical tensors, e.g. the
    zero biases of a LayerNorm and a Linear). Otherwise one precision is forced on both and an
    ``Add`` ends up with a float and a float16 input."""
    block_ops = set(block_ops)
    inits = {i.name: i for i in m.graph.initializer if i.data_type == TensorProto.FLOAT}
    users: dict = {}
    for n in m.graph.node:
        for i in n.input:
            if i in inits:
                users.setdefault(i, []).append(n)
    copied = 0
    for name, nodes in users.items():
        if len({n.op_type in block_ops for n in nodes}) < 2:
            continue
        dup = onnx.TensorProto()
        dup.CopyFrom(inits[name])
        dup.name = f"{name}__fp32"
        m.graph.initializer.append(dup)
        for n in nodes:
            if n.op_type in block_ops:
                n.input[:] = [dup.name if i == name else i for i in n.input]
        copied += 1
    return copied


FP16_BLOCK = ("LayerNormalization", "Softmax", "Erf", "Pow", "ReduceMean", "Sqrt", "Range", "CumSum")


_FLOAT = onnx.TensorProto.FLOAT


def integer_islands(m: onnx.ModelProto) -> list:
    """Names of the float nodes that compute integers only: from a Cast of an integer tensor to float, every
    node its float values reach, up to the nodes that turn them back into integers or booleans (a Cast to an
    integer type, Less, Equal ...), with the float Constants only they read. MPNet's relative-position buckets
    are one (Cast, Div by a constant, Log, Div, Mul, Cast back). In float16 their rounding would move bucket
    boundaries, and onnxconverter-common retypes such a Cast's output to float16 while its ``to`` stays float,
    which ONNX Runtime refuses when it loads the file. An island that meets a float activation from elsewhere
    is not one, and is left to the converter."""
    g = onnx.shape_inference.infer_shapes(m).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    initializers = {t.name for t in g.initializer}
    outputs = {x.name for x in g.output}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in g.node:       # Constant outputs: their value's type
        if n.op_type == "Constant":
            types[n.output[0]] = next((a.t.data_type for a in n.attribute if a.name == "value"), types.get(n.output[0]))

    def is_float(t: str) -> bool:
        return types.get(t) == _FLOAT

    out: dict = {}
    for seed in g.node:
        if seed.op_type != "Cast" or seed.name in out or not seed.input or is_float(seed.input[0]) \
                or types.get(seed.input[0]) in (None, 0) \
                or next((onnx.helper.get_attribute_value(a) for a in seed.attribute if a.name == "to"), None) != _FLOAT:
            continue
        island, frontier, ok = {seed.name: seed}, [seed], True
        while frontier and ok:
            node = frontier.pop()
            for o in node.output:
                if not is_float(o):
                    continue
                if o in outputs:
                    ok = False
                for c in consumers.get(o, []):
                    if c.name not in island:
                        island[c.name] = c
                        frontier.append(c)
        for node in list(island.values()):        # every float input from inside, a constant or a Constant node
            for i in node.input:
                if not i or not is_float(i) or i in initializers:
                    continue
                p = producer.get(i)
                if p is None or (p.name not in island and p.op_type != "Constant"):
                    ok = False
                elif p.op_type == "Constant" and all(c.name in island for c in consumers.get(i, [])):
                    island[p.name] = p
        if ok:
            out.update(island)
    return [n.name for n in g.node if n.name in out]


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, op_block_list=FP16_BLOCK) -> Path:
    """FP16 weights and compute, FP32 inputs/outputs (``keep_io_types``), numerically
    sensitive ops kept FP32 with Casts around them, and so are the float nodes that compute integers only
    (``integer_islands``): no float16-vs-float type mismatch."""
    from onnxconverter_common import float16  # optional on the GPU machine (carried as a wheel there)

    m = load_onnx(src)
    fold_initializer_identities(m)
    unshare_mixed_initializers(m, op_block_list)
    m16 = float16.convert_float_to_float16(m, keep_io_types=True, op_block_list=list(op_block_list),
                                           node_block_list=integer_islands(m), disable_shape_infer=False)
    onnx.checker.check_model(m16)
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(m16, str(tmp))
    return dst
