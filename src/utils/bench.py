"""Latency measurement and what ONNX Runtime actually runs.

``interleaved_latency`` times several predictors on the same inputs, one call each in
turn (round-robin), so drift on a shared machine hits all of them alike; it reports
median and percentiles. ``session_ops`` lists the operators of the graph ONNX Runtime
executes after its own optimizations (e.g. DequantizeLinear + MatMul fused into
MatMulIntegerToFloat), which is the proof that an INT8 file runs integer kernels.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
from tqdm.auto import tqdm


def summarize(times_ms: Sequence[float]) -> dict:
    t = np.asarray(times_ms, dtype=float)
    return {"n": int(t.size), "median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
            "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0,
            "p10_ms": float(np.percentile(t, 10)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99))}


def interleaved_latency(predictors: dict, texts: Sequence[str], warmup: int = 5, progress: bool = False) -> dict:
    """Batch-1 latency (tokenization excluded) of each predictor over ``texts``, round-robin.

    ``predictors``: name -> Predictor. Every predictor sees the same encoded inputs.
    """
    if not texts:
        raise ValueError("interleaved_latency: no texts")
    names = list(predictors)
    encoded = {n: [predictors[n].encode([t]) for t in texts] for n in names}
    for n in names:                                     # warm-up (allocations, kernel selection)
        for enc in encoded[n][:warmup]:
            predictors[n]._forward(enc)
    times = {n: [] for n in names}
    for i in tqdm(range(len(texts)), desc="latency", disable=not progress, leave=False):
        for n in names[i % len(names):] + names[:i % len(names)]:   # rotate who goes first
            t0 = time.perf_counter()
            predictors[n]._forward(encoded[n][i])
            times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: summarize(times[n]) for n in names}


def session_ops(path: str | os.PathLike, providers: Optional[list] = None) -> dict:
    """Operator counts of the graph an ONNX Runtime session runs (after its optimizations)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3   # the saved graph is hardware specific: that is the point here
        so.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
        m = onnx.load(so.optimized_model_filepath)
    return dict(sorted(Counter(n.op_type for n in m.graph.node).items()))
