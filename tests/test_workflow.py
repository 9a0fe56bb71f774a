"""The one declaration of the steps (src/utils/steps.py) and the workflow that runs it (workflow/Snakefile through
src/utils/workflow.py): each step's modules are what its code calls; the Makefile, pipeline, readers and tests take the
steps from it; Snakemake's DAG (dry runs, real Snakemake) has one job per step and replicate; the grid, the committed
runs it keeps, the lock a hard kill leaves. The runs themselves: tests/test_resume.py and tests/test_seeds.py."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import committed
from utils import pipeline
from utils import steps as S
from utils import workflow as W
from utils.report import readers

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the declaration
@pytest.mark.parametrize("step", S.STEPS, ids=lambda s: s.name)
def test_each_steps_modules_are_what_its_code_calls(step):
    """A module a step starts to call without being declared would not rerun it when edited (the drift make had)."""
    called = S.called_modules(step.entry)
    assert set(step.modules) == called, (f"{step.name}: declare {sorted(called - set(step.modules))}, "
                                         f"drop {sorted(set(step.modules) - called)}")
    assert all((ROOT / f).is_file() for f in S.module_files(step))


def test_called_modules_follows_calls_across_modules_and_registries(tmp_path):
    """The analysis on a small library: a call through an alias, an imported name, a same-module helper, a
    registry lookup (a decorator filling a mapping); a module imported but not called does not count."""
    files = {
        "entry.py": """
            from . import helpers as H
            from . import unused
            from .registry import handler

            def run(cfg):
                return _inner(cfg) + handler(cfg)

            def _inner(cfg):
                return H.twice(cfg)
            """,
        "helpers.py": """
            from .maths import square

            def twice(x):
                return square(x) * 2
            """,
        "maths.py": "def square(x):\n    return x * x\n",
        "unused.py": "def nothing():\n    pass\n",
        "registry.py": """
            from . import runtime as RT
            _H = {}

            def register(kind):
                def deco(fn):
                    _H[kind] = fn
                    return fn
                return deco

            def handler(x):
                return _H[type(x)](x)

            @register(int)
            def _int(x):
                return RT.go(x)
            """,
        "runtime.py": "def go(x):\n    return x\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    assert S.called_modules("entry:run", src=tmp_path) == {"entry", "helpers", "maths", "registry", "runtime"}
    assert S.called_modules("helpers:twice", src=tmp_path) == {"helpers", "maths"}
    with pytest.raises(KeyError, match="no function nope in entry"):
        S.called_modules("entry:nope", src=tmp_path)


def test_the_step_list_exists_once():
    """pipeline, the report's readers and the tests take the steps from steps.py; the Makefile names none."""
    assert pipeline.STEPS is S.STUDY and readers.STUDY_STEPS is S.STUDY and committed.STEPS is S.STUDY
    assert readers.DERIVED_STEPS is S.DERIVED and readers.STEP_FILES is S.RESULT_FILES
    assert all(hasattr(pipeline, f"run_{s}") for s in S.STUDY)
    assert all(isinstance(getattr(readers.Results, s, None), property) for s in S.RESULT_FILES), \
        "every step's results file has its reader"
    make = "\n".join(x for x in (ROOT / "Makefile").read_text().splitlines() if not x.lstrip().startswith("#"))
    assert not re.search(r"notebooks/0\d|results/\S+\.json|\$\(RES\)", make), "the Makefile lists steps again"
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert notebooks == sorted(s.notebook for s in S.STEPS if s.notebook), "a notebook no step runs, or the reverse"


def test_commands_run_notebooks_and_modules_for_a_run():
    cmd = S.command("evaluate", "seeds/seed-43", "seeds", python="py")
    assert cmd == ("mkdir -p build/notebooks/seeds/seed-43 && py -m papermill notebooks/06_evaluate.ipynb "
                   "build/notebooks/seeds/seed-43/06_evaluate.ipynb -p profile seeds "
                   "-y 'overrides: {\"replicate\": 43}' --cwd notebooks --no-progress-bar --log-output")
    assert "overrides: {\"replicate\": 1, \"seeds\": [1, 2]}" in S.command("data", "x/seed-1", "x", seeds=[1, 2])
    assert S.command("seeds", "drugs", "drugs", python="py", seeds=[4, 5]) == \
        "py -m utils.seeds summarize drugs --seeds 4,5"
    assert S.command("hostdrift", "mine", "/abs/my profile.yaml", python="py") == \
        "py -m utils.hostdrift '/abs/my profile.yaml'"
    with pytest.raises(ValueError, match="runs on a profile, not on one seed's replicate"):
        S.command("bench", "seeds/seed-42", "seeds")
    with pytest.raises(ValueError, match="<profile>/seed-<n>"):
        S.split_run("seeds/run-42")


# --------------------------------------------------------------------------- the DAG, by Snakemake
def _workflow(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "utils.workflow", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _jobs(out: str) -> dict:
    """rule -> count, from Snakemake's job table."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_a_dry_run_of_the_study_lists_its_steps_and_the_report():
    r = _workflow("study", "smoke", "--dry-run", "--snakemake=--forceall")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _jobs(r.stdout) == {s: 1 for s in S.PAPER_FIGURES}


def test_a_dry_run_of_the_full_grid_lists_one_job_per_step_and_replicate():
    r = _workflow("grid", "configs/grid.yaml", "--dry-run", "--redo", "--snakemake=--forceall")
    assert r.returncode == 0, r.stderr[-3000:]
    grid = W.read_grid(ROOT / "configs" / "grid.yaml", ROOT)
    n_profiles = len(grid)
    n_reps = sum(len(e["seeds"]) for e in grid.values())
    expect = {s: n_profiles + n_reps for s in S.REPLICATE}
    expect.update({s: n_profiles for s in S.PAPER_FIGURES if s not in S.REPLICATE})
    expect["seeds"] = n_profiles
    assert _jobs(r.stdout) == expect


def test_the_grid_keeps_committed_finished_runs():
    """Without REDO, the committed studies (default, drugs, base) are taken as they are: only the replicates run."""
    runs, _ = W.finished(ROOT, W.read_grid(ROOT / "configs" / "grid.yaml", ROOT))
    assert {"default", "drugs", "base"} <= set(runs)
    r = _workflow("grid", "configs/grid.yaml", "--dry-run")
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = _jobs(r.stdout)
    assert "bench" not in jobs and "explain" not in jobs and jobs["data"] == 15 and jobs["seeds"] == 3
    # the default study's five committed seeds (profile `seeds`) and their summary are finished too
    runs, summaries = W.finished(ROOT, {"seeds": {"profile": "seeds", "seeds": None, "study": False}})
    assert runs == [f"seeds/seed-{s}" for s in (42, 43, 44, 45, 46)] and summaries == ["seeds"]


def test_a_grid_file_is_checked_before_anything_runs(tmp_path):
    def grid(text):
        p = tmp_path / "g.yaml"
        p.write_text(text)
        return p
    for text, msg in (("profiles: [smoke]\nseed: [1]\n", r"unknown key\(s\) \['seed'\]"),
                      ("seeds: [1, 2]\n", "'profiles' lists no profile"),
                      ("profiles: [smoke, smoke]\nseeds: [1, 2]\n", "listed twice"),
                      ("profiles: [smoke]\nseeds: [1, two]\n", "must be a list of integers"),
                      ("profiles: [smoke]\nseeds: [1]\n", "seeds must be at least two distinct"),
                      ("profiles: [smoke]\nstudy: false\n", "runs no study and has no seeds"),
                      ("profiles: [nope]\n", "unknown profile 'nope'"),
                      ("profiles: [smoke]\nonly: {seeds: {study: false}}\n", r"'only' names \['seeds'\]")):
        with pytest.raises(W.WorkflowError, match=msg):
            W.read_grid(grid(text), ROOT)
    with pytest.raises(W.WorkflowError, match="grid file not found"):
        W.read_grid(tmp_path / "none.yaml", ROOT)
    r = _workflow("grid", str(grid("profiles: [smoke]\nseed: [1]\n")))
    assert r.returncode == 2 and r.stderr.startswith("error: grid file") and "Traceback" not in r.stderr
    g = W.read_grid(grid("profiles: [smoke, seeds]\nseeds: [3, 4]\nonly: {seeds: {seeds: null, study: false}}\n"),
                    ROOT)
    assert g == {"smoke": {"profile": "smoke", "seeds": [3, 4], "study": True},
                 "seeds": {"profile": "seeds", "seeds": None, "study": False}}


# --------------------------------------------------------------------------- the lock
def test_a_stale_lock_is_explained_never_cleared(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    W.check_lock(tmp_path)                               # no lock file: nothing to say
    (locks / "0.input.lock").write_text("x")
    with pytest.raises(W.WorkflowError, match=r"no longer running on this machine.*`make unlock`"):
        W.check_lock(tmp_path)
    assert (locks / "0.input.lock").is_file()
    # a snakemake process running in the folder: the lock is live, and the message says which process holds it
    fake = tmp_path / "snakemake"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    p = subprocess.Popen([str(fake)], cwd=tmp_path)
    try:
        for _ in range(50):
            if W.live_runs(tmp_path):
                break
            time.sleep(0.1)
        with pytest.raises(W.WorkflowError, match=rf"another run is live in .* \(pid {p.pid}"):
            W.check_lock(tmp_path)
    finally:
        p.kill()
        p.wait()


def test_what_a_cluster_job_asks_for_comes_from_the_declaration():
    """The resources each rule gives the executor (a dry run prints them): a GPU for training as --gpus or as gres,
    the node feature for the CPU-timed steps, each step's time and memory."""
    r = _workflow("study", "smoke", "--dry-run", "--gpu-request", "gres", "--cpu-feature", "amx_int8",
                  "--snakemake=--forceall")
    assert r.returncode == 0, r.stderr[-3000:]
    blocks = dict(re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=\n\n|\Z)", r.stdout, re.M | re.S))
    for name in S.PAPER_FIGURES:
        step, res = S.get(name), re.search(r"resources: (.*)", blocks[name]).group(1)
        assert f"runtime={step.runtime}" in res and f"mem_mb={step.mem_mb}" in res, name
        assert ("gres=gpu:1" in res) == step.gpu and "gpu=1" not in res, name
        assert ("constraint=amx_int8" in res) == step.cpu_feature, name
    assert "gpu=1" in re.search(r"^rule train_fp32:\n.*?resources: (.*)", _workflow(
        "study", "smoke", "--dry-run", "--snakemake=--forceall").stdout, re.M | re.S).group(1)
