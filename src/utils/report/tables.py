"""Pure builders of the study's tables: each reads ``Results`` and returns a ``Table`` (a DataFrame of
pre-formatted cells, its caption and label); ``writer`` renders and writes them. Variant groups come from
the registry (``variants``), metric directions from ``metrics``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

from .. import bench_runs as R
from .. import stats as S
from ..config import PACKAGE_ROOT
from ..metrics import Metric, metric
from ..ort_inspect import integer_op_count
from .frames import (
    accuracy_claims,
    batching_frames,
    companion_seeds,
    evaluation_frame,
    run_speedups,
    seeds_frame,
    sizes_frames,
)
from .readers import Results, best_int, short, top_k
from .writer import Table, tex_escape

COMP, SUFF = metric("comprehensiveness"), metric("sufficiency")


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def ci(pair, digits: int = 1) -> str:
    return f"[{100 * pair[0]:.{digits}f}, {100 * pair[1]:.{digits}f}]"


def _na(x) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def data_table(res: Results) -> Table:
    r = res.data
    rows = {}
    for s, v in r.splits.items():
        row = {"examples": f"{v['n']:,}"}
        row.update({f"{c}": f"{n / v['n']:.1%}" for c, n in v["class_counts"].items()})
        if v.get("groups") is not None:
            row["groups"] = f"{v['groups']:,}"
        tl = r.token_lengths[s]
        row["median tokens"] = f"{tl['median']:.0f}"
        row["p95 tokens"] = f"{tl['p95']:.0f}"
        rows[s] = row
    df = pd.DataFrame(rows).T
    return Table("data", df, caption=f"Splits of the {res.name} profile (grouped: no group in two splits).",
                label=f"tab:data-{res.name}")


def evaluation_table(res: Results) -> Table:
    """Every variant as deployed (batch 1): size, accuracy, its change against the reference with the paired
    interval, McNemar's p after Holm's correction over the family, and the equivalence verdicts (TOST at the
    config's margin) on this test set and, where the companion seeds run has the variant, over the seeds."""
    f = evaluation_frame(res).set_index("variant")
    cl = accuracy_claims(res).set_index("variant")
    r, ec = res.evaluate, res.cfg.eval
    m = 100 * ec.equivalence_margin
    seeds = "seeds_verdict" in cl.columns and cl["seeds_verdict"].notna().any()
    rows = {}
    for n in f.index:
        v, c = f.loc[n], (cl.loc[n] if n in cl.index else None)
        row = {"MB": f"{v['size_mb']:.1f}", "accuracy (%)": f"{pct(v['accuracy'])} {ci((v['acc_lo'], v['acc_hi']))}"}
        if c is None:
            row.update({"$\\Delta$ (pt)": "--", "Holm $p$": "--", "this run": "--"})
        else:
            d = 100 * c["diff"]
            same = c["ci95"][0] == c["ci95"][1] == c["diff"]
            row["$\\Delta$ (pt)"] = f"{d:+.1f} (identical)" if same else f"{d:+.1f} {ci(c['ci95'])}"
            hp = c["holm_p"]
            row["Holm $p$"] = "--" if hp != hp else ("<0.001" if hp < 0.001 else
                                                     f"{hp:.3f}" if hp < 0.1 else f"{hp:.2f}")
            row["this run"] = c["verdict"]
        if seeds:
            row["over seeds"] = (c["seeds_verdict"] if c is not None and isinstance(c.get("seeds_verdict"), str)
                                 else "--")
        rows[n] = row
    out = pd.DataFrame(rows).T
    sd = companion_seeds(res)
    nseeds = f"{len(sd['seeds'])} training seeds" if sd else ""
    return Table("evaluation", out, label=f"tab:evaluation-{res.name}",
                 caption=(f"Test split ({r.n_test:,} texts), every variant each text alone (batch 1, as "
                          f"deployed; batched: Table~\\ref{{tab:batching-{res.name}}}). Brackets: "
                          f"{int(100 * ec.confidence)}\\% paired bootstrap intervals; $\\Delta$ and McNemar's "
                          f"test against {tex_escape(r.reference)}, $p$ adjusted by Holm's method over the "
                          f"{len(cl)} tests. Verdicts at $\\pm${m:g} pt (TOST, 90\\% interval): equivalent, "
                          f"below or above the margin, lower or higher (beyond zero, not bounded by the margin), or "
                          f"undecided (the data cannot tell)"
                          + (f"; over seeds: Student's $t$ over the {nseeds} of the seeds profile (same split)"
                             if seeds else "") + "."))


def batching_table(res: Results) -> Optional[Table]:
    """Batch invariance, measured: accuracy alone and batched, and the predictions that move."""
    fr = batching_frames(res)
    if fr is None:
        return None
    m, r = fr["moves"], res.evaluate
    bs = next(iter(r.variants.values()))["batched"]["batch_size"]
    out = pd.DataFrame({
        "declared": ["invariant" if d is True else "batch-dependent" if d is False else "undeclared"
                     for d in m["declared_invariant"]],
        "acc. alone (%)": [pct(a, 2) for a in m["accuracy_b1"]],
        f"acc. batch {bs} (%)": [pct(a, 2) for a in m["accuracy_batched"]],
        "$\\Delta$ (pt)": [f"{100 * (b - a):+.2f}" for a, b in zip(m["accuracy_b1"], m["accuracy_batched"])],
        "moved: alone/sorted": m["moved_batch1_vs_sorted"].astype(str),
        "alone/random": m["moved_batch1_vs_random"].astype(str),
        "sorted/random": m["moved_sorted_vs_random"].astype(str),
        "max $|\\Delta$logit$|$": [f"{x:.1e}" if x else "0" for x in m["max_abs_logit_diff"]],
    })
    out.index = m["variant"]
    out.index.name = None
    seed = (r.batching or {}).get("random_seed", res.cfg.seed)
    return Table("batching", out, label=f"tab:batching-{res.name}", column_format="llrrrrrrr",
                 caption=(f"Batch invariance on the {r.n_test:,} test texts: accuracy with each text alone "
                          f"(batch 1, the headline) and in batches of {bs} sorted by length (dynamic padding); "
                          f"test predictions that change between each text alone, those batches and one random "
                          f"batching of {bs} (seed {seed}); the largest logit change over the three. Declared: by "
                          f"the variant's recipe in the registry."))


def hosts_table(res: Results) -> Optional[Table]:
    """One trained model on several CPUs (eval_runs.jsonl): per variant, the accuracy change against the
    reference on each instruction set, the predictions the host moved, and the interval covering the hosts."""
    h = res.across_hosts()
    if h is None:
        return None
    rows = {}
    for name, v in h["variants"].items():
        row = {f"$\\Delta$ {tex_escape(isa)} (pt)": f"{100 * d:+.2f}" if d is not None else "--"
               for isa, d in v["accuracy_diff"].items()}
        row["weights"] = v["weights"] or "--"
        row["moved"] = str(v["moved"])
        row["same file"] = "yes" if v["same_file"] else "no"
        row["interval over hosts (pt)"] = (f"[{100 * v['covering_ci'][0]:+.2f}, {100 * v['covering_ci'][1]:+.2f}]"
                                           if v["covering_ci"] and name != h["reference"] else "--")
        rows[name] = row
    df = pd.DataFrame(rows).T
    runs = "; ".join(f"{tex_escape(r['isa'])}: {tex_escape(r['cpu'])}, commit {r['commit'][:7]}, "
                     f"{r['date'][:10]}" for r in h["runs"])
    return Table("hosts", df, label=f"tab:hosts-{res.name}", column_format="l" + "r" * len(df.columns),
                 caption=(f"One trained model evaluated on {len(h['isas'])} instruction sets (INT8 GEMM path; "
                          f"{runs}): its {tex_escape(h['reference'])} predictions on the {h['n_test']:,} test texts "
                          f"identical, each text alone. Weights: the checkpoint a variant comes from (QAT's, and its "
                          f"control's, were trained again on each host). $\\Delta$: accuracy change against "
                          f"{tex_escape(h['reference'])} on that host; moved: test predictions that differ between "
                          f"the hosts; same file: the ONNX file's SHA-256 equal (no: the hosts built other files, "
                          f"so file and kernels both differ); interval over hosts: the union of the hosts' paired "
                          f"bootstrap intervals."))


def steps_table(res: Results) -> Optional[Table]:
    """How long each step of the study took in its run (the provenance's ``seconds``), with its share."""
    sec = res.step_seconds()
    if sec is None:
        return None
    total = sum(sec.values())
    df = pd.DataFrame({"minutes": [f"{s / 60:.1f}" for s in sec.values()],
                       "share": [f"{s / total:.0%}" for s in sec.values()]}, index=list(sec))
    df.loc["study"] = [f"{total / 60:.1f}", "100%"]
    prov = res.explain.provenance
    isa = (prov.get("cpu_isa") or {}).get("int8_gemm", "not recorded")
    commit = (prov["git"].get("commit") or "not recorded")[:7]
    return Table("steps", df, label=f"tab:steps-{res.name}", column_format="lrr",
                 caption=(f"Wall-clock time of each step of the {res.name} profile's run (commit "
                          f"{commit}, {tex_escape(prov['cpu'])}, INT8 GEMM path "
                          f"{tex_escape(isa)}, {prov['threads']} threads); each step's notebook kernel "
                          f"start-up is not counted."))


def quantize_table(res: Results) -> Table:
    q = res.quantize
    rows = {}
    for name, v in q.variants.items():
        ops = v["session_ops"]
        integer = integer_op_count(ops)
        inits = v["graph"]["initializers_by_type"]
        rows[name] = {"size (MB)": f"{v['size_mb']:.1f}", "x smaller": f"{1 / v['size_ratio_to_fp32']:.2f}",
                      "int8/uint8 tensors": str(inits.get("int8", 0) + inits.get("uint8", 0)),
                      "integer share of bytes": f"{v['graph']['integer_weight_fraction']:.0%}",
                      "integer ops run": str(integer), "Cast ops run": str(ops.get("Cast", 0)),
                      "build (s)": f"{v['seconds']:.1f}"}
    df = pd.DataFrame(rows).T
    return Table("quantize", df, label=f"tab:quantize-{res.name}",
                caption=("ONNX variants: what is in the file and what the ONNX Runtime CPU session runs after "
                         "its graph optimizations (integer ops: MatMulInteger, MatMulIntegerToFloat, "
                         "DynamicQuantize*, QuantizeLinear ...)."))


def bench_table(res: Results) -> Table:
    r = res.bench
    all_t = r.provenance["threads"]
    cpu, one = r.all_threads, r.cpu.get("threads_1", {}).get("headline", {})
    big = str(max(int(b) for b in cpu["batch_size"]))
    n_rounds = len(next(iter(cpu["headline"].values()))["round_medians_ms"])
    rows, n_runs = {}, 0
    for n, v in cpu["headline"].items():
        mem = (r.memory or {}).get(n, {})
        sp = run_speedups(res, n)
        n_runs = max(n_runs, sp.get("n", 0))
        rows[n] = {"median (ms)": f"{v['median_ms']:.2f}", "p90": f"{v['p90_ms']:.2f}",
                   "spread": f"{v['spread']:.1%}",
                   "x ONNX fp32": f"{r.speedup_vs_onnx_fp32.get(n, float('nan')):.2f}",
                   "over runs": f"{sp['median']:.2f} ({sp['lo']:.2f}-{sp['hi']:.2f})" if sp.get("n", 0) > 1 else "--",
                   "x PyTorch fp32": f"{r.speedup_vs_pytorch_fp32.get(n, float('nan')):.2f}",
                   "1 thread (ms)": f"{one[n]['median_ms']:.2f}" if n in one else "--",
                   f"texts/s (b{big})": (f"{cpu['batch_size'][big][n]['texts_per_s']:.0f}"
                                         if n in cpu["batch_size"][big] else "--"),
                   "peak RSS (MB)": f"{mem['peak_rss_mb']:.0f}" if mem else "--"}
    df = pd.DataFrame(rows).T
    return Table("bench", df, label=f"tab:bench-{res.name}",
                caption=(f"CPU benchmark, batch 1, length {r.length}, {all_t} threads unless stated: "
                         f"{r.provenance['cpu']}; {r.protocol_text()}; spread: range of the {n_rounds} round "
                         f"medians over their median; x ONNX fp32: this run's speed-up; over runs: its median over "
                         f"the {n_runs} runs measured alike on hosts of this CPU model (range), the number the text "
                         f"quotes; peak "
                         f"RSS: a fresh process's peak when it loads the variant and predicts, its imports "
                         f"(PyTorch, transformers, ONNX Runtime) included. Every run, the interleaving checks and "
                         f"the memory a model adds: results/{res.name}/summary.md."
                         + (f" Timed in the headline rounds only: {tex_escape(', '.join(only))}."
                            if (only := (r.protocol or {}).get("headline_only")) else "")))


def bench_runs_table(res: Results) -> Optional[Table]:
    """Every recorded benchmark run (bench_runs.jsonl): the headline of each, and the run-to-run
    spread of the runs measured as the reported one; None where fewer than two runs are recorded."""
    r = res.bench
    runs, this, shared = res.run_history()
    if len(runs) < 2:
        return None
    best = shared or best_int(r.all_threads["headline"])
    same = R.comparable(runs, this)
    fmt = lambda d, n, f="{:.2f}": f.format(d[n]) if n in d else "--"  # noqa: E731
    rows = []
    for run in runs:
        rows.append({"run (UTC)": run["date"][:16].replace("T", " "),
                     "commit": (run["commit"] or "?")[:7] + (" (dirty)" if run["dirty"] else ""),
                     "interleaving": R.label(run) + (f", {run['reps']} x {run['rounds']}" if run["reps"] else ""),
                     "compared": "yes" if run in same else "no",
                     "minutes": f"{run['seconds'] / 60:.1f}" if run.get("seconds") else "--",
                     "ONNX fp32 (ms)": fmt(run["median_ms"], "onnx-fp32"),
                     "PyTorch fp32 (ms)": fmt(run["median_ms"], "pytorch-fp32"),
                     f"{best} (ms)": fmt(run["median_ms"], best),
                     "x ONNX fp32": fmt(run["speedup_vs_onnx_fp32"], best),
                     "x PyTorch fp32": fmt(run["speedup_vs_pytorch_fp32"], best)})
    rr = R.run_to_run(runs, this, best)
    if rr["runs"] >= 2:
        sp = rr["median_ms"]
        rows.append({"run (UTC)": f"spread of the {rr['runs']} compared runs", "commit": "", "interleaving": "",
                     "compared": "", "minutes": "",
                     "ONNX fp32 (ms)": f"{sp['onnx-fp32']['spread']:.1%}" if "onnx-fp32" in sp else "--",
                     "PyTorch fp32 (ms)": f"{sp['pytorch-fp32']['spread']:.1%}" if "pytorch-fp32" in sp else "--",
                     f"{best} (ms)": f"{sp[best]['spread']:.1%}",
                     **{c: f"{rr[k]['spread']:.1%}" if k in rr else "--"
                        for c, k in (("x ONNX fp32", "speedup_vs_onnx_fp32"),
                                     ("x PyTorch fp32", "speedup_vs_pytorch_fp32"))}})
    df = pd.DataFrame(rows).set_index("run (UTC)")
    return Table("bench_runs", df, label=f"tab:bench-runs-{res.name}",
                caption=(f"Every recorded run of the benchmark (results/{res.name}/bench\\_runs.jsonl): batch 1, "
                         f"length {r.length}, {r.provenance['threads']} threads, median per run; reps x rounds "
                         f"per variant; minutes: the benchmark step's wall time (not recorded before 2026-11-27); "
                         f"{tex_escape(best)}: the fastest INT8 variant that every compared run has. Compared: "
                         f"measured as the reported run (same CPU model, threads, interleaving, "
                         f"repetitions and rounds) from a clean tree; spread: range over median."))


def protocol_table(res: Results) -> Optional[Table]:
    """The headline measured several ways in one run: in turns (the reported numbers), call by call in
    a random order (split by the runtime of the previous call), and with ONNX Runtime's threads
    spinning where bench.json has that round. None without the call-by-call round."""
    r = res.bench
    cpu = r.all_threads
    per = cpu.get("per_call")
    if not per:
        return None
    head, ref = cpu["headline"], "onnx-fp32"
    spin = cpu.get("spinning", {}).get("variants", {})
    ratio = lambda rec, n: f"{rec[ref]['median_ms'] / rec[n]['median_ms']:.2f}" if ref in rec else "--"  # noqa: E731
    rows = {}
    for n, v in per.items():
        after = v["after"]
        rows[n] = {"in turns (ms)": f"{head[n]['median_ms']:.2f}", "call by call (ms)": f"{v['median_ms']:.2f}",
                   **{f"after {rt} (ms)": f"{a['median_ms']:.2f} (n={a['n']})" for rt, a in after.items()},
                   **({"ORT spinning (ms)": f"{spin[n]['median_ms']:.2f}"} if n in spin else {}),
                   "x ONNX fp32, in turns": ratio(head, n), "x ONNX fp32, call by call": ratio(per, n),
                   **({"x ONNX fp32, spinning": ratio(spin, n)} if n in spin else {})}
    df = pd.DataFrame(rows).T.fillna("--")
    return Table("bench_protocol", df, label=f"tab:bench-protocol-{res.name}",
                caption=(f"The headline (batch 1, length {r.length}, {r.provenance['threads']} threads) "
                         f"measured several ways in one run. As reported: {r.protocol_text()}. Call by call: a new "
                         f"random "
                         f"order for every input, no untimed calls, ONNX Runtime's threads not spinning; each "
                         f"call also split by the runtime of the call before it (n: calls)."
                         + (f" ORT spinning: ONNX Runtime's threads busy-waiting between operators (its default, "
                            f"what a server running one model gets), blocks of {cpu['spinning']['block']} timed "
                            f"calls after {cpu['spinning']['block_warmup']} untimed ones." if spin else "")))


def placement_table(res: Results) -> Table:
    r = res.bench
    rows = {}
    for n, recs in (r.placement or {}).items():
        for rec in recs:
            prov = "+".join(p.replace("ExecutionProvider", "") for p in rec["providers"])
            rows[f"{n} [{prov}]"] = {"nodes": str(rec["graph_nodes"]),
                                      **{p.replace("ExecutionProvider", ""): str(c)
                                         for p, c in rec["nodes_per_provider"].items()},
                                      "Memcpy": str(rec["memcpy_nodes"])}
    df = pd.DataFrame(rows).T.fillna("0")
    return Table("placement", df, label=f"tab:placement-{res.name}",
                caption="Nodes each execution provider ran (from a profiled run) and the Memcpy nodes ONNX "
                        "Runtime inserted between providers.")


def gpu_table(res: Results) -> Optional[Table]:
    """PyTorch on the GPU per dtype (when bench.json holds a GPU run): latency, throughput and the
    logit change against FP32; None where the benchmark ran without a GPU."""
    # a run of `python -m utils.gpu_bench` on a GPU machine, else the GPU part of `make bench`
    bench = res.bench
    g = res.bench_gpu or bench.gpu
    length = g.get("length", bench.length)
    if not g.get("pytorch") and not g.get("onnxruntime"):
        return None
    rows = {}
    for prov, recs in (g.get("onnxruntime") or {}).items():   # batch 1, I/O binding
        for n, v in recs.items():
            place = [p for p in (g.get("placement") or {}).get(n, []) if p["providers"][0] == prov and "error" not in p]
            rows[f"{n} [{prov.replace('ExecutionProvider', '')}]"] = {
                **({"b1 median (ms)": f"{v['median_ms']:.2f}", "b1 p90": f"{v['p90_ms']:.2f}"} if "median_ms" in v
                   else {"b1 median (ms)": "failed" if "error" in v else "skipped"}),
                **({"nodes on GPU / CPU": f"{place[0]['nodes_per_provider'].get(prov, 0)} / "
                                          f"{place[0]['nodes_per_provider'].get('CPUExecutionProvider', 0)}",
                    "Memcpy": str(place[0]["memcpy_nodes"])} if place else {})}
    for name, rec in (g.get("pytorch") or {}).items():
        if "error" in rec:
            rows[name] = {"b1 median (ms)": "failed"}
            continue
        row = {}
        for bsz, v in rec["batch_size"].items():
            row[f"b{bsz} median (ms)"] = f"{v['median_ms']:.2f}"
            row[f"b{bsz} texts/s"] = f"{v['texts_per_s']:.0f}"
            graph = rec.get("cuda_graph", {}).get(bsz)
            if graph:
                row[f"b{bsz} graph (ms)"] = f"{graph['median_ms']:.2f}" if "median_ms" in graph else "failed"
        row["max |logit diff| vs fp32"] = f"{rec['max_abs_logit_diff_vs_first']:.1e}"
        row["same argmax"] = f"{rec['argmax_agreement_vs_first']:.1%}"
        rows[name] = row
    df = pd.DataFrame(rows).T.fillna("--")
    return Table("gpu", df, label=f"tab:gpu-{res.name}",
                caption=f"On {tex_escape(g.get('torch_device') or 'the GPU')}, length {length}: ONNX Runtime "
                        f"with I/O binding (batch 1; nodes per provider and Memcpy nodes from a profiled run) "
                        f"and PyTorch eager per dtype (int8: int8 weights and per-token int8 activations in every "
                        f"linear layer, "
                        f"integer products, the rest in fp16); graph: one CUDA graph replay of the same forward pass.")


def _mci(rec: dict, digits: int = 2, sign: bool = False) -> str:
    """Mean [interval]; an interval of zero width is printed once, as exact."""
    if rec["n"] == 0 or rec["mean"] != rec["mean"]:
        return "--"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    m, lo, hi = (f.format(x) for x in (rec["mean"], *rec["ci"]))
    return m + " (exact)" if lo == hi else f"{m} [{lo}, {hi}]"


def _agreement_row(al: dict, top: Metric) -> dict:
    return {top.LABEL: _mci(al[top.NAME]), "Spearman": _mci(al["spearman"])}


def symmetric(r: dict) -> bool:
    """Whether an explain result compares every variant across seeds (the symmetric design), or is an older one
    whose variants shared FP32's perturbations while its floor did not (then it is reported as such, not set
    beside the floor)."""
    return r.design is not None and all("versus_floor" in a for n, a in r.agreement.items() if n != "noise-floor")


def _floor_cells(vf: dict, margin: float) -> dict:
    verdict = S.tost_verdict(vf["equivalence"]["spearman"]["ci90"], margin)      # the words the text uses too
    return {"Spearman $-$ floor": _mci(vf["random"]["spearman"], 3, sign=True),
            f"within $\\pm${margin:g}": verdict,
            "on flipped texts": _mci(vf["disagreement"]["spearman"], 3, sign=True)}


def explain_agreement_table(res: Results) -> Optional[Table]:
    """LIME, symmetric: each variant's explanation (seed A) against FP32's under other seeds, beside FP32 (A)
    against the same (the floor); the paired difference on the random sample with its equivalence verdict, and
    on the texts whose prediction a variant flips, apart."""
    r = res.explain
    if not symmetric(r):
        return None
    m = r.equivalence_margin
    rows = {}
    for v, a in r.agreement.items():
        if v == "noise-floor":
            continue
        rows[v] = {"Spearman": _mci(a["random"]["spearman"]), **_floor_cells(a["versus_floor"], m)}
    fl = r.agreement["noise-floor"]
    rows["noise floor (FP32)"] = {"Spearman": _mci(fl["random"]["spearman"]), "Spearman $-$ floor": "--",
                                  f"within $\\pm${m:g}": "--", "on flipped texts": _mci(fl["disagreement"]["spearman"])}
    for name, p in (r.pairs or {}).items():          # e.g. QAT's INT8 file against QAT's own weights
        rows[f"{name} (same seed)"] = {"Spearman": _mci(p["random"]["spearman"]), "Spearman $-$ floor": "--",
                                                 f"within $\\pm${m:g}": "--", "on flipped texts": "--"}
    sel = r.selection
    lvl = int(100 * res.confidence("explain"))
    return Table("explain_agreement", pd.DataFrame(rows).T, label=f"tab:explain-agreement-{res.name}",
                 caption=(f"LIME ({r.samples} samples): each variant's explanation (seed {r.seed}) against "
                          f"{tex_escape(r.reference)}'s under {len(r.noise_seeds)} other seeds, on a random "
                          f"sample of {sel['n_random']} test texts; noise floor: {tex_escape(r.reference)} "
                          f"(seed {r.seed}) against the same explanations, so the two sides differ only in the "
                          f"model. Spearman $-$ floor: paired per text, mean [{lvl}\\% bootstrap interval]; within "
                          f"$\\pm${m:g}: the verdict of the 90\\% interval (TOST): equivalent (inside the margin), "
                          f"below or above it, lower or higher (beyond zero, not bounded by the margin), undecided. "
                          f"On flipped texts: the {sel['n_disagreement']} texts where "
                          f"{tex_escape(', '.join(sel['disagreements_of']))} predicts another class, apart. "
                          f"Same seed: two variants explained with the same perturbations (identical explanations "
                          f"score 1). Top-k overlap and Kendall: results/{res.name}/explain.json."))


def explain_shap_table(res: Results) -> Optional[Table]:
    """The second explainer, the same symmetric design: KernelSHAP's agreement of each variant with the
    reference under other seeds, beside its own floor, next to LIME's verdict on the same texts, and how far the
    two explainers agree on one model."""
    r = res.explain
    s = r.shap
    if not s or not symmetric(r) or "versus_floor" not in s:
        return None
    m = r.equivalence_margin
    rows = {}
    for n, a in s["agreement"].items():
        c = _floor_cells(s["versus_floor"][n], m)
        lime = _floor_cells(r.agreement[n]["versus_floor"], m) if n in r.agreement else {}
        rows[n] = {"SHAP Spearman": _mci(a["spearman"]), "SHAP $-$ floor": c["Spearman $-$ floor"],
                   "SHAP verdict": c[f"within $\\pm${m:g}"], "LIME verdict": lime.get(f"within $\\pm${m:g}", "--"),
                   "LIME vs SHAP": _mci(s["lime_vs_shap"][n]["spearman"])}
    rows["noise floor (FP32)"] = {"SHAP Spearman": _mci(s["noise_floor"]["spearman"]), "SHAP $-$ floor": "--",
                                  "SHAP verdict": "--", "LIME verdict": "--",
                                  "LIME vs SHAP": _mci(s["lime_vs_shap"][r.reference]["spearman"])}
    lvl = int(100 * res.confidence("explain"))
    return Table("explain_shap", pd.DataFrame(rows).T, label=f"tab:explain-shap-{res.name}",
                 caption=(f"KernelSHAP ({s['samples']} coalitions, the background every word removed) over LIME's "
                          f"words, the same design as Table~\\ref{{tab:explain-agreement-{res.name}}}: each variant "
                          f"(seed {s['seed']}) against {tex_escape(r.reference)} under {len(s['noise_seeds'])} "
                          f"other seeds, beside its floor; verdicts as there (margin $\\pm${m:g}). LIME vs SHAP: "
                          f"the two explainers' rank correlation on the same model. Mean [{lvl}\\% bootstrap "
                          f"interval], random sample."))


def gradients_table(res: Results) -> Table:
    """The gradient explainer (gradients.json, ``utils.gradients``): Integrated Gradients of the PyTorch models
    that compute what the files compute, against each other (what training and what quantization changed), and
    against the LIME explanation of the file each stands for."""
    g, top = res.gradients, top_k(res)
    lvl = int(100 * res.confidence("gradients"))
    rows = {f"IG: {p['variant']} vs {p['reference']}": {**_agreement_row(p["all"], top), "isolates": p["isolates"]}
            for p in g.pairs.values()}
    for n, v in g.vs_lime.items():
        rows[f"IG of {n} vs LIME of {v['lime_of']}"] = {**_agreement_row(v["all"], top),
                                                        "isolates": "the two explainers"}
    gap = max(v["max"] for v in g.completeness_gap.values())
    return Table("gradients", pd.DataFrame(rows).T, label=f"tab:gradients-{res.name}",
                 caption=(f"Integrated Gradients ({g.steps} Gauss-Legendre points, baseline: every word the padding "
                          f"token) over LIME's words on the same {g.n_examples} texts, toward "
                          f"{tex_escape(g.reference)}'s predicted class: pytorch-qat-integer computes what the "
                          f"int8-qat file computes, its rounding passed straight through for the gradient. The largest "
                          f"completeness gap of any text: {gap:.1e}. Mean [{lvl}\\% bootstrap interval]."))


def explain_batching_table(res: Results) -> Optional[Table]:
    """What explaining a batch-dependent variant in batches did, against explaining it as deployed."""
    r, top = res.explain, top_k(res)
    b = r.batching
    if not b or not b["variants"]:
        return None
    rows = {}
    for v, x in b["variants"].items():
        rows[v] = {"prediction changed": f"{x['prediction_changed']} / {r.n_examples}",
                   "Spearman vs ref., batched": _mci(x["agreement_with_reference_batched"]["spearman"]),
                   "Spearman vs ref., alone": _mci(x["agreement_with_reference_alone"]["spearman"])
                   if x.get("agreement_with_reference_alone") else "--",
                   f"{top.LABEL} vs ref., batched": _mci(x["agreement_with_reference_batched"][top.NAME]),
                   f"{top.LABEL} vs ref., alone": _mci(x["agreement_with_reference_alone"][top.NAME])
                   if x.get("agreement_with_reference_alone") else "--",
                   "Spearman batched vs alone": _mci(x["batched_vs_alone"]["spearman"])}
    sb = b["selection_before"]
    return Table("explain_batching", pd.DataFrame(rows).T, label=f"tab:explain-batching-{res.name}",
                 caption=(f"LIME on a batch-dependent variant explained as deployed (each perturbed text alone) "
                          f"and as before (perturbed texts in batches of {b['batch_size']}), on the same "
                          f"{r.n_examples} texts and perturbations. Picked from batched predictions, the "
                          f"selection would hold {sb['n_disagreement']} disagreement texts "
                          f"(now {r.selection['n_disagreement']}); {sb['shared_with_now']} of its "
                          f"{sb['n_examples']} texts are among today's."))


def explain_faithfulness_table(res: Results) -> Table:
    """Faithfulness comparable across models (normalized AOPC, where the result has it; raw AOPC otherwise, said
    so) beside a random ranking, and what an explanation costs."""
    r = res.explain
    norm = bool(r.naopc)
    pre = "normalized_" if norm else ""
    rows = {}
    for v in r.cost:
        f = r.faithfulness.get(v)
        c = r.cost[v]
        rows[v] = {"compr.": _mci(f[pre + "comprehensiveness"]) if f else "--",
                   "random": f"{f['random_' + pre + 'comprehensiveness']['mean']:.2f}" if f else "--",
                   "suff.": _mci(f[pre + "sufficiency"]) if f else "--",
                   "random ": f"{f['random_' + pre + 'sufficiency']['mean']:.2f}" if f else "--",
                   "expl./s": f"{c['explanations_per_s']:.2f}",
                   f"vs {r.throughput_baseline}": f"{c['throughput_vs_baseline']:.2f}x",
                   "texts": str(c["examples"])}
    df = pd.DataFrame(rows).T
    alone = set((r.batching or {}).get("batch_dependent", []))
    df.index = [f"{v} (alone)" if v in alone else v for v in df.index]
    fr = ", ".join(f"{100 * x:g}" for x in r.fractions)
    what = ("normalized AOPC (Edin et al.: (AOPC $-$ lower) / (upper $-$ lower), the limits of any ranking of the "
            "words with that model, so that models can be compared)" if norm else
            "raw AOPC, which depends on the model: compare each row with its random ranking, not rows with each other")
    return Table("explain_faithfulness", df, label=f"tab:explain-faithfulness-{res.name}",
                 caption=(f"Faithfulness of each variant's own LIME explanation, computed with that variant on the "
                          f"random sample: {what}; comprehensiveness ({COMP.better} is better) and sufficiency "
                          f"({SUFF.better} is better) over removing or keeping the top {fr}\\% of the words, beside "
                          f"a random ranking. Cost with {r.samples} samples, variants interleaved (rows without "
                          f"faithfulness were explained on {len(r.cost_examples)} texts for their cost only)"
                          + (f"; (alone): a batch-dependent variant, every perturbed text predicted alone (batch 1) "
                             f"where the others take batches of {r.batch_size}, which its cost includes"
                             if alone else "") + "."))


def seeds_table(res: Results) -> Table:
    """Each variant's accuracy change over the training seeds: the interval a reviewer asks for (another
    fine-tuning run), beside the bootstrap interval of one seed (another test set)."""
    f, r = seeds_frame(res), res.seeds
    n, lvl = len(r.seeds), int(100 * r.confidence)
    pt = lambda x, digits=2: f"{100 * x:+.{digits}f}"  # noqa: E731
    na = lambda x, fmt: "--" if _na(x) else fmt(x)  # noqa: E731
    m = res.cfg.eval.equivalence_margin
    out = pd.DataFrame({
        "acc. (%)": [f"{pct(a, 2)} $\\pm$ {pct(sd, 2)}" for a, sd in zip(f["accuracy"], f["accuracy_sd"])],
        "$\\Delta$acc (pt)": ["--" if _na(d) else f"{pt(d)} [{pt(lo)}, {pt(hi)}]"
                              for d, lo, hi in zip(f["diff"], f["diff_lo"], f["diff_hi"])],
        f"$\\pm${100 * m:g} pt": ["--" if xs is None or len(xs) < 2 else S.tost_verdict(S.seeds_interval(xs, 0.90), m)
                                   for xs in f["per_seed"]],
        "bootstrap $\\pm$": [na(h, lambda x: f"{100 * x:.2f}") for h in f["boot_halfwidth"]],
        "vs control (pt)": ["--" if _na(c) else f"{pt(c)} [{pt(ci_[0])}, {pt(ci_[1])}]"
                            for c, ci_ in zip(f["vs_control"], f["vs_control_ci"])],
    })
    out.index = f["variant"]
    out.index.name = None
    ref = r.reference
    return Table("seeds", out, label=f"tab:seeds-{res.name}", column_format="lrrlrr",
                 caption=(f"Accuracy over {n} training seeds ({', '.join(map(str, r.seeds))}; the same split, "
                          f"{r.n_test:,} test texts, each text alone): mean $\\pm$ standard deviation; "
                          f"$\\Delta$acc against {tex_escape(ref)} of the same seed, mean and {lvl}\\% Student-t "
                          f"interval over the seeds; $\\pm${100 * m:g} pt: the equivalence verdict over the seeds "
                          f"(TOST, the 90\\% $t$ interval against the margin); bootstrap $\\pm$: the mean "
                          f"half-width (pt) of one seed's {lvl}\\% paired bootstrap interval; vs control: QAT's files "
                          f"against FP32 fine-tuned for QAT's extra epoch without fake quantization "
                          f"(pytorch-fp32-plus-epoch)."))


ORIGINAL_STUDY = "data/original_study.yaml"


def original_study(root) -> dict:
    """The original study's findings (data/original_study.yaml: its numbers, with the lines of its notes
    they come from)."""
    # the profile's repository, else this package's (a test's temporary root holds only configs and results)
    for path in (Path(root) / ORIGINAL_STUDY, PACKAGE_ROOT / ORIGINAL_STUDY):
        if path.is_file():
            return yaml.safe_load(path.read_text())
    raise FileNotFoundError(f"{ORIGINAL_STUDY} not found under {root} (the original study's findings)")


def original_table(res: Results) -> Table:
    """The original study's findings one by one beside this profile's measurement of the same thing; the
    original's numbers from data/original_study.yaml, ours from the results JSON."""
    study = original_study(res.cfg.root)
    o = study["findings"]
    e, b = res.evaluate.variants, res.bench
    conf = 100 * res.confidence()
    head = b.all_threads["headline"]
    ms = lambda n: head[n]["median_ms"]  # noqa: E731

    def diff(n):
        v = e[n]
        lo, hi = v["accuracy_diff_ci"]
        return f"{100 * v['accuracy_diff']:+.2f} pt [{100 * lo:+.2f}, {100 * hi:+.2f}]"

    q, s, a, c, g, h = (o[k] for k in ("qat_pytorch", "size", "accuracy", "cpu_speed", "gpu_speed", "fp16"))
    dyn = "onnx-int8-dynamic"           # like for like: the original's recipe, not the fastest of ours
    sp = run_speedups(res, dyn) if dyn in head else {}
    fq, fp = "pytorch-qat-fakequant", "pytorch-fp32"
    rows = {
        "PyTorch QAT (fake quantization)": (
            f"{q['size_mb']} MB, {q['latency_ms']} ms, accuracy {q['accuracy_diff_pt']:+.2f} pt",
            f"{e[fq]['size_mb']:.0f} MB (FP32: {e[fp]['size_mb']:.0f}), {ms(fq):.1f} ms (FP32: {ms(fp):.1f}), "
            f"accuracy {diff(fq)}" if fq in head else f"{e[fq]['size_mb']:.0f} MB, accuracy {diff(fq)}"
            if fq in e else "not run (qat.enabled: false)"),
        "dynamic INT8 file size": (
            f"{s['fp32_mb']} MB to {s['int8_mb']} MB ({s['fp32_mb'] / s['int8_mb']:.2f}x smaller)",
            f"{e['onnx-fp32']['size_mb']:.1f} MB to {e['onnx-int8-dynamic']['size_mb']:.1f} MB "
            f"({e['onnx-fp32']['size_mb'] / e['onnx-int8-dynamic']['size_mb']:.2f}x smaller)"),
        "dynamic INT8 accuracy": (
            f"{a['fp32_pct']:.2f}% to {a['int8_pct']:.2f}% ({a['int8_pct'] - a['fp32_pct']:+.2f} pt)",
            f"{100 * e[fp]['accuracy']:.2f}% to {100 * e['onnx-int8-dynamic']['accuracy']:.2f}% "
            f"({diff('onnx-int8-dynamic')}, paired {conf:g}%, batch 1)"),
        "dynamic INT8 on the CPU": (
            f"{c['fp32_ms']} ms to {c['int8_ms']} ms ({c['fp32_ms'] / c['int8_ms']:.2f}x)",
            f"ONNX FP32 {ms('onnx-fp32'):.1f} ms to {ms(dyn):.1f} ms in this run; {sp['median']:.2f}x, the median "
            f"over {sp['n']} runs ({sp['lo']:.2f}-{sp['hi']:.2f}; batch 1, {b.length} tokens, "
            f"{b.provenance['threads']} threads)" if sp else "not benchmarked"),
    }
    cuda = ((res.bench_gpu or b.gpu).get("onnxruntime") or {}).get("CUDAExecutionProvider", {})
    gpu_pair = [cuda.get(n, {}).get("median_ms") for n in ("onnx-fp32", "onnx-int8-dynamic")]
    rows["INT8 on the GPU"] = (
        f"{g['fp32_ms']} ms to {g['int8_ms']} ms ({g['int8_ms'] / g['fp32_ms']:.1f}x slower)",
        f"{gpu_pair[0]:.2f} ms to {gpu_pair[1]:.2f} ms ({gpu_pair[1] / gpu_pair[0]:.1f}x the time)"
        if all(gpu_pair) else "not measured (no GPU in this run)")
    f16 = e.get("onnx-fp16")
    rows["FP16 in ONNX Runtime"] = (
        "fails" if not h["runs"] else "runs",
        f"runs: accuracy {100 * f16['accuracy']:.2f}%, {100 * f16['agreement']:.1f}% of predictions as FP32's"
        if f16 else "not built")
    df = pd.DataFrame({"original study": {k: v[0] for k, v in rows.items()},
                       f"this study ({res.name})": {k: v[1] for k, v in rows.items()}})
    return Table("original", df, label=f"tab:original-{res.name}", column_format="".join(
                     rf">{{\raggedright\arraybackslash}}p{{{w}}}" for w in ("3.2cm", "4.8cm", "7.6cm")),
                 caption=("The original study's findings (its notes, as recorded in "
                          f"\\texttt{{{tex_escape(ORIGINAL_STUDY)}}} with their line numbers) beside this "
                          f"profile's measurement of the same thing. The original's model: "
                          f"{tex_escape(study['model'])}; settings the notes do not state are not given."))


def sizes_table(res: Results) -> Optional[Table]:
    """Cost against model size (``make sizes``): per size, the files' sizes, the fastest INT8 file's batch-1
    speed-ups over ONNX and PyTorch FP32, throughput, peak memory and Amdahl's bound."""
    fr = sizes_frames(res)
    if fr is None:
        return None
    r, v, s = res.sizes, fr["variants"], fr["sizes"]
    lengths = sorted(r.lengths)
    L = str(lengths[-1])
    at = lambda size, n, col: v[(v["size"] == size) & (v["variant"] == n)][col].iloc[0]  # noqa: E731
    has_fp16 = "onnx-fp16" in r.variants
    mem = v["peak_rss_mb"].notna().any()
    rows = {}
    for _, row in s.iterrows():
        n, b = row["size"], row["best_int8"]
        out = {"layers x hidden": f"{row['layers']} x {row['hidden']}", "params (M)": f"{row['params'] / 1e6:.1f}",
               "FP32 (MB)": f"{at(n, 'onnx-fp32', 'file_mb'):.1f}", "INT8 (MB)": f"{at(n, b, 'file_mb'):.1f}"}
        if has_fp16:
            out["FP16 (MB)"] = f"{at(n, 'onnx-fp16', 'file_mb'):.1f}"
        lat = f"latency_{L}"
        out.update({"fastest INT8": short(b).replace("int8-", ""),
                    f"FP32 / INT8 ms @{L}": f"{at(n, 'onnx-fp32', lat):.1f} / {at(n, b, lat):.1f}"})
        out.update({f"vs ONNX @{x}": f"{row[f'vs_onnx_{x}']:.2f}x" for x in lengths})
        out[f"vs PyTorch @{L}"] = f"{row[f'vs_torch_{L}']:.2f}x"
        out[f"texts/s FP32 / INT8 (b{r.batch_size})"] = (f"{at(n, 'onnx-fp32', 'texts_per_s'):.0f} / "
                                                          f"{at(n, b, 'texts_per_s'):.0f}")
        if mem:
            out["peak MB FP32 / INT8"] = f"{at(n, 'onnx-fp32', 'peak_rss_mb'):.0f} / {at(n, b, 'peak_rss_mb'):.0f}"
        if row.get(f"ov_vs_onnx_{L}") is not None and row[f"ov_vs_onnx_{L}"] == row[f"ov_vs_onnx_{L}"]:
            out[f"OpenVINO INT8 vs ONNX @{L}"] = f"{row[f'ov_vs_onnx_{L}']:.2f}x"
        if row.get("memcpy_dyn") is not None and row["memcpy_dyn"] == row["memcpy_dyn"]:
            out["CUDA Memcpy FP32 / dyn. INT8"] = f"{row['memcpy_fp32']:.0f} / {row['memcpy_dyn']:.0f}"
        out["matmul share (%)"] = f"{100 * row['matmul_share']:.0f}"
        out["INT8 products"] = "--" if row["int8_matmul_speedup"] is None else f"{row['int8_matmul_speedup']:.1f}x"
        out["ceiling"] = f"{row['free_matmul']:.1f}x"
        rows[n] = out
    df = pd.DataFrame(rows).T
    pv = r.provenance
    return Table("sizes", df, label=f"tab:sizes-{res.name}",
                 caption=(f"Cost against model size: BERT encoders with random weights (seed {r.seed}; speed "
                          f"and size need no trained weights), one at a time on {pv['threads']} threads, the "
                          f"variants interleaved on the same inputs (test texts cut to exact lengths). FP32, INT8 "
                          f"and FP16 are the ONNX files; fastest INT8: the integer file with the lowest batch-1 "
                          f"median at {L} tokens, whose speed-ups over ONNX FP32 and PyTorch FP32 are given; "
                          f"throughput at batch {r.batch_size} x {L} tokens"
                          + ("; peak resident memory of a fresh process predicting one such batch" if mem else "")
                          + f"; matmul share: matrix products' part of ONNX FP32's kernel time (operator profile, "
                          f"{r.protocol.get('profile_threads') or pv['threads']} thread(s)); INT8 products: how "
                          f"much faster the integer file without fused attention computes them, same profiles; "
                          f"ceiling: "
                          f"Amdahl's bound if they cost nothing and the rest kept its FP32 time. INT8 GEMM path of the "
                          f"host: {tex_escape(pv['cpu_isa']['int8_gemm'])}."))
