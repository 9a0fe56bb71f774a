"""The study beside another profile's: one profile's headline numbers next to another's, as one table and
macros. Two comparisons are drawn: another model on the same data (the ``base`` profile, MPNet-base, beside
the default's MiniLM-L6: ``Scale*`` macros) and another data set (``drugs``, 3-class Drugs.com reviews,
beside the default's 2-class Rotten Tomatoes: ``Second*`` macros); ``comparison`` says which from what the two
profiles' results record.

A profile names the one it is set beside with ``compare_with``; rendering it (``python -m utils.report base``)
writes ``paper/tables/<profile>/scale.tex`` and ``scale_numbers.tex`` from both profiles' results JSON, so the
default paper can quote the other profile without typing a number. Pure builders; ``writer`` writes.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Optional

import pandas as pd

from .. import variants as V
from .macros import data_name, explain_verdict, gradients_macros, hostdrift_macros, model_config, model_name
from .readers import Results, best_int, short, top_k
from .tables import ci, pct, symmetric
from .writer import Table, tex_escape

# the variants the comparison names (each row says which); rows of a variant a profile lacks read "--"
DYN, QAT, FP16 = "onnx-int8-dynamic", "onnx-int8-qat", "onnx-fp16"
# the targets the study at BERT-base scale was set: every INT8 file this many times smaller than
# ONNX FP32; QAT INT8 within this many points of FP32 at batch 1; the fastest INT8 file this many times faster
TARGET_RATIO, TARGET_QAT_PT, TARGET_SPEEDUP = 3.9, 0.3, 3.0


def _int8_files(ev: dict) -> list:
    return [n for n in ev if V.is_onnx_int8(n)]


def study_minutes(res: Results) -> Optional[float]:
    """Wall-clock minutes from the data step's record to the explanation step's, where one commit of a clean
    tree wrote every step (one run of the study); None where the steps come from different runs."""
    run = res.study_provenance()
    if run is None or any(p["git"].get("dirty") for p in run.values()):
        return None
    provs = list(run.values())
    t0, t1 = (datetime.fromisoformat(provs[i]["date"]) for i in (0, -1))
    return (t1 - t0).total_seconds() / 60


def scale_record(res: Results) -> dict:
    """One profile's headline numbers (floats and facts, unformatted): model, accuracy at batch 1 and its
    changes, file sizes, the benchmark's speed-ups and host, the optimizer's fusions, LIME agreement and
    faithfulness. Keys a profile has no result for are left out."""
    e = res.evaluate
    ev, ref = e.variants, e.reference
    c = res.data.provenance["config"]
    mc = model_config(res) or {}
    ints = _int8_files(ev)
    ox = ev["onnx-fp32"]["size_mb"]
    ratios = {n: ox / ev[n]["size_mb"] for n in ints}
    r = {"model": model_name(c["model"]), "data": res.data.source, "data_name": data_name(c["data"]),
         "n_classes": len(res.data.labels),
         "parameters": res.train_fp32.parameters,
         "max_length": c["model"]["max_length"], "n_train": res.data.splits["train"]["n"],
         "n_test": e.n_test, "fp32_acc": ev[ref]["accuracy"], "fp32_acc_ci": ev[ref]["accuracy_ci"],
         "onnx_fp32_mb": ox, "min_int8_ratio": min(ratios.values()), "min_int8_ratio_file": min(ratios, key=ratios.get),
         "n_int8_files": len(ints), "train_minutes": res.train_fp32.train_seconds / 60}
    # the architecture where it is known (a profile's record, or its checkpoint here); "--" in the table otherwise
    r.update({k: mc[v] for k, v in (("layers", "num_hidden_layers"), ("hidden", "hidden_size"))
              if mc.get(v) is not None})
    for key, n in (("dyn", DYN), ("qat", QAT), ("fp16", FP16)):
        if n in ev:
            r[f"{key}_diff"], r[f"{key}_diff_ci"] = ev[n]["accuracy_diff"], ev[n]["accuracy_diff_ci"]
    fused = res.quantize.variants.get("fp32-opt", {}).get("fusions")
    if fused is not None:
        r["attention_fused"] = int(fused.get("Attention", 0))
    if res.has("bench"):
        b = res.bench
        head, sp = b.headline, b.speedup_vs_onnx_fp32
        best = best_int(head)
        r.update({"best_int": best, "best_int_vs_onnx": sp[best], "bench_length": b.length,
                  "bench_threads": b.threads, "onnx_fp32_ms": head["onnx-fp32"]["median_ms"],
                  "best_int_ms": head[best]["median_ms"],
                  "bench_gemm": (b.provenance.get("cpu_isa") or {}).get("int8_gemm", "not recorded"),
                  "bench_cpu": b.provenance["cpu"], "bench_cores": b.provenance["cpu_count"]})
        if best in b.speedup_vs_pytorch_fp32:
            r["best_int_vs_torch"] = b.speedup_vs_pytorch_fp32[best]
    if res.has("explain"):
        x, top = res.explain, top_k(res)
        a, f = x.agreement, x.faithfulness
        r.update({"explain_n": x.n_examples, "explain_samples": x.samples})
        if not symmetric(x):
            # the earlier design: every variant on FP32's perturbations, the floor across seeds, raw AOPC; its
            # numbers are not set beside the floor or across models (said so, not printed)
            r["explain_asymmetric"] = True
        else:
            r["explain_n"] = x.selection["n_random"]
            for key, n in (("noise", "noise-floor"), ("dyn", DYN), ("qat", QAT)):
                if n in a:
                    r[f"spearman_{key}"] = a[n]["random"]["spearman"]["mean"]
                    r[f"{top.NAME}_{key}"] = a[n]["random"][top.NAME]["mean"]
                    if n != "noise-floor":
                        r[f"verdict_{key}"] = explain_verdict(a[n]["versus_floor"])
            if x.naopc:
                for key, n in (("fp", x.reference), ("qat", QAT)):
                    if n in f:
                        r[f"comp_{key}"] = f[n]["normalized_comprehensiveness"]["mean"]
                r["comp_random"] = f[x.reference]["random_normalized_comprehensiveness"]["mean"]
    minutes = study_minutes(res)
    if minutes is not None:
        r["study_minutes"] = minutes
    return r


def _reached(ok: bool) -> str:
    return "reached" if ok else "missed"


def _down(ratio: float) -> str:
    """A size ratio to two decimals, rounded down: 3.8949 is 3.89, never a 3.90 that missed a 3.9 target."""
    return f"{math.floor(ratio * 100) / 100:.2f}"


def _pt(x: float) -> str:
    return f"{100 * x:+.2f}"


def _pci(pair) -> str:
    return f"[{_pt(pair[0])}, {_pt(pair[1])}]"


def _cell(r: dict, key: str, fmt) -> str:
    return fmt(r) if key in r else "--"


# (row label, the key it needs, its cell): the rows of the comparison, in the table's order
ROWS = (
    ("data set", "data_name", lambda r: r["data_name"]),
    ("source", "data", lambda r: r["data"].split(":")[0]),
    ("classes", "n_classes", lambda r: str(r["n_classes"])),
    ("model", "model", lambda r: r["model"]),
    ("parameters", "parameters", lambda r: f"{r['parameters'] / 1e6:.1f}M"),
    ("layers x hidden", "layers", lambda r: f"{r['layers']} x {r['hidden']}"),
    ("max. length (tokens)", "max_length", lambda r: str(r["max_length"])),
    ("training / test texts", "n_train", lambda r: f"{r['n_train']:,} / {r['n_test']:,}"),
    ("FP32 accuracy, batch 1 (%)", "fp32_acc", lambda r: f"{pct(r['fp32_acc'])} {ci(r['fp32_acc_ci'])}"),
    ("dynamic INT8, change (pt)", "dyn_diff", lambda r: f"{_pt(r['dyn_diff'])} {_pci(r['dyn_diff_ci'])}"),
    ("QAT INT8, change (pt)", "qat_diff", lambda r: f"{_pt(r['qat_diff'])} {_pci(r['qat_diff_ci'])}"),
    ("FP16, change (pt)", "fp16_diff", lambda r: f"{_pt(r['fp16_diff'])} {_pci(r['fp16_diff_ci'])}"),
    ("ONNX FP32 file (MB)", "onnx_fp32_mb", lambda r: f"{r['onnx_fp32_mb']:.1f}"),
    ("smallest ratio, ONNX FP32 / INT8 file", "min_int8_ratio",
     lambda r: f"{_down(r['min_int8_ratio'])}x ({short(r['min_int8_ratio_file'])}, of {r['n_int8_files']})"),
    ("Attention nodes fused by the optimizer", "attention_fused",
     lambda r: f"{r['attention_fused']} of {r.get('layers', '--')}"),
    ("fastest INT8, batch 1", "best_int", lambda r: short(r["best_int"])),
    ("  its ms / ONNX FP32's ms", "best_int_ms", lambda r: f"{r['best_int_ms']:.1f} / {r['onnx_fp32_ms']:.1f}"),
    ("  speed-up over ONNX FP32", "best_int_vs_onnx", lambda r: f"{r['best_int_vs_onnx']:.2f}x"),
    ("  speed-up over PyTorch FP32", "best_int_vs_torch", lambda r: f"{r['best_int_vs_torch']:.2f}x"),
    ("  length, threads, INT8 GEMM path", "bench_length",
     lambda r: f"{r['bench_length']}, {r['bench_threads']}, {r['bench_gemm']}"),
    ("LIME: texts x perturbations", "explain_n", lambda r: f"{r['explain_n']} x {r['explain_samples']:,}"
                                                           + (" (earlier design)" if r.get("explain_asymmetric")
                                                              else "")),
    ("  Spearman, FP32 vs FP32 other seeds", "spearman_noise", lambda r: f"{r['spearman_noise']:.2f}"),
    ("  Spearman, dynamic INT8 (verdict)", "spearman_dyn",
     lambda r: f"{r['spearman_dyn']:.2f} ({r['verdict_dyn']})"),
    ("  Spearman, QAT INT8 (verdict)", "spearman_qat", lambda r: f"{r['spearman_qat']:.2f} ({r['verdict_qat']})"),
    ("  normalized compr. FP32 / QAT INT8 / random", "comp_fp",
     lambda r: f"{r['comp_fp']:.2f} / {r.get('comp_qat', float('nan')):.2f} / {r['comp_random']:.2f}"),
    ("minutes: FP32 training / whole study", "train_minutes",
     lambda r: f"{r['train_minutes']:.0f} / " + (f"{r['study_minutes']:.0f}" if "study_minutes" in r else "--")),
)


def comparison(res: Results, other: Results) -> str:
    """What ``res`` changes against ``other``, read from the two profiles' results: ``"data"`` (the same
    model on another data set), else ``"scale"`` (another model, or the same at other sizes)."""
    a, b = scale_record(res), scale_record(other)
    return "data" if a["model"] == b["model"] and a["data"] != b["data"] else "scale"


PREFIX = {"scale": "Scale", "data": "Second"}     # Data* macros are the paper's own data set's


def scale_table(res: Results, other: Results) -> Table:
    """``res`` (e.g. base) beside ``other`` (e.g. default): one column each, the rows of ``ROWS``."""
    recs = {other.name: scale_record(other), res.name: scale_record(res)}
    df = pd.DataFrame({name: {label: _cell(r, key, fmt) for label, key, fmt in ROWS} for name, r in recs.items()})
    df.columns = [f"{n} profile" for n in recs]
    what = {"scale": "The study at two scales", "data": "The study on two data sets"}[comparison(res, other)]
    return Table("scale", df, caption=(
        f"{what}: profile {tex_escape(other.name)} beside {tex_escape(res.name)}, each from its own "
        "results. Accuracy changes are against PyTorch FP32 of the same profile, each text alone, with "
        "paired bootstrap intervals; the benchmark is batch 1 at all cores, each profile on the host that ran it "
        "(its INT8 GEMM path in the row). Speed-ups compare files within a profile, never across hosts."),
        label=f"tab:{res.name}-scale", column_format="".join(
            rf">{{\raggedright\arraybackslash}}p{{{w}}}" for w in ("5.4cm", "4.6cm", "4.6cm")))


def scale_macros(res: Results, other: Results) -> dict:
    """Macros of ``res`` (the other scale or data set) for the paper of ``other``: facts, each headline number,
    and the targets as words (reached or not), so no sentence types a result. They begin with ``Scale`` for
    another model, with ``Second`` for another data set (``comparison``)."""
    prefix = PREFIX[comparison(res, other)]
    out = {prefix + k[len("Scale"):]: v for k, v in _scale_macros(res).items()}
    mine, theirs = scale_record(res).get("bench_gemm"), scale_record(other).get("bench_gemm")
    if mine and theirs and mine != theirs:      # timed on hosts with other INT8 paths: the paper says so
        out[prefix + "BenchOtherGemm"] = tex_escape(theirs)
    return out


def _scale_macros(res: Results) -> dict:
    r = scale_record(res)
    out = {"ScaleProfile": tex_escape(res.name), "ScaleModel": tex_escape(r["model"]),
           "ScaleClasses": str(r["n_classes"]), "ScaleSet": tex_escape(r["data"].split(":")[0]),
           "ScaleSetName": tex_escape(r["data_name"]),
           "ScaleParams": f"{r['parameters'] / 1e6:.1f}M", "ScaleMaxLength": str(r["max_length"]),
           "ScaleNTrain": f"{r['n_train']:,}", "ScaleNTest": f"{r['n_test']:,}",
           "ScaleFPAcc": pct(r["fp32_acc"]), "ScaleFPAccLo": pct(r["fp32_acc_ci"][0]),
           "ScaleFPAccHi": pct(r["fp32_acc_ci"][1]), "ScaleMinRatio": _down(r["min_int8_ratio"]),
           "ScaleNIntFiles": str(r["n_int8_files"]), "ScaleTrainMinutes": f"{r['train_minutes']:.0f}",
           "ScaleTargetRatio": f"{TARGET_RATIO:g}", "ScaleTargetQat": f"{TARGET_QAT_PT:g}",
           "ScaleTargetSpeedup": f"{TARGET_SPEEDUP:g}",
           "ScaleRatioReached": _reached(r["min_int8_ratio"] >= TARGET_RATIO)}
    if r.get("layers"):
        out.update({"ScaleLayers": str(r["layers"]), "ScaleHidden": str(r["hidden"])})
    for key in ("dyn", "qat", "fp16"):
        if f"{key}_diff" in r:
            k = {"dyn": "Dyn", "qat": "Qat", "fp16": "FPSixteen"}[key]
            d, (lo, hi) = r[f"{key}_diff"], r[f"{key}_diff_ci"]
            out.update({f"Scale{k}Diff": _pt(d), f"Scale{k}Lo": _pt(lo), f"Scale{k}Hi": _pt(hi)})
    if "qat_diff" in r:
        lo, hi = r["qat_diff_ci"]
        t = TARGET_QAT_PT / 100
        out["ScaleQatReached"] = _reached(abs(r["qat_diff"]) <= t)
        out["ScaleQatIntervalInside"] = "inside" if -t <= lo and hi <= t else "not inside"
    if "attention_fused" in r:
        out["ScaleAttentionFused"] = str(r["attention_fused"])
    if "best_int" in r:
        out.update({"ScaleBestInt": tex_escape(short(r["best_int"])),
                    "ScaleBestIntVsOnnx": f"{r['best_int_vs_onnx']:.2f}",
                    "ScaleBestIntMs": f"{r['best_int_ms']:.1f}", "ScaleOnnxFPMs": f"{r['onnx_fp32_ms']:.1f}",
                    "ScaleBenchLength": str(r["bench_length"]), "ScaleBenchThreads": str(r["bench_threads"]),
                    "ScaleBenchGemm": tex_escape(r["bench_gemm"]), "ScaleBenchCPU": tex_escape(r["bench_cpu"]),
                    "ScaleBenchCores": str(r["bench_cores"]),
                    # the speed target is a VNNI host's (AVX2's u8s8 products are 16-bit pairs: not comparable)
                    "ScaleSpeedReached": (_reached(r["best_int_vs_onnx"] >= TARGET_SPEEDUP)
                                          if any(k in r["bench_gemm"] for k in ("vnni", "amx"))
                                          else "not tested: the host has no VNNI")})
        if "best_int_vs_torch" in r:
            out["ScaleBestIntVsTorch"] = f"{r['best_int_vs_torch']:.2f}"
    for key, k in (("noise", "Noise"), ("dyn", "Dyn"), ("qat", "Qat")):
        if f"spearman_{key}" in r:
            out[f"ScaleSpearman{k}"] = f"{r[f'spearman_{key}']:.2f}"
    if "explain_n" in r:
        out.update({"ScaleExplainN": str(r["explain_n"]), "ScaleExplainSamples": f"{r['explain_samples']:,}"})
        if r.get("explain_asymmetric"):
            out["ScaleExplainAsymmetric"] = "1"
        for key, k in (("dyn", "Dyn"), ("qat", "Qat")):
            if f"verdict_{key}" in r:
                out[f"ScaleExplainVerdict{k}"] = r[f"verdict_{key}"]
        if "comp_fp" in r:
            out.update({"ScaleNCompFP": f"{r['comp_fp']:.2f}", "ScaleNCompRandom": f"{r['comp_random']:.2f}"})
        if "comp_qat" in r:
            out["ScaleNCompQat"] = f"{r['comp_qat']:.2f}"
    if "study_minutes" in r:
        out["ScaleStudyMinutes"] = f"{r['study_minutes']:.0f}"
    # the profile's own measurements of why INT8 moves with the CPU and of Integrated Gradients, where it has them
    out.update({f"Scale{k}": v for k, v in {**hostdrift_macros(res), **gradients_macros(res)}.items()})
    return out
