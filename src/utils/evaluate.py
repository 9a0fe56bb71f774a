"""Accuracy, macro-F1, bootstrap intervals, McNemar's test and agreement.

All variants are scored on the same test split. Intervals come from a paired
bootstrap over test examples (the same resamples for every variant), so the
interval of a *difference* to the reference is a proper paired interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from .provenance import array_sha256


def _macro_f1(y, p):
    # over the classes present in y or p (sklearn's default): a class absent from a bootstrap
    # resample and never predicted has no defined F1 and is not counted as 0
    return f1_score(y, p, average="macro", zero_division=0)


def resampled_scores(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> tuple:
    """Accuracy and macro-F1 of every bootstrap resample (rows of ``idx``) at once: one confusion matrix per
    resample from a single ``bincount``. Macro-F1 as ``_macro_f1`` (sklearn's) defines it, over the classes
    present in the resample's labels or predictions: tp / (tp + (fp + fn) / 2) per class (its
    2 tp / (2 tp + fp + fn)), averaged over the classes present. ``tests/test_evaluate.py`` checks it against
    sklearn resample by resample; one call for 1,000 resamples of 2,722 texts replaces 2,000 sklearn calls."""
    y, pred, idx = np.asarray(y), np.asarray(pred), np.asarray(idx)
    k = int(max(y.max(), pred.max())) + 1
    reps = len(idx)
    cells = (np.arange(reps)[:, None] * k * k + y[idx] * k + pred[idx]).ravel()
    cm = np.bincount(cells, minlength=reps * k * k).reshape(reps, k, k)     # [resample, true, predicted]
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    rows, cols = cm.sum(axis=2), cm.sum(axis=1)
    present = (rows + cols) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / (rows + cols), 0.0)
    return tp.sum(axis=1) / idx.shape[1], f1.sum(axis=1) / present.sum(axis=1)


def bootstrap_indices(n: int, reps: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(reps, n))


def interval(samples: np.ndarray, confidence: float) -> list:
    a = (1 - confidence) / 2
    return [float(np.quantile(samples, a)), float(np.quantile(samples, 1 - a))]


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on the discordant pairs of two classifiers."""
    a_ok, b_ok = pred_a == y, pred_b == y
    b01 = int(np.sum(a_ok & ~b_ok))   # a right, b wrong
    b10 = int(np.sum(~a_ok & b_ok))   # a wrong, b right
    n = b01 + b10
    p = 1.0 if n == 0 else float(binomtest(b01, n, 0.5).pvalue)
    return {"a_right_b_wrong": b01, "a_wrong_b_right": b10, "p_value": p}


def score(y: np.ndarray, pred: np.ndarray, idx: np.ndarray, confidence: float,
          ref_pred: Optional[np.ndarray] = None) -> dict:
    """Point estimates and bootstrap intervals for one variant (and its difference to ``ref_pred``)."""
    y, pred = np.asarray(y), np.asarray(pred)
    acc = float(np.mean(pred == y))
    f1 = float(_macro_f1(y, pred))
    acc_bs, f1_bs = resampled_scores(y, pred, idx)
    out = {"n": int(len(y)), "accuracy": acc, "accuracy_ci": interval(acc_bs, confidence),
           "macro_f1": f1, "macro_f1_ci": interval(f1_bs, confidence)}
    if ref_pred is not None:
        ref_pred = np.asarray(ref_pred)
        ref_bs = np.mean(ref_pred[idx] == y[idx], axis=1)
        d = acc_bs - ref_bs
        out.update({
            "accuracy_diff": acc - float(np.mean(ref_pred == y)),
            "accuracy_diff_ci": interval(d, confidence),
            "agreement": float(np.mean(pred == ref_pred)),
            "mcnemar": mcnemar(y, ref_pred, pred),
        })
    return out


def evaluate_variants(y: np.ndarray, preds: dict, reference: str, reps: int = 1000,
                      confidence: float = 0.95, seed: int = 0) -> dict:
    """Score every variant in ``preds`` (name -> predicted labels) against ``y``,
    with paired bootstrap intervals and McNemar against ``preds[reference]``."""
    if reference not in preds:
        raise KeyError(f"reference variant {reference!r} not among {list(preds)}")
    y = np.asarray(y)
    for name, p in preds.items():
        if len(p) != len(y):
            raise ValueError(f"variant {name!r}: {len(p)} predictions for {len(y)} labels")
    idx = bootstrap_indices(len(y), reps, seed)
    return {name: score(y, p, idx, confidence, None if name == reference else preds[reference])
            for name, p in preds.items()}


class ChanceError(ValueError):
    """The FP32 reference scores no better than always answering the majority class."""


def chance_check(accuracy: float, majority: float, labels: list, reference: str, allowed: bool) -> dict:
    """The floor no result passes silently: ``reference``'s test accuracy at or below the majority class's share
    raises ``ChanceError`` naming the likely causes, unless ``allowed`` (``eval.allow_chance``); the record says
    which."""
    at_chance = bool(accuracy <= majority)
    if at_chance and not allowed:
        raise ChanceError(
            f"the FP32 reference {reference} scores {100 * accuracy:.1f}% on the test split, no better than always "
            f"answering the majority class ({100 * majority:.1f}%): its numbers would mean nothing. Likely causes: "
            f"the class order (a fine-tuned checkpoint's id2label against the data's labels {labels}: set "
            f"model.finetuned: true so labels are matched by name, or check data.labels / data.label_map), the wrong "
            f"text or label column (data.text_column, data.label_column), or a model that has not learned (more "
            f"epochs, another learning rate). To report it anyway, set eval.allow_chance: true")
    return {"reference_accuracy": float(accuracy), "majority_class_accuracy": float(majority),
            "at_or_below_chance": at_chance, "allowed": bool(allowed)}


# --------------------------------------------------------------------------- the evaluation step's analysis
@dataclass
class EvalRaw:
    """What the evaluation step measured, before any analysis: the test labels, every variant's predictions (each
    text alone; and in length-sorted and random batches where ``batch_size`` is set), its file, latency and the
    batch-invariance records, the QAT model's integer-evaluated predictions. ``summarise`` makes the result."""
    labels: list
    y: np.ndarray
    majority: float
    preds: dict                      # variant -> batch-1 predictions
    confidences: dict                # variant -> the batch-1 probability of the predicted class
    files: dict                      # variant -> runtime, path, size_mb, sha256, batch_invariant_declared
    latency: dict                    # variant -> batch-1 latency record
    latency_texts: int
    threads: int
    seed: int
    batch_size: Optional[int] = None         # None: batch 1 only (eval.batched: false)
    batched: dict = field(default_factory=dict)      # variant -> length-sorted batch predictions
    moves: dict = field(default_factory=dict)        # variant -> batch invariance (moves, logit change)
    scales: dict = field(default_factory=dict)       # variant -> the activation scales behind the moves
    chance: Optional[dict] = None
    qat_integer: Optional[np.ndarray] = None  # the QAT model with the integer kernel's arithmetic


@dataclass(frozen=True)
class Roles:
    """Which variants play which part in the comparisons (from the registry): the reference every difference is
    taken against, the QAT model (fake quantization), the ONNX files built from its weights, the control trained as
    long as QAT and what is compared with it."""
    reference: str
    onnx_reference: str                       # sizes are set against this file
    qat_model: Optional[str] = None
    from_qat: tuple = ()
    control: Optional[str] = None
    vs_control: tuple = ()


def summarise(raw: EvalRaw, roles: Roles, reps: int, confidence: float) -> dict:
    """The evaluation result (evaluate.json's fields) from the raw predictions: accuracy, macro-F1 and their
    intervals, differences and McNemar against the reference, paired over ``reps`` bootstrap resamples; the same
    for the batched predictions; size ratios; agreement of QAT's files with the QAT model; QAT against its
    control."""
    y, preds, bs = raw.y, raw.preds, raw.batch_size
    kw = {"reps": reps, "confidence": confidence, "seed": raw.seed}
    scores = evaluate_variants(y, preds, reference=roles.reference, **kw)
    batched = evaluate_variants(y, raw.batched, reference=roles.reference, **kw) if bs else {}
    fp32_mb = raw.files[roles.onnx_reference]["size_mb"]
    rows = {}
    for name in preds:
        row = rows[name] = {**raw.files[name]}
        if name in raw.moves:
            row["batch_invariance"] = {**raw.moves[name], **({"scales": raw.scales[name]} if name in raw.scales
                                                             else {})}
        row.update(scores[name])
        row.update(size_ratio_to_onnx_fp32=row["size_mb"] / fp32_mb, latency_b1=raw.latency[name],
                   predictions=preds[name].tolist(), predictions_sha256=array_sha256(preds[name]),
                   confidence=np.round(raw.confidences[name], 5).tolist())
        if bs:
            row["batched"] = {"batch_size": bs, "order": "length-sorted",
                              "predictions_sha256": array_sha256(raw.batched[name]),
                              **{k: x for k, x in batched[name].items() if k != "n"}}
            row["predictions_batched"] = raw.batched[name].tolist()
    _versus_qat(rows, raw, roles, reps, confidence)
    seed = raw.seed
    return {"reference": roles.reference, "labels": raw.labels, "n_test": len(y),
            "majority_class_accuracy": raw.majority, "headline_batch_size": 1,
            "batching": {"batch_size": bs, "random_seed": seed,
                         "headline": "batch 1: each text alone, no padding (as deployed, one request at a time)",
                         **({"batched": f"batches of {bs}, texts sorted by length (dynamic padding)",
                             "random": f"batches of {bs}, one random batching (seed {seed})"} if bs else
                            {"batched": None, "random": None})},
            "latency_note": (f"batch 1, {raw.latency_texts} test texts, tokenization excluded, variants "
                             f"interleaved, {raw.threads} threads (ONNX Runtime's spinning within a call, "
                             f"stopped when it returns); a first look: see the benchmark for more"),
            "variants": rows, **({"chance": raw.chance} if raw.chance and raw.chance["at_or_below_chance"] else {})}


def _versus_qat(rows: dict, raw: EvalRaw, roles: Roles, reps: int, confidence: float) -> None:
    """QAT's files against the QAT model (float and integer fake quantization), and QAT against FP32 trained as
    long without fake quantizers (what fake quantization itself did), into ``rows``."""
    preds = raw.preds
    from_qat = [n for n in roles.from_qat if n in preds]
    if roles.qat_model in preds:
        fq = preds[roles.qat_model]
        for name in from_qat:
            rows[name]["agreement_with_qat_fakequant"] = float(np.mean(preds[name] == fq))
            rows[name]["agreement_with_qat_integer"] = float(np.mean(preds[name] == raw.qat_integer))
        rows[roles.qat_model]["agreement_integer_vs_float_fakequant"] = float(np.mean(raw.qat_integer == fq))
    if roles.control in preds:
        idx = bootstrap_indices(len(raw.y), reps, raw.seed)
        for name in [n for n in roles.vs_control if n in preds]:
            sc = score(raw.y, preds[name], idx, confidence, ref_pred=preds[roles.control])
            rows[name]["vs_fp32_plus_epoch"] = {k: sc[k] for k in ("accuracy_diff", "accuracy_diff_ci", "agreement",
                                                                   "mcnemar")}
