"""Several training seeds: the replicates of a profile's ``seeds`` run the real steps 01-06 on a real tiny
BERT, each in folders of its own and on the same split; the summary's intervals over seeds are the
Student-t intervals of the per-seed values the replicates wrote; its table, figure and macros are drawn."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from utils import pipeline as P
from utils import seeds as S
from utils import variants as V
from utils.config import ConfigError, for_seed, load_config
from utils.provenance import read_json
from utils.report import Results, render_all
from utils.report.frames import seeds_frame
from utils.report.writer import tex_numbers

REPO = Path(__file__).resolve().parents[1]
EVALUATED = ["pytorch-fp32", "pytorch-fp32-plus-epoch", "onnx-fp32", "onnx-qat-fp32", "onnx-int8-dynamic",
             "onnx-int8-qat", "openvino-int8-nncf"]   # what the smoke profile explains is evaluated


def write_profile(repo, name: str, body: dict):
    (repo / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(body))


@pytest.fixture(scope="module")
def seeds_study(tmp_path_factory, tiny_model_dir):
    """Two seeds of a smoke-sized profile on the real tiny BERT, every step of each, then the summary. (Its
    predictions are one class whatever the seed, as MiniLM's are after the smoke profile's one epoch: the
    arithmetic of the intervals is tested on values of its own below.)"""
    repo = tmp_path_factory.mktemp("seeds")
    shutil.copytree(REPO / "configs", repo / "configs")
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    write_profile(repo, "tinyseeds", {
        "extends": "smoke", "seeds": [3, 4], "model": {"source": "local", "name_or_path": str(tiny_model_dir)},
        "data": {"max_examples": 200}, "quantize": {"calibration_methods": ["minmax"]},
        "eval": {"batched": False, "variants": EVALUATED, "bootstrap": 50}})
    cfg = load_config("tinyseeds", root=repo)
    for rcfg in S.replicates(cfg):
        for step in ("data", "train_fp32", "train_qat", "export", "quantize", "evaluate"):
            getattr(P, f"run_{step}")(rcfg, progress=False)
    return cfg, S.summarize(cfg)


def test_each_seed_runs_in_its_own_folders_on_the_same_split(seeds_study):
    cfg, out = seeds_study
    a, b = S.replicates(cfg)
    assert (a.seed, a.replicate, a.data_seed) == (3, 3, cfg.seed) and b.seed == 4
    assert a.results_dir == cfg.results_dir / "seed-3" and b.artifacts_dir == cfg.artifacts_dir / "seed-4"
    da, db = read_json(a.results_dir / "data.json"), read_json(b.results_dir / "data.json")
    sha = lambda d: {k: v["sha256"] for k, v in d["splits"].items()}  # noqa: E731
    assert sha(da) == sha(db)                      # the split is the profile's, not the training seed's
    fa, fb = (read_json(r.results_dir / "train_fp32.json")["checkpoint_sha256"] for r in (a, b))
    assert fa != fb                                # the training seed changed the model
    ea = read_json(a.results_dir / "evaluate.json")
    assert list(ea["variants"]) == EVALUATED       # eval.variants, in registry order
    row = ea["variants"]["onnx-int8-qat"]
    assert "batch_invariance" not in row and "predictions_batched" not in row and ea["batching"]["batched"] is None
    assert "vs_fp32_plus_epoch" in row and "vs_fp32_plus_epoch" in ea["variants"]["onnx-qat-fp32"]
    assert ea["provenance"]["config"]["replicate"] == 3 and ea["provenance"]["config"]["seed"] == 3


def test_the_summary_is_the_t_interval_of_what_each_seed_measured(seeds_study):
    cfg, out = seeds_study
    assert out["seeds"] == [3, 4] and set(out["variants"]) == set(EVALUATED)
    evals = [read_json(r.results_dir / "evaluate.json")["variants"] for r in S.replicates(cfg)]
    for name in ("onnx-int8-dynamic", "onnx-int8-qat"):
        x = np.array([e[name]["accuracy_diff"] for e in evals])
        rec = out["variants"][name]["accuracy_diff"]
        half = stats.t.ppf(0.975, 1) * x.std(ddof=1) / np.sqrt(2)
        assert rec["values"] == pytest.approx(x.tolist()) and rec["mean"] == pytest.approx(x.mean())
        assert rec["ci"] == pytest.approx([x.mean() - half, x.mean() + half])
    ctl = out["variants"]["onnx-int8-qat"]["vs_fp32_plus_epoch"]
    assert ctl["values"] == pytest.approx([e["onnx-int8-qat"]["vs_fp32_plus_epoch"]["accuracy_diff"] for e in evals])
    assert "accuracy_diff" not in out["variants"]["pytorch-fp32"] and out["control"] == S.CONTROL
    assert out["test_split_sha256"] and set(out["replicates"]) == {"3", "4"}
    assert read_json(cfg.results_dir / "seeds.json")["provenance"]["config"]["seeds"] == [3, 4]


def test_the_report_of_a_seeds_profile_draws_the_summary_only(seeds_study, capsys):
    cfg, out = seeds_study
    done = render_all(cfg)
    assert set(done) == {"seeds_figure", "seeds_table", "paper_macros"}
    assert "not found" not in capsys.readouterr().out       # no note for the steps a summary has not got
    table = (cfg.tables_dir / "seeds.tex").read_text()
    assert "onnx-int8-qat" in table and "Student-t" in table
    numbers = (cfg.tables_dir / "numbers.tex").read_text()
    assert "\\newcommand{\\SeedsN}{2}" in numbers and "\\SeedsQatVsControl" in numbers
    q = out["variants"]["onnx-int8-dynamic"]["accuracy_diff"]
    diff = tex_numbers(f"{100 * q['mean']:+.2f}")           # the number typeset: a minus sign, no sign on a zero
    assert f"\\newcommand{{\\SeedsDynDiff}}{{{diff}}}" in numbers
    assert (cfg.figures_dir / "seeds.png").is_file()
    f = seeds_frame(Results(cfg)).set_index("variant")
    qat = out["variants"]["onnx-int8-qat"]
    assert f.loc["onnx-int8-qat", "per_seed"] == pytest.approx(qat["accuracy_diff"]["values"])
    assert f.loc["onnx-int8-qat", "vs_control_ci"] == pytest.approx(qat["vs_fp32_plus_epoch"]["ci"])


def test_a_missing_or_partial_replicate_is_named(seeds_study, tmp_path):
    cfg, _ = seeds_study
    ev = S.replicates(cfg)[1].results_dir / "evaluate.json"
    kept = ev.read_text()
    ev.unlink()
    try:
        with pytest.raises(S.MissingReplicate, match="seed 4: .*evaluate.json not found"):
            S.summarize(cfg)
        rec = json.loads(kept)
        rec["variants"].pop("onnx-int8-dynamic")
        ev.write_text(json.dumps(rec))
        with pytest.raises(ValueError, match=r"\['onnx-int8-dynamic'\] are evaluated for some seeds only"):
            S.summarize(cfg)
    finally:
        ev.write_text(kept)


def test_seed_settings_that_cannot_work_are_refused(repo):
    base = {"extends": "smoke", "seeds": [1, 2]}
    write_profile(repo, "two", base)
    cfg = load_config("two", root=repo)
    with pytest.raises(ConfigError, match="replicate 5 is not one of the seeds of profile 'two'"):
        for_seed(cfg, 5)
    with pytest.raises(ConfigError, match="already the replicate of seed 1"):
        for_seed(for_seed(cfg, 1), 2)
    assert load_config("two", root=repo, overrides={"replicate": 2}).results_dir == repo / "results" / "two" / "seed-2"
    with pytest.raises(ConfigError, match="seed override 7 contradicts replicate 2"):
        load_config("two", root=repo, overrides={"replicate": 2, "seed": 7})
    with pytest.raises(ConfigError, match="lists no seeds"):
        S.replicates(load_config("smoke", root=repo))
    for seeds in ([1], [1, 1], [1, -2], [1, "b"]):
        write_profile(repo, "bad", {**base, "seeds": seeds})
        with pytest.raises(ConfigError, match="seeds must be at least two distinct integers"):
            load_config("bad", root=repo)
    write_profile(repo, "bad", {**base, "replicate": 1})
    with pytest.raises(ConfigError, match="'replicate' cannot appear in a profile"):
        load_config("bad", root=repo)
    write_profile(repo, "bad", {**base, "eval": {"variants": ["pytorch-fp32", "onnx-int8-qat"]}})
    with pytest.raises(ConfigError, match="must include the FP32 references.*missing: onnx-fp32"):
        load_config("bad", root=repo)
    ok = ["pytorch-fp32", "onnx-fp32", "onnx-int8-qat", "onnx-int8-dynamic", "onnx-qat-fp32", "openvino-int8-nncf"]
    for names, msg in ((ok + ["pytorch-bf16"], "benchmark baselines"), (ok + ["onnx-int9"], "unknown variant"),
                       (ok[:3], r"explain names \['onnx-int8-dynamic', 'onnx-qat-fp32', 'openvino-int8-nncf'\], "
                                r"which eval.variants")):
        write_profile(repo, "bad", {**base, "eval": {"variants": names}})
        with pytest.raises(KeyError, match=msg):
            V.check_profile(load_config("bad", root=repo))
    with pytest.raises(ValueError, match="one seed's replicate, evaluated and not benchmarked"):
        P.run_bench(for_seed(cfg, 1), progress=False)


def test_over_seeds_is_scipys_t_interval():
    x = [0.010, -0.004, 0.006, 0.002, 0.001]
    r = S.over_seeds(x, 0.95)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert r["ci"] == pytest.approx([lo, hi]) and r["sd"] == pytest.approx(np.std(x, ddof=1))
    assert (r["min"], r["max"], r["n"]) == (-0.004, 0.010, 5)


def test_the_command_line_lists_the_seeds_and_refuses_a_profile_without(repo):
    write_profile(repo, "two", {"extends": "smoke", "seeds": [5, 9]})
    run = lambda *a: subprocess.run([sys.executable, "-m", "utils.seeds", *a], cwd=repo, capture_output=True,  # noqa: E731
                                    text=True)
    r = run("list", "two")
    assert r.returncode == 0 and r.stdout.split() == ["5", "9"]
    r = run("list", "smoke")
    assert r.returncode == 2 and r.stderr.strip().startswith("seeds: profile 'smoke' lists no seeds")
    r = run("summarize", "two")
    assert r.returncode == 2 and "seed 5:" in r.stderr and "not found" in r.stderr


@pytest.mark.study
def test_make_seeds_runs_each_seed_through_the_notebooks_then_the_summary(tmp_path):
    """`make seeds` as a user runs it, on a copy of the repository: every seed's steps through the workflow engine
    and papermill (the replicate passed to each notebook), each a job of a stand-in SLURM cluster that asks for its
    GPU in the gres form, the summary and its report on the submitting node; then nothing is left to do."""
    from test_resume import _env, _repo_copy, _slurm_env, _submissions, assert_asked_as_declared

    root = _repo_copy(tmp_path / "repo")
    write_profile(root, "smokeseeds", {"extends": "smoke", "seeds": [1, 2],
                                       "quantize": {"calibration_methods": ["minmax"]},
                                       "eval": {"batched": False, "variants": EVALUATED}})
    venv = Path(sys.prefix)
    make = lambda *a: subprocess.run(["make", *a, "PROFILE=smokeseeds", f"VENV={venv}", "-o",  # noqa: E731
                                      f"{venv}/.installed"], cwd=root, env=_env(), capture_output=True, text=True,
                                     timeout=1800)
    r = subprocess.run(["make", "seeds", "PROFILE=smokeseeds", f"VENV={venv}", "-o", f"{venv}/.installed",
                        "CLUSTER=slurm", "GPU_REQUEST=gres",
                        "SNAKEMAKE_ARGS=--slurm-init-seconds-before-status-checks 1 --jobs 1 --latency-wait 5"],
                       cwd=root, env=_slurm_env(root), capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = _submissions(root)
    from utils import steps as S
    assert sorted((j["rule"], j["wildcards"]) for j in jobs) == sorted(
        (s, f"smokeseeds_seed-{n}") for s in S.REPLICATE for n in (1, 2)), "one job per step and seed"
    assert_asked_as_declared(jobs, gpu_flag="gres")
    # the shared environment was not reinstalled from the copy (its sub-makes get -o .installed too)
    here = subprocess.run([sys.executable, "-c", "import utils; print(utils.__file__)"], capture_output=True,
                          text=True, cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert str(root) not in here.stdout, here.stdout
    out = read_json(root / "results" / "smokeseeds" / "seeds.json")
    assert out["seeds"] == [1, 2] and set(out["variants"]) == set(EVALUATED)
    for s in (1, 2):
        assert (root / "build" / "notebooks" / "smokeseeds" / f"seed-{s}" / "06_evaluate.ipynb").is_file()
        ev = read_json(root / "results" / "smokeseeds" / f"seed-{s}" / "evaluate.json")
        assert ev["provenance"]["config"]["replicate"] == s
        assert (root / "artifacts" / "smokeseeds" / f"seed-{s}" / "onnx" / "int8-qat.onnx").is_file()
    assert not (root / "results" / "smokeseeds" / "evaluate.json").exists()   # the profile itself ran nothing
    assert "SeedsQatDiff" in (root / "paper" / "tables" / "smokeseeds" / "numbers.tex").read_text()
    r = make("seed-steps", "SEED=2", "DRY=1")                                 # every seed's steps are done
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
    r = make("seeds", "DRY=1")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
    r = make("seed-steps")
    assert r.returncode != 0 and "give SEED=<one of the profile's seeds>" in r.stderr
