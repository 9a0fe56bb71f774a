"""The data each figure plots, as DataFrames (``FRAMES``: figure name -> builder of its named frames):
what the golden tests compare without drawing, and what a notebook can show as a table."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .. import bench_runs as R
from .. import stats as S
from .. import variants as V
from ..explain import agreement_frame, indexed
from ..provenance import read_json
from .readers import Results, best_int, top_k


def data_frames(res: Results) -> dict:
    """Examples per split and class; the token-length histogram as a share of each split."""
    r = res.data
    rows = [{"split": s, "class": c, "n": n} for s, v in r.splits.items() for c, n in v["class_counts"].items()]
    hist = [{"split": s, "tokens": int(k), "n": n} for s, v in r.token_lengths.items()
            for k, n in v["histogram"].items()]
    h = pd.DataFrame(hist)
    h["share"] = h["n"] / h.groupby("split")["n"].transform("sum")
    return {"class_counts": pd.DataFrame(rows), "token_lengths": h}


def training_frames(res: Results) -> dict:
    return {"history": pd.DataFrame(res.train_fp32.history)}


def evaluation_frame(res: Results) -> pd.DataFrame:
    r = res.evaluate
    rows = []
    for name, v in r.variants.items():
        rows.append({"variant": name, "runtime": v["runtime"], "size_mb": v["size_mb"],
                     "size_ratio": v["size_ratio_to_onnx_fp32"], "accuracy": v["accuracy"],
                     "acc_lo": v["accuracy_ci"][0], "acc_hi": v["accuracy_ci"][1], "macro_f1": v["macro_f1"],
                     "f1_lo": v["macro_f1_ci"][0], "f1_hi": v["macro_f1_ci"][1],
                     "diff": v.get("accuracy_diff"), "diff_ci": v.get("accuracy_diff_ci"),
                     "agreement": v.get("agreement"), "mcnemar_p": (v.get("mcnemar") or {}).get("p_value"),
                     "latency_ms": (v.get("latency_b1") or {}).get("median_ms")})
    return pd.DataFrame(rows)


def run_speedups(res: Results, name: str, key: str = "speedup_vs_onnx_fp32") -> dict:
    """``name``'s speed-up over the benchmark runs measured alike on this host (bench_runs.jsonl; this run alone
    where there is no other): median, range and count; {} where no run measured it."""
    runs, this, _ = res.run_history()
    v = [r[key][name] for r in (R.comparable(runs, this) or [this]) if name in r.get(key, {})]
    return {"median": float(np.median(v)), "lo": float(min(v)), "hi": float(max(v)), "n": len(v)} if v else {}


def companion_seeds(res: Results) -> Optional[dict]:
    """The summary over training seeds that speaks for this profile's model: its own (``make seeds``), else, for the
    embedded default, the ``seeds`` profile's where it was run on the same test split; None without one."""
    if res.has("seeds"):
        return res.seeds
    path = res.cfg.path("results", "seeds", "seeds.json")
    if res.cfg.name != "default" or not path.is_file():
        return None
    sd = read_json(path)
    same = sd.get("test_split_sha256") == res.data.splits["test"].get("sha256")
    return sd if same else None


def accuracy_claims(res: Results) -> pd.DataFrame:
    """Per variant against the evaluation's reference, the claims the paper may make of its accuracy: McNemar's p
    with Holm's correction over the family of every variant's test (``eval.alpha``), the 90% paired bootstrap
    interval of the change and its TOST verdict at ``eval.equivalence_margin`` on this one test set, and, where
    the profile's companion seeds run has the variant, the verdict over the training seeds (Student's t, 90%)."""
    ev, cfg = res.evaluate, res.cfg.eval
    e, ref = ev.variants, ev.reference
    ps = {n: (v.get("mcnemar") or {}).get("p_value", float("nan")) for n, v in e.items() if n != ref}
    adj = S.holm(ps)
    sd = companion_seeds(res)
    seeds = sd["variants"] if sd else {}
    rows = []
    for n, v in e.items():
        if n == ref:
            continue
        mc = v["mcnemar"]
        ci90 = S.paired_interval_from_counts(mc["a_wrong_b_right"], mc["a_right_b_wrong"], v["n"], 0.90, cfg.bootstrap)
        row = {"variant": n, "diff": v["accuracy_diff"], "ci95": v["accuracy_diff_ci"], "mcnemar_p": ps[n],
               "holm_p": adj[n], "rejected": bool(adj[n] < cfg.alpha), "ci90": ci90,
               "verdict": S.tost_verdict(ci90, cfg.equivalence_margin), "margin": cfg.equivalence_margin}
        d = (seeds.get(n) or {}).get("accuracy_diff")
        if d and d["n"] >= 2:
            si = S.seeds_interval(d["values"], 0.90)
            row.update({"seeds_n": d["n"], "seeds_mean": d["mean"], "seeds_ci90": si,
                        "seeds_verdict": S.tost_verdict(si, cfg.equivalence_margin)})
        rows.append(row)
    return pd.DataFrame(rows)


def evaluation_frames(res: Results) -> dict:
    return {"variants": evaluation_frame(res)}


def batching_frames(res: Results) -> Optional[dict]:
    """Per variant: accuracy alone (batch 1) and batched, the predictions that move between each text
    alone, length-sorted batches and a random batching; per dynamic INT8 file, the median ratio of each
    DynamicQuantizeLinear scale inside a batch to the text's own, for texts that moved and texts that did
    not. None for results without the batch-invariance measurement."""
    ev = res.evaluate.variants
    if not all("batch_invariance" in v for v in ev.values()):
        return None
    moves = pd.DataFrame([{"variant": n, "declared_invariant": v["batch_invariant_declared"],
                           "accuracy_b1": v["accuracy"], "accuracy_batched": v["batched"]["accuracy"],
                           **{k: x for k, x in v["batch_invariance"].items() if k != "scales"}}
                          for n, v in ev.items()])
    scales = [{"variant": n, "group": g, "node": j, "median_ratio": r}
              for n, v in ev.items() for g in ("moved", "unmoved")
              for j, r in enumerate(((v["batch_invariance"].get("scales") or {}).get(g) or {})
                                    .get("median_ratio_per_node", []))]
    return {"moves": moves, "scales": pd.DataFrame(scales, columns=["variant", "group", "node", "median_ratio"])}


def bench_frames(res: Results) -> dict:
    """Latency against length, throughput against batch size (all cores), and the speed-up over ONNX
    fp32 with its range over the rounds (the per-round ratios run_bench stored)."""
    r = res.bench
    cpu = r.all_threads
    seq = pd.DataFrame([{"variant": n, "tokens": int(L), "ms": v["median_ms"]}
                        for L, row in cpu["seq_length"].items() for n, v in row.items()])
    thr = pd.DataFrame([{"variant": n, "batch": int(B), "texts/s": v["texts_per_s"]}
                        for B, row in cpu["batch_size"].items() for n, v in row.items()])
    rows = []
    for n, v in r.speedup_vs_onnx_fp32_rounds.items():
        ratios = v["ratios"]
        rows.append({"variant": n, "speedup": float(np.median(ratios)), "lo": min(ratios), "hi": max(ratios)})
    return {"seq_length": seq, "throughput": thr, "speedup": pd.DataFrame(rows).sort_values("speedup")}


def op_time_frames(res: Results) -> Optional[dict]:
    """Kernel time per operator type and ONNX variant (ms per call): every variant's three costliest
    operator types and the six costliest overall get a column, the rest of each row is ``other``;
    rows from the cheapest variant to the costliest. None where bench.json has no operator profile."""
    ops = res.bench.op_times
    if not ops:
        return None
    df = pd.DataFrame({n: rec["op_ms"] for n, rec in ops.items()}).T.fillna(0.0)
    shown = set(df.sum().sort_values(ascending=False).index[:6])
    for _, row in df.iterrows():
        shown |= set(row[row > 0].sort_values(ascending=False).index[:3])
    top = [c for c in df.sum().sort_values(ascending=False).index if c in shown]
    df = df[top].assign(other=df.drop(columns=top).sum(axis=1))
    return {"op_ms": df.loc[df.sum(axis=1).sort_values().index]}


def tradeoff_frames(res: Results) -> dict:
    """Per variant of the headline that the evaluation scored: latency, the accuracy change from the
    evaluation's reference with its paired interval (pt), and the file size."""
    r, ev = res.bench, res.evaluate
    e, ref = ev.variants, ev.reference
    head = r.all_threads["headline"]
    rows = []
    for n in head:
        if n not in e:
            continue
        d, ci = (0.0, [0.0, 0.0]) if n == ref else (e[n].get("accuracy_diff"), e[n].get("accuracy_diff_ci"))
        if d is None:
            continue
        rows.append({"variant": n, "ms": head[n]["median_ms"], "diff": 100 * d, "lo": 100 * ci[0], "hi": 100 * ci[1],
                     "MB": e[n]["size_mb"]})
    df = pd.DataFrame(rows)
    # the accuracy / latency frontier at batch 1: no other variant is as fast or faster and as accurate or more
    # (point estimates; each point's interval drawn beside it)
    df["frontier"] = [not ((df["ms"] <= r_["ms"]) & (df["diff"] >= r_["diff"]) &
                           ((df["ms"] < r_["ms"]) | (df["diff"] > r_["diff"]))).any() for _, r_ in df.iterrows()]
    return {"points": df}


def explain_example_frames(res: Results) -> Optional[dict]:
    """For each example the side-by-side figure shows: its ten largest words (by the reference's
    weight) and both variants' weights toward the reference's predicted class."""
    r = res.explain
    ref, cmp_ = r.reference, r.compare
    if cmp_ not in r.explanations or not r.figure_examples:
        return None
    rows = []
    for i in r.figure_examples:
        e = r.examples[i]
        label = str(e["reference_pred"])
        wr = np.asarray(r.explanations[ref][i]["weights"][label])
        words = list(indexed(e["text"]).inverse_vocab)
        for j in np.argsort(-np.abs(wr), kind="stable")[:10][::-1]:
            rows.append({"example": e["index"], "word": words[j],
                         **{v: r.explanations[v][i]["weights"][label][j] for v in (ref, cmp_)}})
    return {"top_words": pd.DataFrame(rows)}


def explain_agreement_frames(res: Results) -> dict:
    """Per-example agreement with the reference (the metrics shown), and each variant's paired Spearman
    minus LIME's own seed noise with its interval."""
    r = res.explain
    df = agreement_frame(r)
    rows = []
    for v, a in r.agreement.items():
        for where in ("random", "disagreement"):
            d = (a.get("versus_floor") or {}).get(where, {}).get("spearman")
            if d and d["n"]:
                rows.append({"variant": v, "texts": where, "mean": d["mean"], "lo": d["ci"][0], "hi": d["ci"][1]})
    shown = df[df["metric"].isin((top_k(res).NAME, "spearman", "kendall"))]
    random_at = {i for i, e in enumerate(r.examples) if e.get("reason") == "random"}
    return {"per_example": shown[shown["example"].isin(random_at)] if random_at else shown,
            "minus_noise": pd.DataFrame(rows)}


def explain_faithfulness_frames(res: Results) -> dict:
    """Comprehensiveness and sufficiency (mean, interval, random ranking) per variant, and the cost."""
    r = res.explain
    f, c = r.faithfulness, r.cost
    pre = "normalized_" if r.naopc else ""
    rows = [{"variant": n, "metric": k, "mean": f[n][pre + k]["mean"], "lo": f[n][pre + k]["ci"][0],
             "hi": f[n][pre + k]["ci"][1], "random": f[n]["random_" + pre + k]["mean"], "normalized": bool(pre)}
            for k in ("comprehensiveness", "sufficiency") for n in f]
    cost = [{"variant": n, "throughput_vs_baseline": c[n]["throughput_vs_baseline"],
             "explanations_per_s": c[n]["explanations_per_s"], "examples": c[n]["examples"]}
            for n in sorted(c, key=lambda n: c[n]["throughput_vs_baseline"])]
    return {"faithfulness": pd.DataFrame(rows), "cost": pd.DataFrame(cost)}


# an 8-bit dot-product instruction (AVX512-VNNI / AVX-VNNI VPDPBUSD) does four int8 products per 32-bit
# lane where an FP32 FMA does one: the most INT8 matrix products can gain per instruction
INT8_DOT_FACTOR = 4
# fused attention operators: their matrix products run inside one operator, not counted as matrix products
FUSED_ATTENTION = frozenset({"Attention", "QAttention"})


def unfused_int8(profiles: dict, among=None) -> list:
    """The integer ONNX files of ``profiles`` (name -> operator profile with ``op_ms``) without a fused attention
    operator, so that their matrix products are counted as such (optionally only those in ``among``)."""
    return [n for n in profiles if V.is_onnx_int8(n) and (among is None or n in among)
            and not FUSED_ATTENTION & set(profiles[n]["op_ms"])]


def amdahl(fp: dict) -> dict:
    """Amdahl's bound from one profile (``node_placement``'s kernel_ms, matmul_ms): the kernel time
    per call if the matrix products ran ``INT8_DOT_FACTOR`` times faster and everything else kept
    its time, the speed-up that gives, and the speed-up with free matrix products."""
    other = fp["kernel_ms"] - fp["matmul_ms"]
    bound = other + fp["matmul_ms"] / INT8_DOT_FACTOR
    return {"kernel_ms": fp["kernel_ms"], "matmul_ms": fp["matmul_ms"], "other_ms": other,
            "dot_factor": INT8_DOT_FACTOR, "bound_ms": bound, "bound_speedup": fp["kernel_ms"] / bound,
            "free_matmul_speedup": fp["kernel_ms"] / other}


def seeds_frame(res: Results) -> pd.DataFrame:
    """Per variant: its accuracy over the training seeds and (the reference aside) its change against PyTorch
    FP32 of the same seed (mean, the interval over seeds, each seed's value, its own bootstrap half-width);
    for QAT's files, also against FP32 trained as long (the control)."""
    r = res.seeds
    rows = []
    for name, v in r.variants.items():
        d, c = v.get("accuracy_diff"), v.get("vs_fp32_plus_epoch")   # None: the reference
        rows.append({"variant": name, "family": v["family"], "control": v["control"],
                     "accuracy": v["accuracy"]["mean"], "accuracy_sd": v["accuracy"]["sd"],
                     "diff": d and d["mean"], "diff_lo": d and d["ci"][0], "diff_hi": d and d["ci"][1],
                     "diff_ci": d and d["ci"],
                     "diff_sd": d and d["sd"], "per_seed": d and d["values"],
                     "boot_halfwidth": d and v["bootstrap_halfwidth"]["mean"],
                     "boot_excludes_zero": v.get("seeds_bootstrap_excludes_zero"),
                     "agreement": d and v["agreement"]["mean"],
                     "vs_control": None if c is None else c["mean"],
                     "vs_control_ci": None if c is None else c["ci"],
                     "vs_control_per_seed": None if c is None else c["values"]})
    return pd.DataFrame(rows)


def seeds_frames(res: Results) -> Optional[dict]:
    return {"variants": seeds_frame(res)} if res.has("seeds") else None


OV_INT8 = "openvino-int8-nncf"     # the size sweep's OpenVINO INT8 model


def sizes_frames(res: Results) -> Optional[dict]:
    """The model-size sweep (sizes.json): ``variants``, one row per size and variant (parameters, file size,
    batch-1 latency per length, throughput, peak memory); ``sizes``, one row per size: its fastest INT8 file,
    that file's speed-ups over ONNX and PyTorch FP32 per length, the share of ONNX FP32's kernel time in matrix
    products and the Amdahl bound it sets (``amdahl``)."""
    if not res.has("sizes"):
        return None
    r = res.sizes
    rows, per = [], []
    for m in sorted(r.models, key=lambda m: m["parameters"]):
        for n in r.variants:
            rows.append({"size": m["name"], "params": m["parameters"], "variant": n, "file_mb": m["file_mb"][n],
                         "texts_per_s": m["throughput"][n]["texts_per_s"],
                         "peak_rss_mb": (m["memory"] or {}).get(n, {}).get("peak_rss_mb"),
                         **{f"latency_{L}": m["latency"][L][n]["median_ms"] for L in m["latency"]}})
        best, fp, prof = m["best_int8"], m["profiles"]["onnx-fp32"], m["profiles"]
        a = amdahl(fp)
        # the integer products' own speed-up, from an INT8 file that keeps attention's products as matrix
        # products (a fused QAttention computes them inside an operator the profile cannot split)
        unfused = unfused_int8(prof)
        plain = best_int(m["latency"][max(m["latency"], key=int)], unfused) if unfused else None
        per.append({"size": m["name"], "layers": m["layers"], "hidden": m["hidden"], "params": m["parameters"],
                    "best_int8": best, "matmul_share": fp["matmul_ms"] / fp["kernel_ms"],
                    "amdahl_bound": a["bound_speedup"], "free_matmul": a["free_matmul_speedup"],
                    "products_int8": plain,
                    "int8_matmul_speedup": fp["matmul_ms"] / prof[plain]["matmul_ms"] if plain else None,
                    "int8_file_ratio": m["file_mb"]["onnx-fp32"] / m["file_mb"][best],
                    "throughput_vs_onnx": m["throughput_speedup_vs_onnx_fp32"][best],
                    **{f"vs_onnx_{L}": m["speedup_vs_onnx_fp32"][L][best] for L in m["latency"]},
                    **{f"vs_torch_{L}": m["speedup_vs_pytorch_fp32"][L][best] for L in m["latency"]},
                    # OpenVINO's INT8 model of the same weights (sweeps from before it: none), and the CUDA
                    # provider's predicted Memcpy nodes of the dynamic INT8 file and of FP32
                    **{f"ov_vs_onnx_{L}": m["speedup_vs_onnx_fp32"][L].get(OV_INT8) for L in m["latency"]},
                    **{f"memcpy_{k}": (m.get("cuda_placement") or {}).get(n, {}).get("memcpy_predicted")
                       for k, n in (("dyn", "onnx-int8-dynamic"), ("fp32", "onnx-fp32"))}})
    return {"variants": pd.DataFrame(rows), "sizes": pd.DataFrame(per)}


# figure file name -> its frames
FRAMES = {"data_overview": data_frames, "training_fp32": training_frames, "evaluation": evaluation_frames,
          "batching": batching_frames,
          "benchmark": bench_frames, "op_times": op_time_frames, "tradeoff": tradeoff_frames,
          "lime_examples": explain_example_frames, "lime_agreement": explain_agreement_frames,
          "lime_faithfulness": explain_faithfulness_frames, "seeds": seeds_frames,
          "sizes": sizes_frames}
