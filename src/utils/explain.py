"""LIME over any predictor, and whether a quantized model explains itself the way FP32 does.

Gradient explainers cannot run on an ONNX Runtime INT8 session, so explanations are
perturbation-based: LIME's ``LimeTextExplainer`` (bag of words: a feature is a distinct
word, removing it removes every occurrence).

* **Symmetric comparison.** LIME draws its perturbations from its own ``random_state`` before it
  calls the model, so a fresh explainer with the same seed sends the *same* perturbed texts to every
  variant (``tests/test_explain.py`` checks it). Two explanations with one seed share their sampling
  noise; the run's comparisons therefore always cross seeds: every variant (seed A) against FP32's
  explanations under other seeds, beside FP32 (A) against the same ones (the **noise floor**), so that the
  two sides differ only in the model (``pipeline.run_explain``).
* **Agreement** of two explanations of the same text and label: top-k overlap, sign
  agreement on the shared top-k, Spearman and Kendall rank correlation of all word weights.
* **Faithfulness** of a variant's own explanation, computed with that same variant:
  comprehensiveness and sufficiency (ERASER, DeYoung et al. 2020), each an AOPC over the
  removal fractions, beside the same numbers for a random ranking of the words, and normalized by the
  AOPC limits of that model on that text (NAOPC, Edin et al. 2025), so that models can be compared.
* **Cost**: seconds per explanation with the same number of samples, variants interleaved.
* **A second explainer**: KernelSHAP (``shap.KernelExplainer``, Lundberg & Lee 2017) over LIME's own
  features (a coalition keeps the words it names, the background removes every word), so the two
  explainers' agreements FP32 vs INT8 are taken on the same words, with SHAP's own seed-noise floor.

The classifier function LIME calls removes duplicate perturbed texts (removing all words,
or one word of a short text, recurs often) and lets the predictor batch the rest, so 5,000
perturbed texts never go through the model at once. Across the runs of one example (other LIME
seeds, faithfulness, KernelSHAP) a ``Memo`` predicts each distinct text once per variant.
"""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import shap
from lime.lime_text import IndexedString, LimeTextExplainer
from scipy.stats import kendalltau, spearmanr

from . import metrics as MT
from .results import Explain, as_result

SPLIT = r"\W+"            # LIME's default word splitter
KERNEL_WIDTH = 25         # LIME's default kernel width for text (cosine distance x 100)


# --------------------------------------------------------------------------- explaining
def indexed(text: str) -> IndexedString:
    """LIME's view of a text: its distinct words (features) and how to remove them."""
    return IndexedString(text, bow=True, split_expression=SPLIT)


def classifier_fn(predictor, evaluated: Optional[list] = None):
    """LIME's classifier function over a predictor: duplicate texts are predicted once, and
    the predictor batches the rest (``predictor.batch_size`` texts per forward pass)."""
    def fn(texts):
        texts = list(texts)
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        proba = predictor.predict_proba([str(t) for t in uniq])
        if evaluated is not None:
            evaluated.append(len(uniq))
        return proba[inverse.reshape(-1)]
    return fn


class Memo:
    """A predictor that predicts each distinct text once and recalls it after: a variant's explanations of one
    example (LIME with other seeds, faithfulness, KernelSHAP) send many of the same perturbed texts (removing
    one word, or all but one, recurs across seeds and between LIME and KernelSHAP: about a fifth of the
    reference's texts on the default's examples). Exact for a predictor whose answer is a function of the text
    alone: batch 1, or a batch-invariant variant up to the last bits a batch's shape can move (the evaluation
    measures them: ``max_abs_logit_diff``). Never wrap a batch-dependent variant predicted in batches: that
    answer depends on the other texts of the batch. ``clear()`` between examples keeps the memory small;
    ``recalled`` counts the texts answered from memory."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.batch_size = predictor.batch_size
        self.recalled = 0
        self._seen: dict = {}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        distinct = dict.fromkeys(texts)
        new = [t for t in distinct if t not in self._seen]
        self.recalled += len(distinct) - len(new)
        if new:
            self._seen.update(zip(new, self.predictor.predict_proba(new)))
        return np.stack([self._seen[t] for t in texts])

    __call__ = predict_proba

    def clear(self) -> None:
        self._seen.clear()


@dataclass
class Explanation:
    """One LIME explanation: a weight per word (LIME's feature order) for each label asked."""
    words: list
    weights: dict                 # label -> np.ndarray (one weight per word)
    intercept: dict               # label -> float
    proba: np.ndarray             # the model's probabilities for the unperturbed text
    score: float                  # R^2 of LIME's local ridge model (of the last label fitted)
    seconds: float
    texts_evaluated: int          # distinct perturbed texts asked of the model
    seed: int
    samples: int
    texts_recalled: int = 0       # of those, answered from a ``Memo`` (predicted earlier for the same example)

    @property
    def pred(self) -> int:
        return int(np.argmax(self.proba))

    def to_dict(self, digits: int = 6) -> dict:
        r = lambda x: round(float(x), digits)  # noqa: E731
        return {"pred": self.pred, "proba": [r(p) for p in self.proba],
                "score": None if math.isnan(self.score) else r(self.score),    # KernelSHAP has no local R^2
                "seconds": r(self.seconds), "texts_evaluated": self.texts_evaluated,
                "texts_recalled": self.texts_recalled, "seed": self.seed,
                "weights": {str(k): [r(w) for w in v] for k, v in self.weights.items()},
                "intercept": {str(k): r(v) for k, v in self.intercept.items()}}


def explain(predictor, text: str, labels: Sequence[int], samples: int = 1000, seed: int = 0,
            kernel_width: float = KERNEL_WIDTH) -> Explanation:
    """LIME for ``text`` and each of ``labels``, with every word's weight (no feature selection)."""
    words = indexed(text).inverse_vocab
    if not words:
        raise ValueError(f"LIME: the text has no words to remove: {text!r}")
    if samples < 2:
        raise ValueError(f"LIME needs at least 2 samples, got {samples}")
    labels = sorted({int(x) for x in labels})
    explainer = LimeTextExplainer(kernel_width=kernel_width, bow=True, split_expression=SPLIT,
                                  feature_selection="none", random_state=seed)
    evaluated: list = []
    recalled0 = getattr(predictor, "recalled", 0)
    t0 = time.perf_counter()
    exp = explainer.explain_instance(text, classifier_fn(predictor, evaluated), labels=labels,
                                     num_features=len(words), num_samples=samples)
    seconds = time.perf_counter() - t0
    weights = {}
    for label in labels:
        w = np.zeros(len(words))
        for j, v in exp.local_exp[label]:
            w[j] = v
        weights[label] = w
    return Explanation(words=list(words), weights=weights,
                       intercept={k: float(exp.intercept[k]) for k in labels},
                       proba=np.asarray(exp.predict_proba, dtype=float), score=float(exp.score),
                       seconds=seconds, texts_evaluated=int(sum(evaluated)), seed=seed, samples=samples,
                       texts_recalled=getattr(predictor, "recalled", 0) - recalled0)


def kernel_shap(predictor, text: str, labels: Sequence[int], samples: int = 500, seed: int = 0) -> Explanation:
    """KernelSHAP for ``text`` and each of ``labels`` over LIME's features (the text's distinct words): a
    coalition keeps the words it names and removes the others as LIME does (``IndexedString.inverse_removing``),
    the background is the text with every word removed, and every word gets its Shapley value (no L1
    feature selection). ``samples`` coalitions at most (all of them where there are fewer: exact); the draws
    come from NumPy's global generator, seeded here and restored afterwards. Returned as an ``Explanation``
    (``intercept``: the background's value, ``score``: NaN, KernelSHAP fits no local R^2 to report)."""
    s = indexed(text)
    d = s.num_words()
    if not d:
        raise ValueError(f"KernelSHAP: the text has no words to remove: {text!r}")
    labels = sorted({int(x) for x in labels})
    evaluated: list = []
    fn = classifier_fn(predictor, evaluated)

    def f(z: np.ndarray) -> np.ndarray:
        texts = [s.inverse_removing(np.flatnonzero(row < 0.5)) for row in np.atleast_2d(z)]
        return fn(texts)[:, labels]

    state = np.random.get_state()
    np.random.seed(seed)
    recalled0 = getattr(predictor, "recalled", 0)
    t0 = time.perf_counter()
    try:
        explainer = shap.KernelExplainer(f, np.zeros((1, d)), link="identity")
        values = explainer.shap_values(np.ones((1, d)), nsamples=samples, l1_reg=False, silent=True)
    finally:
        np.random.set_state(state)
    seconds = time.perf_counter() - t0
    values = np.asarray(values, dtype=float)        # (1, d, labels) or (labels, 1, d) by shap's version
    values = values.reshape(1, d, len(labels)) if values.shape[-1] == len(labels) and values.ndim == 3 \
        else np.moveaxis(values.reshape(len(labels), 1, d), 0, -1)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=float))
    recalled = getattr(predictor, "recalled", 0) - recalled0
    proba = fn([text])[0]
    return Explanation(words=[str(w) for w in s.inverse_vocab],
                       weights={k: values[0, :, j] for j, k in enumerate(labels)},
                       intercept={k: float(base[j]) for j, k in enumerate(labels)}, proba=np.asarray(proba, float),
                       score=float("nan"), seconds=seconds, texts_evaluated=int(sum(evaluated)), seed=seed,
                       samples=samples, texts_recalled=recalled)


# --------------------------------------------------------------------------- agreement
def top_k(weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest |weights| (ties: LIME's word order)."""
    return np.argsort(-np.abs(np.asarray(weights)), kind="stable")[:k]


def agreement(a: np.ndarray, b: np.ndarray, ks: Sequence[int] = (5, 10)) -> dict:
    """How alike two explanations of the same text and label are.

    ``top{k}_overlap``: share of the k most important words (by |weight|) found in both;
    ``top{k}_sign``: among those shared words, share with the same sign; ``spearman`` and
    ``kendall``: rank correlation of all word weights. A metric is NaN where it says nothing:
    top-k when the text has no more than k words (the overlap would be 1 by construction),
    sign when nothing is shared, correlations with fewer than 3 words or constant weights."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"explanations over different words: {a.shape} vs {b.shape}")
    d = len(a)
    out = {}
    for k in ks:
        overlap, sign = MT.top_k(k).NAME, MT.top_k(k, "sign").NAME
        if d <= k:
            out[overlap] = out[sign] = float("nan")
            continue
        shared = sorted(set(top_k(a, k).tolist()) & set(top_k(b, k).tolist()))
        out[overlap] = len(shared) / k
        out[sign] = float(np.mean(np.sign(a[shared]) == np.sign(b[shared]))) if shared else float("nan")
    if d >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
        out["spearman"] = float(spearmanr(a, b).statistic)
        out["kendall"] = float(kendalltau(a, b).statistic)
    else:
        out["spearman"] = out["kendall"] = float("nan")
    return out


# --------------------------------------------------------------------------- faithfulness
def removal_sizes(n_words: int, fractions: Sequence[float]) -> list:
    """Words removed (or kept) per fraction: ceil(fraction x words), at least 1, at most all."""
    return [min(n_words, max(1, math.ceil(f * n_words))) for f in fractions]


def faithfulness(predictor, text: str, weights: np.ndarray, label: int, fractions: Sequence[float],
                 seed: int = 0) -> dict:
    """ERASER comprehensiveness and sufficiency of one explanation, with ``predictor``.

    Words are ranked by their weight toward ``label`` (most supportive first). For each
    fraction f the top ceil(f x words) are removed (comprehensiveness: p(label | text) -
    p(label | text without them); higher is more faithful) or kept alone (sufficiency:
    p(label | text) - p(label | only them); lower is more faithful). AOPC: the mean over
    fractions. The same for a random ranking (seeded) is the chance level."""
    s = indexed(text)
    d = s.num_words()
    if len(weights) != d:
        raise ValueError(f"{len(weights)} weights for a text of {d} words")
    ks = removal_sizes(d, fractions)
    orders = {"": np.argsort(-np.asarray(weights), kind="stable"),
              "random_": np.random.default_rng(seed).permutation(d)}
    texts = [text]
    for order in orders.values():
        for k in ks:
            texts += [s.inverse_removing(order[:k]), s.inverse_removing(order[k:])]
    p = predictor.predict_proba(texts)[:, label]
    p0, rest = p[0], p[1:].reshape(len(orders), len(ks), 2)
    out = {"p_full": float(p0)}
    for i, prefix in enumerate(orders):
        comp, suff = p0 - rest[i, :, 0], p0 - rest[i, :, 1]
        out[f"{prefix}comprehensiveness"] = float(comp.mean())
        out[f"{prefix}sufficiency"] = float(suff.mean())
        out[f"{prefix}per_fraction"] = {str(f): [float(c), float(x)] for f, c, x in zip(fractions, comp, suff)}
    return out


def aopc_limits(predictor, text: str, label: int, fractions: Sequence[float], beam: int = 0) -> dict:
    """The lowest and highest AOPC a ranking of the words reaches with ``predictor``: the limits that
    normalized AOPC divides by (NAOPC, Edin et al., ACL 2025: raw AOPC depends on the model, so it cannot be
    compared across models; (AOPC - lower) / (upper - lower) can), for comprehensiveness (the ranking's first
    words removed) and sufficiency (kept alone), scored on the removal sizes of ``fractions``.

    ``beam`` >= 1: beam search over rankings, as their NAOPC_beam (1: greedy), one model call per step.
    ``beam`` 0: the rankings a single step finds: every word removed (kept) alone once, the words ranked by
    the drop each causes, both ways; about 2 x words + 4 x fractions texts where greedy asks about
    words^2 / 2 per limit (the default: on the default's texts greedy costs more than the LIME explanation).
    Either finds limits some ranking reaches, so the true limits lie at or beyond them: ``naopc`` widens them
    by the explanation's and the random ranking's own AOPC."""
    s = indexed(text)
    d = s.num_words()
    sizes = removal_sizes(d, fractions)
    p0 = float(predictor.predict_proba([text])[0, label])

    def perturbed(order, keep: bool) -> str:
        return s.inverse_removing([j for j in range(d) if j not in set(order)] if keep else list(order))

    out = {}
    for name, keep in (("comprehensiveness", False), ("sufficiency", True)):
        if beam < 1:
            one = p0 - predictor.predict_proba([perturbed([j], keep) for j in range(d)])[:, label]
            ranks = [np.argsort(-one, kind="stable"), np.argsort(one, kind="stable")]
            texts = [perturbed(r[:k], keep) for r in ranks for k in sizes]
            aopc = (p0 - predictor.predict_proba(texts)[:, label]).reshape(2, len(sizes)).mean(axis=1)
            out[name] = [float(aopc.min()), float(aopc.max())]
            continue
        lim = []
        for maximize in (False, True):
            states = [((), ())]                    # (ranking so far, drop after each step)
            for t in range(1, max(sizes) + 1):
                cands = [(o + (j,), dr) for o, dr in states for j in range(d) if j not in o]
                p = predictor.predict_proba([perturbed(o, keep) for o, _ in cands])[:, label]
                scored = []
                for (o, dr), pi in zip(cands, p):
                    dr = dr + (p0 - float(pi),)
                    # the sizes the AOPC averages over, reached so far, and this step's drop as a look-ahead
                    score = sum(dr[k - 1] for k in sizes if k <= t) + (0.0 if t in sizes else dr[-1])
                    scored.append((score, o, dr))
                scored.sort(key=lambda x: x[0], reverse=maximize)
                states = [(o, dr) for _, o, dr in scored[:beam]]
            vals = [float(np.mean([dr[k - 1] for k in sizes])) for _, dr in states]
            lim.append(max(vals) if maximize else min(vals))
        out[name] = lim
    return out


def naopc(value: float, limits: Sequence[float], others: Sequence[float] = ()) -> float:
    """Normalized AOPC: ``(value - lower) / (upper - lower)`` with the limits widened by every AOPC known to
    be reached (``value`` and ``others``), so it lies in [0, 1]; NaN where no ranking changes the AOPC."""
    lo, hi = min([limits[0], value, *others]), max([limits[1], value, *others])
    return float((value - lo) / (hi - lo)) if hi - lo > 1e-9 else float("nan")


# --------------------------------------------------------------------------- examples
def select_examples(texts: Sequence[str], labels: Sequence[int], preds: dict, confidence: np.ndarray,
                    reference: str, disagreement_variants: Sequence[str], n_examples: int,
                    n_disagreements: int, seed: int, min_words: int = 3) -> list:
    """The examples to explain, by a stated rule.

    1. a simple random sample of ``n_examples`` test texts (drawn with ``seed``): the main result, which
       stands for the test set;
    2. then up to ``n_disagreements`` more texts where a variant in ``disagreement_variants`` predicts a
       different class than ``reference`` (drawn at random among those the sample missed), reported
       separately. Every example says whether such a variant disagrees on it (``disagreement``), whichever
       way it was chosen.
    Texts with fewer than ``min_words`` distinct words are left out (no ranking to compare)."""
    ref = np.asarray(preds[reference])
    words = np.array([indexed(t).num_words() for t in texts])
    ok = words >= min_words
    differs: dict = {}
    for v in disagreement_variants:
        if v not in preds:
            raise KeyError(f"explain.disagreements_of names {v!r}, which the evaluation has not run; "
                           f"known: {', '.join(preds)}")
        for i in np.flatnonzero((np.asarray(preds[v]) != ref) & ok):
            differs.setdefault(int(i), []).append(v)
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(ok)
    chosen = {int(i): "random" for i in rng.choice(pool, size=min(n_examples, len(pool)), replace=False)}
    rest = [i for i in sorted(differs) if i not in chosen]
    for i in rng.choice(np.asarray(rest, int), size=min(n_disagreements, len(rest)), replace=False):
        chosen[int(i)] = "disagreement"
    conf = np.asarray(confidence, float)
    return [{"index": i, "text": texts[i], "label": int(labels[i]), "words": int(words[i]),
             "reference_pred": int(ref[i]), "reference_confidence": float(conf[i]), "reason": chosen[i],
             "disagreement": i in differs, "with": differs.get(i, [])} for i in sorted(chosen)]


# --------------------------------------------------------------------------- aggregation
def nanmean(values) -> float:
    v = np.asarray(values, float)
    return float(v[~np.isnan(v)].mean()) if np.any(~np.isnan(v)) else float("nan")


def noise_seeds(seed: int, n: int) -> list:
    """The LIME seeds of the noise floor: ``seed + 1000 * j`` for j = 1 .. n (apart from the seed every
    variant is explained with, and from each other)."""
    return [seed + 1000 * (j + 1) for j in range(n)]


def mean_ci(values, confidence: float = 0.95, reps: int = 1000, seed: int = 0) -> dict:
    """Mean over examples with a bootstrap interval; NaNs (metric undefined) are left out."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "ci": [float("nan"), float("nan")], "n": 0}
    idx = np.random.default_rng(seed).integers(0, len(v), size=(reps, len(v)))
    means = v[idx].mean(axis=1)
    a = (1 - confidence) / 2
    return {"mean": float(v.mean()), "ci": [float(np.quantile(means, a)), float(np.quantile(means, 1 - a))],
            "n": int(len(v))}


def figure_examples(examples: list, compare_rows: list, n: int) -> list:
    """Which examples the side-by-side figure shows: the most confident example of the random sample for
    each class, then the disagreement example whose explanations differ most (lowest Spearman
    between the reference and the compared variant); ``n`` at most."""
    picks: list = []
    strat = [i for i, e in enumerate(examples) if e["reason"] == "random" and not e.get("disagreement")]
    for c in sorted({examples[i]["reference_pred"] for i in strat}):
        cand = [i for i in strat if examples[i]["reference_pred"] == c]
        picks.append(max(cand, key=lambda i: examples[i]["reference_confidence"]))
    dis = [i for i, e in enumerate(examples) if e.get("disagreement")]
    if compare_rows:
        dis = [i for i in dis if not np.isnan(compare_rows[i]["spearman"])]
        if dis:
            picks.append(min(dis, key=lambda i: compare_rows[i]["spearman"]))
    return picks[-n:] if len(picks) > n else picks


# --------------------------------------------------------------------------- browsing
def segments(text: str) -> list:
    """The text as LIME splits it: (piece, word index or None) in order."""
    s = indexed(text)
    where = {pos: j for j, ps in enumerate(s.positions) for pos in ps}
    return [(piece, where.get(i)) for i, piece in enumerate(s.as_list)]


def _highlight(text: str, weights: Sequence[float]) -> str:
    top = max((abs(w) for w in weights), default=0) or 1.0
    out = []
    for piece, j in segments(text):
        if j is None:
            out.append(html.escape(piece))
            continue
        w = weights[j] / top
        rgb = "46,125,50" if w > 0 else "198,40,40"
        out.append(f'<span title="{weights[j]:+.4f}" style="background:rgba({rgb},{abs(w):.2f})">'
                   f"{html.escape(piece)}</span>")
    return "".join(out)


def write_html(result: Explain, out_dir: Path, class_names: Sequence[str]) -> Path:
    """Browsable pages: an index of the explained examples and one page per example with
    every variant's explanation (text highlighted: green supports the reference's predicted
    class, red opposes it; hover for the weight). Written to a git-ignored folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = as_result("explain", result)
    ref, variants = result.reference, result.variants
    style = ("<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}td,th{padding:2px 8px;"
             "text-align:left;vertical-align:top}tr:nth-child(even){background:#f4f4f4}.t{line-height:1.8}</style>")
    rows = []
    for i, e in enumerate(result.examples):
        label = str(e["reference_pred"])
        page = [f"<html><head><meta charset='utf-8'><title>example {e['index']}</title>{style}</head><body>",
                f"<p><a href='index.html'>all examples</a></p><h2>Test example {e['index']}</h2>",
                f"<p>true class: <b>{html.escape(class_names[e['label']])}</b>; {html.escape(ref)} predicts "
                f"<b>{html.escape(class_names[e['reference_pred']])}</b> ({e['reference_confidence']:.3f}); "
                f"chosen as: {e['reason']}</p>",
                f"<p>Word weights toward <b>{html.escape(class_names[int(label)])}</b>, "
                f"{result.samples} samples, the same perturbations for every variant.</p><table>",
                "<tr><th>variant</th><th>prediction</th><th>Spearman vs reference</th><th>text</th></tr>"]
        for n in variants:
            x = result.explanations[n][i]
            rho = "" if n == ref else f"{result.agreement_per_example[n][i]['spearman']:.2f}"
            page.append(f"<tr><td>{html.escape(n)}</td><td>{html.escape(class_names[x['pred']])} "
                        f"({max(x['proba']):.3f})</td><td>{rho}</td>"
                        f"<td class='t'>{_highlight(e['text'], x['weights'][label])}</td></tr>")
        for s, xs in (result.noise_explanations or {}).items():
            page.append(f"<tr><td>{html.escape(ref)}, seed {s}</td><td></td><td>"
                        f"{result.agreement_per_example['noise-floor'][i]['spearman']:.2f} (mean)</td>"
                        f"<td class='t'>{_highlight(e['text'], xs[i]['weights'][label])}</td></tr>")
        page.append("</table></body></html>")
        (out_dir / f"example_{e['index']}.html").write_text("\n".join(page), encoding="utf-8")
        rho = {n: result.agreement_per_example[n][i]["spearman"] for n in variants[1:]}
        rows.append(f"<tr><td><a href='example_{e['index']}.html'>{e['index']}</a></td><td>{e['reason']}</td>"
                    f"<td>{html.escape(class_names[e['label']])}</td><td>{html.escape(e['text'][:120])}</td>"
                    + "".join(f"<td>{r:.2f}</td>" for r in rho.values()) + "</tr>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in variants[1:])
    index = (f"<html><head><meta charset='utf-8'><title>LIME explanations</title>{style}</head><body>"
             f"<h1>LIME explanations ({len(result.examples)} test examples)</h1><p>Spearman correlation of "
             f"each variant's word weights with {html.escape(ref)}'s.</p><table><tr><th>example</th>"
             f"<th>chosen as</th><th>true class</th><th>text</th>{head}</tr>" + "\n".join(rows)
             + "</table></body></html>")
    path = out_dir / "index.html"
    path.write_text(index, encoding="utf-8")
    return path


def agreement_frame(result: Explain) -> pd.DataFrame:
    """Long table of per-example agreement: variant, example, metric, value (NaNs dropped)."""
    rows = [{"variant": n, "example": i, "metric": m, "value": v}
            for n, per in result.agreement_per_example.items() for i, r in enumerate(per)
            for m, v in r.items() if v == v]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the explanation step's analysis
@dataclass
class ExplainRaw:
    """What the explanation step measured, before any analysis (``summarise`` makes explain.json from it).

    ``exps``: variant -> LIME explanation per example (seed A; a cost-only variant on ``cost_at`` only);
    ``noise``: other seed -> the reference's explanation per example; ``exps_batched``: a batch-dependent variant
    explained in batches; ``faith``: variant -> faithfulness record per example; ``conv``: sample budget ->
    {"a", "b"}: [(example, explanation)]; ``shap_exps`` / ``shap_noise``: KernelSHAP likewise; ``own`` /
    ``own_batched``: each variant's prediction of every example; ``seconds``: lime (the explanations' own clock),
    shap, naopc, convergence."""
    examples: list
    variants: list                   # the explained variants, the reference first
    cost_only: list
    cost_at: list
    dependent: list                  # batch-dependent variants (explained alone, each perturbed text)
    noise_seeds: list
    own: dict
    own_batched: dict
    exps: dict
    exps_batched: dict
    noise: dict
    faith: dict
    conv: dict
    shap_exps: dict
    shap_noise: dict
    seconds: dict
    selection_before: dict           # how the examples were picked from batched predictions before (batching)
    n_disagreement_available: int
    baseline: str                    # throughput is reported against this variant where it was explained
    left_out: list = field(default_factory=list)


class _Stats:
    """Means with bootstrap intervals of agreement rows, over the examples a mask selects."""

    def __init__(self, raw: ExplainRaw, ex, confidence: float, bootstrap: int, seed: int):
        self.raw, self.ex, self.confidence, self.bootstrap, self.seed = raw, ex, confidence, bootstrap, seed
        self.ks = tuple(ex.top_k)
        self.metrics = MT.agreement_metrics(self.ks)
        self.rl = [int(x) for x in raw.own[ex.reference]]     # the label every explanation is compared on
        self.n = range(len(raw.examples))
        self.is_random = np.array([e["reason"] == "random" for e in raw.examples])
        self.is_dis = np.array([bool(e["disagreement"]) for e in raw.examples])
        self.everywhere = np.ones(len(raw.examples), bool)

    def w(self, xs: list, i: int) -> np.ndarray:
        return xs[i].weights[self.rl[i]]

    def pair(self, a: list, b: list) -> list:
        """Per example: the agreement of explanation lists ``a`` and ``b`` (the same perturbations or not)."""
        return [agreement(self.w(a, i), self.w(b, i), self.ks) for i in self.n]

    def across(self, xs: list, others: dict) -> list:
        """Per example: the mean agreement of ``xs`` (seed A) with the reference's under each other seed."""
        return [{m: nanmean([r[m] for r in rows]) for m in self.metrics}
                for rows in ([agreement(self.w(others[s], i), self.w(xs, i), self.ks) for s in others]
                             for i in self.n)]

    def summary(self, rows: list, mask: np.ndarray, confidence: Optional[float] = None) -> dict:
        return {m: mean_ci([r[m] for r, k in zip(rows, mask) if k], confidence or self.confidence, self.bootstrap,
                           self.seed) for m in self.metrics}

    def versus_floor(self, rows: list, floor: list) -> dict:
        """The paired difference (this variant's agreement minus the floor's, per example) on the random sample
        and on the disagreement texts, with the equivalence verdict (TOST: the 90% interval inside +-margin)."""
        diff = [{m: r[m] - f[m] for m in self.metrics} for r, f in zip(rows, floor)]
        margin = self.ex.equivalence_margin
        ci90 = self.summary(diff, self.is_random, 0.90)
        return {"random": self.summary(diff, self.is_random), "disagreement": self.summary(diff, self.is_dis),
                "equivalence": {m: {"ci90": ci90[m]["ci"], "margin": margin,
                                    "equivalent": bool(-margin < ci90[m]["ci"][0] and ci90[m]["ci"][1] < margin)}
                                for m in self.metrics}}


def summarise(raw: ExplainRaw, ex, confidence: float, bootstrap: int, seed: int) -> dict:
    """explain.json's fields from the explanations (``ex``: the profile's explain settings; intervals at
    ``confidence`` over ``bootstrap`` resamples seeded with ``seed``): agreement with FP32 in the symmetric design
    beside the noise floor, pairs, the floor against LIME's budget, what batching did, KernelSHAP, faithfulness,
    cost."""
    st = _Stats(raw, ex, confidence, bootstrap, seed)
    ref, variants = ex.reference, raw.variants
    floor = st.across(raw.exps[ref], raw.noise)
    per_example = {n: st.across(raw.exps[n], raw.noise) for n in variants[1:]}
    per_example["noise-floor"] = floor
    same_seed = {n: st.pair(raw.exps[ref], raw.exps[n]) for n in variants[1:]}
    agree = _agreements(st, per_example, same_seed, floor)
    pairs = {f"{b} vs {a}": _pair(st, a, b) for a, b in ex.pairs}
    selection = {"rule": (f"a simple random sample of {ex.examples} test texts (the main result), then up to "
                          f"{ex.disagreements} texts where {', '.join(ex.disagreements_of) or 'no variant'} "
                          f"predicts differently from {ref} (reported apart); texts with fewer than "
                          f"{ex.min_words} distinct words left out"),
                 "disagreements_of": list(ex.disagreements_of),
                 "n_random": int(st.is_random.sum()), "n_disagreement": int(st.is_dis.sum()),
                 "n_disagreement_in_random": int((st.is_dis & st.is_random).sum()),
                 "n_disagreement_available": raw.n_disagreement_available}
    cost, base = _cost(raw, ref)
    return {
        "reference": ref, "variants": variants, "samples": ex.samples, "batch_size": ex.batch_size,
        "kernel_width": KERNEL_WIDTH, "split_expression": SPLIT, "bow": True, "feature_selection": "none",
        "seed": seed, "noise_seeds": raw.noise_seeds, "fractions": list(ex.fractions), "top_k": list(st.ks),
        "design": ("symmetric: every variant (seed A) against FP32 under the other seeds, beside FP32 (A) against "
                   "the same FP32 explanations (the noise floor); paired per example"),
        "selection": selection, "n_examples": len(raw.examples), "examples": raw.examples,
        "cost_variants": raw.cost_only, "cost_examples": sorted(raw.cost_at) if raw.cost_only else [],
        "predictions": {n: raw.own[n].tolist() for n in variants},
        "explanations": {n: [x.to_dict() for x in raw.exps[n]] for n in variants},
        "noise_explanations": {str(s): [x.to_dict() for x in raw.noise[s]] for s in raw.noise_seeds},
        "agreement_per_example": per_example, "agreement_same_seed_per_example": same_seed, "agreement": agree,
        "equivalence_margin": ex.equivalence_margin,
        "faithfulness_per_example": raw.faith, "faithfulness": _faithfulness(st),
        "naopc": ({"beam": ex.naopc_beam, "seconds": raw.seconds["naopc"],
                   "method": "Edin et al. (2025): (AOPC - lower) / (upper - lower) per example, the limits over "
                             "rankings on the removal fractions (" + ("the words ranked by their effect alone, both "
                             "ways" if ex.naopc_beam < 1 else f"beam search, width {ex.naopc_beam}") + "), widened "
                             "by the AOPC of the explanation's and the random ranking"} if ex.naopc else None),
        "convergence": _convergence(st), "pairs": pairs, "batching": _batching(st, agree),
        "cost": cost, "throughput_baseline": base, "total_seconds": raw.seconds["lime"], "shap": _shap(st),
        "recall": {"rule": "a variant's runs of one example after its first (other LIME seeds, faithfulness, "
                           "KernelSHAP) recall its predictions of texts already predicted for that example; the "
                           "first run, whose seconds are the cost, predicts every text",
                   "share_recalled": recalled_share(raw.exps, raw.noise, raw.shap_exps, raw.shap_noise, ref)},
        "figure_examples": figure_examples(raw.examples, per_example.get(ex.compare, []), ex.figure_examples),
        "compare": ex.compare, **({"left_out_without_qat": raw.left_out} if raw.left_out else {}),
    }


def _agreements(st: _Stats, per_example: dict, same_seed: dict, floor: list) -> dict:
    raw, ref = st.raw, st.ex.reference
    same = {n: raw.own[n] == raw.own[ref] for n in raw.variants}
    agree = {}
    for n, rows in per_example.items():
        agree[n] = {"random": st.summary(rows, st.is_random), "disagreement": st.summary(rows, st.is_dis),
                    "all": st.summary(rows, st.everywhere)}
        if n != "noise-floor":
            agree[n]["same_prediction"] = st.summary(rows, same[n] & st.is_random)
            agree[n]["different_prediction"] = st.summary(rows, ~same[n])
            agree[n]["versus_floor"] = st.versus_floor(rows, floor)
            agree[n]["same_seed"] = st.summary(same_seed[n], st.is_random)
    return agree


def _pair(st: _Stats, a: str, b: str) -> dict:
    """[a, b]: b's explanation against a's (e.g. QAT's weights unquantized vs its INT8 file), same perturbations."""
    own, rows = st.raw.own, st.pair(st.raw.exps[a], st.raw.exps[b])
    return {"reference": a, "variant": b, "per_example": rows, "same_perturbations": True,
            "random": st.summary(rows, st.is_random), "all": st.summary(rows, st.everywhere),
            "same_prediction": st.summary(rows, (own[a] == own[b]) & st.is_random)}


def _convergence(st: _Stats) -> Optional[dict]:
    """LIME's floor against its sample budget: FP32 (seed A) vs FP32 (seed B1) with k samples."""
    raw, ex = st.raw, st.ex
    if not raw.conv or not any(c["a"] for c in raw.conv.values()):
        return None
    b1 = raw.noise_seeds[0]
    at = {i: j for j, (i, _) in enumerate(raw.conv[next(iter(raw.conv))]["a"])}
    mean = lambda rows: {m: nanmean([r[m] for r in rows]) for m in st.metrics}  # noqa: E731
    points = {str(k): mean([agreement(x.weights[st.rl[i]], c["b"][j][1].weights[st.rl[i]], st.ks)
                            for j, (i, x) in enumerate(c["a"])]) for k, c in raw.conv.items()}
    ref_w = [st.w(raw.exps[ex.reference], i) for i in st.n]
    points[str(ex.samples)] = mean([agreement(ref_w[i], st.w(raw.noise[b1], i), st.ks) for i in at])
    return {"examples": sorted(at), "seeds": [st.seed, b1], "run_samples": ex.samples,
            "floor": dict(sorted(points.items(), key=lambda kv: int(kv[0]))), "seconds": raw.seconds["convergence"]}


def _batching(st: _Stats, agree: dict) -> dict:
    """What batching did to the batch-dependent variants' explanations (how they were computed before)."""
    raw = st.raw
    out = {"batch_dependent": raw.dependent, "batch_size": st.ex.batch_size,
           "deployed": "perturbed texts predicted alone (batch 1) for the batch-dependent variants",
           "selection_before": raw.selection_before, "variants": {}}
    for n, xs in raw.exps_batched.items():
        vs_alone = st.pair(raw.exps[n], xs)
        out["variants"][n] = {
            "prediction_changed": int(np.sum(raw.own[n] != raw.own_batched[n])),
            "prediction_batched": raw.own_batched[n].tolist(),
            "agreement_with_reference_batched": st.summary(st.across(xs, raw.noise), st.is_random),
            "agreement_with_reference_alone": agree[n]["random"] if n in agree else None,
            "batched_vs_alone": st.summary(vs_alone, st.is_random),
            "per_example_batched_vs_alone": vs_alone}
    return out


def _shap(st: _Stats) -> Optional[dict]:
    """KernelSHAP in the same symmetric design, with its own floor, and LIME against SHAP on each model."""
    raw, ex = st.raw, st.ex
    names = list(raw.shap_exps)
    if not names:
        return None
    per = {n: st.across(raw.shap_exps[n], raw.shap_noise) for n in names[1:]}
    floor = st.across(raw.shap_exps[ex.reference], raw.shap_noise)
    lime_vs = {n: st.pair(raw.exps[n], raw.shap_exps[n]) for n in names}
    return {
        "method": "shap.KernelExplainer over LIME's words (a coalition keeps its words, the background removes "
                  "all), identity link, no L1 feature selection",
        "samples": ex.shap_samples, "variants": names, "seed": st.seed, "noise_seeds": raw.noise_seeds,
        "agreement": {n: st.summary(rows, st.is_random) for n, rows in per.items()},
        "agreement_disagreement": {n: st.summary(rows, st.is_dis) for n, rows in per.items()},
        "noise_floor": st.summary(floor, st.is_random),
        "versus_floor": {n: st.versus_floor(rows, floor) for n, rows in per.items()},
        "lime_vs_shap": {n: st.summary(rows, st.is_random) for n, rows in lime_vs.items()},
        "per_example": {**per, "noise-floor": floor},
        "cost": {n: {"median_s": float(np.median([x.seconds for x in xs])),
                     "mean_texts_evaluated": float(np.mean([x.texts_evaluated for x in xs]))}
                 for n, xs in raw.shap_exps.items()},
        "total_seconds": raw.seconds["shap"],
        "explanations": {n: [x.to_dict() for x in xs] for n, xs in raw.shap_exps.items()},
        "noise_explanations": {str(s): [x.to_dict() for x in xs] for s, xs in raw.shap_noise.items()}}


def _faithfulness(st: _Stats) -> dict:
    """Per variant, the mean faithfulness (raw and normalized AOPC, random ranking) and LIME's local R^2 over the
    random sample."""
    raw, mask = st.raw, st.is_random
    keys = ["comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency"]
    if st.ex.naopc:
        keys += ["normalized_comprehensiveness", "normalized_sufficiency", "random_normalized_comprehensiveness",
                 "random_normalized_sufficiency"]
    ci = lambda xs: mean_ci(xs, st.confidence, st.bootstrap, st.seed)  # noqa: E731
    out = {}
    for n in raw.variants:
        rows = [f for f, k in zip(raw.faith[n], mask) if k]
        out[n] = {k: ci([f[k] for f in rows]) for k in keys}
        out[n]["local_r2"] = ci([x.score for x, k in zip(raw.exps[n], mask) if k])
    return out


def _cost(raw: ExplainRaw, ref: str) -> tuple:
    """Per variant, explanations per second and their time; throughput against PyTorch FP32 (the baseline a user
    would run), on the examples both explained. Returns (cost, the baseline)."""
    cost = {}
    for n in raw.variants + raw.cost_only:
        secs = np.array([x.seconds for x in raw.exps[n]])
        cost[n] = {"explanations_per_s": float(len(secs) / secs.sum()), "median_s": float(np.median(secs)),
                   "p90_s": float(np.percentile(secs, 90)), "total_s": float(secs.sum()),
                   "mean_texts_evaluated": float(np.mean([x.texts_evaluated for x in raw.exps[n]])),
                   "examples": len(secs)}
    base = raw.baseline if raw.baseline in cost else ref
    where = {n: sorted(raw.cost_at) if n in raw.cost_only else list(range(len(raw.examples))) for n in raw.exps}

    def rate(n: str, on: list) -> float:
        xs = [raw.exps[n][where[n].index(i)] for i in on]
        return len(xs) / sum(x.seconds for x in xs)

    for n in raw.exps:
        on = sorted(raw.cost_at) if (n in raw.cost_only or base in raw.cost_only) else where[n]
        cost[n]["throughput_vs_baseline"] = rate(n, on) / rate(base, on)
    return cost, base


def recalled_share(exps: dict, noise: dict, shap_exps: dict, shap_noise: dict, reference: str) -> dict:
    """Per variant, the share of the distinct texts its later runs asked for that its memory answered."""
    later = {n: list(shap_exps.get(n, [])) for n in exps}
    later[reference] += [x for xs in list(noise.values()) + list(shap_noise.values()) for x in xs]
    asked = {n: sum(x.texts_evaluated for x in xs) for n, xs in later.items()}
    return {n: sum(x.texts_recalled for x in later[n]) / k for n, k in asked.items() if k}
