"""Interrupted and repeated: the whole smoke study through ``make`` and the workflow engine, as a user runs it.

Run A goes from scratch to the end, each step a job of a stand-in SLURM cluster (``make paper-figures
CLUSTER=slurm`` with tests/fixtures/slurm/standin.py as sbatch, sacct and srun, which record their arguments and run
each job here). Run B, from scratch in another copy of the repository, runs locally and is killed in the middle of
the training step (SIGTERM), of the quantization step (SIGKILL) and of the explanation step (SIGTERM), each time with
every process it started, and ``make`` is run again until it finishes. Then:

* A's jobs asked for what each step declares: the GPU for training, the node feature for the benchmark, the
  partition, time and memory of each; the report ran on the submitting node;
* B resumed: a killed step left nothing a later step read (every output is written to a temporary name
  and renamed), the lock the hard kill left was explained (with ``make unlock``) and not cleared until asked,
  and the engine reran only what was not finished;
* B equals A: the same splits (byte for byte), training losses, predictions of every variant (batch 1
  and batched), accuracy, LIME and KernelSHAP weights. Timings and provenance aside, two runs agree.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
COPY = ("Makefile", "notebooks", "configs", "src", "workflow", "profiles", "pyproject.toml", "requirements.txt",
        "requirements-nodeps.txt", "requirements.lock")
STANDIN = REPO / "tests" / "fixtures" / "slurm" / "standin.py"
SLURM_TOOLS = ("sbatch", "sacct", "srun", "sinfo", "squeue", "scontrol", "scancel")
NB = "build/notebooks/smoke"

pytestmark = pytest.mark.study


def _repo_copy(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in COPY:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)   # mtimes kept: no venv rebuild
    return root


def _env() -> dict:
    # the library under test, whatever is installed; no network; the notebooks' kernels inherit it
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1"}


def _make(root: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    venv = Path(sys.prefix)
    # -o: the shared environment counts as installed (make must never reinstall it from the copy). Its stderr (papermill
    # logs every cell's output there) goes to a file: a pipe nobody reads while _kill_during waits fills at 64 KB and
    # stalls papermill until the wait times out (seen: a 10 ms cell "took" 765 s)
    with open(root / "make.stderr", "a") as err:          # the child keeps its own copy of the descriptor
        return subprocess.Popen(["make", "paper-figures", "PROFILE=smoke", f"VENV={venv}", "-o",
                                 f"{venv}/.installed", *extra], cwd=root, env=env or _env(), stdout=err, stderr=err,
                                text=True, start_new_session=True)


def _slurm_env(root: Path) -> dict:
    """PATH with the stand-in SLURM tools first; their records under <root>/slurm/."""
    state, tools = root / "slurm", root / "slurm" / "bin"
    tools.mkdir(parents=True)
    for name in SLURM_TOOLS:
        (tools / name).symlink_to(STANDIN)
    env = _env()
    return {**env, "PATH": f"{tools}{os.pathsep}{env['PATH']}", "STANDIN_SLURM_DIR": str(state)}


def _stderr(root: Path) -> str:
    return (root / "make.stderr").read_text(errors="replace")[-3000:]


def _descendants(pid: int) -> set:
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), set()).add(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _kill_during(root: Path, notebook: str, sig: int, after_s: float, timeout_s: float = 900) -> None:
    """Start make; once ``notebook`` has run ``after_s`` seconds, send ``sig`` to make and every process
    it started (the papermill kernel included, which sits in a session of its own)."""
    p = _make(root)
    marker = root / NB / f"{notebook}.ipynb"
    t0 = time.time()
    while not marker.exists():
        if p.poll() is not None:
            pytest.fail(f"make ended before {notebook} started: {_stderr(root)}")
        if time.time() - t0 > timeout_s:
            os.killpg(p.pid, signal.SIGKILL)      # no make left running behind the failed test
            pytest.fail(f"{notebook} did not start within {timeout_s} s: {_stderr(root)}")
        time.sleep(0.2)
    time.sleep(after_s)
    assert p.poll() is None, f"{notebook} finished within {after_s} s: the kill would test nothing"
    for pid in _descendants(p.pid) | {p.pid}:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    p.wait(timeout=120)
    time.sleep(1)


def _finish(root: Path, *extra: str, env: dict | None = None, timeout_s: float = 1800) -> None:
    p = _make(root, *extra, env=env)
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("make did not finish")
    assert p.returncode == 0, _stderr(root)


def _load(root: Path, step: str) -> dict:
    return json.loads((root / "results" / "smoke" / f"{step}.json").read_text())


def _fingerprint(root: Path) -> dict:
    """What two runs must agree on: everything but timings and provenance."""
    data, train, ev, ex = (_load(root, s) for s in ("data", "train_fp32", "evaluate", "explain"))
    splits = {k: (v["n"], v["sha256"]) for k, v in data["splits"].items()}
    files = {p.name: p.read_bytes() for p in sorted((root / "data" / "processed" / "smoke").glob("*.csv"))}
    losses = [(h["epoch"], h["train_loss"], h["val_accuracy"]) for h in train["history"]]
    preds = {n: (v["predictions_sha256"], v["batched"]["predictions_sha256"], v["accuracy"], v["macro_f1"])
             for n, v in ev["variants"].items()}
    lime = {n: [x["weights"] for x in xs] for n, xs in ex["explanations"].items()}
    shap = {n: [x["weights"] for x in xs] for n, xs in ex.get("shap", {}).get("explanations", {}).items()}
    noise = {i: [{k: v for k, v in x.items() if k != "seconds"} for x in xs]      # timings aside
             for i, xs in ex["noise_explanations"].items()}
    return {"splits": splits, "files": files, "losses": losses, "predictions": preds, "lime": lime, "shap": shap,
            "examples": [e["index"] for e in ex["examples"]], "noise": noise}


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    """The study on the stand-in cluster (its jobs run here, one at a time)."""
    root = _repo_copy(tmp_path_factory.mktemp("study") / "a")
    _finish(root, "CLUSTER=slurm", "CPU_FEATURE=avx512_vnni",
            "SNAKEMAKE_ARGS=--slurm-init-seconds-before-status-checks 1 --jobs 1 --latency-wait 5",
            env=_slurm_env(root))
    return root


def _submissions(root: Path) -> list:
    """Each sbatch call the stand-in recorded: its rule, its wildcards and the flags it was submitted with."""
    out = []
    for line in (root / "slurm" / "calls.jsonl").read_text().splitlines():
        call = json.loads(line)
        if call["tool"] != "sbatch":
            continue
        argv = call["argv"]
        flags = {}
        for i, a in enumerate(argv):
            if a.startswith("--") and "=" in a:
                k, v = a[2:].split("=", 1)
                flags[k] = v
            elif a.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                flags[a.lstrip("-")] = argv[i + 1]
        rule, _, wildcards = flags["comment"].removeprefix("rule_").partition("_wildcards_")
        out.append({"rule": rule, "wildcards": wildcards, "flags": flags})
    return out


def assert_asked_as_declared(jobs: list, *, gpu_flag: str, feature=None) -> None:
    """Every job asked for what its step declares: the partition (GPU steps to the GPU partition), the GPU
    (``gpus``: --gpus=1; ``gres``: --gres=gpu:1), the node feature, time, memory and CPUs."""
    from utils import steps as S
    for job in jobs:
        step, flags = S.get(job["rule"]), job["flags"]
        assert not step.local, f"{step.name} runs on the submitting node"
        assert flags["t"] == str(step.runtime) and flags["mem"] == str(step.mem_mb), job
        assert flags["p"] == ("gpu" if step.gpu else "cpu"), job
        asked = flags.get("gpus") == "1" if gpu_flag == "gpus" else flags.get("gres") == "gpu:1"
        assert asked == step.gpu and (gpu_flag == "gpus" or "gpus" not in flags), job
        assert flags.get("C") == (feature if step.cpu_feature else None), job
        assert flags["cpus-per-task"] == ("8" if step.heavy else "1"), job


def test_the_cluster_jobs_ask_for_what_each_step_declares(run_a):
    from utils import steps as S
    jobs = _submissions(run_a)
    remote = [s for s in S.PAPER_FIGURES if not S.get(s).local]
    assert sorted(j["rule"] for j in jobs) == sorted(remote), "one job per step; report, placement on this node"
    assert all(j["wildcards"] == "smoke" for j in jobs)
    assert_asked_as_declared(jobs, gpu_flag="gpus", feature="avx512_vnni")
    by_rule = {j["rule"]: j["flags"] for j in jobs}
    assert by_rule["train_fp32"]["gpus"] == "1" and by_rule["bench"]["C"] == "avx512_vnni"
    calls = [json.loads(x) for x in (run_a / "slurm" / "calls.jsonl").read_text().splitlines()]
    assert sum(c["tool"] == "srun" for c in calls) == len(jobs), "each job ran its step through srun"


def test_killed_in_three_steps_resumes_and_equals_an_uninterrupted_run(run_a, tmp_path):
    b = _repo_copy(tmp_path / "b")
    _kill_during(b, "02_train_fp32", signal.SIGTERM, after_s=8)
    assert not (b / "results" / "smoke" / "train_fp32.json").exists()
    assert not (b / "artifacts" / "smoke" / "fp32").exists()          # nothing half-written under its name
    _kill_during(b, "05_quantize", signal.SIGKILL, after_s=6)
    assert (b / "results" / "smoke" / "export.json").exists()          # the steps before it stay done
    assert not (b / "results" / "smoke" / "quantize.json").exists()
    # the hard kill left Snakemake's lock: the next run explains it and stops; `make unlock` clears it
    r = subprocess.run(["make", "paper-figures", "PROFILE=smoke", f"VENV={sys.prefix}", "-o",
                        f"{sys.prefix}/.installed"], cwd=b, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "no longer running on this machine" in r.stderr and "make unlock" in r.stderr
    assert any((b / ".snakemake" / "locks").iterdir())
    r = subprocess.run(["make", "unlock", f"VENV={sys.prefix}", "-o", f"{sys.prefix}/.installed"], cwd=b, env=_env(),
                       capture_output=True, text=True, timeout=300)
    locks = b / ".snakemake" / "locks"
    assert r.returncode == 0 and not (locks.is_dir() and any(locks.iterdir())), r.stderr
    done = {p.name: p.stat().st_mtime_ns for p in (b / "results" / "smoke").glob("*.json")}
    _kill_during(b, "08_explain", signal.SIGTERM, after_s=6)
    assert not (b / "results" / "smoke" / "explain.json").exists()
    after = {p.name: p.stat().st_mtime_ns for p in (b / "results" / "smoke").glob("*.json")}
    assert all(after[n] == t for n, t in done.items()), "a finished step was run again"
    leftovers = [p for p in b.rglob("*") if ".tmp" in p.name and p.is_file()]
    _finish(b)
    assert after["train_fp32.json"] == (b / "results" / "smoke" / "train_fp32.json").stat().st_mtime_ns
    fa, fb = _fingerprint(run_a), _fingerprint(b)
    for key in fa:
        assert fa[key] == fb[key], f"{key} differs between an uninterrupted run and the resumed one"
    # temporary files a kill left behind are not outputs (nothing reads them), and the next run replaces them
    assert all(not p.exists() or ".tmp" in p.name for p in leftovers)


def test_the_shared_environment_still_points_at_this_repository(run_a):
    """make in a copy (with -o .installed) never reinstalled the shared venv's editable package from it."""
    r = subprocess.run([sys.executable, "-c", "import utils; print(utils.__file__)"], capture_output=True, text=True,
                       cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert str(run_a) not in r.stdout, r.stdout


def test_nothing_to_do_on_a_finished_run_and_an_edit_reruns_the_steps_that_call_it(run_a):
    """A second run over a finished one has nothing to do (every step's outputs are newer than its inputs); an edited
    library module reruns exactly the steps whose code calls it (a dry run lists them)."""
    from utils import steps as S
    before = {p: p.stat().st_mtime_ns for p in (run_a / "results" / "smoke").glob("*.json")}
    dry = lambda: subprocess.run(["make", "paper-figures", "PROFILE=smoke", "DRY=1", f"VENV={sys.prefix}",  # noqa: E731
                                  "-o", f"{sys.prefix}/.installed"], cwd=run_a, env=_env(), capture_output=True,
                                 text=True, timeout=300)
    r = dry()
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    assert before == {p: p.stat().st_mtime_ns for p in (run_a / "results" / "smoke").glob("*.json")}
    with open(run_a / "src" / "utils" / "metrics.py", "a") as f:    # an edit (a touch alone is not one: the
        f.write("# edited\n")                                       # engine compares the content it recorded)
    r = dry()
    listed = set(re.findall(r"^rule (\w+):", r.stdout, re.M)) | set(re.findall(r"^localrule (\w+):", r.stdout, re.M))
    assert listed == {s.name for s in S.STEPS if "metrics" in s.modules and s.name in S.PAPER_FIGURES}, r.stdout
    assert listed == {"explain", "report"}
