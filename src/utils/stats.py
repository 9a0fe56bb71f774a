"""The tests behind the paper's verdict words: Holm's correction over a family of McNemar tests, equivalence by
two one-sided tests (TOST) within a margin declared in the config, on one test set (a paired bootstrap of the
accuracy change) or over training seeds (Student's t over the seeds' changes).

A verdict is one of six words, each a claim the numbers carry:

* ``equivalent``: the (1 - 2 alpha) interval of the change lies inside +-margin (TOST at level alpha);
* ``below`` / ``above``: that interval lies wholly beyond -margin / +margin (a change larger than the margin);
* ``lower`` / ``higher``: the interval lies wholly below / above zero but reaches past the margin on one side
  only: a change, of a size the data cannot bound by the margin;
* ``undecided``: the interval covers zero and reaches past the margin: the data cannot tell.

"Indistinguishable" (an interval that covers zero) is never a verdict: absence of evidence is not equivalence.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

VERDICTS = ("equivalent", "below", "above", "lower", "higher", "undecided")


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjusted p-values (Holm 1979) of a family of tests, by name: the i-th smallest of m is
    multiplied by (m - i + 1), made monotone, capped at 1. A test is rejected at family-wise level alpha where its
    adjusted p-value is below alpha. NaN p-values (no discordant pair) are left out of the family and kept NaN."""
    named = [(k, float(p)) for k, p in pvalues.items() if p == p]
    m = len(named)
    out = {k: float("nan") for k in pvalues}
    running = 0.0
    for i, (k, p) in enumerate(sorted(named, key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def tost_verdict(interval: Sequence[float], margin: float) -> str:
    """The verdict of a (1 - 2 alpha) interval against +-margin (see the module's docstring)."""
    lo, hi = float(interval[0]), float(interval[1])
    if lo != lo or hi != hi:
        return "undecided"
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] has its ends swapped")
    if -margin < lo and hi < margin:
        return "equivalent"
    return ("below" if hi < -margin else "above" if lo > margin else "lower" if hi < 0 else "higher" if lo > 0
            else "undecided")


def paired_accuracy_interval(y: Sequence[int], a: Sequence[int], b: Sequence[int], confidence: float = 0.90,
                             reps: int = 1000, seed: int = 0) -> list:
    """Percentile bootstrap interval of accuracy(b) - accuracy(a) on one test set, the texts resampled in pairs
    (the same resamples for both models)."""
    y, a, b = (np.asarray(v) for v in (y, a, b))
    if not len(y) == len(a) == len(b) or len(y) == 0:
        raise ValueError(f"labels and predictions of different lengths: {len(y)}, {len(a)}, {len(b)}")
    d = (b == y).astype(float) - (a == y).astype(float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(reps, len(d)))
    means = d[idx].mean(axis=1)
    q = (1 - confidence) / 2
    return [float(np.quantile(means, q)), float(np.quantile(means, 1 - q))]


def paired_interval_from_counts(variant_only: int, reference_only: int, n: int, confidence: float = 0.90,
                                reps: int = 1000, seed: int = 0) -> list:
    """The same paired bootstrap from McNemar's discordant counts alone: a text contributes +1 where only the
    variant is right, -1 where only the reference is, 0 otherwise, and a bootstrap of the mean of those needs
    only how many of each there are (what evaluate.json keeps)."""
    if min(variant_only, reference_only) < 0 or variant_only + reference_only > n or n < 1:
        raise ValueError(f"discordant counts {variant_only}, {reference_only} do not fit {n} texts")
    right = np.ones(n, int)                         # every label 1; a model is right where it predicts 1
    variant = np.r_[np.ones(variant_only, int), np.zeros(reference_only, int), np.ones(n - variant_only
                                                                                       - reference_only, int)]
    reference = np.r_[np.zeros(variant_only, int), np.ones(reference_only, int), np.ones(n - variant_only
                                                                                          - reference_only, int)]
    return paired_accuracy_interval(right, reference, variant, confidence, reps, seed)


def seeds_interval(changes: Sequence[float], confidence: float = 0.90) -> list:
    """Student's t interval of the mean change over training seeds (each seed one fine-tuning run): what TOST
    over seeds tests against the margin. Needs two seeds or more."""
    x = np.asarray(changes, float)
    if len(x) < 2:
        raise ValueError(f"an interval over seeds needs at least 2 seeds, got {len(x)}")
    half = stats.t.ppf(1 - (1 - confidence) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]
