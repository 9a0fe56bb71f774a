"""Accuracy, macro-F1, bootstrap intervals, McNemar's test and agreement.

All variants are scored on the same test split. Intervals come from a paired
bootstrap over test examples (the same resamples for every variant), so the
interval of a *difference* to the reference is a proper paired interval.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import f1_score


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
