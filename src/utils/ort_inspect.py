"""What ONNX Runtime actually runs: the graph after its optimizations, which provider ran each node,
and where a call's time goes.

``session_ops`` lists the operators of the graph an ONNX Runtime session executes after its own
optimizations (e.g. DequantizeLinear + MatMul fused into MatMulIntegerToFloat), which is the proof
that an INT8 file runs integer kernels; ``integer_ops`` is the one rule of what counts as one.
``operator_profiles`` reads ONNX Runtime's profiler: which provider ran each node, the Memcpy nodes
between providers, and the kernel time per operator type.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
from tqdm.auto import tqdm

from .predict import ort_session

# operators that compute on, or produce, integer tensors: the integer kernels an INT8 file runs.
# DequantizeLinear is not one (integer in, float out: where the integer part ends).
INTEGER_OPS = frozenset({"MatMulInteger", "MatMulIntegerToFloat", "ConvInteger", "DynamicQuantizeLinear",
                         "DynamicQuantizeMatMul", "QuantizeLinear", "QAttention", "QEmbedLayerNormalization",
                         "QGemm"})


def is_integer_op(op: str) -> bool:
    """Whether an operator type is an integer kernel (``INTEGER_OPS``, or any QLinear* operator)."""
    return op in INTEGER_OPS or op.startswith("QLinear")


def integer_ops(op_counts: dict) -> dict:
    """The integer kernels among operator counts (op type -> count)."""
    return {op: int(n) for op, n in op_counts.items() if is_integer_op(op) and n}


def integer_op_count(op_counts: dict) -> int:
    return sum(integer_ops(op_counts).values())


def session_ops(path: str | os.PathLike, providers: Optional[list] = None) -> dict:
    """Operator counts of the graph an ONNX Runtime session runs (after its optimizations)."""
    with tempfile.TemporaryDirectory() as d:
        # quiet: the saved graph is hardware specific, and that is the point here
        ort_session(path, providers=providers, optimized_model=Path(d) / "optimized.onnx", quiet=True)
        m = onnx.load(str(Path(d) / "optimized.onnx"))
    return dict(sorted(Counter(n.op_type for n in m.graph.node).items()))



# operator types that compute a matrix product (float or integer), for the time breakdown
MATMUL_OPS = frozenset({"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "MatMulIntegerToFloat",
                        "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "MatMulNBits"})


def node_placement(path: str | os.PathLike, providers: list, feed: dict, reps: int = 1,
                   threads: Optional[int] = None, spinning: bool = False, spin_stop: bool = False) -> dict:
    """One file's ``operator_profiles`` record."""
    return operator_profiles({"file": path}, providers, feed, reps=reps, threads=threads, spinning=spinning,
                             spin_stop=spin_stop)["file"]


def operator_profiles(files: dict, providers: list, feed: dict, reps: int = 1, threads: Optional[int] = None,
                      spinning: bool = False, spin_stop: bool = False, progress: bool = False) -> dict:
    """For each ONNX file (name -> path), from ONNX Runtime's profiler: the nodes each execution
    provider ran, the Memcpy nodes ONNX Runtime inserted between providers, and the kernel time per
    operator type (ms per call: each node's median over ``reps`` profiled calls after a cold one, so a
    burst of load on a shared host that hits a few calls does not count).

    The files are profiled in turns, one call each, the order rotating, so drift hits all alike. The
    profiler slows calls down (``profiled_call_ms``, the median profiled call, says by how much against
    an unprofiled median at the same thread count)."""
    with tempfile.TemporaryDirectory() as d:
        sessions, feeds = {}, {}
        names = list(files)
        for i, n in enumerate(names):
            sessions[n] = ort_session(files[n], threads=threads, providers=providers, spinning=spinning,
                                      spin_stop=spin_stop, profile_prefix=Path(d) / f"prof{i}",
                                      optimized_model=Path(d) / f"optimized{i}.onnx", quiet=True)
            feeds[n] = {x.name: feed[x.name] for x in sessions[n].get_inputs()}
        for j in tqdm(range(1 + reps), desc="operator profiles", disable=not progress, leave=False):
            for n in names[j % len(names):] + names[:j % len(names)]:
                sessions[n].run(None, feeds[n])
        out = {n: _profile_record(json.loads(Path(sessions[n].end_profiling()).read_text()),
                                  onnx.load(str(Path(d) / f"optimized{i}.onnx")), providers, reps, threads)
               for i, n in enumerate(names)}
        del sessions
    return out


def _profile_record(events: list, graph: onnx.ModelProto, providers: list, reps: int, threads: Optional[int]) -> dict:
    """``operator_profiles``' record of one file from its profile ``events`` (the first call is cold)."""
    per_provider: Counter = Counter()
    runs: dict = {}
    calls = []
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and "provider" in args:
            runs.setdefault(e["name"], []).append(e)
        elif e.get("cat") == "Session" and e.get("name") == "model_run":
            calls.append(e)
    op_ms: Counter = Counter()
    for evs in runs.values():
        per_provider[evs[0]["args"]["provider"]] += 1
        warm = [e["dur"] for e in sorted(evs, key=lambda e: e["ts"])[1:]]
        if warm:
            op_ms[evs[0]["args"]["op_name"]] += float(np.median(warm)) / 1e3
    calls = [e["dur"] / 1e3 for e in sorted(calls, key=lambda e: e["ts"])[1:]]
    memcpy = sum(1 for n in graph.graph.node if n.op_type.startswith("Memcpy"))
    op_ms = dict(op_ms.most_common())
    return {"providers": providers, "nodes_per_provider": dict(per_provider), "memcpy_nodes": memcpy,
            "graph_nodes": len(graph.graph.node), "profiled_runs": reps, "threads": threads,
            "profiled_call_ms": float(np.median(calls)) if calls else None, "op_ms": op_ms,
            "kernel_ms": float(sum(op_ms.values())),
            "matmul_ms": float(sum(v for k, v in op_ms.items() if k in MATMUL_OPS))}




# --------------------------------------------------------------------------- dynamic activation scales
def dynamic_scale_outputs(path: str | os.PathLike) -> list:
    """The y_scale outputs of every DynamicQuantizeLinear node in the file (graph order): the activation
    scale each dynamically quantized matrix product computes at run time, one per input tensor."""
    g = onnx.load(str(path), load_external_data=False).graph
    return [n.output[1] for n in g.node if n.op_type == "DynamicQuantizeLinear"]


def activation_scales(path: str | os.PathLike, feeds: list, threads: Optional[int] = None) -> np.ndarray:
    """The activation scale of every DynamicQuantizeLinear node for each feed (one row per feed):
    the file with those scales added as graph outputs, run on ONNX Runtime. One scale covers the whole
    input tensor, so a text run alone and the same text inside a batch get different scales when the
    batch's other texts (or its padding) widen the tensor's range."""
    names = dynamic_scale_outputs(path)
    if not names:
        raise ValueError(f"{path}: no DynamicQuantizeLinear node (not a dynamic INT8 file)")
    with exposing(onnx.load(str(path)), Path(path).name, names, onnx.TensorProto.FLOAT, threads) as run:
        rows = [run(f) for f in feeds]
    return np.array([[float(np.asarray(x).reshape(-1)[0]) for x in r] for r in rows], dtype=np.float64)


@contextlib.contextmanager
def exposing(model: onnx.ModelProto, file_name: str, names: list, elem_type: int, threads: Optional[int] = None):
    """``run(feed) -> [values of names]``: ``model`` with the intermediate tensors ``names`` (all of
    ``elem_type``) added as graph outputs, saved as ``file_name`` in a temporary folder and run on ONNX
    Runtime for as long as the block lasts (``model`` is changed in place)."""
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, elem_type, None) for n in names if n not in have)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / file_name
        onnx.save(model, str(probe))
        sess = ort_session(probe, threads=threads, quiet=True)
        inputs = [i.name for i in sess.get_inputs()]
        yield lambda f: sess.run(names, {k: f[k] for k in inputs})
