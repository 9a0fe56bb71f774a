"""The study's eight steps, one function each with one shape, ``run_<step>(cfg, progress=True) -> dict``;
notebooks call these and narrate.

Each step reads the outputs of the previous ones from disk, writes its artifacts atomically and
records ``results/<profile>/<step>.json`` with provenance. Which variants a step builds, evaluates,
times or explains comes from the registry (``variants``); the measurement and explanation methods
live in ``bench``, ``ort_inspect``, ``evaluate`` and ``explain``, which never import this module.
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model
from tqdm.auto import tqdm
from transformers import AutoConfig

from . import bench as B
from . import bench_runs as R
from . import data as D
from . import eval_runs as ER
from . import evaluate as E
from . import explain as XP
from . import modeling as M
from . import onnx_export as X
from . import openvino_rt as OR
from . import predict as P
from . import qat as QA
from . import quantize as Q
from . import steps as ST
from . import variants as V
from .config import Config, TrainConfig, shap_variants
from .ort_inspect import activation_scales, dynamic_scale_outputs, operator_profiles, session_ops
from .predict import disabled_optimizers
from .provenance import atomic_path, repo_relative, sha256, write_json
from .results import load_result, write_result
from .training import evaluate_split, fine_tune
from .variants import REFERENCE, checkpoint_dir, make_predictor, onnx_path, read_qat_scales

STEPS = ST.STUDY        # the steps run here, as src/utils/steps.py declares them (each has its run_<step>)


# --------------------------------------------------------------------------- 01 data
def run_data(cfg: Config, progress: bool = True) -> dict:
    started = time.perf_counter()
    V.check_profile(cfg)
    ck = M.reference_classes(cfg.model, cfg.root)      # a fine-tuned classifier's classes decide the indices
    ds = D.load_dataset(cfg, checkpoint=ck)
    splits = D.save_splits(ds, cfg.processed_dir)
    for sp in splits.values():     # recorded relative to the repository, not this machine's folders
        sp["path"] = repo_relative(sp["path"], cfg.root)
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
        "source": ds.source, "labels": ds.labels, "label_order": ds.label_source, "label_map": cfg.data.label_map,
        **({"checkpoint_id2label": list(ck.names)} if ck is not None else {}), "n_examples": total, "splits": splits,
        "group_overlap": D.group_overlap(ds.splits), "token_lengths": lengths,
        "max_length": cfg.model.max_length,
        "majority_class_test_accuracy": max(splits["test"]["class_counts"].values()) / splits["test"]["n"],
    }
    write_result(cfg, "data", payload, started=started)
    return payload


def labels_of(cfg: Config) -> list:
    return load_result(cfg, "data").labels


# --------------------------------------------------------------------------- 02 train
ARCHITECTURE_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                     "vocab_size", "max_position_embeddings")   # recorded, so a report needs no checkpoint


# the train settings each use of the FP32 step reads: with an adopted checkpoint (model.finetuned) only QAT's
# reuse remains, and none without QAT
TRAIN_USED_BY_QAT = ("weight_decay", "patience", "max_grad_norm", "group_by_length")


def unused_train_settings(cfg: Config) -> dict:
    """``train`` settings the run never reads because the FP32 model was adopted, not trained."""
    if not cfg.model.finetuned:
        return {}
    keep = TRAIN_USED_BY_QAT if cfg.qat.enabled else ()
    return {f"train.{k}": v for k, v in dataclasses.asdict(cfg.train).items() if k not in keep}


def run_train_fp32(cfg: Config, progress: bool = True) -> dict:
    """The FP32 reference: the configured backbone fine-tuned with a new head, or (``model.finetuned``) the
    user's classifier adopted as it is: its files copied byte for byte, its validation accuracy measured."""
    started = time.perf_counter()
    splits = D.load_splits(cfg)
    labels = labels_of(cfg)
    if cfg.model.finetuned:
        return _adopt_fp32(cfg, splits, labels, started, progress)
    model, tok, head = M.new_classifier(cfg, labels, attn="sdpa")
    t0 = time.perf_counter()
    hist = fine_tune(model, tok, splits["train"], splits["validation"], cfg.train, cfg.model.max_length,
                     cfg.seed, threads=cfg.threads, progress=progress, eval_batch_size=cfg.eval.batch_size)
    seconds = time.perf_counter() - t0
    out = M.save_checkpoint(model, tok, checkpoint_dir(cfg))
    payload = {**hist, "origin": "fine-tuned by the study", **head, "train_seconds": seconds,
               "n_train": len(splits["train"]),
               "n_validation": len(splits["validation"]), "parameters": M.count_parameters(model),
               "checkpoint": str(out.relative_to(cfg.root)),
               "checkpoint_mb": M.file_size_mb(out / "model.safetensors"),
               "checkpoint_sha256": sha256(out / "model.safetensors"),
               "architecture": {k: getattr(model.config, k) for k in ARCHITECTURE_KEYS if hasattr(model.config, k)}}
    write_result(cfg, "train_fp32", payload, started=started)
    return payload


def _adopt_fp32(cfg: Config, splits: dict, labels: list, started: float, progress: bool) -> dict:
    out = checkpoint_dir(cfg)
    copied = M.adopt_checkpoint(cfg.model, out, cfg.root)
    model, tok = M.load_checkpoint(out, attn="sdpa")
    have = [model.config.id2label[i] for i in range(model.config.num_labels)]
    generic = M.CheckpointLabels(copied["from"], tuple(have), ()).generic    # then data.labels named them
    if (len(have) != len(labels)) if generic else have != labels:     # the data step matched the data to these
        raise M.ModelError(f"the adopted checkpoint's classes {have} are not the data step's {labels}: rerun the "
                           f"data step (the checkpoint changed since)")
    val = evaluate_split(model, tok, splits["validation"], cfg.model.max_length, cfg.eval.batch_size)
    weights = copied["files"][M.WEIGHT_FILES[0]]
    unused = unused_train_settings(cfg)
    if unused:
        print(f"adopted the fine-tuned checkpoint {copied['from']} as it is (no FP32 training); unused settings: "
              + ", ".join(f"{k}={v}" for k, v in unused.items()))
    payload = {"origin": "adopted: fine-tuned elsewhere, taken as it is (model.finetuned)",
               "adopted": {"from": repo_relative(copied["from"], cfg.root) if cfg.model.source == "local"
                           else f"hub:{cfg.model.name_or_path}" + (f"@{cfg.model.revision}" if cfg.model.revision
                                                                   else ""),
                           "files": copied["files"], "input_sha256": weights["input_sha256"],
                           "byte_identical": all(f["input_sha256"] == f["sha256"] for f in copied["files"].values()),
                           "id2label": have},
               "unused_settings": unused, "history": [], "best_epoch": None, "best_val_accuracy": val["accuracy"],
               "val_macro_f1": val["macro_f1"], "stopped_early": False, "steps_per_epoch": None,
               "train_seconds": 0.0, "n_train": len(splits["train"]), "n_validation": len(splits["validation"]),
               "parameters": M.count_parameters(model), "checkpoint": str(out.relative_to(cfg.root)),
               "checkpoint_mb": M.file_size_mb(out / "model.safetensors"),
               "checkpoint_sha256": sha256(out / "model.safetensors"),
               "architecture": {k: getattr(model.config, k) for k in ARCHITECTURE_KEYS if hasattr(model.config, k)}}
    write_result(cfg, "train_fp32", payload, started=started)
    return payload


# --------------------------------------------------------------------------- 03 QAT
def run_train_qat(cfg: Config, progress: bool = True) -> dict:
    """Fine-tune the FP32 checkpoint with fake quantizers that simulate the deployed INT8
    arithmetic (see qat.py); save the weights (fake quantizers stripped) and the learned
    activation scales, plus the whole fake-quant state as the seed study would have saved it. With
    ``qat.enabled`` false: nothing trained, a record saying so (post-training quantization only)."""
    started = time.perf_counter()
    if not cfg.qat.enabled:
        return _skip_qat(cfg, started)
    splits = D.load_splits(cfg)
    model, tok = M.load_checkpoint(checkpoint_dir(cfg), attn="eager")
    QA.prepare_qat(model, cfg.qat.averaging_constant)
    M.set_seed(cfg.seed)
    calib = splits["train"].sample(n=min(cfg.qat.calibration_examples, len(splits["train"])),
                                   random_state=cfg.seed)["text"].tolist()
    QA.calibrate(model, tok, calib, cfg.model.max_length)
    tc = TrainConfig(epochs=cfg.qat.epochs, batch_size=cfg.qat.batch_size, learning_rate=cfg.qat.learning_rate,
                     weight_decay=cfg.train.weight_decay, warmup_ratio=cfg.qat.warmup_ratio,
                     patience=cfg.train.patience, max_grad_norm=cfg.train.max_grad_norm,
                     group_by_length=cfg.train.group_by_length)
    t0 = time.perf_counter()
    hist = fine_tune(model, tok, splits["train"], splits["validation"], tc, cfg.model.max_length, cfg.seed + 1,
                     threads=cfg.threads, progress=progress, eval_batch_size=cfg.eval.batch_size)
    seconds = time.perf_counter() - t0
    QA.set_observers(model, False)
    control = _train_plus_epoch(cfg, tc, splits, progress) if cfg.qat.control else None
    acts, weights = QA.activation_scales(model), QA.weight_qparams(model)
    out = checkpoint_dir(cfg, "qat")
    fq_file = cfg.artifacts_dir / "qat_fakequant.safetensors"
    with atomic_path(fq_file) as tmp:     # what a fake-quant checkpoint weighs: FP32 + observer state
        save_model(model, str(tmp))
    plain = QA.strip_qat(copy.deepcopy(model))
    M.save_checkpoint(plain, tok, out)
    write_json(out / "qat_scales.json", {"activation": acts, "weight": weights,
                                         "averaging_constant": cfg.qat.averaging_constant})
    payload = {**hist, "train_seconds": seconds, "calibration_examples": len(calib),
               "quantized_linears": len(QA.quantized_linears(plain)),
               "quantized_embeddings": list(QA.quantized_embeddings(plain)),
               "activation_quantizers": len(QA.activation_groups(plain)),
               "activation_scales": acts, "checkpoint": str(out.relative_to(cfg.root)),
               "fakequant_state_mb": M.file_size_mb(fq_file),
               "checkpoint_mb": M.file_size_mb(out / "model.safetensors"),
               "checkpoint_sha256": sha256(out / "model.safetensors"),
               **({"control": control} if control else {})}
    write_result(cfg, "train_qat", payload, started=started)
    _qat_done(cfg)
    return payload


def _qat_done(cfg: Config) -> None:
    """The QAT step's mark in artifacts/ (what ``make`` waits for, with or without QAT)."""
    write_json(cfg.artifacts_dir / "train_qat.done", {"qat": cfg.qat.enabled})


def _skip_qat(cfg: Config, started: float) -> dict:
    unused = {f"qat.{k}": v for k, v in dataclasses.asdict(cfg.qat).items() if k != "enabled"}
    left_out = V.without_qat(cfg)
    for kind in V.QAT_CHECKPOINTS:       # no QAT checkpoint of an earlier run with QAT may stay behind
        if checkpoint_dir(cfg, kind).exists():
            shutil.rmtree(checkpoint_dir(cfg, kind))
    print("qat.enabled is false: no QAT, no control; post-training quantization only. Variants left out: "
          + ", ".join(v.name for v in V.REGISTRY.values() if v.needs_qat))
    payload = {"enabled": False, "skipped": "qat.enabled is false: post-training quantization only",
               "variants_left_out": [v.name for v in V.REGISTRY.values() if v.needs_qat],
               "settings_left_out": left_out, "unused_settings": unused, "train_seconds": 0.0}
    write_result(cfg, "train_qat", payload, started=started)
    _qat_done(cfg)
    return payload


def _train_plus_epoch(cfg: Config, tc: TrainConfig, splits: dict, progress: bool) -> dict:
    """The control of QAT: the FP32 checkpoint fine-tuned with QAT's schedule and seed, without fake
    quantizers (``fp32-plus-epoch``), so that QAT against it is what fake quantization did and not what
    more training did."""
    model, tok = M.load_checkpoint(checkpoint_dir(cfg), attn="eager")
    t0 = time.perf_counter()
    hist = fine_tune(model, tok, splits["train"], splits["validation"], tc, cfg.model.max_length, cfg.seed + 1,
                     threads=cfg.threads, progress=progress, eval_batch_size=cfg.eval.batch_size)
    out = M.save_checkpoint(model, tok, checkpoint_dir(cfg, "fp32-plus-epoch"))
    return {**hist, "train_seconds": time.perf_counter() - t0, "checkpoint": str(out.relative_to(cfg.root)),
            "checkpoint_sha256": sha256(out / "model.safetensors"),
            "what": "the FP32 checkpoint fine-tuned with QAT's epochs, learning rate, batch size and seed, "
                    "without fake quantization"}


# --------------------------------------------------------------------------- 04 export
def run_export(cfg: Config, progress: bool = True) -> dict:
    """ONNX exports of the FP32 checkpoint and of the QAT-trained weights, each parity-checked."""
    started = time.perf_counter()
    test = D.load_splits(cfg)["test"]
    texts = test["text"].tolist()[: cfg.export.parity_examples]
    payload = {}
    for variant, kind in V.exports(cfg).items():
        model, tok = M.load_checkpoint(checkpoint_dir(cfg, kind), attn="eager")
        path = onnx_path(cfg, variant)
        par = X.export_with_parity(model, tok, path, texts, cfg.model.max_length, opset=cfg.export.opset,
                                   atol=cfg.export.parity_atol, threads=cfg.threads)
        payload[variant] = {"path": str(path.relative_to(cfg.root)), "size_mb": M.file_size_mb(path),
                            "sha256": sha256(path), "parity": par, "graph": Q.graph_stats(path)}
    write_result(cfg, "export", payload, started=started)
    return payload


# --------------------------------------------------------------------------- 05 quantize
def _qat_overrides(cfg: Config, src: Path) -> tuple[list, dict]:
    """Nodes to quantize and the QAT scales for their inputs, keyed by ONNX tensor name."""
    sc = read_qat_scales(cfg)
    lin = Q.module_nodes(src, sc["activation"])
    emb_names = [n for n in sc["weight"] if n not in sc["activation"]]
    emb = Q.module_nodes(src, emb_names, op_types=("Gather",))
    overrides = {}
    for name, node in lin.items():
        scale, zp = sc["activation"][name]
        prev = overrides.setdefault(node.input[0], (scale, zp))
        if prev != (scale, zp):   # Q, K, V share one quantizer in QAT, so this cannot differ
            raise ValueError(f"tensor {node.input[0]} has two QAT scales: {prev} and {(scale, zp)}")
    for name, node in emb.items():
        scales, zps = sc["weight"][name]
        overrides[node.input[0]] = (scales[0], zps[0])
    return [n.name for n in lin.values()] + [n.name for n in emb.values()], overrides


def _quantized_nodes(cfg: Config, src: Path) -> list:
    """The nodes the static recipes quantize, from the FP32 checkpoint's modules (QAT's choice: ``qat``)."""
    model, _ = M.load_checkpoint(checkpoint_dir(cfg), attn="eager")
    lin = Q.module_nodes(src, QA.quantized_linears(model))
    emb = Q.module_nodes(src, QA.quantized_embeddings(model), op_types=("Gather",))
    return [n.name for n in lin.values()] + [n.name for n in emb.values()]


def run_quantize(cfg: Config, progress: bool = True) -> dict:
    """Every registered ONNX variant the profile builds (``variants``), each with what is inside it and
    what ONNX Runtime runs."""
    started = time.perf_counter()
    fp32 = onnx_path(cfg, "fp32")
    fp32_mb = M.file_size_mb(fp32)
    tok = M.load_tokenizer(str(checkpoint_dir(cfg)))
    val = D.load_splits(cfg)["validation"]
    calib = val.sample(n=min(cfg.quantize.calibration_examples, len(val)), random_state=cfg.seed)["text"].tolist()
    if cfg.qat.enabled:
        nodes, overrides = _qat_overrides(cfg, onnx_path(cfg, "qat-fp32"))
    else:     # the same linear layers and embedding tables QAT would quantize, named from the FP32 model
        nodes, overrides = _quantized_nodes(cfg, fp32), None
    hf = AutoConfig.from_pretrained(str(checkpoint_dir(cfg)))
    ctx = V.BuildContext(tok, cfg.model.max_length, cfg.quantize, calibration=calib, nodes=nodes,
                         qat_overrides=overrides, num_heads=hf.num_attention_heads, hidden_size=hf.hidden_size)
    built = [v for v in V.variants(cfg) if v.built]
    records, ov_built = {}, {}
    for v in tqdm(built, desc="ONNX variants", disable=not progress):
        rec = V.build(v, cfg, ctx)
        if v.runtime == "openvino":      # an OpenVINO IR (NNCF): under quantize.json's "openvino"
            ov_built[v.name] = _openvino_record(cfg, v, rec, fp32_mb)
            continue
        path = onnx_path(cfg, v.stem)
        records[v.stem] = {"path": str(path.relative_to(cfg.root)), "seconds": rec.pop("seconds"),
                           "size_mb": M.file_size_mb(path), "size_ratio_to_fp32": M.file_size_mb(path) / fp32_mb,
                           "sha256": sha256(path), **rec, "graph": Q.graph_stats(path),
                           "ort_cpu_disabled_optimizers": disabled_optimizers(path), "session_ops": session_ops(path)}
    for v in built:
        if v.runtime == "onnxruntime" and isinstance(v.recipe, V.Static) and v.recipe.qat_scales:
            records[v.stem]["scales_match_qat"] = qat_scales_match(cfg, onnx_path(cfg, v.stem))
    payload = {"fp32_mb": fp32_mb, "calibration_split": "validation", "calibration_examples": len(calib),
               "calibration_batch_size": ctx.calibration_batch_size, "variants": records,
               "openvino": _openvino_runs(cfg, ov_built)}
    write_result(cfg, "quantize", payload, started=started)
    return payload


def _openvino_record(cfg: Config, v, rec: dict, fp32_mb: float) -> dict:
    """quantize.json's record of an OpenVINO IR the step built (NNCF): size (.xml and .bin), hashes, what it holds."""
    path = v.path(cfg)
    size = M.file_size_mb(path)
    return {"path": str(path.relative_to(cfg.root)), "runtime": "openvino", "seconds": rec.pop("seconds"),
            "size_mb": size, "size_ratio_to_fp32": size / fp32_mb, "sha256": sha256(path.with_suffix(".bin")),
            "xml_sha256": sha256(path), **rec}


def _openvino_runs(cfg: Config, built: dict) -> dict:
    """Every OpenVINO variant as the CPU plugin compiles it (the profile's threads): the matrix-product nodes it runs
    in int8 (the runtime model's precisions), its node types, the settings it took; with the OpenVINO version and
    the records of the files the step ``built`` (NNCF's)."""
    out = {}
    for v in V.variants(cfg):
        if v.runtime == "openvino":
            compiled = OR.compile_model(v.path(cfg), cfg.threads)
            out[v.name] = {"file": str(v.path(cfg).relative_to(cfg.root)), **OR.int8_nodes(compiled),
                           "config": OR.effective_config(compiled)}
            del compiled
    return {"openvino": OR.version(), "built": built, "variants": out} if out else {}


def qat_scales_match(cfg: Config, path: Path) -> dict:
    """Compare the scales stored in the int8-qat file with the ones QAT ended with."""
    sc = read_qat_scales(cfg)
    stored = Q.qdq_scales(path)
    nodes = Q.module_nodes(onnx_path(cfg, "qat-fp32"), sc["activation"])
    act_ok = w_ok = 0
    worst = 0.0
    for name, node in nodes.items():
        rec = stored[node.name]
        a = rec["activation"]
        act_ok += (np.float32(a["scale"][0]) == np.float32(sc["activation"][name][0])
                   and int(a["zero_point"][0]) == sc["activation"][name][1])
        w, wq = np.asarray(rec["weight"]["scale"], np.float32), np.asarray(sc["weight"][name][0], np.float32)
        rel = float(np.max(np.abs(w - wq) / wq))
        worst = max(worst, rel)
        w_ok += rel <= 1e-6
    return {"layers": len(nodes), "activation_scales_equal": int(act_ok), "weight_scales_equal": int(w_ok),
            "max_weight_scale_rel_diff": worst}


# --------------------------------------------------------------------------- 06 evaluate
def run_evaluate(cfg: Config, progress: bool = True) -> dict:
    """Every registered variant (baselines aside) on the test split, as deployed: each text alone
    (batch 1, no padding) is the headline, with paired intervals and McNemar against the PyTorch FP32
    reference; then in batches of ``eval.batch_size`` (length-sorted, and one random batching), with
    the predictions that move between the three (batch invariance, measured), and, for the dynamic
    INT8 files, the activation scales behind the moves. ``eval.variants`` narrows the variants,
    ``eval.batched: false`` keeps batch 1 only (a seed's replicate of ``seeds``). The models run here
    (``_evaluate_raw``); ``evaluate.summarise`` does the analysis."""
    started = time.perf_counter()
    raw = _evaluate_raw(cfg, progress)
    roles = E.Roles(REFERENCE, V.onnx_reference(), V.qat_model(), tuple(V.quantized_from_qat(cfg)),
                    V.qat_control(), tuple(V.compared_with_qat_control(cfg)))
    payload = E.summarise(raw, roles, cfg.eval.bootstrap, cfg.eval.confidence)
    write_result(cfg, "evaluate", payload, started=started)
    # the history of evaluations beside it, with their hosts (eval_runs.jsonl): INT8 predictions move with the CPU
    ER.record(cfg, load_result(cfg, "evaluate"), load_result(cfg, "data").splits["test"]["sha256"])
    return payload


def _evaluate_raw(cfg: Config, progress: bool) -> E.EvalRaw:
    """Run every evaluated variant on the test texts: batch 1, then (``eval.batched``) sorted and random batches."""
    test = D.load_splits(cfg)["test"]
    labels = labels_of(cfg)
    texts, y = test["text"].tolist(), test["label"].to_numpy()
    majority = float(np.bincount(y, minlength=len(labels)).max() / len(y))
    # one model at a time: ONNX Runtime's threads may spin between a call's operators (stopped when it returns),
    # as in the benchmark's headline; the same predictions as without spinning, 20-30% faster at batch 1 here
    preds_by = V.predictors(cfg, only=V.evaluated(cfg), spinning=True, spin_stop=True)
    bs = cfg.eval.batch_size if cfg.eval.batched else None
    lat_texts = test.sample(n=min(cfg.eval.latency_examples, len(test)), random_state=cfg.seed)["text"].tolist()
    raw = E.EvalRaw(labels, y, majority, {}, {}, {}, {}, len(lat_texts), cfg.threads, cfg.seed, bs)
    for name, pr in preds_by.items():
        v = V.get(name)
        logits = pr.predict_logits(texts, progress=progress, batch_size=1)
        proba = P.softmax(logits)
        raw.preds[name], raw.confidences[name] = proba.argmax(-1), proba.max(-1)
        if name == REFERENCE:     # the floor, before the other variants' time is spent
            raw.chance = E.chance_check(float(np.mean(raw.preds[name] == y)), majority, labels, name,
                                        cfg.eval.allow_chance)
        raw.files[name] = {"runtime": v.runtime, "path": str(v.path(cfg).relative_to(cfg.root)),
                           "size_mb": M.file_size_mb(v.path(cfg)), "sha256": sha256(v.path(cfg)),
                           "batch_invariant_declared": v.batch_invariant}
        if bs:
            lb = pr.predict_logits(texts, progress=progress, batch_size=bs)
            lr = pr.predict_logits(texts, progress=progress, batch_size=bs, order="random", seed=cfg.seed)
            raw.batched[name] = lb.argmax(-1)
            raw.moves[name] = _moves(raw.preds[name], raw.batched[name], lr.argmax(-1), logits, lb, lr)
            if v.runtime == "onnxruntime" and dynamic_scale_outputs(v.path(cfg)):
                raw.scales[name] = _scale_mechanism(pr, v.path(cfg), texts, raw.preds[name], raw.batched[name], bs,
                                                    cfg.seed)
    raw.latency = B.interleaved_latency(preds_by, lat_texts, progress=progress)
    if V.qat_model() in raw.preds:
        # the same QAT model evaluated with the integer kernel's arithmetic (exact integer sums, then the float32
        # scales) instead of float32 sums of dequantized values
        raw.qat_integer = make_predictor(cfg, V.qat_model(), recipe=V.FakeQuant(integer=True)).predict(
            texts, progress=progress, batch_size=1)
    return raw


def _moves(alone, sorted_, random_, l1, ls, lr) -> dict:
    """How much a variant's answers depend on the batch: predictions that differ between each text
    alone, length-sorted batches and a random batching, and the largest logit change."""
    moved = {"moved_batch1_vs_sorted": int(np.sum(alone != sorted_)),
             "moved_batch1_vs_random": int(np.sum(alone != random_)),
             "moved_sorted_vs_random": int(np.sum(sorted_ != random_))}
    return {**moved, "max_abs_logit_diff": float(max(np.max(np.abs(l1 - ls)), np.max(np.abs(l1 - lr)))),
            "batch_invariant_measured": not any(moved.values())}


def _scale_mechanism(pr, path: Path, texts: list, alone, batched, bs: int, seed: int, k: int = 16) -> dict:
    """The mechanism behind batch dependence, measured: the activation scale of every dynamically
    quantized matrix product for a text alone and inside the length-sorted batch it was evaluated in,
    for up to ``k`` texts whose prediction moved and ``k`` (random) that did not."""
    where = {int(i): b for b in pr.batch_indices(texts, bs) for i in b}
    moved = np.flatnonzero(alone != batched)
    still = np.flatnonzero(alone == batched)
    rng = np.random.default_rng(seed)
    groups = {"moved": moved[:k], "unmoved": rng.choice(still, size=min(k, len(still)), replace=False)}
    out = {"texts_per_group": k, "nodes": len(dynamic_scale_outputs(path))}
    for g, idx in groups.items():
        if not len(idx):
            out[g] = None
            continue
        alone_s = activation_scales(path, [pr.encode([texts[i]]) for i in idx])
        batch_s = activation_scales(path, [pr.encode([texts[j] for j in where[int(i)]]) for i in idx])
        ratio = batch_s / alone_s
        out[g] = {"texts": [int(i) for i in idx], "n": int(len(idx)),
                  "median_ratio": float(np.median(ratio)), "max_ratio": float(ratio.max()),
                  "min_ratio": float(ratio.min()),
                  "share_nodes_scale_changed": float(np.mean(np.abs(ratio - 1) > 1e-6)),
                  "median_ratio_per_node": np.round(np.median(ratio, axis=0), 5).tolist()}
    return out


# --------------------------------------------------------------------------- 07 benchmark
def run_bench(cfg, progress: bool = True) -> dict:
    """Latency over sequence lengths, throughput over batch sizes, thread counts, spread over
    rounds, node placement, session creation and fresh-process memory, for every variant; GPU
    paths when a GPU is present (skipped with a note otherwise). The run's headline is appended
    to the run-to-run history (``bench_runs``), with the step's wall time. The models are timed here
    (``_bench_threads``, ``_bench_files``); ``bench.summarise`` does the analysis."""
    t_start = time.perf_counter()
    if cfg.replicate is not None:
        raise ValueError(f"{cfg.run_name} is one seed's replicate, evaluated and not benchmarked (the training seed "
                         f"changes no file's shape or speed): benchmark the profile itself")
    b = cfg.bench
    names, sweep, left_out = bench_plan(cfg)
    tok = M.load_tokenizer(str(checkpoint_dir(cfg)))
    texts = D.load_splits(cfg)["test"]["text"].tolist()[:b.texts]
    spin_stop = b.spinning and b.spin_stop                   # ORT threads spin within a call only
    protocol = {"block": b.block, "block_warmup": b.block_warmup, "ort_spinning": b.spinning,
                "ort_spin_stop": spin_stop,
                "reps": b.reps, "rounds": b.rounds, "headline_only": [n for n in names if n not in sweep],
                "description": (f"variants interleaved in turns of {b.block} timed call(s) after "
                                f"{b.block_warmup} untimed one(s), the order rotating every turn; "
                                + ("ONNX Runtime threads spinning within a call, stopped when it returns"
                                   if spin_stop else f"ONNX Runtime threads {'' if b.spinning else 'not '}spinning"))}
    raw = B.BenchRaw(names, sweep, b.length, cfg.threads, protocol, B.gpu_status(),
                     profile_threads=b.profile_threads or cfg.threads, left_out=left_out)
    for threads in [t or cfg.threads for t in b.threads]:
        raw.cpu[threads] = _bench_threads(cfg, raw, threads, tok, texts, progress)
    _bench_files(cfg, raw, tok, texts, progress)
    result = B.summarise(raw)
    result["seconds"] = time.perf_counter() - t_start     # the "make bench in under 10 minutes"
    write_result(cfg, "bench", result, threads=cfg.threads, started=t_start)
    R.record(cfg, load_result(cfg, "bench"))      # the run-to-run history beside it (bench_runs.jsonl)
    return result


def bench_plan(cfg) -> tuple:
    """(variants timed, those of them in the sweeps, {setting: names left out}): ``qat.enabled`` false narrows the
    lists first (a profile extending one that names the QAT variants runs as it is), then every name given must be
    one the profile runs; ``bench.variants`` None: every variant but the controls (no way to deploy the model)."""
    left_out = V.without_qat(cfg)
    b = cfg.bench
    V.check_names(cfg, b.variants, "bench.variants")
    V.check_names(cfg, b.headline_only, "bench.headline_only")
    names = [v.name for v in V.variants(cfg, baselines=True)
             if (v.name in b.variants if b.variants is not None else not v.control)]
    sweep = [n for n in names if n not in b.headline_only]   # the rest: timed in the headline rounds only
    return names, sweep, left_out


def _bench_threads(cfg, raw: B.BenchRaw, threads: int, tok, texts: list, progress: bool) -> dict:
    """The timings at ``threads``: the headline rounds (every variant at all cores, the sweep's otherwise); at all
    cores the sequence lengths, batch sizes and the protocol checks too."""
    b, sweep = cfg.bench, raw.sweep
    spin_stop = raw.protocol["ort_spin_stop"]
    blocks = {"block": b.block, "block_warmup": b.block_warmup}
    torch.set_num_threads(threads)
    here = raw.names if threads == raw.all_threads else sweep
    preds = {n: make_predictor(cfg, n, threads=threads, tokenizer=tok, spinning=b.spinning,
                               spin_stop=spin_stop) for n in
             tqdm(here, desc=f"load ({threads} threads)", disable=not progress, leave=False)}
    head = [B.fixed_length_batch(tok, texts, b.length, 1, offset=i) for i in range(b.reps)]
    out = {"variants": here, "rounds": [B.time_calls(preds, head, b.reps, **blocks) for _ in tqdm(
        range(b.rounds if threads == raw.all_threads else 1), desc="headline rounds", disable=not progress,
        leave=False)]}
    if threads != raw.all_threads:
        return out
    preds = {n: preds[n] for n in sweep}          # the headline-only variants are done
    out["seq_length"] = {str(L): B.time_calls(preds, [B.fixed_length_batch(tok, texts, L, 1, offset=i)
                                                       for i in range(b.reps)], b.reps, **blocks)
                         for L in tqdm(b.seq_lengths, desc="sequence lengths", disable=not progress, leave=False)}
    # throughput: fewer, longer calls (a spinning tail is a small part of them): two blocks per variant
    thr_blocks = {"block": max(b.block, b.throughput_reps // 2), "block_warmup": min(1, b.block_warmup)}
    out["batch_size"] = {str(bs): B.time_calls(preds, [B.fixed_length_batch(tok, texts, b.length, bs, offset=i * bs)
                                                        for i in range(b.throughput_reps)], b.throughput_reps,
                                                warmup=1, **thr_blocks)
                         for bs in tqdm(b.batch_sizes, desc="batch sizes", disable=not progress, leave=False)}
    runtimes = {n: V.get(n).runtime for n in sweep}

    def with_spinning(spinning: bool) -> dict:
        """The predictors, ONNX Runtime ones reloaded where their threads differ from ``spinning`` without a stop
        when a call returns."""
        same = b.spinning == spinning and not spin_stop
        return {n: (make_predictor(cfg, n, threads=threads, tokenizer=tok, spinning=spinning)
                    if runtimes[n] == "onnxruntime" and not same else preds[n]) for n in sweep}

    if b.per_call_check:
        # call by call, no untimed calls, a random order: each latency split by the runtime of the call before
        # it, which is what the untimed calls of the headline protocol absorb
        quiet = with_spinning(False)
        for p in quiet.values():
            p._forward(head[0])
        out["per_call"] = B.predecessor_effect(quiet, runtimes, head, b.reps, seed=cfg.seed)
        del quiet
    if b.spinning_check:
        # ORT's own default: threads busy-wait between ops, as a server running one model has them; long blocks
        # with 2 untimed calls first, so a pool still spinning from the previous model has stopped before the
        # timed calls
        spin = with_spinning(True)
        out["spinning"] = {"settings": {"block": b.spinning_block, "block_warmup": b.spinning_block_warmup},
                           "ms": B.time_calls(spin, head, b.reps, warmup=1, block=b.spinning_block,
                                              block_warmup=b.spinning_block_warmup)}
        del spin
    return out


def _bench_files(cfg, raw: B.BenchRaw, tok, texts: list, progress: bool) -> None:
    """Per file: placement and operator profiles on the CPU (and ONNX Runtime's GPU providers where present),
    OpenVINO's per-node counters, fresh-process memory, PyTorch on the GPU; into ``raw``."""
    b, names, all_threads = cfg.bench, raw.names, raw.all_threads
    feed = B.fixed_length_batch(tok, texts, b.length, 1)
    onnx_files = {n: V.get(n).path(cfg) for n in names if V.get(n).runtime == "onnxruntime"}
    chains = B.gpu_provider_chains(raw.gpu["ort_providers"])
    # ONNX Runtime on the GPU with I/O binding: every ONNX variant, the seed's dynamic INT8 (the
    # negative control: its integer ops fall back to the CPU) included
    raw.gpu_place, gpu_latency = B.ort_gpu_runs(onnx_files, feed, b.reps, chains)
    # CPU: every node's provider, and where the time of a call goes, per operator type (on
    # bench.profile_threads), and what the profiler costs there and on all cores, against the headlines
    raw.profiles = {t: operator_profiles(onnx_files, ["CPUExecutionProvider"], feed, reps=min(b.reps, b.profile_reps),
                                         threads=t, spinning=b.spinning, spin_stop=raw.protocol["ort_spin_stop"],
                                         progress=progress)
                    for t in dict.fromkeys([raw.profile_threads, all_threads])}
    ov_files = {n: V.get(n).path(cfg) for n in names if V.get(n).runtime == "openvino"}
    if ov_files:    # OpenVINO's per-node counters, as ONNX Runtime's operator profiles are taken (same threads, reps)
        raw.openvino_profile = {
            f"threads_{t}": OR.perf_counts(ov_files, feed, min(b.reps, b.profile_reps), t, progress=progress)
            for t in dict.fromkeys([raw.profile_threads, all_threads])}
    if chains:
        raw.gpu["onnxruntime"] = gpu_latency
    if b.memory:
        raw.memory = {n: B.fresh_process_memory(cfg.profile_file or cfg.name, n, all_threads, cfg.root)
                      for n in tqdm(names, desc="fresh-process memory", disable=not progress, leave=False)}
    if raw.gpu["torch_cuda"]:
        raw.gpu["pytorch"] = B.torch_dtype_latency(checkpoint_dir(cfg), tok, texts, b.length, b.batch_sizes,
                                                   b.reps, device="cuda")


# --------------------------------------------------------------------------- 08 explain
def run_explain(cfg, progress: bool = True) -> dict:
    """Explain the selected test examples with every configured variant, the reference again with other seeds,
    then agreement (symmetric: always across seeds), faithfulness (raw and normalized AOPC) and cost.

    Every variant, the reference included, is explained with the run's seed (A); the reference is explained
    again with ``explain.noise_seeds`` other seeds (B1, B2, ...). A variant's agreement with FP32 is its
    explanation (A) against FP32's (Bj), averaged over j; the noise floor is FP32 (A) against the same FP32
    (Bj): the two sides differ only in the model, and neither shares its perturbations with the other
    (``agreement_same_seed`` keeps the same-perturbation comparison, which the floor cannot be set beside).
    KernelSHAP does the same with its own seeds. The main result is a simple random sample of test texts; the
    texts where ``disagreements_of`` flips the prediction are summarised apart.

    LIME explains the function as deployed: a variant whose answers depend on the batch (declared in
    the registry, or measured so by the evaluation) predicts every perturbed text alone (batch 1); the
    others in batches of ``explain.batch_size``. The examples are picked from the evaluation's batch-1
    predictions. The batch-dependent variants are explained batched as well, which says what batching
    did to the explanations (``batching``). The models run here (``_explain_plan``,
    ``_explain_examples``); ``explain.summarise`` does the analysis."""
    started = time.perf_counter()
    plan = _explain_plan(cfg)
    raw = _explain_examples(cfg, plan, progress)
    payload = XP.summarise(raw, cfg.explain, cfg.eval.confidence, cfg.eval.bootstrap, cfg.seed)
    write_result(cfg, "explain", payload, started=started)
    return payload


@dataclasses.dataclass
class _ExplainPlan:
    variants: list
    cost_only: list
    examples: list
    dependent: list
    selection_before: dict
    n_disagreement_available: int
    left_out: list


def _explain_plan(cfg) -> _ExplainPlan:
    """Which variants explain which examples: the lists checked against the evaluation, the texts picked from its
    batch-1 predictions (and, for the record, those batched predictions would have picked), the batch-dependent
    variants."""
    left_out = V.without_qat(cfg)       # qat.enabled false: the QAT variants leave the lists
    ex = cfg.explain
    ev = load_result(cfg, "evaluate").variants
    if ex.reference not in ev:
        raise KeyError(f"explain.reference {ex.reference!r} has no evaluation predictions; "
                       f"evaluated: {', '.join(ev)}")
    variants = [v for v in (ex.variants or ev) if v != ex.reference and v not in ex.cost_variants]
    variants.insert(0, ex.reference)
    cost_only = list(ex.cost_variants)
    V.check_names(cfg, variants + cost_only, "explain.variants")
    for key, named in (("explain.pairs", [n for p in ex.pairs for n in p]),
                       ("explain.shap_variants", ex.shap_variants or [])):
        if set(named) - set(variants):
            raise KeyError(f"{key}: {sorted(set(named) - set(variants))} not among the explained variants "
                           f"{', '.join(variants)}")
    test = D.load_splits(cfg)["test"]
    texts, y = test["text"].tolist(), test["label"].to_numpy()
    preds = {n: np.asarray(v["predictions"]) for n, v in ev.items()}
    select = lambda p: XP.select_examples(texts, y, p, np.asarray(ev[ex.reference]["confidence"]),  # noqa: E731
                                          ex.reference, ex.disagreements_of, ex.examples, ex.disagreements,
                                          cfg.seed, min_words=ex.min_words)
    examples = select(preds)
    dependent = [n for n in variants + cost_only
                 if not V.is_batch_invariant(n)
                 or not ev.get(n, {}).get("batch_invariance", {}).get("batch_invariant_measured", True)]
    # what batching did: the texts batched predictions would have picked (how they were picked before)
    before = select({n: np.asarray(v.get("predictions_batched", v["predictions"])) for n, v in ev.items()})
    shared = len({e["index"] for e in examples} & {e["index"] for e in before})
    selection_before = {"n_disagreement": sum(e["disagreement"] for e in before), "n_examples": len(before),
                        "shared_with_now": shared}
    available = len(set(i for v in ex.disagreements_of for i in np.flatnonzero(preds[v] != preds[ex.reference])))
    return _ExplainPlan(variants, cost_only, examples, dependent, selection_before, available, left_out)


def _explain_examples(cfg, plan: _ExplainPlan, progress: bool) -> XP.ExplainRaw:
    """Every example explained by every variant (interleaved, so drift hits all alike), the reference with the
    other seeds, faithfulness, the floor at other sample budgets, KernelSHAP, each on its own clock."""
    ex, ref, examples = cfg.explain, cfg.explain.reference, plan.examples
    variants, cost_only = plan.variants, plan.cost_only
    tok = M.load_tokenizer(str(checkpoint_dir(cfg)))
    # ONNX Runtime's threads spin between a call's operators and stop when it returns (the benchmark's headline)
    mk = lambda n, bs: make_predictor(cfg, n, batch_size=bs, tokenizer=tok, spinning=True, spin_stop=True)  # noqa
    prs = {n: mk(n, 1 if n in plan.dependent else ex.batch_size) for n in variants + cost_only}
    batched = {n: mk(n, ex.batch_size) for n in plan.dependent if n in variants}
    ex_texts = [e["text"] for e in examples]
    own = {n: pr.predict_proba(ex_texts).argmax(-1) for n, pr in prs.items()}
    own_batched = {n: pr.predict_proba(ex_texts).argmax(-1) for n, pr in batched.items()}
    for e, p in zip(examples, own[ref]):   # the label explained is the one predicted here
        e["reference_pred"] = int(p)
    seeds = XP.noise_seeds(cfg.seed, ex.noise_seeds)
    # cost-only variants (e.g. a slow baseline) are explained on a few examples spread evenly
    cost_at = sorted(set(np.unique(np.linspace(0, len(examples) - 1, min(ex.cost_examples, len(examples)))
                                   .round().astype(int)).tolist()))
    random_at = [i for i, e in enumerate(examples) if e["reason"] == "random"]
    conv_at = set(random_at[:ex.convergence_examples]) if ex.convergence_samples else set()
    shap_names = shap_variants(ex, variants)
    raw = XP.ExplainRaw(examples, variants, cost_only, cost_at, plan.dependent, seeds, own, own_batched,
                        {n: [] for n in variants + cost_only}, {n: [] for n in batched}, {s: [] for s in seeds},
                        {n: [] for n in variants}, {k: {"a": [], "b": []} for k in ex.convergence_samples},
                        {n: [] for n in shap_names}, {s: [] for s in seeds} if shap_names else {},
                        dict.fromkeys(("lime", "shap", "naopc", "convergence"), 0.0), plan.selection_before,
                        plan.n_disagreement_available, REFERENCE, plan.left_out)
    # every run of one example after a variant's first (other LIME seeds, faithfulness, KernelSHAP) recalls that
    # variant's predictions of texts already predicted for the example; the first run, whose seconds are the cost
    # reported, starts from an empty memory. Batch-dependent variants are wrapped only at batch 1 (``prs``), never
    # the batched predictors that show what batching did
    memo = {n: XP.Memo(prs[n]) for n in variants}
    t0 = time.perf_counter()
    for i, e in enumerate(tqdm(examples, desc="examples (LIME, KernelSHAP)", disable=not progress)):
        label = int(own[ref][i])
        for n in variants + (cost_only if i in cost_at else []):   # interleaved: drift hits all alike
            raw.exps[n].append(XP.explain(memo.get(n, prs[n]), e["text"], {label, int(own[n][i])}, ex.samples,
                                          cfg.seed))
        for n in batched:
            raw.exps_batched[n].append(XP.explain(batched[n], e["text"], {label}, ex.samples, cfg.seed))
        for s in seeds:
            raw.noise[s].append(XP.explain(memo[ref], e["text"], {label}, ex.samples, s))
        _explain_more(cfg, raw, memo, i, e["text"], label, i in conv_at)
        for m in memo.values():
            m.clear()
    raw.seconds["lime"] = time.perf_counter() - t0 - sum(v for k, v in raw.seconds.items() if k != "lime")
    return raw


def _explain_more(cfg, raw: XP.ExplainRaw, memo: dict, i: int, text: str, label: int, converge: bool) -> None:
    """For example ``i``, after its LIME runs: faithfulness (and NAOPC's limits) of each variant's own
    explanation, the floor at other LIME budgets, KernelSHAP; each timed apart from LIME's clock."""
    ex, ref = cfg.explain, cfg.explain.reference
    t1 = time.perf_counter()
    for n in raw.variants:
        own = int(raw.own[n][i])   # each variant's explanation of its own prediction, with that variant
        f = XP.faithfulness(memo[n], text, raw.exps[n][-1].weights[own], own, ex.fractions, seed=cfg.seed + i)
        if ex.naopc:
            lim = XP.aopc_limits(memo[n], text, own, ex.fractions, ex.naopc_beam)
            f["limits"] = lim
            for k in ("comprehensiveness", "sufficiency"):
                f[f"normalized_{k}"] = XP.naopc(f[k], lim[k], [f[f"random_{k}"]])
                f[f"random_normalized_{k}"] = XP.naopc(f[f"random_{k}"], lim[k], [f[k]])
        raw.faith[n].append(f)
    t2 = time.perf_counter()
    if converge:          # how the floor moves with LIME's sample budget
        for k, c in raw.conv.items():
            for side, sd in (("a", cfg.seed), ("b", raw.noise_seeds[0])):
                c[side].append((i, XP.explain(memo[ref], text, {label}, k, sd)))
    t3 = time.perf_counter()
    for n, xs in raw.shap_exps.items():
        xs.append(XP.kernel_shap(memo[n], text, {label}, ex.shap_samples, cfg.seed))
    for s, xs in raw.shap_noise.items():
        xs.append(XP.kernel_shap(memo[ref], text, {label}, ex.shap_samples, s))
    t4 = time.perf_counter()
    for k, dt in (("naopc", t2 - t1), ("convergence", t3 - t2), ("shap", t4 - t3)):
        raw.seconds[k] += dt


