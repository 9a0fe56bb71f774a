"""Why an INT8 file predicts differently on another CPU: the candidate causes, each measured on one host.

The same study rerun on another host changed 21-75 of 2,722 INT8 test predictions (255 for the every-op
static file) while every FP32 and FP16 prediction stayed the same (eval_runs.jsonl of the default). Two mechanisms can
do that, and this module measures each with the host's own ONNX Runtime, on the study's test texts:

* **16-bit saturation** (``saturation``). Without VNNI, ONNX Runtime's x86 u8 x s8 kernels multiply with
  ``vpmaddubsw``, which adds two adjacent products (k, k+1) into a *saturating* 16-bit lane; VNNI
  (``vpdpbusd``) and AMX accumulate in 32 bits. For every MatMulInteger of a dynamic INT8 file, the u8
  activations the file computes for a text (read as extra graph outputs) and its s8 weights give every
  adjacent pair's sum exactly; a pair beyond [-32768, 32767] is one an AVX2 host clips. A file without such
  pairs on the test texts cannot change its predictions through saturation.
* **Float rounding, amplified at the rounding boundaries of quantization** (``float_sensitivity``). Hosts
  differ in the last bits of float results: the weights of a retrained checkpoint (training is not
  bit-reproducible across CPUs: the default's two hosts agree to ~1e-8 in loss, and their files' hashes
  differ) and the float kernels a file runs. Two perturbations of that size are measured here: every weight
  of the FP32 file moved by one unit in the last place at random, then quantized again with the same recipe;
  and the same files run with ONNX Runtime's graph optimizations at ``basic`` instead of ``all`` (other
  fused float kernels, the integer products unchanged). The count of predictions each perturbation moves,
  FP32 beside INT8, says how much an INT8 file amplifies a last-bit difference.

``run_hostdrift(cfg)`` writes ``results/<profile>/hostdrift.json``; ``python -m utils.hostdrift <profile>``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
import pandas as pd
from onnx import numpy_helper
from tqdm.auto import tqdm

from . import quantize as Q
from . import variants as V
from .config import load_config
from .modeling import load_tokenizer
from .ort_inspect import exposing
from .predict import OrtPredictor, ort_session
from .provenance import repo_relative, sha256
from .results import write_result

INT16_MIN, INT16_MAX = -32768, 32767


# --------------------------------------------------------------------------- saturation
def matmul_integer_weights(model: onnx.ModelProto) -> list:
    """(node name, activation input name, s8 weight matrix [K, N]) of every MatMulInteger whose second input
    is a constant int8 initializer (``quantize_dynamic``'s weights)."""
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type != "MatMulInteger" or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if w.dtype != np.int8 or w.ndim != 2:
            continue
        out.append((n.name or n.output[0], n.input[0], w))
    return out


def saturated_pairs(a: np.ndarray, w: np.ndarray) -> tuple:
    """For u8 activations ``a`` [..., K] and s8 weights ``w`` [K, N]: (pairs whose sum a[2i]w[2i] +
    a[2i+1]w[2i+1] leaves int16, all pairs, output cells with at least one such pair, all cells, the largest
    pair magnitude among the pairs that could leave int16, else 0). An odd K is padded with a zero, as a
    kernel's packing does. Exact, without forming every pair: a pair (row, i) can only leave int16 if
    max(a[2i], a[2i+1]) * max_n(|w[2i, n]| + |w[2i+1, n]|) does, and only those are summed."""
    a = a.reshape(-1, a.shape[-1]).astype(np.int32)
    w = w.astype(np.int32)
    if a.shape[1] % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 1), (0, 0)))
    m, n = a.shape[0], w.shape[1]
    w0, w1 = w[0::2], w[1::2]                                   # [K/2, N]
    bound = np.maximum(a[:, 0::2], a[:, 1::2]) * (np.abs(w0) + np.abs(w1)).max(axis=1)[None, :]   # [M, K/2]
    rows, pairs = np.nonzero(bound > INT16_MAX)
    if not len(rows):
        return 0, int(a.shape[1] // 2 * m * n), 0, int(m * n), 0
    s = a[rows, 2 * pairs, None] * w0[pairs] + a[rows, 2 * pairs + 1, None] * w1[pairs]     # [C, N]
    bad = (s > INT16_MAX) | (s < INT16_MIN)
    cells = np.zeros((m, n), dtype=bool)
    np.logical_or.at(cells, rows, bad)
    return int(bad.sum()), int(a.shape[1] // 2 * m * n), int(cells.sum()), int(m * n), int(np.abs(s).max())


def saturation(path: str | os.PathLike, feeds: Sequence[dict], threads: Optional[int] = None,
               progress: bool = False) -> dict:
    """How often an AVX2 host's 16-bit pair sums would clip in the file at ``path`` on ``feeds`` (one feed per
    text, batch 1): per MatMulInteger and in all. Integer products are exact on VNNI and AMX, so this is the
    only place the u8 x s8 results of two such hosts and an AVX2 host can differ."""
    model = onnx.load(str(path))
    mats = matmul_integer_weights(model)
    if not mats:
        raise ValueError(f"{path}: no MatMulInteger with constant int8 weights (not a dynamic INT8 file)")
    names = list(dict.fromkeys(a for _, a, _ in mats))
    per = {name: [0, 0, 0, 0, 0] for name, _, _ in mats}
    with exposing(model, Path(path).name, names, onnx.TensorProto.UINT8, threads) as run:
        for f in tqdm(feeds, desc=f"saturation {Path(path).stem}", disable=not progress, leave=False):
            acts = dict(zip(names, run(f)))
            for name, a_name, w in mats:
                r, p = saturated_pairs(acts[a_name], w), per[name]
                per[name] = [x + y for x, y in zip(p[:4], r[:4])] + [max(p[4], r[4])]
    layers = {n: {"saturated_pairs": p[0], "pairs": p[1], "cells_with_saturation": p[2], "cells": p[3],
                  "max_abs_pair": p[4]} for n, p in per.items()}
    tot = [sum(v[k] for v in layers.values()) for k in ("saturated_pairs", "pairs", "cells_with_saturation", "cells")]
    return {"texts": len(feeds), "matmuls": len(mats), "saturated_pairs": tot[0], "pairs": tot[1],
            "pair_fraction": tot[0] / tot[1] if tot[1] else 0.0, "cells_with_saturation": tot[2], "cells": tot[3],
            "cell_fraction": tot[2] / tot[3] if tot[3] else 0.0,
            "matmuls_with_saturation": sum(1 for v in layers.values() if v["saturated_pairs"]),
            "max_abs_pair": max(v["max_abs_pair"] for v in layers.values()), "int16_max": INT16_MAX,
            "per_matmul": layers}


# --------------------------------------------------------------------------- float sensitivity
def perturb_ulp(src: str | os.PathLike, dst: str | os.PathLike, seed: int = 0) -> dict:
    """A copy of the float ONNX file ``src`` whose every float weight moved one unit in the last place, up
    or down at random (``seed``): the size of difference two CPUs' trainings leave in a checkpoint."""
    rng = np.random.default_rng(seed)
    m = onnx.load(str(src))
    moved = 0
    for init in m.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        x = numpy_helper.to_array(init)
        if x.size < 2:          # scalars of the graph (constants of LayerNorm, GELU...), not weights
            continue
        up = rng.random(x.shape) < 0.5
        y = np.where(up, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))).astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(y, init.name))
        moved += int(x.size)
    onnx.save(m, str(dst))
    return {"weights_moved": moved, "seed": seed}


def _predict(path, tok, max_length: int, texts, threads, optimization: str = "all", progress: bool = False):
    p = OrtPredictor(path, tok, max_length, batch_size=1, threads=threads, name=f"{Path(path).stem}/{optimization}")
    if optimization != "all":
        p.session = ort_session(path, threads=threads, optimization=optimization)
    return p.predict_logits(texts, progress=progress, batch_size=1, order="given")


def moved(a: np.ndarray, b: np.ndarray) -> dict:
    """Predictions (argmax) that differ between two logit arrays, and the largest logit difference."""
    return {"predictions_moved": int((a.argmax(-1) != b.argmax(-1)).sum()),
            "max_abs_logit_diff": float(np.abs(a - b).max())}


def float_sensitivity(fp32: str | os.PathLike, int8: dict, tok, max_length: int, texts: Sequence[str],
                      requantize, threads: Optional[int] = None, seed: int = 0, progress: bool = False) -> dict:
    """Predictions moved by a last-bit perturbation, FP32 beside each INT8 file (``int8``: name -> path):

    * ``weights_ulp``: the FP32 file with every weight one ulp off, and each INT8 file quantized again from it
      with ``requantize(name, src, dst)`` (the same recipe), against the same recipe applied to the unperturbed
      file here (so only the perturbation differs);
    * ``optimization``: each file run with ONNX Runtime's graph optimizations ``basic`` against ``all``.
    All at batch 1, each text alone."""
    out = {"texts": len(texts), "threads": threads, "weights_ulp": {}, "optimization": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pert = tmp / "fp32-ulp.onnx"
        out["perturbation"] = perturb_ulp(fp32, pert, seed)
        base = _predict(fp32, tok, max_length, texts, threads, progress=progress)
        out["weights_ulp"]["onnx-fp32"] = moved(base, _predict(pert, tok, max_length, texts, threads,
                                                                   progress=progress))
        out["optimization"]["onnx-fp32"] = moved(base, _predict(fp32, tok, max_length, texts, threads, "basic",
                                                                    progress=progress))
        for name, path in int8.items():
            a, b = tmp / f"{name}-again.onnx", tmp / f"{name}-ulp.onnx"
            requantize(name, fp32, a)
            requantize(name, pert, b)
            la = _predict(a, tok, max_length, texts, threads, progress=progress)
            rec = moved(la, _predict(b, tok, max_length, texts, threads, progress=progress))
            rec["same_file_as_study"] = Path(path).is_file() and _same_bytes(a, path)
            out["weights_ulp"][name] = rec
            # the study's file under full optimizations: the requantized copy's predictions where it is that file
            lo = la if rec["same_file_as_study"] else _predict(path, tok, max_length, texts, threads, progress=progress)
            out["optimization"][name] = moved(lo, _predict(path, tok, max_length, texts, threads, "basic",
                                                               progress=progress))
    return out


def _same_bytes(a, b) -> bool:
    return Path(a).read_bytes() == Path(b).read_bytes()


# --------------------------------------------------------------------------- the study's step
DYNAMIC_FILES = ("onnx-int8-dynamic", "onnx-int8-dynamic-pt")


def run_hostdrift(cfg, texts_limit: Optional[int] = None, saturation_texts: int = 100, progress: bool = True) -> dict:
    """Both measurements on the profile's test split and its files; writes results/<profile>/hostdrift.json."""
    t0 = time.perf_counter()
    test = pd.read_csv(cfg.processed_dir / "test.csv")
    texts = test["text"].astype(str).tolist()[:texts_limit]
    tok = load_tokenizer(str(V.checkpoint_dir(cfg)))
    fp32 = V.REGISTRY["onnx-fp32"].path(cfg)
    files = {n: V.REGISTRY[n].path(cfg) for n in DYNAMIC_FILES if V.REGISTRY[n].path(cfg).is_file()}
    if not fp32.is_file() or not files:
        raise FileNotFoundError(f"{fp32} or the dynamic INT8 files of profile {cfg.name!r} are missing: run its "
                                f"quantize step first (make paper-figures PROFILE={cfg.name})")

    def requantize(name, src, dst):
        Q.quantize_dynamic_int8(src, dst, per_channel=V.REGISTRY[name].recipe.per_channel,
                                weight_type=cfg.quantize.weight_type)

    enc = OrtPredictor(fp32, tok, cfg.model.max_length, batch_size=1)
    feeds = [enc.encode([t]) for t in texts[:saturation_texts]]
    rec = {"n_test": len(texts), "files": {n: {"path": repo_relative(p, cfg.root), "sha256": sha256(p)}
                                           for n, p in {"onnx-fp32": fp32, **files}.items()},
           "saturation": {n: saturation(p, feeds, threads=cfg.runtime.threads, progress=progress)
                          for n, p in files.items()},
           "float": float_sensitivity(fp32, files, tok, cfg.model.max_length, texts, requantize,
                                      threads=cfg.runtime.threads, seed=cfg.seed, progress=progress)}
    rec["seconds"] = time.perf_counter() - t0
    write_result(cfg, "hostdrift", rec)
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.hostdrift", description=__doc__.splitlines()[0])
    ap.add_argument("profile", nargs="?", default="default")
    ap.add_argument("--texts", type=int, default=None, help="the first N test texts (default: all)")
    ap.add_argument("--saturation-texts", type=int, default=100)
    a = ap.parse_args(argv)
    rec = run_hostdrift(load_config(a.profile), a.texts, a.saturation_texts)
    for n, s in rec["saturation"].items():
        print(f"{n}: {s['saturated_pairs']} of {s['pairs']:,} pairs beyond int16 ({s['matmuls_with_saturation']} of "
              f"{s['matmuls']} products), on {s['texts']} texts")
    for kind in ("weights_ulp", "optimization"):
        print(kind, {n: r["predictions_moved"] for n, r in rec["float"][kind].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
