import numpy as np
import pytest

from utils.evaluate import evaluate_variants, mcnemar


def test_scores_and_intervals_on_known_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    ref = np.where(rng.random(500) < 0.85, y, 1 - y)          # ~85% right
    other = ref.copy()
    flip = rng.choice(500, 40, replace=False)
    other[flip] = 1 - other[flip]                              # differs from ref on 40 examples
    res = evaluate_variants(y, {"ref": ref, "other": other}, reference="ref", reps=300, seed=1)
    r, o = res["ref"], res["other"]
    assert r["accuracy"] == pytest.approx(np.mean(ref == y))
    assert r["accuracy_ci"][0] < r["accuracy"] < r["accuracy_ci"][1]
    assert o["agreement"] == pytest.approx(1 - 40 / 500)
    assert o["accuracy_diff"] == pytest.approx(np.mean(other == y) - np.mean(ref == y))
    lo, hi = o["accuracy_diff_ci"]
    assert lo <= o["accuracy_diff"] <= hi
    m = o["mcnemar"]
    assert m["a_right_b_wrong"] + m["a_wrong_b_right"] == 40
    assert "accuracy_diff" not in r


def test_mcnemar_exact_values():
    y = np.zeros(20, dtype=int)
    a = np.zeros(20, dtype=int)
    b = a.copy()
    b[:10] = 1                                                  # b wrong on 10 where a right
    res = mcnemar(y, a, b)
    assert res["a_right_b_wrong"] == 10 and res["a_wrong_b_right"] == 0
    assert res["p_value"] == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar(y, a, a)["p_value"] == 1.0


def test_multiclass_macro_f1():
    y = np.array([0, 1, 2, 0, 1, 2])
    res = evaluate_variants(y, {"ref": y.copy()}, "ref", reps=50)
    assert res["ref"]["macro_f1"] == 1.0 and res["ref"]["macro_f1_ci"] == [1.0, 1.0]


def test_length_mismatch_and_missing_reference():
    with pytest.raises(ValueError, match="variant 'b': 2 predictions for 3 labels"):
        evaluate_variants([0, 1, 0], {"a": [0, 1, 0], "b": [0, 1]}, "a")
    with pytest.raises(KeyError, match="reference variant 'z'"):
        evaluate_variants([0, 1], {"a": [0, 1]}, "z")


@pytest.mark.parametrize("k, n", [(2, 400), (3, 60)])
def test_resampled_scores_are_sklearns_resample_by_resample(k, n):
    """The vectorised bootstrap gives every resample's accuracy and macro-F1 exactly as the sklearn loop did,
    also where a small 3-class resample lacks a class in its labels, its predictions or both."""
    from sklearn.metrics import f1_score

    from utils.evaluate import bootstrap_indices, resampled_scores
    rng = np.random.default_rng(k)
    y = rng.choice(k, n, p=[0.7, 0.3] if k == 2 else [0.8, 0.15, 0.05])
    pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, k, n))
    idx = bootstrap_indices(n, 200, seed=3)
    acc, f1 = resampled_scores(y, pred, idx)
    want_acc = [np.mean(pred[i] == y[i]) for i in idx]
    want_f1 = [f1_score(y[i], pred[i], average="macro", zero_division=0) for i in idx]
    np.testing.assert_array_equal(acc, want_acc)
    np.testing.assert_allclose(f1, want_f1, rtol=0, atol=1e-15)
    if k == 3:   # the case that needs the rule: some resamples lack class 2 in labels and predictions
        assert any(not np.isin(2, np.r_[y[i], pred[i]]) for i in idx)
