"""Pure builder of the paper's macros (numbers.tex): every number a sentence of paper/main.tex quotes,
from the results JSON, with the variants its sentences name looked up in the registry."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np

from .. import bench_runs as R
from .. import data as D
from .. import metrics as MT
from .. import packaged as PK
from .. import packaged_data as PD
from .. import variants as V
from ..results import as_result
from ..stats import tost_verdict
from . import frames as F
from .frames import INT8_DOT_FACTOR, amdahl, sizes_frames, unfused_int8
from .readers import Results, best_int, short, top_k
from .runtimes import runtime_macros
from .tables import pct, symmetric
from .writer import tex_escape


def paper_macros(res: Results) -> dict:
    """Numbers quoted in the paper's text, from the results JSON (name -> text; ``writer.write_macros``
    writes them as paper/tables/<profile>/numbers.tex)."""
    d, t = res.data, res.train_fp32
    x, e = res.export, res.evaluate.variants
    q = res.quantize.variants
    fp, ox, q8 = e["pytorch-fp32"], e["onnx-fp32"], e["onnx-int8-dynamic"]
    f16 = e["onnx-fp16"]
    macros = {}
    if res.has("bench"):
        b = res.bench
        head = b.all_threads["headline"]
        best = best_int(head)
        sp, spt = b.speedup_vs_onnx_fp32, b.speedup_vs_pytorch_fp32
        fmt_ms = lambda n: f"{head[n]['median_ms']:.1f}" if n in head else "--"  # noqa: E731
        fmt_x = lambda n: f"{sp[n]:.2f}" if n in sp else "--"  # noqa: E731
        macros = {
            "BenchThreads": str(b.provenance["threads"]), "BenchLength": str(b.length),
            "BenchCPU": tex_escape(b.provenance["cpu"]),
            "BestInt": short(best), "BestIntMs": fmt_ms(best),
            "BestIntVsOnnx": fmt_x(best), "BestIntVsTorch": f"{spt[best]:.2f}" if best in spt else "--",
            **({"BestIntVsOnnxWord": speed_verdict(sp[best])} if best in sp else {}),
            **({"BestIntVsTorchWord": speed_verdict(spt[best])} if best in spt else {}),
            "BenchOnnxFPMs": fmt_ms("onnx-fp32"), "BenchTorchFPMs": fmt_ms("pytorch-fp32"),
            "BenchDynMs": fmt_ms("onnx-int8-dynamic"), "BenchDynVsOnnx": fmt_x("onnx-int8-dynamic"),
            **({"BenchQatMs": fmt_ms("onnx-int8-qat"), "BenchQatVsOnnx": fmt_x("onnx-int8-qat"),
                "BenchFQMs": fmt_ms("pytorch-qat-fakequant")} if qat_ran(res) else {}),
            "BenchTorchDynMs": fmt_ms("pytorch-int8-dynamic"),
            "BenchTorchBFMs": fmt_ms("pytorch-bf16"),
            "BenchTokenMs": fmt_ms("onnx-int8-dynamic-token"), "BenchTokenVsOnnx": fmt_x("onnx-int8-dynamic-token"),
            "BenchMaxSpread": f"{100 * max(v['spread'] for v in head.values()):.1f}",
            "BenchMinSpread": f"{100 * min(v['spread'] for v in head.values()):.1f}",
            **({"BenchMinutes": f"{b.seconds / 60:.1f}"} if b.seconds else {}),
            "OrtThreads": ("ONNX Runtime's threads spin between operators within a call, as by default, and stop "
                           "when it returns, so that they do not hold the cores in the next model's turn"
                           if (b.protocol or {}).get("ort_spin_stop") else
                           "ONNX Runtime's threads spin, as by default, also after a call returns"
                           if (b.protocol or {}).get("ort_spinning") else
                           "ONNX Runtime's threads do not spin between calls"),
            **({"HeadlineOnly": tex_escape(", ".join(b.protocol["headline_only"]))}
               if (b.protocol or {}).get("headline_only") else {}),
            **_memory_macros(b, best),
            **_protocol_macros(b, best), **_run_macros(res), **_sym_macros(b, q),
            **_skip_layer_norm_macros(b, q),
            "GPUNote": tex_escape(b.gpu.get("note", "GPU measured")),
        }
    return {**macros, **explain_macros(res), **batching_macros(res), **hosts_macros(res), **seeds_macros(res),
            **sizes_macros(res), **hostdrift_macros(res), **gradients_macros(res),
            **setup_macros(res),
            **claim_macros(res), **runtime_macros(res),
        "NExamples": f"{d.n_examples:,}", "NTest": f"{d.splits['test']['n']:,}",
        "NTrain": f"{d.splits['train']['n']:,}",
        "MajorityAcc": pct(d.majority_class_test_accuracy),
        **({"TrainMinutes": f"{t.train_seconds / 60:.1f}", "BestEpoch": str(t.best_epoch)}
           if t.adopted is None else {"Adopted": tex_escape(t.adopted["from"]),
                                       "AdoptedValAcc": pct(t.best_val_accuracy)}),
        "ParityMaxDiff": f"{max(v['parity']['max_abs_diff'] for v in x.files.values() if 'parity' in v):.1e}",
        "FPAcc": pct(fp["accuracy"]), "OnnxFPAcc": pct(ox["accuracy"]), "DynAcc": pct(q8["accuracy"]),
        "DynAccDiff": f"{100 * q8['accuracy_diff']:+.1f}", "DynAgree": pct(q8["agreement"]),
        "OnnxFPMB": f"{ox['size_mb']:.1f}", "DynMB": f"{q8['size_mb']:.1f}",
        "DynRatio": f"{ox['size_mb'] / q8['size_mb']:.2f}",
        **_qat_macros(res), "FPLatency": lat(fp), "OnnxFPLatency": lat(ox), "DynLatency": lat(q8),
        "FPSixteenAcc": pct(f16["accuracy"]), "FPSixteenMB": f"{f16['size_mb']:.1f}",
        "FPSixteenAgree": pct(f16["agreement"]),
    }


def lat(v: dict) -> str:
    """A variant's batch-1 latency in the evaluation (median ms), as the paper prints it."""
    return f"{v['latency_b1']['median_ms']:.1f}"


def qat_ran(res: Results) -> bool:
    """Whether the run trained QAT (``qat.enabled``): without it, no QAT variant, macro or sentence."""
    return res.train_qat.enabled is not False


def _qat_macros(res: Results) -> dict:
    """The numbers of QAT and its files; none, ``QatRan`` included, where the run had no QAT (every sentence about
    QAT in the paper stands inside ``\\ifdefined\\QatRan``)."""
    if not qat_ran(res):
        return {}
    e, sm = res.evaluate.variants, res.quantize.variants["int8-qat"]["scales_match_qat"]
    qa, qs, fq = e["onnx-int8-qat"], e["onnx-int8-qat-seed"], e["pytorch-qat-fakequant"]
    return {
        "QatRan": "QAT", "QatMinutes": f"{res.train_qat.train_seconds / 60:.1f}",
        "QatAcc": pct(qa["accuracy"]), "QatAccDiff": f"{100 * qa['accuracy_diff']:+.1f}",
        "QatSeedAcc": pct(qs["accuracy"]), "QatSeedAccDiff": f"{100 * qs['accuracy_diff']:+.1f}",
        "QatMB": f"{qa['size_mb']:.1f}", "QatRatio": f"{e['onnx-fp32']['size_mb'] / qa['size_mb']:.2f}",
        "QatAgreeFQ": pct(qa["agreement_with_qat_fakequant"], 2),
        "QatSeedAgreeFQ": pct(qs["agreement_with_qat_fakequant"], 2),
        "QatAgreeInt": pct(qa["agreement_with_qat_integer"], 2),
        "QatSeedAgreeInt": pct(qs["agreement_with_qat_integer"], 2),
        "QatScalesEqual": f"{sm['activation_scales_equal']}", "QatLayers": f"{sm['layers']}",
        "FQMB": f"{fq['size_mb']:.1f}", "FQLatency": lat(fq), "QatLatency": lat(qa)}


def model_config(res: Results) -> Optional[dict]:
    """The architecture of the model the profile fine-tuned, read without a network: as train_fp32.json records
    it, else the config.json of the FP32 checkpoint if it is on this machine, else the packaged or local source
    model's (the same encoder; the head is new); None for a hub model whose checkpoint is not here."""
    if res.train_fp32.architecture:
        return res.train_fp32.architecture
    m = res.data.provenance["config"]["model"]
    found = [res.cfg.path(res.train_fp32.checkpoint) / "config.json"]
    if m["source"] == "packaged":
        try:
            found.append(PK.model_dir(m.get("packaged"), res.cfg.root) / "config.json")
        except PK.PackagedModelError:           # a split model not downloaded here: nothing to read
            pass
    elif m["source"] == "local":
        found.append(res.cfg.path(m["name_or_path"]) / "config.json")
    for path in found:
        if path.is_file():
            return json.loads(path.read_text())
    return None


def model_name(m: dict) -> str:
    """The model's public name: the packaged model's upstream repository name, else the hub id or folder."""
    if m["source"] == "packaged":
        return PK.get(m.get("packaged")).upstream.split("/")[-1]
    return Path(str(m["name_or_path"])).name if m["source"] == "local" else str(m["name_or_path"])


def data_name(dc: dict) -> str:
    """The data set's name: the packaged set's, a file's name or the hub data set's id."""
    if dc["source"] == "packaged":
        return PD.get(dc["packaged"]).display_name if dc.get("packaged") else D.PACKAGED_NAME
    return Path(str(dc["path"])).name if dc["source"] == "file" else str(dc["name"])


def group_column(dc: dict) -> Optional[str]:
    """The column that keeps related texts in one split (a packaged set's own, or the profile's), or None."""
    if dc["source"] == "packaged":
        return PD.get(dc["packaged"]).group_column if dc.get("packaged") else D.PACKAGED_GROUP
    return dc.get("group_column")


def setup_macros(res: Results) -> dict:
    """Facts of the set-up that a profile changes (model, its size, data, opset, interval level), from the
    configuration recorded in the results' provenance, so that no sentence types them."""
    c = res.data.provenance["config"]
    out = {"ModelName": tex_escape(model_name(c["model"])), "DataName": tex_escape(data_name(c["data"])),
           "ModelParams": f"{res.train_fp32.parameters / 1e6:.1f}M",
           "MaxLength": str(c["model"]["max_length"]), "Opset": str(c["export"]["opset"]),
           "ConfPct": f"{100 * res.confidence():g}", "EvalBatchSize": str(c["eval"]["batch_size"])}
    ems = [rf"\emph{{{tex_escape(str(x))}}}" for x in res.labels]
    out["DataLabels"] = " or ".join(reversed(ems)) if len(ems) == 2 else ", ".join(ems)
    group = group_column(c["data"])
    if group and res.data.group_overlap == 0:      # the splits share no group: the paper may say so
        out["DataGroup"] = tex_escape(str(group).replace("_", " "))
    out.update(host_macros(res))
    mc = model_config(res)
    if mc is not None and {"num_hidden_layers", "hidden_size", "model_type"} <= set(mc):
        out.update({"ModelLayers": str(mc["num_hidden_layers"]), "ModelHidden": str(mc["hidden_size"]),
                    "ModelType": tex_escape(str(mc["model_type"]).upper())})
    return out


def _host(prov: dict) -> dict:
    isa = prov.get("cpu_isa") or {}
    return {"CPU": tex_escape(prov["cpu"]), "ISA": tex_escape(", ".join(isa.get("features", [])) or "none recorded"),
            "Gemm": tex_escape(isa.get("int8_gemm", "not recorded"))}


def host_macros(res: Results) -> dict:
    """The hosts of the accuracy (evaluate.json) and speed (bench.json) results: CPU, the instruction-set
    features that decide INT8 (provenance ``cpu_isa``) and the INT8 GEMM path they select; whether the two
    steps ran on hosts with different instruction sets (INT8 predictions differ between them); versions."""
    ev = res.evaluate.provenance
    out = {f"Eval{k}": v for k, v in _host(ev).items()}
    pk = ev.get("packages", {})
    out.update({f"{key}Version": tex_escape(pk.get(dist) or "not recorded")
                for key, dist in (("Ort", "onnxruntime"), ("Torch", "torch"), ("Transformers", "transformers"))})
    sec = res.step_seconds()
    if sec is not None:     # one run of the eight steps, each with its wall-clock seconds
        out["StudyMinutes"] = f"{sum(sec.values()) / 60:.0f}"
    if res.has("bench"):
        b = res.bench.provenance
        out.update({f"Bench{k}": v for k, v in _host(b).items() if k != "CPU"})
        if (b.get("cpu_isa") or {}).get("features") != (ev.get("cpu_isa") or {}).get("features"):
            out["HostsDiffer"] = "1"
    return out




def amdahl_bound(res: Results, variant: str = "onnx-fp32") -> dict:
    """How much faster quantizing the matrix products can make ``variant`` on the CPU at most, from
    its own operator profile in bench.json (see ``frames.amdahl``)."""
    ops = res.bench.op_times
    if variant not in ops:
        raise KeyError(f"bench.json of profile {res.name!r} has no CPU operator profile of {variant!r}")
    return amdahl(ops[variant])


def _protocol_macros(b: dict, best: str) -> dict:
    """Paper numbers on how the variants were interleaved, where bench.json records it."""
    b = as_result("bench", b)
    cpu = b.all_threads
    rr, per = b.speedup_vs_onnx_fp32_rounds, cpu.get("per_call")
    out = {}
    if rr:
        out["BestIntRatioSpread"] = f"{100 * rr[best]['spread']:.1f}"
        out["BenchMaxRatioSpread"] = f"{100 * max(v['spread'] for v in rr.values()):.1f}"
        out["BenchBlock"], out["BenchBlockWarmup"] = str(b.protocol["block"]), str(b.protocol["block_warmup"])
    one = b.cpu.get("threads_1", {}).get("headline", {})
    head = cpu["headline"]
    if {"onnx-fp32", best} <= set(one) and b.provenance["threads"] != 1:
        out["BestIntVsOnnxOneThread"] = f"{one['onnx-fp32']['median_ms'] / one[best]['median_ms']:.2f}"
        out["OnnxFPThreadGain"] = f"{one['onnx-fp32']['median_ms'] / head['onnx-fp32']['median_ms']:.2f}"
        out["BestIntThreadGain"] = f"{one[best]['median_ms'] / head[best]['median_ms']:.2f}"
    ops = b.op_times
    # where the time goes, op by op against ONNX FP32's unfused graph: the fastest INT8 file without a
    # fused attention operator (whose kernel time mixes products with softmax and reshapes)
    unfused = unfused_int8(ops, among=head)
    op_best = best_int(head, unfused) if unfused else None
    fusedq = [n for n in ops if V.is_onnx_int8(n) and n in head and "QAttention" in ops[n]["op_ms"]]
    if fusedq and op_best:
        fq = best_int(head, fusedq)
        out.update({"FusedInt": short(fq), "FusedIntMs": f"{head[fq]['median_ms']:.1f}",
                    "FusedIntVsOnnx": f"{b.speedup_vs_onnx_fp32[fq]:.2f}",
                    "FusedIntGain": f"{100 * (head[op_best]['median_ms'] / head[fq]['median_ms'] - 1):+.0f}"})
    # the profiles' thread count, what the profiler costs there and on all cores, and the unfused INT8
    # file's speed-up without the profiler on the profiles' threads (what Amdahl's bound bounds)
    pt = b.profile_threads
    at = b.cpu.get(f"threads_{pt}", {}).get("headline", {})
    over = (b.profiler_overhead or {})
    if ops:
        out["ProfThreads"] = "one thread" if pt == 1 else f"{pt} threads"
        if pt == 1:
            out["ProfOneThread"] = "1"
    fp_over = lambda t: over.get(f"threads_{t}", {}).get("onnx-fp32")  # noqa: E731
    all_t = b.provenance["threads"]
    if fp_over(pt):
        out["ProfSlowdown"] = f"{100 * fp_over(pt)['slowdown']:.0f}"
    if all_t != pt and fp_over(all_t):
        out["ProfSlowdownAll"] = f"{100 * fp_over(all_t)['slowdown']:.0f}"
    if op_best and "onnx-fp32" in ops:
        fp, q = ops["onnx-fp32"], ops[op_best]
        out["OpBestInt"] = short(op_best)
        measured = (at["onnx-fp32"]["median_ms"] / at[op_best]["median_ms"]) if {"onnx-fp32", op_best} <= set(at) \
            else None
        if measured is not None:
            out["OpBestIntVsOnnxProf"] = f"{measured:.2f}"
        out.update({"FPKernelMs": f"{fp['kernel_ms']:.1f}", "FPMatmulMs": f"{fp['matmul_ms']:.1f}",
                    "IntKernelMs": f"{q['kernel_ms']:.1f}", "IntMatmulMs": f"{q['matmul_ms']:.1f}",
                    "FPOtherMs": f"{fp['kernel_ms'] - fp['matmul_ms']:.1f}",
                    "IntOtherMs": f"{q['kernel_ms'] - q['matmul_ms']:.1f}",
                    "MatmulSpeedup": f"{fp['matmul_ms'] / q['matmul_ms']:.2f}"})
        a = amdahl(fp)
        out.update({"AmdahlMs": f"{a['bound_ms']:.1f}", "AmdahlX": f"{a['bound_speedup']:.2f}",
                    "NoMatmulX": f"{a['free_matmul_speedup']:.2f}", "DotFactor": str(INT8_DOT_FACTOR)})
        # the bound assumes the products gain the dot-product factor; a CPU whose INT8 GEMM gains more (AMX
        # tiles) beats it, and the paper must not say "cannot" there (measured on an AMX host: 6.1x products)
        if fp["matmul_ms"] / q["matmul_ms"] > INT8_DOT_FACTOR or (measured or 0) > a["bound_speedup"]:
            out["AmdahlBeaten"] = "1"
    spin = cpu.get("spinning", {}).get("variants", {})
    if {"onnx-fp32", best} <= set(spin):
        out.update({"SpinOnnxFPMs": f"{spin['onnx-fp32']['median_ms']:.1f}",
                    "SpinBestIntMs": f"{spin[best]['median_ms']:.1f}",
                    "SpinBestIntVsOnnx": f"{spin['onnx-fp32']['median_ms'] / spin[best]['median_ms']:.2f}",
                    "SpinBlock": str(cpu["spinning"]["block"])})
    if per and "onnx-fp32" in per:
        out["PerCallBestVsOnnx"] = f"{per['onnx-fp32']['median_ms'] / per[best]['median_ms']:.2f}"
        slow = [v["after"]["pytorch"]["median_ms"] / v["after"]["onnxruntime"]["median_ms"] - 1
                for n, v in per.items()
                if V.runtime_of(n) == "onnxruntime" and {"pytorch", "onnxruntime"} <= set(v["after"])]
        if slow:
            out["OnnxAfterTorchMin"] = f"{100 * min(slow):+.0f}"
            out["OnnxAfterTorchMax"] = f"{100 * max(slow):+.0f}"
            out["OnnxAfterTorchMedian"] = f"{100 * float(np.median(slow)):.0f}"
    return out


def _memory_macros(b: dict, best: str) -> dict:
    """Paper numbers on fresh-process memory: what loading ONNX FP32 and the fastest INT8 file adds to
    a process, and that process's peak (imports included)."""
    mem = b.memory or {}
    if not {"onnx-fp32", best} <= set(mem):
        return {}
    fp, q = mem["onnx-fp32"], mem[best]
    return {"MemOnnxFPMB": f"{fp['model_rss_mb']:.0f}", "MemBestIntMB": f"{q['model_rss_mb']:.0f}",
            "PeakOnnxFPMB": f"{fp['peak_rss_mb']:.0f}", "PeakBestIntMB": f"{q['peak_rss_mb']:.0f}",
            **({"MemBatch": str(fp["batch"])} if "batch" in fp else {})}    # recorded since 2026-12-03


def _sym_macros(b: dict, q: dict) -> dict:
    """Paper numbers on the symmetric int8-activation file (TensorRT's format) on the CPU provider."""
    b = as_result("bench", b)
    head, ops = b.all_threads["headline"], b.op_times
    sym, ref = "int8-static-sym", "int8-static-minmax"
    if not ({sym, ref} <= set(q) and f"onnx-{sym}" in head and f"onnx-{sym}" in ops):
        return {}
    fused = lambda n: q[n]["session_ops"].get("MatMulIntegerToFloat", 0)  # noqa: E731
    return {"SymMs": f"{head[f'onnx-{sym}']['median_ms']:.1f}",
            "SymVsOnnx": f"{b.speedup_vs_onnx_fp32[f'onnx-{sym}']:.2f}",
            "SymFused": str(fused(sym)), "MinmaxFused": str(fused(ref)),
            "SymDQMs": f"{ops[f'onnx-{sym}']['op_ms'].get('DequantizeLinear', 0.0):.1f}"}


def _skip_layer_norm_macros(b: dict, q: dict) -> dict:
    """Paper numbers on ORT's fused SkipLayerNormalization CPU kernel: its time per node in a variant
    whose session runs it, against a LayerNormalization plus its residual Add in the variant that
    asks ORT to leave that fusion off (same shapes, same run, same threads)."""
    b = as_result("bench", b)
    ops = b.op_times
    runs = lambda n, op: q[n]["session_ops"].get(op, 0)  # noqa: E731
    fused = [n for n in q if runs(n, "SkipLayerNormalization") and f"onnx-{n}" in ops]
    apart = [n for n in q if "SkipLayerNormFusion" in q[n].get("ort_cpu_disabled_optimizers", ())
             and f"onnx-{n}" in ops and runs(n, "LayerNormalization")
             and runs(n, "Add") == runs(n, "LayerNormalization")]
    if not (fused and apart):
        return {}
    f = "int8-dynamic-pt" if "int8-dynamic-pt" in fused else fused[0]
    a = "int8-dynamic-opt" if "int8-dynamic-opt" in apart else apart[0]
    sln = 1e3 * ops[f"onnx-{f}"]["op_ms"]["SkipLayerNormalization"] / runs(f, "SkipLayerNormalization")
    fo = ops[f"onnx-{a}"]["op_ms"]
    two = 1e3 * (fo["LayerNormalization"] + fo["Add"]) / runs(a, "LayerNormalization")
    return {"SLNVariant": f, "SLNUs": f"{sln:.0f}", "LNAddVariant": a, "LNAddUs": f"{two:.0f}",
            "SLNSlowdown": f"{sln / two:.1f}"}


def _run_macros(res: Results) -> dict:
    """Paper numbers on run-to-run spread, where bench_runs.jsonl has two comparable runs or more."""
    b = res.bench
    runs, _, _ = res.run_history()
    rr = res.run_to_run()
    if rr is None:
        return {}
    sp = {n: v["spread"] for n, v in rr["median_ms"].items()}
    best = rr["speedup_vs_onnx_fp32"]["variant"]
    dates = [datetime.fromisoformat(d) for d in rr["dates"]]
    span = lambda v, f: f.format(min(v)) if f.format(min(v)) == f.format(max(v)) \
        else f"{f.format(min(v))}--{f.format(max(v))}"  # noqa: E731
    out = {"RunsN": str(rr["runs"]), "RunBestInt": short(best),
           "RunsSpanHours": f"{(max(dates) - min(dates)).total_seconds() / 3600:.1f}",
           "RunSpreadBestInt": f"{100 * sp[best]:.1f}",
           "RunSpreadMin": f"{100 * min(sp.values()):.1f}", "RunSpreadMax": f"{100 * max(sp.values()):.1f}",
           "RunSpreadBestIntVsOnnx": f"{100 * rr['speedup_vs_onnx_fp32']['spread']:.1f}",
           "RunBestIntVsOnnxRange": span(rr["speedup_vs_onnx_fp32"]["values"], "{:.2f}")}
    if "speedup_vs_pytorch_fp32" in rr:
        out["RunBestIntVsTorchRange"] = span(rr["speedup_vs_pytorch_fp32"]["values"], "{:.2f}")
    if best == best_int(b.all_threads["headline"]):   # the ranges are those of the paper's BestInt
        out["BestIntRunsAlike"] = "1"
    if "onnx-fp32" in sp:
        out["RunSpreadOnnxFP"] = f"{100 * sp['onnx-fp32']:.1f}"
    old = [run for run in runs if run["protocol"] == R.UNRECORDED and best in run["speedup_vs_onnx_fp32"]]
    if old:
        x = [run["speedup_vs_onnx_fp32"][best] for run in old]
        ms = [run["median_ms"]["onnx-fp32"] for run in old]
        out.update({"OldRunsN": str(len(old)), "OldBestIntVsOnnx": span(x, "{:.2f}"),
                    "OldOnnxFPMs": span(ms, "{:.1f}")})
    return out


def hosts_macros(res: Results) -> dict:
    """Paper numbers on one trained model evaluated on several instruction sets (eval_runs.jsonl): the predictions
    the host moved, FP32 beside INT8, and the accuracy changes of dynamic and QAT INT8 with intervals covering the
    hosts. None where the model was evaluated on one instruction set."""
    h = res.across_hosts()
    if h is None:
        return {}
    v = h["variants"]
    # the files made from the FP32 checkpoint whose PyTorch predictions are identical on every host
    floats = [n for n in v if V.runtime_of(n) == "onnxruntime" and not V.is_onnx_int8(n) and v[n]["weights"] == "fp32"]
    ints = [n for n in v if V.is_onnx_int8(n) and v[n]["weights"] == "fp32"]
    if not ints:
        return {}
    out = {"CrossN": str(len(h["isas"])), "CrossGemms": tex_escape(" and ".join(h["isas"])),
           "CrossIntMovedMin": str(min(v[n]["moved"] for n in ints)),
           "CrossIntMovedMax": str(max(v[n]["moved"] for n in ints)),
           "CrossSameIntFiles": str(sum(v[n]["same_file"] for n in ints)), "CrossIntFiles": str(len(ints)),
           "CrossNTest": f"{h['n_test']:,}"}
    if floats:
        out["CrossFloatMovedMax"] = str(max(v[n]["moved"] for n in floats))
    if "pytorch-qat-fakequant" in v:      # QAT's training on each host: its fake-quant model's answers
        k = v["pytorch-qat-fakequant"]["moved"]
        out["CrossQatTrain"] = (f"and its training came out differently (its fake-quant model's predictions differ on "
                                f"{k} texts), so QAT INT8's range mixes training and kernels" if k else
                                "and its training reproduced (its fake-quant model's predictions are identical)")
    for name, key in (("onnx-int8-dynamic", "Dyn"), ("onnx-int8-qat", "Qat")):
        if name in v and v[name]["covering_ci"]:
            d = [x for x in v[name]["accuracy_diff"].values() if x is not None]
            lo, hi = v[name]["covering_ci"]
            out.update({f"Cross{key}Moved": str(v[name]["moved"]),
                        f"Cross{key}DiffMin": f"{100 * min(d):+.2f}", f"Cross{key}DiffMax": f"{100 * max(d):+.2f}",
                        f"Cross{key}CoverLo": f"{100 * lo:+.2f}", f"Cross{key}CoverHi": f"{100 * hi:+.2f}"})
    return out


def batching_macros(res: Results) -> dict:
    """Paper numbers on batch invariance: the predictions that move per family of variants, the accuracy
    of dynamic INT8 batched, and the scale ratio behind the moves (where measured)."""
    e = res.evaluate.variants
    if not all("batch_invariance" in v for v in e.values()):
        return {}
    mv = lambda n: e[n]["batch_invariance"]["moved_batch1_vs_sorted"]  # noqa: E731
    dep = [n for n in e if e[n]["batch_invariant_declared"] is False]
    inv = [n for n in e if e[n]["batch_invariant_declared"] is True]
    q8, bs = e["onnx-int8-dynamic"], e["onnx-int8-dynamic"]["batched"]
    out = {"EvalBatch": str(bs["batch_size"]), "DynMoved": str(mv("onnx-int8-dynamic")),
           "DynMovedRandom": str(q8["batch_invariance"]["moved_batch1_vs_random"]),
           "DynBatchedAcc": pct(bs["accuracy"]), "DynBatchedAccDiff": f"{100 * bs['accuracy_diff']:+.1f}",
           "DepMovedMin": str(min(mv(n) for n in dep)), "DepMovedMax": str(max(mv(n) for n in dep)),
           "InvMovedMax": str(max(max(mv(n), e[n]["batch_invariance"]["moved_batch1_vs_random"]) for n in inv)),
           "NInvariant": str(len(inv)), "NDependent": str(len(dep))}
    ctl = e.get("pytorch-fp32-plus-epoch")
    if ctl and "vs_fp32_plus_epoch" in e.get("onnx-int8-qat", {}):   # QAT's control: FP32 trained as long
        for key, n in (("Qat", "onnx-int8-qat"), ("FQ", "pytorch-qat-fakequant")):
            c = e[n]["vs_fp32_plus_epoch"]
            out.update({f"{key}VsControl": f"{100 * c['accuracy_diff']:+.1f}",
                        f"{key}VsControlLo": f"{100 * c['accuracy_diff_ci'][0]:+.1f}",
                        f"{key}VsControlHi": f"{100 * c['accuracy_diff_ci'][1]:+.1f}"})
        out.update({"ControlAcc": pct(ctl["accuracy"]), "ControlAccDiff": f"{100 * ctl['accuracy_diff']:+.1f}"})
    tk = e.get("onnx-int8-dynamic-token")
    if tk:      # one activation scale per token: dynamic INT8 made batch-invariant
        out.update({"TokenAcc": pct(tk["accuracy"]), "TokenAccDiff": f"{100 * tk['accuracy_diff']:+.1f}",
                    "TokenMoved": str(max(tk["batch_invariance"][k] for k in (
                        "moved_batch1_vs_sorted", "moved_batch1_vs_random", "moved_sorted_vs_random"))),
                    "TokenAgree": pct(tk["agreement"])})
    sc = q8["batch_invariance"].get("scales") or {}
    for g, key in (("moved", "DynScaleRatioMoved"), ("unmoved", "DynScaleRatioUnmoved")):
        out[key] = f"{sc[g]['median_ratio']:.2f}" if sc.get(g) else "--"   # no text moved: nothing to show
    return out


# the variants the paper's explanation sentences name, by the key their macros carry
EXPLAIN_KEYS = (("Dyn", "onnx-int8-dynamic"), ("Qat", "onnx-int8-qat"), ("QatFP", "onnx-qat-fp32"))
# the words of an equivalence verdict (``stats.tost_verdict``) in a sentence on explanations: "<variant>'s
# explanations ... LIME's own sampling noise"
EXPLAIN_VERDICT_WORDS = {"equivalent": "stay within the margin of", "below": "move further than",
                         "above": "agree with FP32 better than", "lower": "move somewhat further than",
                         "higher": "agree with FP32 somewhat better than",
                         "undecided": "cannot be told apart, at this margin, from"}


def explain_verdict(vf: dict, metric: str = "spearman") -> str:
    """The verdict word of a ``versus_floor`` record (its 90% interval against the margin)."""
    e = vf["equivalence"][metric]
    return tost_verdict(e["ci90"], e["margin"])


def _versus_macros(prefix: str, key: str, vf: dict) -> dict:
    d, fl = vf["random"]["spearman"], vf["disagreement"]["spearman"]
    v = explain_verdict(vf)
    out = {f"{prefix}Diff{key}": f"{d['mean']:+.3f}", f"{prefix}Diff{key}Lo": f"{d['ci'][0]:+.3f}",
           f"{prefix}Diff{key}Hi": f"{d['ci'][1]:+.3f}", f"{prefix}Verdict{key}": v,
           f"{prefix}VerdictWords{key}": EXPLAIN_VERDICT_WORDS[v]}
    if fl["n"]:
        out.update({f"{prefix}FlipDiff{key}": f"{fl['mean']:+.3f}", f"{prefix}FlipDiff{key}Lo": f"{fl['ci'][0]:+.3f}",
                    f"{prefix}FlipDiff{key}Hi": f"{fl['ci'][1]:+.3f}"})
    return out


def explain_macros(res: Results) -> dict:
    """The explanation numbers the paper quotes: LIME and KernelSHAP in the symmetric design (each variant against
    FP32 under other seeds, beside FP32 against the same), the equivalence verdicts, normalized faithfulness, the
    sample budget's convergence, cost. An explain result of the earlier, asymmetric design defines only
    ``ExplainAsymmetric`` and its size: its comparisons are not set beside a floor."""
    if not res.has("explain"):
        return {}
    r = res.explain
    if not symmetric(r):
        return {"ExplainAsymmetric": "asymmetric", "ExplainN": str(r.n_examples)}
    a, c, sel = r.agreement, r.cost, r.selection
    top = top_k(res).NAME
    word = MT.number_word(r.top_k[0])     # ExplainTopFive... for top-5: the k in the macro's name, letters only
    sp = lambda v, m="spearman", w="random": f"{a[v][w][m]['mean']:.2f}"  # noqa: E731
    ints = [n for n in c if V.is_integer(n)]
    best = max(ints, key=lambda n: c[n]["throughput_vs_baseline"]) if ints else None
    out = {
        "ExplainN": str(sel["n_random"]), "ExplainFlipN": str(sel["n_disagreement"]),
        "ExplainFlipAvailable": str(sel["n_disagreement_available"]),
        "ExplainFlipInRandom": str(sel["n_disagreement_in_random"]),
        "ExplainSamples": f"{r.samples:,}", "ExplainMinutes": f"{r.total_seconds / 60:.1f}",
        "ExplainNoiseSeeds": str(len(r.noise_seeds)), "ExplainMargin": f"{r.equivalence_margin:g}",
        "ExplainSpearmanNoise": sp("noise-floor"), f"ExplainTop{word}Noise": sp("noise-floor", top),
        "ExplainBestInt": short(best or "--"),
        "ExplainBestIntSpeedup": f"{c[best]['throughput_vs_baseline']:.2f}" if best else "--",
        "ExplainBaseline": r.throughput_baseline,
        "ExplainCompare": tex_escape(short(r.compare)),
    }
    for key, n in EXPLAIN_KEYS:
        if n in a:
            out.update({f"ExplainSpearman{key}": sp(n), f"ExplainTop{word}{key}": sp(n, top),
                        f"ExplainSameSeed{key}": f"{a[n]['same_seed']['spearman']['mean']:.2f}",
                        **_versus_macros("Explain", key, a[n]["versus_floor"])})
    f = r.faithfulness
    pre = "normalized_" if r.naopc else ""
    if pre:
        out["ExplainNaopc"] = "normalized"
        for key, n in (("FP", r.reference),) + EXPLAIN_KEYS:
            if n in f:
                out[f"ExplainNComp{key}"] = f"{f[n]['normalized_comprehensiveness']['mean']:.2f}"
                out[f"ExplainNSuff{key}"] = f"{f[n]['normalized_sufficiency']['mean']:.2f}"
        out["ExplainNCompRandom"] = f"{f[r.reference]['random_normalized_comprehensiveness']['mean']:.2f}"
        out["ExplainNaopcMinutes"] = f"{r.naopc['seconds'] / 60:.1f}"
    conv = r.convergence
    if conv:
        fl = conv["floor"]
        ks = sorted(fl, key=int)
        out.update({"ExplainConvN": str(len(conv["examples"])), "ExplainConvLowSamples": f"{int(ks[0]):,}",
                    "ExplainConvHighSamples": f"{int(ks[-1]):,}",
                    "ExplainConvLow": f"{fl[ks[0]]['spearman']:.2f}",
                    "ExplainConvHigh": f"{fl[ks[-1]]['spearman']:.2f}",
                    "ExplainConvRun": f"{fl[str(conv['run_samples'])]['spearman']:.2f}"})
    return {**out, **_explain_control_macros(r), **_shap_macros(r)}


def _shap_macros(r: dict) -> dict:
    """The second explainer (KernelSHAP), the same design: agreement with FP32 under other seeds, its floor, the
    verdicts, the two explainers against each other, and its cost."""
    s = r.shap
    if not s or "versus_floor" not in s:
        return {}
    out = {"ExplainShapSamples": f"{s['samples']:,}", "ExplainShapMinutes": f"{s['total_seconds'] / 60:.1f}",
           "ExplainShapVsLimeFP": f"{s['lime_vs_shap'][r.reference]['spearman']['mean']:.2f}",
           "ExplainShapSpearmanNoise": f"{s['noise_floor']['spearman']['mean']:.2f}",
           "ExplainShapNoiseSeeds": str(len(s["noise_seeds"]))}
    for key, n in EXPLAIN_KEYS:
        if n in s["agreement"]:
            out[f"ExplainShapSpearman{key}"] = f"{s['agreement'][n]['spearman']['mean']:.2f}"
            out.update(_versus_macros("ExplainShap", key, s["versus_floor"][n]))
    # LIME and KernelSHAP agree on the verdict for every variant both explained, or not
    both = [n for _, n in EXPLAIN_KEYS if n in s["versus_floor"] and n in r.agreement]
    if both:
        same = all(explain_verdict(s["versus_floor"][n]) == explain_verdict(r.agreement[n]["versus_floor"])
                   for n in both)
        out["ExplainVerdictsAgree"] = "agree with" if same else "differ from"
    # where both explainers' intervals of a variant's difference lie on one side of zero: the direction they share
    for key, n in EXPLAIN_KEYS:
        if n in s["versus_floor"] and n in r.agreement:
            cis = [s["versus_floor"][n]["random"]["spearman"]["ci"],
                   r.agreement[n]["versus_floor"]["random"]["spearman"]["ci"]]
            if all(hi < 0 for _, hi in cis):
                out[f"ExplainSameDirection{key}"] = "below"
            elif all(lo > 0 for lo, _ in cis):
                out[f"ExplainSameDirection{key}"] = "above"
    return out


def _explain_control_macros(r: dict) -> dict:
    """The LIME controls: batching before / after, quantization alone (pairs, the same perturbations)."""
    out = {}
    bt = (r.batching or {}).get("variants", {}).get("onnx-int8-dynamic")
    if bt:
        out.update({"ExplainDynPredChanged": str(bt["prediction_changed"]),
                    "ExplainSpearmanDynBatched": f"{bt['agreement_with_reference_batched']['spearman']['mean']:.2f}",
                    "ExplainDynBatchedVsAlone": f"{bt['batched_vs_alone']['spearman']['mean']:.2f}",
                    "ExplainDisagreeBefore": str(r.batching["selection_before"]["n_disagreement"])})
    p = (r.pairs or {}).get("onnx-int8-qat vs onnx-qat-fp32")
    if p:
        out["ExplainSpearmanQatVsQatFP"] = f"{p['random']['spearman']['mean']:.2f}"
    return out


def speed_verdict(ratio: float) -> str:
    """``faster`` or ``slower`` (or ``as fast``) for a speed-up rounded as the paper prints it (2 places)."""
    r = round(float(ratio), 2)
    return "faster" if r > 1 else "slower" if r < 1 else "as fast"


# an accuracy verdict (``stats.tost_verdict`` at eval.equivalence_margin) in a sentence: "... accuracy is <words>"
ACCURACY_VERDICT_WORDS = {"equivalent": "equivalent to FP32's", "below": "below FP32's by more than the margin",
                          "above": "above FP32's by more than the margin",
                          "lower": "lower than FP32's, by an amount the margin does not bound",
                          "higher": "higher than FP32's, by an amount the margin does not bound",
                          "undecided": "neither shown equivalent to FP32's nor different from it"}


def claim_macros(res: Results) -> dict:
    """Verdicts of the sentence-level claims about accuracy: the TOST verdict at the config's margin on this test
    set and, where the companion seeds run has the variant, over the training seeds; Holm's correction over the
    McNemar tests. "Indistinguishable" is never said: an interval covering zero is no evidence of equivalence."""
    e = res.evaluate.variants
    cl = F.accuracy_claims(res).set_index("variant")
    out = {"EqMargin": f"{100 * res.cfg.eval.equivalence_margin:g}", "HolmAlpha": f"{res.cfg.eval.alpha:g}",
           "HolmN": str(len(cl)), "HolmRejected": str(int(cl["rejected"].sum()))}
    for prefix, name in (("Dyn", "onnx-int8-dynamic"), ("Qat", "onnx-int8-qat"), ("DynOpt", "onnx-int8-dynamic-opt")):
        ci = e.get(name, {}).get("accuracy_diff_ci")
        if ci and name in cl.index:
            c = cl.loc[name]
            out.update({f"{prefix}DiffLo": f"{100 * ci[0]:+.2f}", f"{prefix}DiffHi": f"{100 * ci[1]:+.2f}",
                        f"{prefix}Verdict": ACCURACY_VERDICT_WORDS[c["verdict"]],
                        f"{prefix}HolmP": f"{c['holm_p']:.2f}", f"{prefix}McNemarP": f"{c['mcnemar_p']:.3f}"})
            if isinstance(c.get("seeds_verdict"), str):
                out[f"{prefix}SeedsVerdict"] = ACCURACY_VERDICT_WORDS[c["seeds_verdict"]]
    return {**out, **headline_macros(res, cl)}


def headline_macros(res: Results, cl) -> dict:
    """The article's headline, one variant throughout: the fastest INT8 file at batch 1 whose accuracy is shown
    equivalent to FP32's (over the training seeds where they exist, else on this test set), with its speed-up as
    the median over the benchmark runs measured alike on this host and their range; beside it the fastest INT8
    file of all, with its own accuracy verdict; and the variants on the accuracy / latency frontier."""
    if not res.has("bench"):
        return {}
    head = res.bench.all_threads["headline"]
    ints = sorted((n for n in head if V.is_onnx_int8(n) and n in cl.index), key=lambda n: head[n]["median_ms"])
    if not ints:
        return {}

    def evidence(n: str) -> tuple:
        c = cl.loc[n]
        return (c["seeds_verdict"], f"over {int(c['seeds_n'])} training seeds") if isinstance(
            c.get("seeds_verdict"), str) else (c["verdict"], "on this test set")

    out = {}
    for prefix, n in (("Head", next((n for n in ints if evidence(n)[0] == "equivalent"), None)), ("Fast", ints[0])):
        if n is None:
            continue
        verdict_, where = evidence(n)
        so, st = F.run_speedups(res, n), F.run_speedups(res, n, "speedup_vs_pytorch_fp32")
        e = res.evaluate.variants[n]
        out.update({f"{prefix}Int": short(n), f"{prefix}IntMs": f"{head[n]['median_ms']:.1f}",
                    f"{prefix}IntAccDiff": f"{100 * e['accuracy_diff']:+.1f}",
                    f"{prefix}IntVerdict": ACCURACY_VERDICT_WORDS[verdict_], f"{prefix}IntEvidence": where,
                    f"{prefix}IntRatio": f"{e['size_ratio_to_onnx_fp32'] and 1 / e['size_ratio_to_onnx_fp32']:.2f}"})
        if so:
            out.update({f"{prefix}IntVsOnnx": f"{so['median']:.2f}", f"{prefix}IntVsOnnxLo": f"{so['lo']:.2f}",
                        f"{prefix}IntVsOnnxHi": f"{so['hi']:.2f}", f"{prefix}IntRuns": str(so["n"])})
        if st:
            out.update({f"{prefix}IntVsTorch": f"{st['median']:.2f}", f"{prefix}IntVsTorchLo": f"{st['lo']:.2f}",
                        f"{prefix}IntVsTorchHi": f"{st['hi']:.2f}"})
        if isinstance(cl.loc[n].get("seeds_verdict"), str):
            out[f"{prefix}IntSeedsDiff"] = f"{100 * cl.loc[n]['seeds_mean']:+.2f}"
    if out.get("HeadInt") == out.get("FastInt"):
        out["HeadIsFast"] = "1"
    pts = F.tradeoff_frames(res)["points"]
    front = pts[pts["frontier"]].sort_values("ms")["variant"].tolist()
    out["FrontierList"] = ", ".join(rf"\texttt{{{tex_escape(short(n))}}}" for n in front)
    out["FrontierN"] = str(len(front))
    return out


# the variants the paper's sentences on seeds name, by macro prefix
SEEDS_NAMED = {"Dyn": "onnx-int8-dynamic", "DynOpt": "onnx-int8-dynamic-opt", "Token": "onnx-int8-dynamic-token",
               "Static": "onnx-int8-static-minmax", "Pct": "onnx-int8-static-percentile", "Qat": "onnx-int8-qat",
               "QatSeed": "onnx-int8-qat-seed", "QatFP": "onnx-qat-fp32", "FPSixteen": "onnx-fp16",
               "Control": "pytorch-fp32-plus-epoch"}


def seeds_macros(res: Results) -> dict:
    """Paper numbers over the training seeds (results/<profile>/seeds.json, written by `make seeds`): every
    macro begins with ``Seeds``, so the seeds profile's numbers.tex sits beside the default's."""
    if not res.has("seeds"):
        return {}
    r = res.seeds
    v = r.variants
    pt = lambda x: f"{100 * x:+.2f}"  # noqa: E731
    out = {"SeedsN": str(len(r.seeds)), "SeedsList": ", ".join(map(str, r.seeds)),
           "SeedsConf": str(int(100 * r.confidence)),
           "SeedsFPAcc": pct(v[r.reference]["accuracy"]["mean"], 2),
           "SeedsFPAccSD": pct(v[r.reference]["accuracy"]["sd"], 2),
           "SeedsMinutes": f"{r.minutes_first_to_last:.0f}"}
    for key, name in SEEDS_NAMED.items():
        if name not in v:
            continue
        d = v[name]["accuracy_diff"]
        out.update({f"Seeds{key}Diff": pt(d["mean"]), f"Seeds{key}Lo": pt(d["ci"][0]), f"Seeds{key}Hi": pt(d["ci"][1]),
                    f"Seeds{key}Min": pt(d["min"]), f"Seeds{key}Max": pt(d["max"]),
                    f"Seeds{key}Excl": str(v[name]["seeds_bootstrap_excludes_zero"]),
                    f"Seeds{key}Boot": f"{100 * v[name]['bootstrap_halfwidth']['mean']:.2f}"})
        c = v[name].get("vs_fp32_plus_epoch")
        if c:
            out.update({f"Seeds{key}VsControl": pt(c["mean"]), f"Seeds{key}VsControlLo": pt(c["ci"][0]),
                        f"Seeds{key}VsControlHi": pt(c["ci"][1])})
    return out


def hostdrift_macros(res: Results) -> dict:
    """Why INT8 predictions move with the CPU (results/<profile>/hostdrift.json, ``utils.hostdrift``): the
    16-bit pair sums an AVX2 host would clip in the dynamic INT8 file, and the predictions a last-bit
    perturbation moves, FP32 beside INT8. Every macro begins with ``Drift``."""
    if not res.has("hostdrift"):
        return {}
    r = res.hostdrift
    s = r.saturation.get("onnx-int8-dynamic") or next(iter(r.saturation.values()))
    f = r.float
    dyn = "onnx-int8-dynamic" if "onnx-int8-dynamic" in f["weights_ulp"] else next(
        n for n in f["weights_ulp"] if n != "onnx-fp32")
    out = {"DriftTexts": f"{f['texts']:,}", "DriftSatTexts": str(s["texts"]),
           "DriftSatPairs": f"{s['saturated_pairs']:,}", "DriftPairs": f"{s['pairs']:,}",
           "DriftSatPerMillion": f"{1e6 * s['pair_fraction']:.2f}", "DriftSatCells": f"{100 * s['cell_fraction']:.3f}",
           "DriftSatMatmuls": str(s["matmuls_with_saturation"]), "DriftMatmuls": str(s["matmuls"]),
           "DriftUlpFP": str(f["weights_ulp"]["onnx-fp32"]["predictions_moved"]),
           "DriftUlpDyn": str(f["weights_ulp"][dyn]["predictions_moved"]),
           "DriftOptFP": str(f["optimization"]["onnx-fp32"]["predictions_moved"]),
           "DriftOptDyn": str(f["optimization"][dyn]["predictions_moved"]),
           "DriftGemm": tex_escape((r.provenance.get("cpu_isa") or {}).get("int8_gemm", "not recorded")),
           # the clause after "... leave the 16-bit range": what the count means for another host
           "DriftSatClause": (": none, so on these texts saturation cannot move a prediction"
                              if not s["saturated_pairs"] else ", so an AVX2 host computes those products differently")}
    return out


def gradients_macros(res: Results) -> dict:
    """The gradient explainer (results/<profile>/gradients.json): Integrated Gradients agreement of QAT INT8 with
    FP32, of quantization alone and of QAT's training alone, and of IG with LIME on FP32. Macros begin with
    ``Grad``."""
    if not res.has("gradients"):
        return {}
    g = res.gradients
    top, word = top_k(res).NAME, MT.number_word(res.explain.top_k[0])   # IG is measured on LIME's texts and k
    sp = lambda rec: f"{rec['spearman']['mean']:.2f}"  # noqa: E731
    p = g.pairs
    out = {"GradN": str(g.n_examples), "GradSteps": str(g.steps),
           "GradGap": f"{max(v['max'] for v in g.completeness_gap.values()):.1e}"}
    for key, name in (("Qat", "pytorch-qat-integer vs pytorch-fp32"),
                      ("Quant", "pytorch-qat-integer vs pytorch-qat-fp32"),
                      ("Train", "pytorch-qat-fp32 vs pytorch-fp32")):
        if name in p:
            out[f"GradSpearman{key}"] = sp(p[name]["all"])
            out[f"GradTop{word}{key}"] = f"{p[name]['all'][top]['mean']:.2f}"
    for key, name in (("FP", "pytorch-fp32"), ("Qat", "pytorch-qat-integer")):
        if name in g.vs_lime:
            out[f"GradVsLime{key}"] = sp(g.vs_lime[name]["all"])
    return out


def trend_word(first: float, last: float, tolerance: float = 0.1) -> str:
    """How a ratio moves from the smallest model to the largest: "grows", "shrinks" or "stays about the same"
    (within ``tolerance``, relative)."""
    if last > first * (1 + tolerance):
        return "grows"
    if last < first * (1 - tolerance):
        return "shrinks"
    return "stays about the same"


def _sizes_products_macros(s) -> dict:
    """The integer products' measured speed-up over FP32's (one-thread profiles of the INT8 file without fused
    attention) at the smallest and largest size, and at how many sizes it exceeds the dot-product factor."""
    x = s[s["int8_matmul_speedup"].notna()]
    if x.empty:
        return {}
    return {"SizesProductsInt": short(x.iloc[-1]["products_int8"]),
            "SizesSmallestProductsX": f"{x.iloc[0]['int8_matmul_speedup']:.1f}",
            "SizesLargestProductsX": f"{x.iloc[-1]['int8_matmul_speedup']:.1f}",
            "SizesAboveDot": str(int((x["int8_matmul_speedup"] > INT8_DOT_FACTOR).sum()))}


def sizes_macros(res: Results) -> dict:
    """Paper numbers of the model-size sweep (results/<profile>/sizes.json, `make sizes`); every macro begins
    with ``Sizes``; none where the sweep has not run."""
    fr = sizes_frames(res)
    if fr is None:
        return {}
    r, s = res.sizes, fr["sizes"]
    L = max(r.lengths)
    lo, hi = s.iloc[0], s.iloc[-1]
    first, last = lo[f"vs_onnx_{L}"], hi[f"vs_onnx_{L}"]
    top = s.loc[s[f"vs_onnx_{L}"].idxmax()]
    m = lambda x: f"{x / 1e6:.1f}"  # noqa: E731
    return {"SizesN": str(len(s)), "SizesList": tex_escape(", ".join(s["size"])), "SizesLength": str(L),
            "SizesShortLength": str(min(r.lengths)), "SizesBatch": str(r.batch_size),
            "SizesThreads": str(r.provenance["threads"]),
            "SizesGemm": tex_escape(r.provenance["cpu_isa"]["int8_gemm"]),
            "SizesSmallest": tex_escape(lo["size"]), "SizesSmallestParams": m(lo["params"]),
            "SizesLargest": tex_escape(hi["size"]), "SizesLargestParams": m(hi["params"]),
            "SizesSmallestX": f"{first:.2f}", "SizesLargestX": f"{last:.2f}",
            "SizesLargestVsTorch": f"{hi[f'vs_torch_{L}']:.2f}", "SizesSmallestVsTorch": f"{lo[f'vs_torch_{L}']:.2f}",
            "SizesTrendWord": trend_word(first, last),
            "SizesTopX": f"{top[f'vs_onnx_{L}']:.2f}", "SizesTop": tex_escape(top["size"]),
            "SizesTopInt": short(top["best_int8"]),
            "SizesSmallestShare": f"{100 * lo['matmul_share']:.0f}",
            "SizesLargestShare": f"{100 * hi['matmul_share']:.0f}",
            "SizesSmallestCeil": f"{lo['free_matmul']:.1f}", "SizesLargestCeil": f"{hi['free_matmul']:.1f}",
            "SizesBelowCeil": str(int((s[f"vs_onnx_{L}"] < s["free_matmul"]).sum())),
            **_sizes_products_macros(s),
            "SizesMinRatio": f"{s['int8_file_ratio'].min():.2f}", "SizesMaxRatio": f"{s['int8_file_ratio'].max():.2f}",
            "SizesDotFactor": str(INT8_DOT_FACTOR), "SizesMinutes": f"{r.seconds / 60:.0f}",
            **_sizes_runtime_macros(s, L)}


def _sizes_runtime_macros(s, L) -> dict:
    """OpenVINO's INT8 speed-up over ONNX Runtime FP32 at the largest size and at BERT-base's shape, and the predicted
    CUDA Memcpy nodes there (sweeps from before OpenVINO and the prediction: none)."""
    out = {}
    col = f"ov_vs_onnx_{L}"
    if col in s and s[col].notna().all():
        hi = s.iloc[-1]
        out.update({"SizesOvLargestX": f"{hi[col]:.2f}", "SizesOvSmallestX": f"{s.iloc[0][col]:.2f}"})
    base = s[s["size"] == "bert-base"]
    if len(base):
        b = base.iloc[0]
        out.update({"SizesBaseX": f"{b[f'vs_onnx_{L}']:.2f}"})
        if col in s and b[col] == b[col] and b[col] is not None:
            out["SizesBaseOvX"] = f"{b[col]:.2f}"
        if "memcpy_dyn" in s and b["memcpy_dyn"] == b["memcpy_dyn"] and b["memcpy_dyn"] is not None:
            out.update({"SizesBaseMemcpyDyn": f"{b['memcpy_dyn']:.0f}", "SizesBaseMemcpyFp": f"{b['memcpy_fp32']:.0f}"})
    return out
