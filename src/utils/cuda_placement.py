"""Where ONNX Runtime's CUDA provider will run each node of an ONNX file, predicted without a GPU.

The original study saw 186 Memcpy nodes in its INT8 file on the GPU (12 in FP32) and INT8 slower than FP32 there. The
mechanism is in ONNX Runtime's kernel table: a node runs on the CUDA provider only where a CUDA kernel is registered
for its operator with its input types (``data/ort_cuda_kernels.json``, vendored from the documented table with its
source); every other node falls back to the CPU, and each tensor that crosses between the two becomes a Memcpy node.

The prediction, per node in the file's own graph (what ONNX Runtime sees before its CPU-only fusions):

1. the CUDA provider takes a node whose operator has a CUDA kernel for the element types of its inputs
   (e.g. MatMulInteger takes int8 x int8 only: the uint8 activations of ``quantize_dynamic`` do not fit; there is no
   DynamicQuantizeLinear kernel at all);
2. ONNX Runtime keeps shape computations on the CPU (``GetCpuPreferredNodes``): an integer-valued node all of whose
   inputs come from Shape nodes, constants, initializers or other such nodes is predicted on the CPU;
3. a Memcpy node for every tensor produced on one side and read on the other (once per tensor and direction), not for
   the graph's inputs and outputs (the session copies them), initializers, inputs the CUDA kernel reads from host
   memory (a Reshape's shape, a Slice's starts ...: ``cpu_inputs``) or a Shape node's input (it reads no data).

``compare`` sets a measured placement (bench.json's / bench_gpu.json's ``placement`` record) beside the prediction.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import onnx
from onnx import TensorProto

from .config import load_config
from .provenance import sha256
from .results import write_result
from .variants import REGISTRY

KERNELS = Path(__file__).resolve().parent / "data" / "ort_cuda_kernels.json"
TYPES = {TensorProto.FLOAT: "float", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
         TensorProto.DOUBLE: "double", TensorProto.INT8: "int8", TensorProto.UINT8: "uint8", TensorProto.INT16: "int16",
         TensorProto.UINT16: "uint16", TensorProto.INT32: "int32", TensorProto.UINT32: "uint32",
         TensorProto.INT64: "int64", TensorProto.UINT64: "uint64", TensorProto.BOOL: "bool"}
INTEGER = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool"}


def kernel_table(path: Path = KERNELS) -> dict:
    return json.loads(Path(path).read_text())


def _types(model: onnx.ModelProto) -> dict:
    """Element type of every tensor of the graph (shape inference fills the intermediate ones)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    g = inferred.graph
    out = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        out[vi.name] = TYPES.get(vi.type.tensor_type.elem_type)
    for init in g.initializer:
        out[init.name] = TYPES.get(init.data_type)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = TYPES.get(a.t.data_type)
    return out


def _has_kernel(node, types: dict, table: dict) -> tuple[bool, str]:
    domain = node.domain or "ai.onnx"
    ops = table["ops"].get(domain, {})
    if node.op_type not in ops:
        listed = node.op_type in table["absent"].get(domain, [])
        return False, "no CUDA kernel" if listed else "not in the kernel table"
    for idx, allowed in ops[node.op_type].items():
        i = int(idx)
        if i >= len(node.input) or not node.input[i]:
            continue
        t = types.get(node.input[i])
        if allowed != "any" and t is not None and t not in allowed:
            return False, f"no CUDA kernel for input {i} of type {t}"
    return True, ""


def predict(path: str | Path, table: Optional[dict] = None) -> dict:
    """The predicted placement of ``path``'s nodes: nodes per provider, Memcpy count, and why each CPU node is there."""
    table = table or kernel_table()
    model = onnx.load(str(path))
    g = model.graph
    types = _types(model)
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    place, why = {}, Counter()
    shape_like: set = set()      # outputs of the shape computation (integer, from Shape / constants only)
    for n in g.node:             # the graph is topologically sorted (ONNX requires it)
        outs_int = all(types.get(o) in INTEGER for o in n.output if o)
        from_shape = all((not i) or i in inits or i in shape_like for i in n.input)
        if n.op_type == "Shape" or (n.op_type == "Constant") or (outs_int and from_shape and n.input):
            shape_like.update(o for o in n.output if o)
            place[n.name or n.output[0]] = "CPU"
            why["shape computation (CPU-preferred)"] += 1
            continue
        ok, reason = _has_kernel(n, types, table)
        place[n.name or n.output[0]] = "CUDA" if ok else "CPU"
        if not ok:
            why[f"{n.op_type}: {reason}"] += 1
    cpu_in = table.get("cpu_inputs", {}).get("ai.onnx", {})
    graph_io = {i.name for i in g.input} | {o.name for o in g.output}
    crossings = set()
    for n in g.node:
        dst = place[n.name or n.output[0]]
        for k, i in enumerate(n.input):
            if not i or i in inits or i in graph_io or i not in producer:
                continue
            if n.op_type == "Shape" or (dst == "CUDA" and k in cpu_in.get(n.op_type, [])):
                continue
            src_node = producer[i]
            if src_node.op_type == "Constant":
                continue
            if place[src_node.name or src_node.output[0]] != dst:
                crossings.add((i, dst))
    # graph outputs produced on the GPU are copied by the session, as its inputs are
    counts = Counter(place.values())
    return {"nodes": len(g.node), "cuda_nodes": counts.get("CUDA", 0), "cpu_nodes": counts.get("CPU", 0),
            "memcpy_predicted": len(crossings),
            "cpu_fallback": {k: v for k, v in why.most_common() if not k.startswith("shape")},
            "cpu_shape_nodes": why.get("shape computation (CPU-preferred)", 0),
            "integer_nodes_on_cuda": sum(1 for n in g.node if place[n.name or n.output[0]] == "CUDA"
                                         and n.op_type in ("MatMulInteger", "QAttention")),
            "kernel_table": table["source_commit"][:12]}


def predict_files(files: dict, table: Optional[dict] = None) -> dict:
    """``predict`` for each name -> path."""
    table = table or kernel_table()
    return {name: predict(p, table) for name, p in files.items()}


def compare(predicted: dict, measured: dict) -> dict:
    """The prediction beside a measured CUDA placement (a ``placement`` record of the GPU run: nodes per provider,
    Memcpy nodes); None where the run has no CUDA record of the file."""
    rec = next((r for r in measured if r.get("providers", [None])[0] == "CUDAExecutionProvider"), None) \
        if isinstance(measured, list) else measured
    if not rec or "nodes_per_provider" not in rec:
        return {"measured": None}
    return {"memcpy_predicted": predicted["memcpy_predicted"], "memcpy_measured": rec.get("memcpy_nodes"),
            "cpu_nodes_predicted": predicted["cpu_nodes"],
            "cpu_nodes_measured": rec["nodes_per_provider"].get("CPUExecutionProvider", 0)}


def main(argv=None) -> None:
    """``python -m utils.cuda_placement PROFILE``: the prediction for every ONNX file of the profile's quantize step,
    written to results/<profile>/cuda_placement.json."""
    argv = sys.argv[1:] if argv is None else argv
    cfg = load_config(argv[0])
    onnx_dir = cfg.artifacts_dir / "onnx"
    if not onnx_dir.is_dir():
        raise SystemExit(f"{onnx_dir}: no ONNX files (run the quantize step first: make quantize PROFILE={cfg.name})")
    names = {f"onnx-{p.stem}": p for p in sorted(onnx_dir.glob("*.onnx")) if f"onnx-{p.stem}" in REGISTRY}
    table = kernel_table()
    payload = {"kernel_table": {k: table[k] for k in ("source", "source_commit", "gpu_package", "read")},
               "method": " ".join(" ".join(__doc__.split("\n\n")[2:4]).split()),
               "inputs": {n: sha256(p) for n, p in names.items()}, "files": predict_files(names, table)}
    write_result(cfg, "cuda_placement", payload)


if __name__ == "__main__":
    main()
