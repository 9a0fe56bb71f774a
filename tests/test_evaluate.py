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


def _raw(n=300, batched=True, seed=0):
    """Predictions of four variants on ``n`` labels, as the evaluation step measures them (no model run)."""
    from utils.evaluate import EvalRaw
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    flip = lambda p, k: np.where(rng.random(n) < k, 1 - p, p)  # noqa: E731
    preds = {"pytorch-fp32": flip(y, 0.15), "onnx-fp32": None, "onnx-int8-dynamic": None, "pytorch-qat-fakequant": None}
    preds["onnx-fp32"] = preds["pytorch-fp32"].copy()
    preds["onnx-int8-dynamic"] = flip(preds["pytorch-fp32"], 0.02)
    preds["pytorch-qat-fakequant"] = flip(preds["pytorch-fp32"], 0.05)
    files = {k: {"runtime": k.split("-")[0], "path": f"{k}.bin", "size_mb": 90.0 if "int8" not in k else 23.0,
                 "sha256": k, "batch_invariant_declared": "dynamic" not in k} for k in preds}
    raw = EvalRaw(["neg", "pos"], y, float(max(np.mean(y), 1 - np.mean(y))), preds,
                  {k: np.full(n, 0.9) for k in preds}, files, {k: {"median_ms": 1.0} for k in preds}, 50, 2, seed,
                  32 if batched else None, qat_integer=preds["pytorch-qat-fakequant"].copy())
    if batched:
        raw.batched = {k: flip(p, 0.01) if "dynamic" in k else p.copy() for k, p in preds.items()}
        raw.moves = {k: {"moved_batch1_vs_sorted": int(np.sum(raw.batched[k] != p))} for k, p in preds.items()}
    return raw


def test_summarise_turns_raw_predictions_into_the_evaluation_result():
    from utils.evaluate import Roles, summarise
    from utils.results import from_dict
    raw = _raw()
    roles = Roles("pytorch-fp32", "onnx-fp32", "pytorch-qat-fakequant", ("onnx-int8-dynamic",), None, ())
    out = summarise(raw, roles, reps=200, confidence=0.95)
    from_dict("evaluate", out)                          # the step's declared result, field for field
    v = out["variants"]
    assert out["n_test"] == 300 and out["headline_batch_size"] == 1 and out["batching"]["batch_size"] == 32
    dyn = v["onnx-int8-dynamic"]
    assert dyn["accuracy"] == pytest.approx(np.mean(raw.preds["onnx-int8-dynamic"] == raw.y))
    assert dyn["agreement"] == pytest.approx(np.mean(raw.preds["onnx-int8-dynamic"] == raw.preds["pytorch-fp32"]))
    assert dyn["accuracy_diff_ci"][0] <= dyn["accuracy_diff"] <= dyn["accuracy_diff_ci"][1]
    assert dyn["size_ratio_to_onnx_fp32"] == pytest.approx(23 / 90) and len(dyn["predictions_batched"]) == 300
    assert dyn["batch_invariance"]["moved_batch1_vs_sorted"] == int(np.sum(raw.batched["onnx-int8-dynamic"]
                                                                          != raw.preds["onnx-int8-dynamic"]))
    assert dyn["agreement_with_qat_fakequant"] == pytest.approx(
        np.mean(raw.preds["onnx-int8-dynamic"] == raw.preds["pytorch-qat-fakequant"]))
    assert v["pytorch-qat-fakequant"]["agreement_integer_vs_float_fakequant"] == 1.0
    assert "accuracy_diff" not in v["pytorch-fp32"] and "chance" not in out
    # batch 1 only: no batched record; QAT's control compared where it was evaluated
    raw = _raw(batched=False)
    raw.preds["pytorch-fp32-plus-epoch"] = raw.preds["pytorch-fp32"].copy()
    for d in (raw.files, raw.confidences, raw.latency):
        d["pytorch-fp32-plus-epoch"] = d["pytorch-fp32"]
    roles = Roles("pytorch-fp32", "onnx-fp32", "pytorch-qat-fakequant", (), "pytorch-fp32-plus-epoch",
                  ("pytorch-qat-fakequant", "onnx-int8-dynamic"))
    out = summarise(raw, roles, reps=200, confidence=0.95)
    assert out["batching"]["batched"] is None and "batched" not in out["variants"]["onnx-int8-dynamic"]
    vs = out["variants"]["pytorch-qat-fakequant"]["vs_fp32_plus_epoch"]
    assert vs["accuracy_diff"] == pytest.approx(out["variants"]["pytorch-qat-fakequant"]["accuracy_diff"])
