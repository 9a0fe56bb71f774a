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
