"""LIME over real predictors (a tiny real BERT in PyTorch and in ONNX Runtime), the metrics,
the example rule and the browsable pages."""

import numpy as np
import pytest

from conftest import explain_record
from utils.config import ConfigError, load_config, shap_variants
from utils.explain import (
    Memo,
    agreement,
    aopc_limits,
    explain,
    faithfulness,
    indexed,
    kernel_shap,
    mean_ci,
    naopc,
    removal_sizes,
    segments,
    select_examples,
    write_html,
)
from utils.modeling import load_checkpoint
from utils.predict import OrtPredictor, TorchPredictor

TEXT = "a gripping, beautifully acted film that never drags and never lets the cast down"


class RecordingMixin:
    """A real predictor that also records what reaches the model."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.texts, self.batches = [], []

    def predict_proba(self, texts, progress=False):
        self.texts.extend(texts)
        return super().predict_proba(texts, progress)

    def _forward(self, enc):
        self.batches.append(len(enc["input_ids"]))
        return super()._forward(enc)


class Recording(RecordingMixin, OrtPredictor):
    pass


class RecordingTorch(RecordingMixin, TorchPredictor):
    pass


@pytest.fixture(scope="module")
def ort_pr(tiny_onnx, tokenizer):
    return OrtPredictor(tiny_onnx[0], tokenizer, 32, batch_size=16)


@pytest.fixture(scope="module")
def torch_pr(tiny_model_dir):
    model, tok = load_checkpoint(tiny_model_dir)
    return TorchPredictor(model, tok, 32, batch_size=16)


def test_same_seed_same_variant_gives_the_identical_explanation(ort_pr):
    a = explain(ort_pr, TEXT, [0, 2], samples=300, seed=7)
    b = explain(ort_pr, TEXT, [0, 2], samples=300, seed=7)
    assert a.words == b.words == list(indexed(TEXT).inverse_vocab)
    for label in (0, 2):
        assert np.array_equal(a.weights[label], b.weights[label])
        assert np.any(a.weights[label] != 0)
    c = explain(ort_pr, TEXT, [0], samples=300, seed=8)
    assert not np.array_equal(a.weights[0], c.weights[0])       # another seed: another neighbourhood


def test_every_variant_sees_the_same_perturbed_texts(tiny_onnx, tokenizer, torch_pr):
    ort_rec = Recording(tiny_onnx[0], tokenizer, 32, batch_size=16)
    torch_rec = RecordingTorch(torch_pr.model, tokenizer, 32, batch_size=16)
    a = explain(ort_rec, TEXT, [1], samples=200, seed=3)
    b = explain(torch_rec, TEXT, [1], samples=200, seed=3)
    assert ort_rec.texts == torch_rec.texts and len(set(torch_rec.texts)) > 50
    # the two runtimes compute the same FP32 model: the same neighbourhood gives the same weights
    np.testing.assert_allclose(a.weights[1], b.weights[1], atol=1e-4)
    other = Recording(tiny_onnx[0], tokenizer, 32, batch_size=16)
    explain(other, TEXT, [1], samples=200, seed=4)
    assert other.texts != ort_rec.texts


def test_classifier_is_batched_and_deduplicated(tiny_onnx, tokenizer):
    rec = Recording(tiny_onnx[0], tokenizer, 32, batch_size=7)
    x = explain(rec, TEXT, [0], samples=5000, seed=0)
    assert max(rec.batches) <= 7                 # 5,000 perturbed texts never go through at once
    assert len(rec.texts) == len(set(rec.texts)) == x.texts_evaluated == sum(rec.batches) < 5000


def test_multiclass_weights_of_all_labels_balance(ort_pr):
    # probabilities sum to 1 and LIME's ridge model is linear in its target, so over the three
    # classes the word weights sum to 0 and the intercepts to 1
    x = explain(ort_pr, TEXT, [0, 1, 2], samples=400, seed=1)
    assert len(x.proba) == 3 and set(x.weights) == {0, 1, 2}
    np.testing.assert_allclose(sum(x.weights.values()), 0, atol=1e-6)
    assert sum(x.intercept.values()) == pytest.approx(1.0, abs=1e-6)


def test_explain_rejects_a_text_without_words(ort_pr):
    with pytest.raises(ValueError, match="no words"):
        explain(ort_pr, " ... !!", [0], samples=50)


def test_agreement_metrics_on_known_vectors():
    a = np.array([9, -8, 7, 6, -5, 4, 3, 2, 1, 0.5, 0.25, 0.1])
    same = agreement(a, a)
    assert all(v == pytest.approx(1.0) for v in same.values())
    neg = agreement(a, -a)
    assert neg["top5_overlap"] == 1.0 and neg["top5_sign"] == 0.0 and neg["spearman"] == pytest.approx(-1)
    rev = agreement(a, np.abs(a)[::-1].copy())        # importance order reversed
    assert rev["top5_overlap"] == 0.0 and np.isnan(rev["top5_sign"])
    b = a.copy()
    b[[0, 5]] = b[[5, 0]]                              # word 0 leaves the top 5, word 5 enters it
    r = agreement(a, b, ks=(5,))
    assert r["top5_overlap"] == pytest.approx(4 / 5) and r["top5_sign"] == 1.0
    short = agreement(a[:4], a[:4])                   # 4 words: top-5 overlap would be 1 by construction
    assert np.isnan(short["top5_overlap"]) and np.isnan(short["top10_overlap"]) and short["spearman"] == 1
    with pytest.raises(ValueError, match="different words"):
        agreement(a, a[:5])


def test_faithfulness_is_the_erasers_definition(ort_pr):
    s = indexed(TEXT)
    d = s.num_words()
    w = np.linspace(1, -1, d)
    f = faithfulness(ort_pr, TEXT, w, label=2, fractions=[1.0], seed=0)
    p = ort_pr.predict_proba([TEXT, s.inverse_removing(np.arange(d))])[:, 2]
    # removing every word: p(full) - p(nothing left); keeping every word: no change
    assert f["comprehensiveness"] == pytest.approx(p[0] - p[1], abs=1e-5)
    assert f["sufficiency"] == pytest.approx(0.0, abs=1e-6)
    assert f["random_comprehensiveness"] == pytest.approx(f["comprehensiveness"], abs=1e-6)
    g = faithfulness(ort_pr, TEXT, w, label=2, fractions=[0.2], seed=0)
    k = removal_sizes(d, [0.2])[0]
    top = np.argsort(-w, kind="stable")[:k]
    q = ort_pr.predict_proba([TEXT, s.inverse_removing(top)])[:, 2]
    assert g["comprehensiveness"] == pytest.approx(q[0] - q[1], abs=1e-5)
    with pytest.raises(ValueError, match="weights for a text"):
        faithfulness(ort_pr, TEXT, w[:-1], label=0, fractions=[0.5])


def test_removal_sizes():
    assert removal_sizes(18, [0.01, 0.05, 0.1, 0.2, 0.5]) == [1, 1, 2, 4, 9]
    assert removal_sizes(2, [1.0, 0.01]) == [2, 1]


def test_example_rule_is_a_random_sample_then_disagreements_apart():
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "cast", "score", "ending", "story"]
    texts = [" ".join(rng.choice(words, size=6)) for _ in range(300)]
    texts[5] = "good good"                              # one distinct word: left out
    ref = rng.integers(0, 3, 300)
    other = ref.copy()
    flips = [3, 5, 40, 41, 200, 201, 202]
    other[flips] = (other[flips] + 1) % 3
    conf = rng.uniform(0.34, 1.0, 300)
    preds = {"fp32": ref, "int8": other}
    out = select_examples(texts, ref, preds, conf, "fp32", ["int8"], n_examples=28, n_disagreements=3, seed=1)
    rand = [e for e in out if e["reason"] == "random"]
    extra = [e for e in out if e["reason"] == "disagreement"]
    assert len(rand) == 28 and len({e["index"] for e in out}) == len(out) and 5 not in {e["index"] for e in out}
    flagged = {e["index"] for e in out if e["disagreement"]}
    assert flagged <= {3, 40, 41, 200, 201, 202} and {e["index"] for e in extra} <= flagged
    # the random sample holds whatever disagreements it drew; 3 more (or every one left) come apart
    assert len(extra) == min(3, len({3, 40, 41, 200, 201, 202} - {e["index"] for e in rand}))
    assert all(e["with"] == ["int8"] for e in out if e["disagreement"])
    # the sample does not depend on the disagreements: another variant's flips draw the same random texts
    same = select_examples(texts, ref, {"fp32": ref, "int8": ref}, conf, "fp32", ["int8"], n_examples=28,
                           n_disagreements=3, seed=1)
    assert [e["index"] for e in same] == [e["index"] for e in rand]
    assert select_examples(texts, ref, preds, conf, "fp32", ["int8"], n_examples=28, n_disagreements=3, seed=1) == out
    with pytest.raises(KeyError, match="int4"):
        select_examples(texts, ref, preds, conf, "fp32", ["int4"], n_examples=5, n_disagreements=2, seed=1)


def test_aopc_limits_bound_every_ranking_and_normalize(ort_pr):
    """The limits found hold the AOPC of the explanation's ranking and of random ones nearly always (a search
    finds limits some ranking reaches; the true ones lie beyond), and NAOPC maps into [0, 1]."""
    fr = [0.1, 0.2, 0.5]
    for beam in (0, 2):
        lim = aopc_limits(ort_pr, TEXT, 1, fr, beam=beam)
        assert lim["comprehensiveness"][0] < lim["comprehensiveness"][1]
        assert lim["sufficiency"][0] < lim["sufficiency"][1]
    g = aopc_limits(ort_pr, TEXT, 1, fr, beam=2)
    o = aopc_limits(ort_pr, TEXT, 1, fr, beam=0)
    # a wider search reaches at least as far on this text (greedy with look-ahead vs one step)
    assert g["comprehensiveness"][1] >= o["comprehensiveness"][1] - 1e-6
    d = len(indexed(TEXT).inverse_vocab)
    inside = 0
    for seed in range(20):
        w = np.random.default_rng(seed).normal(size=d)
        f = faithfulness(ort_pr, TEXT, w, label=1, fractions=fr, seed=seed)
        lo, hi = g["comprehensiveness"]
        inside += lo - 1e-6 <= f["comprehensiveness"] <= hi + 1e-6
        v = naopc(f["comprehensiveness"], g["comprehensiveness"], [f["random_comprehensiveness"]])
        assert 0.0 <= v <= 1.0
    assert inside >= 18
    assert naopc(0.5, [0.0, 1.0]) == 0.5 and naopc(2.0, [0.0, 1.0]) == 1.0 and np.isnan(naopc(0.3, [0.3, 0.3]))


def test_mean_ci_leaves_undefined_values_out():
    r = mean_ci([1.0, float("nan"), 0.0, 1.0, 1.0], reps=200)
    assert r["n"] == 4 and r["mean"] == 0.75 and r["ci"][0] <= 0.75 <= r["ci"][1]
    assert mean_ci([float("nan")])["n"] == 0


def test_segments_rebuild_the_text():
    segs = segments(TEXT)
    assert "".join(p for p, _ in segs) == TEXT
    assert [p for p, j in segs if j is not None][:3] == ["a", "gripping", "beautifully"]
    assert max(j for _, j in segs if j is not None) == indexed(TEXT).num_words() - 1


def test_html_pages(tmp_path, ort_pr):
    xs = [explain(ort_pr, t, [0], samples=60, seed=0) for t in (TEXT, "dull <b>and</b> far too long")]
    occurrences = sum(j is not None for _, j in segments("dull <b>and</b> far too long"))
    result = {
        "reference": "fp32", "variants": ["fp32", "int8"], "samples": 60,
        "examples": [{"index": i, "text": t, "label": 0, "reference_pred": 0, "reference_confidence": 0.9,
                      "reason": "stratified"} for i, t in enumerate((TEXT, "dull <b>and</b> far too long"))],
        "explanations": {v: [x.to_dict() for x in xs] for v in ("fp32", "int8")},
        "agreement_per_example": {"int8": [{"spearman": 1.0}] * 2},
    }
    index = write_html(explain_record(**result), tmp_path / "html", ["neg", "neu", "pos"])
    page = (tmp_path / "html" / "example_1.html").read_text()
    assert "&lt;" in page and "<b>and" not in page          # the text is escaped, never interpreted
    assert page.count("<span title=") == 2 * occurrences == 14      # every word, in both variants' rows
    assert "example_0.html" in index.read_text()


def test_explain_profile_is_validated(repo):
    with pytest.raises(ConfigError, match="fractions"):
        load_config("smoke", {"explain": {"fractions": [0.0, 0.5]}}, root=repo)
    with pytest.raises(ConfigError, match="reference"):
        load_config("smoke", {"explain": {"variants": ["onnx-int8-qat"]}}, root=repo)
    with pytest.raises(ConfigError, match="samples"):
        load_config("smoke", {"explain": {"samples": 5}}, root=repo)
    with pytest.raises(ConfigError, match="explain.pairs name"):
        load_config("smoke", {"explain": {"variants": ["onnx-fp32", "onnx-int8-qat"]}}, root=repo)
    with pytest.raises(ConfigError, match="pairs must be"):
        load_config("smoke", {"explain": {"pairs": [["onnx-int8-qat", "onnx-int8-qat"]]}}, root=repo)
    with pytest.raises(ConfigError, match="noise_seeds >= 1"):
        load_config("smoke", {"explain": {"noise_seeds": 0}}, root=repo)
    # the controls off: a profile explaining two variants says so, and loads
    load_config("smoke", {"explain": {"variants": ["onnx-fp32", "onnx-int8-qat"], "pairs": []}},
                root=repo)


# ---------------------------------------------------------------- the second explainer: KernelSHAP
def test_kernel_shap_values_add_up_and_repeat_with_their_seed(ort_pr):
    a = kernel_shap(ort_pr, TEXT, [0, 1], samples=200, seed=3)
    b = kernel_shap(ort_pr, TEXT, [1], samples=200, seed=3)
    assert a.words == list(indexed(TEXT).inverse_vocab) and len(a.weights[1]) == len(a.words)
    full = ort_pr.predict_proba([TEXT])[0]
    empty = ort_pr.predict_proba([indexed(TEXT).inverse_removing(list(range(len(a.words))))])[0]
    for k in (0, 1):          # efficiency: the values sum to f(text) - f(no words)
        assert a.weights[k].sum() == pytest.approx(full[k] - empty[k], abs=1e-5)
        assert a.intercept[k] == pytest.approx(empty[k], abs=1e-6)
    np.testing.assert_allclose(a.weights[1], b.weights[1], atol=1e-9)     # same seed, same coalitions
    state = np.random.get_state()[1].copy()
    kernel_shap(ort_pr, TEXT, [1], samples=50, seed=4)
    assert (np.random.get_state()[1] == state).all()                         # the global generator restored


def test_kernel_shap_finds_the_word_a_model_reads(tokenizer):
    """A model whose answer is 'is the word "drags" there' gives that word all of the Shapley value."""
    class OneWord:
        batch_size = 16

        def predict_proba(self, texts, progress=False):
            p = np.array([0.9 if "drags" in t.split() else 0.1 for t in texts])
            return np.stack([1 - p, p], axis=1)

    e = kernel_shap(OneWord(), TEXT, [1], samples=300, seed=0)
    j = e.words.index("drags")
    assert e.weights[1][j] == pytest.approx(0.8, abs=1e-6)
    assert np.abs(np.delete(e.weights[1], j)).max() < 1e-6


def test_shap_settings_are_checked(repo):
    with pytest.raises(ConfigError, match="shap_variants must name the reference"):
        load_config("smoke", {"explain": {"shap_variants": ["onnx-int8-qat"]}}, root=repo)
    with pytest.raises(ConfigError, match="shap_variants must name the reference"):
        load_config("smoke", {"explain": {"shap_variants": ["onnx-fp32"]}}, root=repo)
    with pytest.raises(ConfigError, match="shap_samples be >= 10"):
        load_config("smoke", {"explain": {"shap_samples": 5}}, root=repo)
    with pytest.raises(ConfigError, match="explain.shap_variants names"):
        load_config("smoke", {"explain": {"variants": ["onnx-fp32", "onnx-int8-qat"], "pairs": [],
                                          "shap_variants": ["onnx-fp32", "onnx-int8-dynamic"]}}, root=repo)
    x = load_config("smoke", {"explain": {"variants": ["onnx-fp32", "onnx-int8-qat"], "pairs": []}},
                    root=repo).explain
    assert shap_variants(x, x.variants) == ["onnx-fp32", "onnx-int8-qat"]      # the default, where explained
    x.shap_variants = []
    assert shap_variants(x, x.variants) == []


# ---------------------------------------------------------------- one example's runs share its predictions
def test_memo_recalls_what_it_predicted_and_changes_no_explanation(tiny_onnx, tokenizer):
    """At batch 1 a text's answer is a function of the text alone: the runs of one example through a Memo (LIME
    with two seeds, faithfulness, KernelSHAP) give exactly the explanations they give without it, the first
    run predicts every text, the later ones recall the texts it predicted, and those never reach the model."""
    plain = OrtPredictor(tiny_onnx[0], tokenizer, 32, batch_size=1)
    rec = Recording(tiny_onnx[0], tokenizer, 32, batch_size=1)
    memo = Memo(rec)
    runs = [lambda p: explain(p, TEXT, [1], samples=300, seed=3), lambda p: explain(p, TEXT, [1], samples=300, seed=4),
            lambda p: kernel_shap(p, TEXT, [1], samples=200, seed=3)]
    for k, run in enumerate(runs):
        want, got = run(plain), run(memo)
        np.testing.assert_array_equal(got.weights[1], want.weights[1])
        assert got.texts_evaluated == want.texts_evaluated and want.texts_recalled == 0
        if k == 0:
            assert got.texts_recalled == 0
        else:       # another seed, then KernelSHAP, ask again for texts the earlier runs predicted
            assert 0 < got.texts_recalled < got.texts_evaluated
    assert len(rec.texts) == len(set(rec.texts))     # over the three runs, no text reached the model twice
    e = explain(plain, TEXT, [1], samples=300, seed=3)
    f = faithfulness(memo, TEXT, e.weights[1], 1, [0.1, 0.5], seed=0)
    assert f == faithfulness(plain, TEXT, e.weights[1], 1, [0.1, 0.5], seed=0)
    n = len(rec.texts)
    memo.clear()
    explain(memo, TEXT, [1], samples=300, seed=3)
    assert len(rec.texts) > n                    # cleared: the next example starts from an empty memory


def _fake_raw(words=12, n=6, seed=0):
    """Explanations with known weights (no LIME run): the reference and a variant whose explanations are the
    reference's exactly, and noise explanations of the reference under two other seeds."""
    from utils.explain import ExplainRaw, Explanation
    rng = np.random.default_rng(seed)

    def x(w, s=0):
        return Explanation(words=[f"w{i}" for i in range(words)], weights={0: np.asarray(w)}, intercept={0: 0.0},
                           proba=np.array([0.8, 0.2]), score=0.5, seconds=0.1, texts_evaluated=100, seed=s,
                           samples=100)
    ref_w = [rng.normal(size=words) for _ in range(n)]
    noise = {s: [x(w + rng.normal(scale=0.5, size=words), s) for w in ref_w] for s in (7, 8)}
    faith = {k: 0.3 for k in ("comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency")}
    examples = [{"index": i, "text": "t", "label": 0, "reference_pred": 0, "reference_confidence": 0.9,
                 "reason": "random" if i < 4 else "disagreement",
                 "disagreement": i >= 4} for i in range(n)]
    own = {"ref": np.zeros(n, int), "same": np.zeros(n, int)}
    return ExplainRaw(examples, ["ref", "same"], [], [], [], [7, 8], own,
                      {}, {"ref": [x(w) for w in ref_w], "same": [x(w) for w in ref_w]}, {}, noise,
                      {"ref": [dict(faith)] * n, "same": [dict(faith)] * n}, {}, {}, {},
                      {"lime": 1.0, "shap": 0.0, "naopc": 0.0, "convergence": 0.0},
                      {"n_disagreement": 0, "n_examples": n, "shared_with_now": n}, 2, "ref")


def test_summarise_compares_explanations_symmetrically_without_running_lime(repo):
    from utils.explain import summarise
    from utils.results import from_dict
    ex = load_config("smoke", {"explain": {"reference": "onnx-fp32", "top_k": [3], "pairs": [], "naopc": False,
                                           "shap_variants": [], "compare": "onnx-int8-dynamic"}}, root=repo).explain
    ex = type(ex)(**{**ex.__dict__, "reference": "ref", "compare": "same"})
    raw = _fake_raw()
    out = summarise(raw, ex, confidence=0.95, bootstrap=200, seed=0)
    from_dict("explain", out)                    # the step's declared result, field for field
    assert out["top_k"] == [3] and "top3_overlap" in out["agreement"]["noise-floor"]["random"]
    same, floor = out["agreement"]["same"], out["agreement"]["noise-floor"]
    # the variant's explanations are the reference's: against FP32's other seeds it scores exactly the floor
    assert same["random"]["spearman"]["mean"] == pytest.approx(floor["random"]["spearman"]["mean"])
    vf = same["versus_floor"]
    assert vf["random"]["spearman"]["mean"] == pytest.approx(0) and vf["equivalence"]["spearman"]["equivalent"]
    assert same["same_seed"]["spearman"]["mean"] == pytest.approx(1)       # same seed, same weights
    assert floor["random"]["spearman"]["n"] == 4 and floor["disagreement"]["spearman"]["n"] == 2
    assert out["selection"]["n_random"] == 4 and out["selection"]["n_disagreement_available"] == 2
    assert out["cost"]["same"]["throughput_vs_baseline"] == pytest.approx(1) and out["throughput_baseline"] == "ref"
    assert out["faithfulness"]["same"]["comprehensiveness"]["mean"] == pytest.approx(0.3)
    assert out["convergence"] is None and out["shap"] is None and out["total_seconds"] == 1.0
