"""Two CPU runtimes side by side, and the GPU placement predicted: what to deploy on this CPU (per runtime, the fastest
INT8 file as accurate as FP32), where each runtime's time goes (integer matrix products and the rest, from ONNX
Runtime's operator profile and OpenVINO's performance counters), and the CUDA provider's predicted placement."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from .. import variants as V
from ..stats import tost_verdict
from .readers import Results
from .tables import original_study
from .writer import Table, tex_escape

RUNTIME_LABEL = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
FP32_OF = {"onnxruntime": "onnx-fp32", "openvino": "openvino-fp32"}
ACCURACY_WITHIN = 0.005     # the issue's "within 0.5 pt of FP32's batch-1 accuracy"
# ONNX Runtime's CPU operators that run a matrix product in integers (QAttention: its projections)
ORT_INT_MATMUL = frozenset({"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm",
                            "QAttention"})


def deployments(res: Results) -> dict:
    """runtime -> the fastest integer file of that runtime whose batch-1 accuracy is within ``ACCURACY_WITHIN`` of
    PyTorch FP32's (None where none is), with what the table and the text say of it."""
    head, ev = res.bench.headline, res.evaluate.variants
    out = {}
    for rt in RUNTIME_LABEL:
        ints = [n for n in head if V.runtime_of(n) == rt and V.is_file_int8(n) and n in ev]
        ok = [n for n in ints if abs(ev[n]["accuracy_diff"]) <= ACCURACY_WITHIN]
        if not ints:
            continue
        best = min(ok, key=lambda n: head[n]["median_ms"]) if ok else None
        out[rt] = {"candidates": ints, "within": ok, "best": best}
    return out


def _agreement(res: Results, name: str) -> Optional[dict]:
    if not res.has("explain"):
        return None
    a = (res.explain.agreement or {}).get(name)
    return a.get("versus_floor") if a else None


def deploy_table(res: Results) -> Optional[Table]:
    """What to deploy on this CPU: per runtime, its fastest INT8 file within 0.5 pt of FP32's accuracy (batch 1), its
    speed-up over the runtime's own FP32 and over ONNX Runtime FP32, size, memory and explanation agreement."""
    d = deployments(res)
    if "openvino" not in d:         # a run from before OpenVINO was in the registry
        return None
    b, ev = res.bench, res.evaluate.variants
    head, mem = b.headline, b.memory or {}
    rows = {}
    for rt, rec in d.items():
        n = rec["best"]
        if n is None:
            rows[RUNTIME_LABEL[rt]] = {"file": "none within 0.5 pt", **{k: "--" for k in (
                "accuracy", "ms", "x own fp32", "x ORT fp32", "MB", "RSS (MB)", "LIME $-$ floor")}}
            continue
        own = FP32_OF[rt]
        vf = _agreement(res, n)
        rows[RUNTIME_LABEL[rt]] = {
            "file": tex_escape(n),
            "accuracy": f"{100 * ev[n]['accuracy']:.2f} ({100 * ev[n]['accuracy_diff']:+.2f})",
            "ms": f"{head[n]['median_ms']:.2f}",
            "x own fp32": f"{head[own]['median_ms'] / head[n]['median_ms']:.2f}" if own in head else "--",
            "x ORT fp32": f"{b.speedup_vs_onnx_fp32[n]:.2f}",
            "MB": f"{ev[n]['size_mb']:.1f}",
            "RSS (MB)": f"{mem[n]['peak_rss_mb']:.0f}" if n in mem else "--",
            "LIME $-$ floor": (f"{vf['random']['spearman']['mean']:+.3f}" if vf else "not explained")}
    df = pd.DataFrame(rows).T
    return Table("deploy", df, label=f"tab:deploy-{res.name}",
                 caption=(f"What to deploy on this CPU ({tex_escape(b.provenance['cpu'])}, {b.threads} threads, "
                          f"batch 1, {b.length} tokens): per runtime, the fastest INT8 file whose batch-1 test "
                          f"accuracy is within 0.5 pt of PyTorch FP32's (accuracy in \\%, change in pt); x own fp32: "
                          f"its speed-up over the same runtime running the FP32 ONNX file; x ORT fp32: over ONNX "
                          f"Runtime FP32; both in this run (every variant of both runtimes timed in the same "
                          f"interleaved turns); RSS: a fresh process's peak; LIME $-$ floor: its "
                          f"explanations' Spearman agreement with FP32's minus FP32's own across seeds (random "
                          f"sample). OpenVINO compiled with ONNX Runtime's thread count, the latency hint, one "
                          f"stream and FP32 inference precision."))


def time_split(res: Results) -> dict:
    """Per integer file of each runtime, and ONNX Runtime FP32: kernel time per call, the part in integer matrix
    products and the rest (ms), at the profiles' thread count. ONNX Runtime: its operator profile; OpenVINO: its
    performance counters (every OpenVINO variant profiled, its FP32 run included)."""
    b = res.bench
    out = {}
    for n, p in b.op_times.items():
        if V.is_onnx_int8(n) or n == FP32_OF["onnxruntime"]:
            im = sum(v for k, v in p["op_ms"].items() if k in ORT_INT_MATMUL)
            out[n] = {"runtime": "onnxruntime", "kernel_ms": p["kernel_ms"], "int8_matmul_ms": im,
                      "other_ms": p["kernel_ms"] - im}
    for n, p in (b.openvino_profile or {}).get(f"threads_{b.profile_threads}", {}).items():
        out[n] = {"runtime": "openvino", "kernel_ms": p["kernel_ms"], "int8_matmul_ms": p["int8_matmul_ms"],
                  "other_ms": p["other_ms"]}
    return out


def runtime_profile_table(res: Results) -> Optional[Table]:
    """Where each runtime's time goes: per INT8 file (and each runtime's FP32), kernel time per call in integer
    matrix products and in everything else."""
    b = res.bench
    if not b.openvino_profile:
        return None
    t = b.profile_threads
    rows = {}
    for n, rec in time_split(res).items():
        k = rec["kernel_ms"]
        rows[tex_escape(n)] = {"runtime": RUNTIME_LABEL[rec["runtime"]], "kernel ms": f"{k:.2f}",
                               "int8 matmul ms": f"{rec['int8_matmul_ms']:.2f}", "rest ms": f"{rec['other_ms']:.2f}",
                               "int8 share (%)": f"{100 * rec['int8_matmul_ms'] / k:.0f}" if k else "--"}
    return Table("runtime_profile", pd.DataFrame(rows).T, label=f"tab:runtime-profile-{res.name}",
                 caption=(f"Where a call's time goes, per runtime ({t} thread{'s' if t != 1 else ''}, batch 1, "
                          f"{b.length} tokens; each node's median over the profiled calls, summed): in integer "
                          f"matrix products (ONNX Runtime: MatMulInteger, MatMulIntegerToFloat, "
                          f"DynamicQuantizeMatMul, QLinearMatMul, QGemm, QAttention; OpenVINO: FullyConnected and "
                          f"MatMul nodes its CPU plugin executed with an int8 kernel) and in everything else "
                          f"(quantizing activations, dequantizing, attention, LayerNorm, GELU, reshapes). "
                          f"ONNX Runtime: its profiler; OpenVINO: its performance counters (PERF\\_COUNT)."))


def cuda_placement_table(res: Results) -> Optional[Table]:
    """The CUDA provider's predicted placement of every INT8 and FP16 file (and FP32 for reference): nodes on each
    side, the CPU fallbacks by operator, the Memcpy nodes; beside the original study's counts."""
    r = res.cuda_placement
    study = original_study(res.cfg.root)
    o = study["findings"].get("gpu_memcpy", {})
    rows = {}
    for n in [x for x in V.REGISTRY if x in r.files]:      # registry order, as every table
        p, v = r.files[n], V.REGISTRY[n]
        if v is None or v.control or not (v.integer or n in ("onnx-fp32", "onnx-fp16")):
            continue
        why = "; ".join(f"{k.split(':')[0]} {c}" for k, c in list(p["cpu_fallback"].items())[:3]) or "--"
        rows[tex_escape(n)] = {"nodes": str(p["nodes"]), "CUDA": str(p["cuda_nodes"]),
                               "CPU (shape)": f"{p['cpu_nodes']} ({p['cpu_shape_nodes']})",
                               "Memcpy": str(p["memcpy_predicted"]), "CPU fallback (nodes)": tex_escape(why)}
    kt = r.kernel_table
    return Table("cuda_placement", pd.DataFrame(rows).T, label=f"tab:cuda-placement-{res.name}",
                 column_format="lrrrr>{\\raggedright\\arraybackslash}p{5.2cm}",
                 caption=(f"Predicted placement on ONNX Runtime's CUDA provider, no GPU needed: a node runs on the "
                          f"GPU where the provider's documented kernel table has a kernel for its operator and input "
                          f"types ({tex_escape(kt['source_commit'][:12])}); shape computations stay on the CPU; each "
                          f"tensor crossing between the two is a Memcpy node. CPU fallback: the operators without "
                          f"a CUDA kernel for these types, with their node counts. The original study counted "
                          f"{o.get('int8', '?')} Memcpy nodes in its INT8 file and {o.get('fp32', '?')} in FP32 "
                          f"({tex_escape(study['model'])})."))


def runtime_macros(res: Results) -> dict:
    """The numbers the paper's sentences on the second runtime and the predicted GPU placement quote."""
    out: dict = {}
    if res.has("bench") and res.bench.openvino_profile:
        b, ev = res.bench, res.evaluate.variants
        head = b.headline
        d = deployments(res)
        share = time_split(res)
        ms = lambda n: head[n]["median_ms"]  # noqa: E731

        def vs_ort(n: str) -> str:
            """This run's speed-up over ONNX Runtime FP32: OpenVINO's variants have one run, so both runtimes' numbers
            come from the same run, never a median over runs beside one run."""
            return f"{b.speedup_vs_onnx_fp32[n]:.2f}"

        for key, rt in (("Ov", "openvino"), ("Ort", "onnxruntime")):
            n = d.get(rt, {}).get("best")
            if n is None:
                continue
            own = FP32_OF[rt]
            out.update({f"{key}Deploy": tex_escape(n), f"{key}DeployMs": f"{ms(n):.2f}",
                        f"{key}DeployVsOrt": vs_ort(n),
                        f"{key}DeployVsOwn": f"{ms(own) / ms(n):.2f}" if own in head else "--",
                        f"{key}DeployAccDiff": f"{100 * ev[n]['accuracy_diff']:+.2f}"})
            if n in share and share[n]["kernel_ms"]:
                s = share[n]
                out.update({f"{key}DeployShare": f"{100 * s['int8_matmul_ms'] / s['kernel_ms']:.0f}",
                            f"{key}DeployRestMs": f"{s['other_ms']:.2f}",
                            f"{key}DeployIntMs": f"{s['int8_matmul_ms']:.2f}"})
        if "OvDeploy" in out and "OrtDeploy" in out:
            out["OvOverOrtBest"] = f"{ms(d['onnxruntime']['best']) / ms(d['openvino']['best']):.2f}"
            o, v = share.get(d["onnxruntime"]["best"]), share.get(d["openvino"]["best"])
            if o and v:         # where OpenVINO's time saving (or loss) against ONNX Runtime's lies
                gain_int, gain_rest = o["int8_matmul_ms"] - v["int8_matmul_ms"], o["other_ms"] - v["other_ms"]
                out["OvGainWhere"] = ("outside the integer products" if abs(gain_rest) > abs(gain_int)
                                      else "in the integer products")
        for key, n in (("OvFp", "openvino-fp32"), ("OvStatic", "openvino-int8-static"), ("OvQat", "openvino-int8-qat"),
                       ("OvNncf", "openvino-int8-nncf")):
            if n in head:
                out[f"{key}VsOrt"] = vs_ort(n)
                out[f"{key}Ms"] = f"{ms(n):.2f}"
        if "openvino-int8-qat" in ev and "onnx-int8-qat" in ev:
            a, o = ev["openvino-int8-qat"], ev["onnx-int8-qat"]
            flips = sum(x != y for x, y in zip(a["predictions"], o["predictions"]))
            out.update({"OvQatAccGap": f"{100 * (a['accuracy'] - o['accuracy']):+.2f}",
                        "OvQatFlips": str(flips), "OvQatN": f"{len(a['predictions']):,}"})
        ovq = res.quantize.openvino or {}
        nn = (ovq.get("built") or {}).get("openvino-int8-nncf")
        if nn:
            out.update({"NncfVersion": tex_escape(nn["nncf"]), "NncfPreset": nn["preset"].lower(),
                        "NncfSmoothQuant": f"{nn['smooth_quant_alpha_matmul']:g}",
                        "NncfSubset": str(nn["subset_size"])})
        if ovq.get("openvino"):
            out["OvVersion"] = tex_escape(ovq["openvino"])
        runs = ovq.get("variants") or {}
        if "openvino-int8-nncf" in runs:
            r = runs["openvino-int8-nncf"]
            out.update({"OvNncfIntNodes": str(r["int8_matmul_nodes"]), "OvNncfMatNodes": str(r["matmul_nodes"])})
        vf = _agreement(res, "openvino-int8-nncf")
        if vf:
            out.update({"OvLimeDiff": f"{vf['random']['spearman']['mean']:+.3f}",
                        "OvLimeVerdict": tost_verdict(vf["equivalence"]["spearman"]["ci90"],
                                                      res.explain.equivalence_margin)})
    if res.has("cuda_placement"):
        f = res.cuda_placement.files
        o = original_study(res.cfg.root)["findings"].get("gpu_memcpy", {})
        for key, n in (("Dyn", "onnx-int8-dynamic"), ("Fp", "onnx-fp32"), ("Qat", "onnx-int8-qat"),
                       ("Static", "onnx-int8-static-minmax"), ("DynOpt", "onnx-int8-dynamic-opt"),
                       ("FpSixteen", "onnx-fp16")):
            if n in f:
                out[f"Memcpy{key}"] = str(f[n]["memcpy_predicted"])
                out[f"CpuNodes{key}"] = str(f[n]["cpu_nodes"] - f[n]["cpu_shape_nodes"])
        if o:
            out.update({"OrigMemcpyInt": str(o["int8"]), "OrigMemcpyFp": str(o["fp32"])})
    return out
