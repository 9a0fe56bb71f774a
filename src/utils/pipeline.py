"""The study's steps, one function each; notebooks call these and narrate.

Each step reads the outputs of the previous ones from disk, writes its artifacts
atomically and records ``results/<profile>/<step>.json`` with provenance.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import data as D
from . import evaluate as E
from . import modeling as M
from . import onnx_export as X
from . import quantize as Q
from .config import Config
from .predict import OrtPredictor, TorchPredictor
from .provenance import load_result, write_result


# --------------------------------------------------------------------------- paths
def checkpoint_dir(cfg: Config) -> Path:
    return cfg.artifacts_dir / "fp32"


def onnx_path(cfg: Config, variant: str) -> Path:
    return cfg.artifacts_dir / "onnx" / f"{variant}.onnx"


# --------------------------------------------------------------------------- 01 data
def run_data(cfg: Config) -> dict:
    ds = D.load_dataset(cfg)
    splits = D.save_splits(ds, cfg.processed_dir)
    src, kw = M.model_source(cfg.model, cfg.root)
    tok = M.load_tokenizer(src, **kw)
    lengths = {}
    for name, df in ds.splits.items():
        L = D.token_lengths(df["text"], tok)
        values, counts = np.unique(L, return_counts=True)
        lengths[name] = {
            "median": float(np.median(L)), "mean": float(L.mean()), "p95": float(np.percentile(L, 95)),
            "max": int(L.max()), "truncated_fraction": float(np.mean(L > cfg.model.max_length)),
            "histogram": {int(v): int(c) for v, c in zip(values, counts)},
        }
    total = sum(s["n"] for s in splits.values())
    payload = {
        "source": ds.source, "labels": ds.labels, "n_examples": total, "splits": splits,
        "group_overlap": D.group_overlap(ds.splits), "token_lengths": lengths,
        "max_length": cfg.model.max_length,
        "majority_class_test_accuracy": max(splits["test"]["class_counts"].values()) / splits["test"]["n"],
    }
    write_result(cfg, "data", payload)
    return payload


def labels_of(cfg: Config) -> list:
    return load_result(cfg, "data")["labels"]


# --------------------------------------------------------------------------- 02 train
def run_train_fp32(cfg: Config, progress: bool = True) -> dict:
    from .training import fine_tune

    splits = D.load_splits(cfg)
    labels = labels_of(cfg)
    model, tok = M.build_classifier(cfg, labels, attn="sdpa")
    t0 = time.perf_counter()
    hist = fine_tune(model, tok, splits["train"], splits["validation"], cfg.train, cfg.model.max_length,
                     cfg.seed, threads=cfg.threads, progress=progress, eval_batch_size=cfg.eval.batch_size)
    seconds = time.perf_counter() - t0
    out = M.save_checkpoint(model, tok, checkpoint_dir(cfg))
    payload = {**hist, "train_seconds": seconds, "n_train": len(splits["train"]),
               "n_validation": len(splits["validation"]), "parameters": M.count_parameters(model),
               "checkpoint": str(out.relative_to(cfg.root)),
               "checkpoint_mb": M.file_size_mb(out / "model.safetensors")}
    write_result(cfg, "train_fp32", payload)
    return payload


# --------------------------------------------------------------------------- 03 export
def run_export(cfg: Config) -> dict:
    model, tok = M.load_checkpoint(checkpoint_dir(cfg), attn="eager")
    test = D.load_splits(cfg)["test"]
    texts = test["text"].tolist()[: cfg.export.parity_examples]
    path = onnx_path(cfg, "fp32")
    par = X.export_with_parity(model, tok, path, texts, cfg.model.max_length, opset=cfg.export.opset,
                               atol=cfg.export.parity_atol, threads=cfg.threads)
    payload = {"variant": "fp32", "path": str(path.relative_to(cfg.root)), "size_mb": M.file_size_mb(path),
               "parity": par, "graph": Q.graph_stats(path)}
    write_result(cfg, "export", payload)
    return payload


# --------------------------------------------------------------------------- 04 quantize
def run_quantize(cfg: Config) -> dict:
    src = onnx_path(cfg, "fp32")
    fp32_mb = M.file_size_mb(src)
    variants = {}
    t0 = time.perf_counter()
    dst = Q.quantize_dynamic_int8(src, onnx_path(cfg, "int8-dynamic"), per_channel=cfg.quantize.per_channel,
                                  weight_type=cfg.quantize.weight_type)
    variants["int8-dynamic"] = {
        "path": str(dst.relative_to(cfg.root)), "method": "onnxruntime quantize_dynamic",
        "per_channel": cfg.quantize.per_channel, "weight_type": cfg.quantize.weight_type,
        "seconds": time.perf_counter() - t0, "size_mb": M.file_size_mb(dst),
        "size_ratio_to_fp32": M.file_size_mb(dst) / fp32_mb, "graph": Q.graph_stats(dst),
    }
    payload = {"fp32_mb": fp32_mb, "variants": variants}
    write_result(cfg, "quantize", payload)
    return payload


# --------------------------------------------------------------------------- 05 evaluate
def variant_table(cfg: Config) -> dict:
    """name -> (runtime, artifact path) for every variant evaluated so far."""
    q = load_result(cfg, "quantize")["variants"]
    table = {"pytorch-fp32": ("pytorch", checkpoint_dir(cfg) / "model.safetensors"),
             "onnx-fp32": ("onnxruntime", onnx_path(cfg, "fp32"))}
    for name, v in q.items():
        table[f"onnx-{name}"] = ("onnxruntime", Path(cfg.root) / v["path"])
    return table


def predictor(cfg: Config, name: str, runtime: str, path: Path, tokenizer=None, model=None):
    if runtime == "pytorch":
        if model is None:
            model, tokenizer = M.load_checkpoint(checkpoint_dir(cfg), attn="sdpa")
        return TorchPredictor(model, tokenizer, cfg.model.max_length, cfg.eval.batch_size, cfg.threads, name=name)
    return OrtPredictor(path, tokenizer, cfg.model.max_length, cfg.eval.batch_size, cfg.threads, name=name)


def run_evaluate(cfg: Config, progress: bool = True) -> dict:
    test = D.load_splits(cfg)["test"]
    labels = labels_of(cfg)
    texts, y = test["text"].tolist(), test["label"].to_numpy()
    model, tok = M.load_checkpoint(checkpoint_dir(cfg), attn="sdpa")
    preds, rows, confidences = {}, {}, {}
    for name, (runtime, path) in variant_table(cfg).items():
        pr = predictor(cfg, name, runtime, path, tok, model)
        t0 = time.perf_counter()
        proba = pr.predict_proba(texts, progress=progress)
        preds[name] = proba.argmax(-1)
        confidences[name] = proba.max(-1)
        rows[name] = {"runtime": runtime, "path": str(Path(path).relative_to(cfg.root)),
                      "size_mb": M.file_size_mb(path), "predict_seconds": time.perf_counter() - t0}
    fp32_mb = rows["onnx-fp32"]["size_mb"]
    scores = E.evaluate_variants(y, preds, reference="pytorch-fp32", reps=cfg.eval.bootstrap,
                                 confidence=cfg.eval.confidence, seed=cfg.seed)
    for name in rows:
        rows[name].update(scores[name])
        rows[name]["size_ratio_to_onnx_fp32"] = rows[name]["size_mb"] / fp32_mb
        rows[name]["predictions"] = preds[name].tolist()
        rows[name]["confidence"] = np.round(confidences[name], 5).tolist()
    payload = {"reference": "pytorch-fp32", "labels": labels, "n_test": len(y),
               "majority_class_accuracy": float(np.bincount(y, minlength=len(labels)).max() / len(y)),
               "variants": rows}
    write_result(cfg, "evaluate", payload)
    return payload
