"""A gradient explainer beside LIME: Integrated Gradients (Captum) over LIME's words, for the PyTorch models
that compute what the deployed files compute.

LIME and KernelSHAP query the ONNX files as black boxes; gradient attributions need a differentiable model.
Three PyTorch models give them, each explained toward FP32's predicted class on the texts LIME explained
(explain.json), with the same words (LIME's features: a word's attribution is the sum over its tokens and
its occurrences):

* ``pytorch-fp32``: the FP32 checkpoint;
* ``pytorch-qat-fp32``: QAT's weights without quantization (what QAT's training alone changed);
* ``pytorch-qat-integer``: QAT's model with every quantized layer computed as ONNX Runtime's integer kernel
  computes ``int8-qat`` (``qat.set_integer_eval``; its agreement with the file is in evaluate.json), its
  rounding passed straight through for the gradient (``qat.round_ste``), as in QAT's own training.

Integrated Gradients (Sundararajan et al., 2017) on the word-embedding layer's output, from a baseline whose
every non-special token is the padding token to the text, of the predicted class's probability (what LIME's
and SHAP's weights explain), ``steps`` points of the Gauss-Legendre rule; the completeness gap (attributions'
sum against f(x) - f(baseline)) is recorded per text. Dynamic INT8 has no differentiable PyTorch twin here
(PyTorch's dynamic quantized Linear has no gradient), so it is not explained by gradients.

``run_gradients(cfg)`` writes ``results/<profile>/gradients.json``; ``python -m utils.gradients <profile>``.
"""
from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from tqdm.auto import tqdm

from . import modeling as M
from . import qat as QA
from . import variants as V
from .config import load_config
from .explain import agreement, indexed, mean_ci
from .modeling import forward_inputs
from .provenance import sha256
from .results import load_result, write_result

MODELS = FP32, QAT_FP32, QAT_INTEGER = tuple(V.GRADIENT_TWINS)      # the registry's PyTorch twins of three files
# (explained, against): the comparisons, with what each isolates
PAIRS = ((QAT_INTEGER, FP32, "QAT INT8 against FP32 (training and quantization)"),
         (QAT_INTEGER, QAT_FP32, "quantization alone (the same weights)"),
         (QAT_FP32, FP32, "QAT's training alone"))
# the LIME explanation each model's gradients are set beside (the file that computes what it computes)
LIME_OF = dict(V.GRADIENT_TWINS)


def word_owner(text: str) -> np.ndarray:
    """For each character of ``text``: the index of LIME's word (feature) it belongs to, else -1."""
    s = indexed(text)
    owner = np.full(len(text), -1, dtype=np.int64)
    for w, places in enumerate(s.positions):
        for k in np.atleast_1d(places):
            a = int(s.string_start[k])
            owner[a:a + len(s.as_list[k])] = w
    return owner


def integrated_gradients(model, tokenizer, text: str, label: int, max_length: int, steps: int = 50) -> dict:
    """Integrated Gradients of ``model``'s probability of ``label`` for ``text``, summed per LIME word:
    ``weights`` (one per word, LIME's order), ``tokens`` (per token), what fell on tokens of no word
    (``outside_words``: punctuation) and on the special tokens (the baseline keeps them, so little),
    ``completeness_gap``, ``proba``."""
    s = indexed(text)
    if not s.num_words():
        raise ValueError(f"Integrated Gradients: the text has no words: {text!r}")
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    special = enc.pop("special_tokens_mask")[0].bool()
    accepts = forward_inputs(model)
    names = [k for k in ("attention_mask", "token_type_ids") if k in enc and k in accepts]
    ids = enc["input_ids"]
    base = ids.clone()
    base[0, ~special] = tokenizer.pad_token_id

    def f(input_ids, *extra):
        out = model(input_ids=input_ids, **{n: t.expand(input_ids.shape[0], -1) for n, t in zip(names, extra)})
        return torch.softmax(out.logits.float(), dim=-1)[:, label]

    model.eval()
    lig = LayerIntegratedGradients(f, model.get_input_embeddings())
    extra = tuple(enc[n] for n in names)
    attr, gap = lig.attribute(ids, baselines=base, additional_forward_args=extra, n_steps=steps,
                              method="gausslegendre", return_convergence_delta=True)
    tok = attr.sum(dim=-1)[0].detach().double().numpy()
    owner, weights, outside = word_owner(text), np.zeros(s.num_words()), 0.0
    for t, (a, b) in enumerate(offsets):
        if special[t] or b <= a or a >= len(owner):
            continue
        w = owner[a]
        if w >= 0:
            weights[w] += tok[t]
        else:                   # punctuation: a token, not one of LIME's words
            outside += tok[t]
    with torch.no_grad():
        p = float(f(ids, *extra)[0])
    return {"weights": weights, "tokens": tok, "outside_words": float(outside),
            "special_tokens": float(tok[special.numpy()].sum()), "completeness_gap": float(gap.abs().max()), "proba": p}


def load_models(cfg) -> dict:
    """The three PyTorch models of ``MODELS`` (name -> (model, tokenizer)), in eval mode."""
    fp32 = M.load_checkpoint(V.checkpoint_dir(cfg, "fp32"), attn="eager")
    qfp = M.load_checkpoint(V.checkpoint_dir(cfg, "qat"), attn="eager")
    qint, tok = V.load_qat_model(cfg, attn="eager")
    return {FP32: fp32, QAT_FP32: qfp, QAT_INTEGER: (QA.set_integer_eval(qint.eval()), tok)}


def summarize(per_example: Sequence[dict], confidence: float, seed: int) -> dict:
    keys = sorted({k for r in per_example for k in r})
    return {k: mean_ci([r.get(k, float("nan")) for r in per_example], confidence, seed=seed) for k in keys}


def run_gradients(cfg, steps: int = 50, limit: Optional[int] = None, progress: bool = True) -> dict:
    """Integrated Gradients of ``MODELS`` on the texts of explain.json (toward FP32's predicted class); their
    agreement (``PAIRS``) and each one's agreement with the LIME explanation of its file; writes
    results/<profile>/gradients.json."""
    t0 = time.perf_counter()
    if not cfg.qat.enabled:
        raise ValueError(f"profile {cfg.name!r} has qat.enabled: false; Integrated Gradients here compares QAT's "
                         f"models with FP32 (their integer-evaluated PyTorch twins), so there is nothing to compare")
    ex = load_result(cfg, "explain")
    examples = ex.examples[:limit]
    ref = ex.reference
    labels = [int(x["pred"]) for x in ex.explanations[ref][:len(examples)]]     # FP32's predicted class
    models = load_models(cfg)
    torch.manual_seed(cfg.seed)
    attributions = {n: [] for n in MODELS}
    for name in MODELS:
        model, tok = models[name]
        for e, label in tqdm(list(zip(examples, labels)), desc=f"integrated gradients {name}", disable=not progress):
            r = integrated_gradients(model, tok, e["text"], label, cfg.model.max_length, steps)
            attributions[name].append({"weights": [round(float(w), 8) for w in r["weights"]],
                                       "outside_words": r["outside_words"], "special_tokens": r["special_tokens"],
                                       "completeness_gap": r["completeness_gap"], "proba": round(r["proba"], 6)})
    conf = cfg.eval.confidence
    ks = tuple(cfg.explain.top_k)
    arr = lambda n, i: np.asarray(attributions[n][i]["weights"])  # noqa: E731
    pairs = {}
    for a, b, what in PAIRS:
        per = [agreement(arr(a, i), arr(b, i), ks) for i in range(len(examples))]
        pairs[f"{a} vs {b}"] = {"variant": a, "reference": b, "isolates": what, "per_example": per,
                                "all": summarize(per, conf, cfg.seed)}
    vs_lime = {}
    for name, lime_name in LIME_OF.items():
        lime = ex.explanations.get(lime_name)
        if lime is None:
            continue
        per = [agreement(arr(name, i), np.asarray(lime[i]["weights"][str(labels[i])]), ks)
               for i in range(len(examples)) if str(labels[i]) in lime[i]["weights"]]
        vs_lime[name] = {"lime_of": lime_name, "n": len(per), "all": summarize(per, conf, cfg.seed)}
    gaps = {n: {"median": float(np.median([r["completeness_gap"] for r in attributions[n]])),
                "max": float(np.max([r["completeness_gap"] for r in attributions[n]]))} for n in MODELS}
    rec = {"method": "Integrated Gradients (captum LayerIntegratedGradients) on the word-embedding output, "
                     "baseline: every non-special token the padding token; the predicted class's probability",
           "steps": steps, "integration": "gausslegendre", "reference": ref, "labels": labels,
           "n_examples": len(examples), "models": list(MODELS),
           "inputs": {n: sha256(V.get(n).path(cfg)) for n in (V.REFERENCE, V.qat_model())},
           "lime_of": LIME_OF, "attributions": attributions,
           "completeness_gap": gaps, "pairs": pairs, "vs_lime": vs_lime, "seconds": time.perf_counter() - t0}
    write_result(cfg, "gradients", rec, threads=cfg.threads)
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.gradients", description=__doc__.splitlines()[0])
    ap.add_argument("profile", nargs="?", default="default")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--limit", type=int, default=None, help="the first N explained texts (default: all)")
    a = ap.parse_args(argv)
    cfg = load_config(a.profile)
    torch.set_num_threads(cfg.threads)
    rec = run_gradients(cfg, a.steps, a.limit)
    for k, p in rec["pairs"].items():
        print(f"{k}: Spearman {p['all']['spearman']['mean']:.3f}")
    for k, p in rec["vs_lime"].items():
        print(f"{k} vs LIME of {p['lime_of']}: Spearman {p['all']['spearman']['mean']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
