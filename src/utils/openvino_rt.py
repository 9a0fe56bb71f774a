"""OpenVINO beside ONNX Runtime: the study's ONNX files (Q/DQ included) and NNCF's INT8 model on OpenVINO's CPU plugin.

* ``compile_model``: one compiled model with the thread settings ONNX Runtime's sessions get (``INFERENCE_NUM_THREADS``,
  the latency hint, one stream) and FP32 inference precision: on a CPU with AVX-512 BF16 or AMX the plugin would
  otherwise run every floating-point node in bfloat16 (its default there), and "FP32" would not be FP32.
* ``OvPredictor``: the ``predict.Predictor`` of a compiled model (evaluation, benchmark and LIME treat it as any other).
* ``nncf_int8``: NNCF post-training quantization of the FP32 ONNX model into an OpenVINO IR (``.xml`` + ``.bin``).
* ``int8_nodes``: what the CPU plugin reports it runs in int8 (the runtime model's precision per node).
* ``perf_counts``: OpenVINO's per-node performance counters (``PERF_COUNT``): time per node type and execution type,
  and the share in integer matrix products, beside ONNX Runtime's operator profile (``ort_inspect``).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import openvino as ov
from tqdm.auto import tqdm

from .modeling import ModelError
from .predict import Predictor

PRECISION = "f32"                # INFERENCE_PRECISION_HINT of every compiled model (see the module's docstring)
# OpenVINO's CPU node types of matrix products (after its own fusions) and the precisions that mean integer kernels
MATMUL_TYPES = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution")
INT_PRECISIONS = ("I8", "U8", "i8", "u8")
# NNCF's options for a transformer: each recorded in quantize.json beside the file
NNCF_OPTIONS = {"model_type": "TRANSFORMER", "preset": "MIXED", "smooth_quant_alpha_matmul": 0.95,
                "fast_bias_correction": True, "target_device": "ANY"}


def version() -> str:
    return ov.__version__.split("-")[0]


def config(threads: Optional[int], perf_count: bool = False) -> dict:
    """The compile settings: ONNX Runtime's thread count, the latency hint, one stream, FP32 precision."""
    cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": PRECISION,
           "PERF_COUNT": "YES" if perf_count else "NO"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = str(int(threads))
    return cfg


def read_model(path: str | os.PathLike):
    """An ONNX file or an OpenVINO IR (``.xml`` beside its ``.bin``); a missing or unreadable one: one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"OpenVINO model not found: {path}")
    try:
        return ov.Core().read_model(str(path))
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with its whole log
        raise ModelError(f"corrupt or unreadable model {path} (OpenVINO): "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None


def compile_model(path: str | os.PathLike, threads: Optional[int] = None, perf_count: bool = False):
    """The model at ``path`` compiled for OpenVINO's CPU plugin with ``config``."""
    return ov.Core().compile_model(read_model(path), "CPU", config(threads, perf_count))


def effective_config(compiled) -> dict:
    """What the plugin set, read back (a setting it ignored shows here)."""
    out = {}
    for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT"):
        try:
            value = compiled.get_property(key)
            out[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        except Exception:  # noqa: BLE001 - a property this plugin version does not report
            out[key] = None
    return out


class OvPredictor(Predictor):
    """Texts in, logits out, through one OpenVINO infer request (synchronous: batch 1 is one call)."""
    name = "openvino"

    def __init__(self, path: str | os.PathLike, tokenizer, max_length: int, batch_size: int = 64,
                 threads: Optional[int] = None, name: Optional[str] = None, perf_count: bool = False):
        super().__init__(tokenizer, max_length, batch_size)
        self.path = Path(path)
        self.compiled = compile_model(path, threads, perf_count)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.name = name or f"openvino-{self.path.stem}"

    def _forward(self, enc: dict) -> np.ndarray:
        missing = [n for n in self.input_names if n not in enc]
        if missing:
            raise ModelError(f"model {self.path} expects input(s) {missing} that the tokenizer "
                             f"does not produce ({sorted(enc)})")
        out = self.request.infer({n: enc[n] for n in self.input_names}, share_outputs=False)
        return np.asarray(out[self.compiled.output(0)])


# --------------------------------------------------------------------------- NNCF
def nncf_int8(src: str | os.PathLike, dst: str | os.PathLike, feeds: Sequence[dict]) -> dict:
    """NNCF post-training quantization (``NNCF_OPTIONS``) of the ONNX model ``src``, calibrated on ``feeds`` (one
    tokenized text each, unpadded), saved as an OpenVINO IR at ``dst`` (``.xml``; FP32 weights where not int8).
    Returns what it did, for quantize.json."""
    import nncf  # on first use: importing it takes ~2 s, which every other step would pay
    model = read_model(src)
    names = [i.get_any_name() for i in model.inputs]
    items = [{n: f[n] for n in names} for f in feeds]
    if not items:
        raise ValueError(f"{Path(dst).name}: NNCF needs calibration texts (none given)")
    q = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                      preset=nncf.QuantizationPreset.MIXED, subset_size=len(items),
                      fast_bias_correction=NNCF_OPTIONS["fast_bias_correction"],
                      advanced_parameters=nncf.AdvancedQuantizationParameters(
                          smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(
                              matmul=NNCF_OPTIONS["smooth_quant_alpha_matmul"])))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".partial.xml")
    ov.save_model(q, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(dst.with_suffix(".bin"))
    tmp.replace(dst)
    fq = sum(1 for op in q.get_ops() if op.get_type_name() == "FakeQuantize")
    return {"method": "NNCF post-training quantization (OpenVINO IR)", "nncf": _nncf_version(), **NNCF_OPTIONS,
            "subset_size": len(items), "calibration_examples": len(items), "fake_quantize_nodes": fq}


def _nncf_version() -> str:
    import nncf  # see nncf_int8
    return nncf.__version__


# --------------------------------------------------------------------------- what the plugin runs
def _is_int_matmul(layer_type: str, precision: str) -> bool:
    return layer_type in MATMUL_TYPES and any(p in precision for p in INT_PRECISIONS)


def int8_nodes(compiled) -> dict:
    """From the runtime model: matrix-product nodes and how many run in int8 (``runtimePrecision``), nodes per
    execution type."""
    layers = Counter()
    matmul = int_matmul = 0
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        keys = set(rt.keys())
        lt = rt["layerType"].astype(str) if "layerType" in keys else op.get_type_name()
        prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in keys else ""
        layers[lt] += 1
        if lt in MATMUL_TYPES:
            matmul += 1
            int_matmul += _is_int_matmul(lt, prec)
    return {"matmul_nodes": matmul, "int8_matmul_nodes": int_matmul, "nodes": sum(layers.values()),
            "node_types": dict(layers.most_common())}


def perf_counts(files: dict, feed: dict, reps: int, threads: Optional[int], progress: bool = False) -> dict:
    """For each model (name -> path), OpenVINO's per-node performance counters over ``reps`` calls after a cold one
    (each node's median real time), in turns with the order rotating, as ONNX Runtime's operator profiles are taken:
    ms per call by node type, by execution type, in integer matrix products and in everything else; the nodes the
    plugin ran in int8; the median profiled call."""
    models, reqs, feeds = {}, {}, {}
    names = list(files)
    for n in names:
        models[n] = compile_model(files[n], threads, perf_count=True)
        reqs[n] = models[n].create_infer_request()
        feeds[n] = {i.get_any_name(): feed[i.get_any_name()] for i in models[n].inputs}
    times: dict = {n: {} for n in names}
    calls: dict = {n: [] for n in names}
    for j in tqdm(range(1 + reps), desc="OpenVINO perf counters", disable=not progress, leave=False):
        for n in names[j % len(names):] + names[:j % len(names)]:
            t0 = time.perf_counter()
            reqs[n].infer(feeds[n])
            dt = (time.perf_counter() - t0) * 1e3
            if j == 0:
                continue        # the cold call
            calls[n].append(dt)
            for p in reqs[n].profiling_info:
                if p.status.name != "EXECUTED":
                    continue
                times[n].setdefault(p.node_name, (p.node_type, p.exec_type, []))[2].append(
                    p.real_time.total_seconds() * 1e3)
    out = {}
    for n in names:
        by_type, by_exec = Counter(), Counter()
        int_ms = 0.0
        for node_type, exec_type, ts in times[n].values():
            ms = float(np.median(ts))
            by_type[node_type] += ms
            by_exec[exec_type] += ms
            if _is_int_matmul(node_type, exec_type):
                int_ms += ms
        kernel = float(sum(by_type.values()))
        out[n] = {"threads": threads, "profiled_runs": reps, "precision_hint": PRECISION,
                  "profiled_call_ms": float(np.median(calls[n])) if calls[n] else None,
                  "kernel_ms": kernel, "int8_matmul_ms": int_ms, "other_ms": kernel - int_ms,
                  "int8_matmul_share": int_ms / kernel if kernel else None,
                  "op_ms": {k: v for k, v in by_type.most_common()},
                  "exec_ms": {k: v for k, v in by_exec.most_common()},
                  **int8_nodes(models[n]), "config": effective_config(models[n])}
    del reqs, models
    return out
