"""The variant registry: one declaration reaches every step and table.

A toy variant with a recipe of its own (one dataclass, one function) is registered here and nowhere
else; the real steps (quantize, evaluate, bench) on a real tiny model build it, evaluate it, time it,
and the report's tables list it."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from utils import eval_runs as ER
from utils import gradients as GR
from utils import hostdrift as HD
from utils import pipeline as P
from utils import quantize as Q
from utils import variants as V
from utils.config import load_config
from utils.paper import check_sources
from utils.report import Results, render_all, runtimes, tables
from utils.report.figures import variant_palette
from utils.report.macros import explain_macros, paper_macros


@dataclass(frozen=True)
class ToyDynamic:
    """A recipe the library does not have: dynamic INT8 with per-tensor weights, under a new name."""
    note: str = "toy"


@V.register_recipe(ToyDynamic)
def _build_toy(r: ToyDynamic, src: Path, dst: Path, ctx: V.BuildContext) -> dict:
    Q.quantize_dynamic_int8(src, dst, per_channel=False, weight_type=ctx.settings.weight_type)
    return {"method": f"{r.note}: quantize_dynamic, per-tensor weights"}


TOY = V.Variant("onnx-int8-toy", "onnxruntime", "int8-dynamic", integer=True, recipe=ToyDynamic(), source="fp32")


def test_the_declarations_are_complete_and_ordered():
    names = list(V.REGISTRY)
    assert names[0] == V.REFERENCE == "pytorch-fp32" and "onnx-fp32" in names
    for v in V.REGISTRY.values():
        assert v.family in V.FAMILIES
        if v.built:          # every recipe has a handler, and its source is built before it
            assert V.handler(v.recipe)
            assert v.source in V.EXPORTS or names.index(f"onnx-{v.source}") < names.index(v.name)
    assert V.is_onnx_int8("onnx-int8-qat") and not V.is_onnx_int8("pytorch-int8-dynamic")
    assert V.is_integer("pytorch-int8-dynamic") and not V.is_integer("onnx-fp16")
    assert not V.is_onnx_int8("onnx-int8-unregistered")


def test_bad_declarations_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="already registered"):
        V.register_variant(V.Variant("onnx-fp32", "onnxruntime", "onnx-float"))
    with pytest.raises(ValueError, match="unknown family"):
        V.Variant("onnx-x", "onnxruntime", "int4")
    with pytest.raises(ValueError, match="runtime"):
        V.Variant("x", "tensorflow", "pytorch")
    with pytest.raises(KeyError, match="no handler"):
        V.Variant("onnx-x", "onnxruntime", "int8-static", recipe=object())
    with pytest.raises(ValueError, match="source 'int8-later'"):
        V.register_variant(V.Variant("onnx-x", "onnxruntime", "int8-static", recipe=V.Static(), source="int8-later"))
    with pytest.raises(KeyError, match="unknown variant 'onnx-int9'"):
        V.get("onnx-int9")
    assert "onnx-x" not in V.REGISTRY


def test_calibration_methods_of_the_profile_decide_the_static_variants(repo):
    cfg = load_config("smoke", root=repo, overrides={"quantize": {"calibration_methods": ["minmax"]}})
    built = [v.name for v in V.variants(cfg) if v.built]
    assert "onnx-int8-static-minmax" in built and "onnx-int8-static-entropy" not in built
    assert "pytorch-bf16" not in V.names(cfg) and "pytorch-bf16" in V.names(cfg, baselines=True)


@pytest.fixture()
def tiny_study(repo, tiny_model_dir):
    """The smoke profile on the real tiny BERT (2 layers, hidden 32): data, FP32 and QAT training, export. Its
    explanations are compared at the top 3 words (``explain.top_k: [3]``, not the default's 5 and 10): every table,
    figure and macro of the report must follow the k the explanation step measured."""
    cfg = load_config("smoke", root=repo, overrides={
        "model": {"source": "local", "name_or_path": str(tiny_model_dir)}, "data": {"max_examples": 200},
        "explain": {"top_k": [3]},
        "bench": {"variants": None, "headline_only": [], "memory": False, "reps": 2, "rounds": 1,
                  "throughput_reps": 2, "seq_lengths": [16], "batch_sizes": [2], "profile_reps": 2}})
    for step in ("data", "train_fp32", "train_qat", "export"):
        getattr(P, f"run_{step}")(cfg, progress=False)
    return cfg


@pytest.mark.slow
def test_a_registered_variant_reaches_the_quantize_evaluation_and_bench_tables(tiny_study):
    cfg = tiny_study
    with V.registered(TOY):
        q = P.run_quantize(cfg, progress=False)
        assert q["variants"]["int8-toy"]["method"] == "toy: quantize_dynamic, per-tensor weights"
        assert q["variants"]["int8-toy"]["source"] == "fp32"
        assert q["calibration_examples"] % q["calibration_batch_size"] == 0      # one shape, every text
        ev = P.run_evaluate(cfg, progress=False)
        toy = ev["variants"]["onnx-int8-toy"]
        assert toy["runtime"] == "onnxruntime"
        # a recipe that does not declare batch invariance: measured three ways, its dynamic scales inspected
        assert toy["batch_invariant_declared"] is None and ev["variants"]["onnx-int8-qat"]["batch_invariant_declared"]
        assert toy["batch_invariance"]["scales"]["nodes"] > 0 and toy["batched"]["batch_size"] == cfg.eval.batch_size
        assert toy["predictions"] != [] and len(toy["predictions_batched"]) == ev["n_test"]
        hist = ER.read_runs(cfg)                   # the evaluation's history, with its host (eval_runs.jsonl)
        isa = P.load_result(cfg, "evaluate").provenance["cpu_isa"]["int8_gemm"]
        assert len(hist) == 1 and hist[0]["isa"] == isa
        assert hist[0]["variants"]["onnx-int8-toy"]["predictions"] == "".join(map(str, toy["predictions"]))
        b = P.run_bench(cfg, progress=False)
        assert "onnx-int8-toy" in b["placement"] and "onnx-int8-toy" in b["speedup_vs_onnx_fp32"]
        assert "onnx-qat-fp32" not in b["placement"]      # a control: evaluated and explained, not timed
        # QAT's control, trained by step 03 with QAT's schedule and no fake quantizers, and QAT against it
        assert "pytorch-fp32-plus-epoch" in ev["variants"] and "pytorch-fp32-plus-epoch" not in b["placement"]
        vs = ev["variants"]["onnx-int8-qat"]["vs_fp32_plus_epoch"]
        assert vs["accuracy_diff_ci"][0] <= vs["accuracy_diff"] <= vs["accuracy_diff_ci"][1]
        arch = P.load_result(cfg, "train_fp32").architecture     # a report needs no checkpoint to say it
        mc = json.loads((cfg.path(P.load_result(cfg, "train_fp32").checkpoint) / "config.json").read_text())
        assert arch == {k: mc[k] for k in P.ARCHITECTURE_KEYS} and arch["num_hidden_layers"] == 2
        ctl = P.load_result(cfg, "train_qat").control
        assert len(ctl["history"]) == cfg.qat.epochs and ctl["checkpoint"].endswith("fp32-plus-epoch")
        res = Results(cfg)
        assert "int8-toy" in tables.quantize_table(res).df.index
        assert tables.quantize_table(res).df.loc["int8-toy", "integer ops run"] != "0"
        assert "onnx-int8-toy" in tables.evaluation_table(res).df.index
        assert "onnx-int8-toy" in tables.bench_table(res).df.index
        # OpenVINO beside ONNX Runtime: NNCF's IR built with its options, what the plugin ran in int8, its counters
        nn = q["openvino"]["built"]["openvino-int8-nncf"]
        assert nn["subset_size"] == q["calibration_examples"] and nn["fake_quantize_nodes"] > 0
        runs = q["openvino"]["variants"]
        assert runs["openvino-int8-nncf"]["int8_matmul_nodes"] == runs["openvino-int8-nncf"]["matmul_nodes"] > 0
        assert runs["openvino-fp32"]["int8_matmul_nodes"] == 0 and runs["openvino-int8-qat"]["int8_matmul_nodes"] > 0
        assert ev["variants"]["openvino-int8-qat"]["runtime"] == "openvino"
        ovp = b["openvino_profile"][f"threads_{cfg.bench.profile_threads}"]
        assert ovp["openvino-int8-nncf"]["int8_matmul_ms"] > 0 and ovp["openvino-fp32"]["int8_matmul_ms"] == 0
        dep = runtimes.deploy_table(res).df
        assert list(dep.index) == ["ONNX Runtime", "OpenVINO"] and dep.loc["OpenVINO", "file"].startswith("openvino-")
        assert "openvino-int8-nncf" in runtimes.runtime_profile_table(res).df.index
        # its family's colours: a green like the other dynamic INT8 files
        c = variant_palette(list(b["cpu"][f"threads_{cfg.threads}"]["headline"]))["onnx-int8-toy"]
        assert c[1] == max(c)
        assert "onnx-int8-toy" in tables.batching_table(res).df.index
        # LIME: the batch-dependent variants explained alone (and batched, before / after), the controls
        x = P.run_explain(cfg, progress=False)
        assert x["batching"]["batch_dependent"] == ["onnx-int8-dynamic"]
        assert set(x["batching"]["variants"]) == {"onnx-int8-dynamic"}
        assert set(x["pairs"]) == {"onnx-int8-qat vs onnx-qat-fp32"}
        # symmetric: every variant against FP32 under the other seeds, beside the floor, with a verdict
        assert all("versus_floor" in x["agreement"][v] for v in x["variants"][1:]) and "design" in x
        # a variant's later runs of an example recall its predictions; its first run (the cost) predicts every text
        assert all(e["texts_recalled"] == 0 for xs in x["explanations"].values() for e in xs)
        assert 0 < x["recall"]["share_recalled"]["onnx-fp32"] < 1
        assert all(P.load_result(cfg, s).provenance["seconds"] > 0 for s in P.STEPS)   # each step's wall time
        steps = tables.steps_table(Results(cfg)).df
        assert list(steps.index) == [*P.STEPS, "study"] and "StudyMinutes" in paper_macros(Results(cfg))
        res = Results(cfg)
        assert "onnx-int8-qat vs onnx-qat-fp32 (same seed)" in tables.explain_agreement_table(res).df.index
        assert "onnx-int8-dynamic" in tables.explain_batching_table(res).df.index
        # the second explainer: KernelSHAP on the same texts, the deployed predictors, its own noise floor
        sh = x["shap"]
        assert sh["variants"] == ["onnx-fp32", "onnx-int8-dynamic", "onnx-int8-qat", "openvino-int8-nncf"]
        assert set(sh["agreement"]) == {"onnx-int8-dynamic", "onnx-int8-qat", "openvino-int8-nncf"}
        assert sh["noise_floor"]["spearman"]["n"] > 0
        assert len(sh["explanations"]["onnx-int8-qat"]) == x["n_examples"]
        assert [len(v) for v in sh["noise_explanations"].values()] == [x["n_examples"]] * len(x["noise_seeds"])
        ex0 = sh["explanations"]["onnx-fp32"][0]
        assert ex0["score"] is None                               # no local R^2, and no NaN in the JSON
        assert len(ex0["weights"][str(x["examples"][0]["reference_pred"])]) == len(
            x["explanations"]["onnx-fp32"][0]["weights"][str(x["examples"][0]["reference_pred"])])   # LIME's words
        t = tables.explain_shap_table(res)
        assert list(t.df.index) == ["onnx-int8-dynamic", "onnx-int8-qat", "openvino-int8-nncf", "noise floor (FP32)"]
        assert "ExplainShapSpearmanQat" in explain_macros(res) and "ExplainShapVerdictQat" in explain_macros(res)
    assert "onnx-int8-toy" not in V.REGISTRY
    # the gradient explainer on the same texts and words: the three PyTorch models, their pairs, IG against LIME
    g = GR.run_gradients(cfg, steps=8, limit=4, progress=False)
    assert g["n_examples"] == 4 and set(g["attributions"]) == set(GR.MODELS)
    assert [len(a["weights"]) for a in g["attributions"]["pytorch-qat-integer"]] == [
        len(w[str(lab)]) for w, lab in zip((e["weights"] for e in x["explanations"]["onnx-fp32"][:4]), g["labels"])]
    assert set(g["vs_lime"]) == set(GR.MODELS) and g["pairs"]["pytorch-qat-integer vs pytorch-fp32"]["all"]
    res = Results(cfg)
    assert len(tables.gradients_table(res).df) == 6 and "GradSpearmanQuant" in paper_macros(res)
    # why INT8 moves with the CPU, on the same files: 16-bit pair sums and last-bit perturbations
    h = HD.run_hostdrift(cfg, texts_limit=20, saturation_texts=3, progress=False)
    assert h["n_test"] == 20 and set(h["saturation"]) <= set(HD.DYNAMIC_FILES) and h["saturation"]
    assert all(r["same_file_as_study"] for n, r in h["float"]["weights_ulp"].items() if n != "onnx-fp32")
    made = paper_macros(Results(cfg))
    assert "DriftUlpDyn" in made
    # every Drift* and Grad* macro of the paper (its own, and the other scale's Scale*) is one a real run makes
    tex = (Path(__file__).resolve().parents[1] / "paper" / "main.tex").read_text()
    used = set(re.findall(r"\\(?:Scale)?((?:Drift|Grad)[A-Za-z]+)", tex))
    assert used and used <= set(made), sorted(used - set(made))
    # explain.top_k [3]: the report renders every table, figure and macro with the top-3 metrics from the registry,
    # and the paper's sources check against them (no top-5 number is asked for or printed)
    assert x["top_k"] == [3] and "top3_overlap" in x["agreement"]["noise-floor"]["random"]
    done = render_all(cfg)
    assert {"explain_agreement_table", "explain_batching_table", "gradients_table", "paper_macros"} <= set(done)
    assert "top-3 overlap" in (cfg.tables_dir / "gradients.tex").read_text()
    assert "top-3 overlap" in (cfg.tables_dir / "explain_batching.tex").read_text()
    numbers = (cfg.tables_dir / "numbers.tex").read_text()
    assert "ExplainTopThreeNoise" in numbers and "GradTopThreeQat" in numbers and "TopFive" not in numbers
    for f in ("main.tex", "references.bib"):
        shutil.copy(Path(__file__).resolve().parents[1] / "paper" / f, cfg.path("paper", f))
    check_sources(cfg.root, cfg.name)
