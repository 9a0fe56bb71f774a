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
    acc_bs = np.array([np.mean(pred[i] == y[i]) for i in idx])
    f1_bs = np.array([_macro_f1(y[i], pred[i]) for i in idx])
    out = {"n": int(len(y)), "accuracy": acc, "accuracy_ci": interval(acc_bs, confidence),
           "macro_f1": f1, "macro_f1_ci": interval(f1_bs, confidence)}
    if ref_pred is not None:
        ref_pred = np.asarray(ref_pred)
        ref_bs = np.array([np.mean(ref_pred[i] == y[i]) for i in idx])
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
