"""Typed readers of ``results/<profile>/*.json``: what the builders of tables, figures and macros read.

``Results(cfg)`` loads each step's JSON once, on first use, and says which file is missing and which
step writes it; ``BenchResult`` answers the questions every benchmark builder asks of bench.json (the
all-core headline, the CPU operator profiles, the fastest INT8 file), so no builder repeats them.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Optional

from .. import bench_runs as R
from .. import eval_runs as ER
from .. import metrics as MT
from .. import results as RS
from .. import steps as ST
from .. import variants as V
from ..config import Config
from ..provenance import read_json

STUDY_STEPS = ST.STUDY                # the eight steps of one run of the study (src/utils/steps.py declares them)
STEP_FILES = ST.RESULT_FILES          # every step's results JSON, by step name


# steps run on files the study made: each records the SHA-256 of the files it measured (``inputs``; hostdrift.json of
# before: ``files``), checked against evaluate.json's
DERIVED_STEPS = ST.DERIVED


class MissingResult(FileNotFoundError):
    """A results JSON a builder needs has not been written yet."""


class StaleResult(ValueError):
    """A results JSON measured on other files than the study's evaluation now records (a later rerun)."""


def measured_files(rec: RS.StepResult) -> dict:
    """variant -> the SHA-256 of the file a derived step measured."""
    got = getattr(rec, "inputs", None) or getattr(rec, "files", None) or {}
    return {n: (x["sha256"] if isinstance(x, dict) else x) for n, x in got.items()}


BenchResult = RS.Bench        # bench.json, with the lookups its builders share (``results.Bench``)


def best_int(head: dict, names=None) -> str:
    """The fastest of ``names`` (default: every integer ONNX variant of the headline ``head``)."""
    names = [n for n in head if V.is_onnx_int8(n)] if names is None else names
    return min(names, key=lambda n: head[n]["median_ms"])


def top_k(res: "Results") -> MT.Metric:
    """The top-k overlap the paper reports: of the first k of ``explain.top_k`` the explanations were measured with
    (recorded in explain.json), from the metric registry."""
    return MT.top_k(res.explain.top_k[0])


def short(name: str) -> str:
    """A variant's name as the paper's sentences and figures write it: an ONNX file by its stem, an OpenVINO variant as
    ``OV <what it runs>``."""
    v = V.REGISTRY.get(name)
    if v is not None and v.runtime == "openvino":
        return "OV " + name[len("openvino-"):]
    return v.stem if v is not None and v.stem else name


class Results:
    """The results of one profile. ``res.evaluate`` etc. load ``results/<profile>/evaluate.json``."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.name = cfg.name
        self.dir = Path(cfg.results_dir)
        self._cache: dict = {}
        self._stale: set = set()

    def has(self, step: str) -> bool:
        """Whether ``step``'s results are there to read. A derived step's (``DERIVED_STEPS``) made on other files
        than this evaluation's (a rerun of the study after it: a fresh clone's ``make paper-figures`` on another
        host) is not: the report leaves its tables and macros out and says once which command remakes it, so it
        neither prints an earlier run's numbers nor stops the study. ``load`` still refuses it."""
        if not (self.dir / f"{step}.json").is_file():
            return False
        if step in DERIVED_STEPS:
            try:
                self.load(step)
            except (StaleResult, MissingResult) as e:
                if step not in self._stale:
                    self._stale.add(step)
                    print(f"report: {e}; left out")
                return False
        return True

    def load(self, step: str) -> RS.StepResult:
        if step not in self._cache:
            path = self.dir / f"{step}.json"
            if not path.is_file():
                raise MissingResult(f"results file not found: {path} (run the {step} step of profile "
                                    f"{self.name!r} first)")
            rec = RS.from_json(path, step)
            if step in DERIVED_STEPS:
                self._check_fresh(path, rec)
            self._cache[step] = rec
        return self._cache[step]

    def _check_fresh(self, path: Path, rec: RS.StepResult) -> None:
        """A derived result describes the files the evaluation measured, or it is refused: never numbers of
        an earlier run's files beside this run's."""
        files = measured_files(rec)
        if not files:
            raise StaleResult(f"{path} records no SHA-256 of the files it measured: rerun "
                              f"`make {rec.STEP} PROFILE={self.name}`")
        now = self.evaluate.variants
        for name, digest in files.items():
            if name in now and now[name]["sha256"] != digest:
                raise StaleResult(f"{path} was measured on another {name} ({digest[:12]}) than evaluate.json's "
                                  f"({now[name]['sha256'][:12]}): rerun `make {path.stem} PROFILE={self.name}` "
                                  f"on this run's files, or delete the file")

    data = property(lambda self: self.load("data"))
    train_fp32 = property(lambda self: self.load("train_fp32"))
    train_qat = property(lambda self: self.load("train_qat"))
    export = property(lambda self: self.load("export"))
    quantize = property(lambda self: self.load("quantize"))
    evaluate = property(lambda self: self.load("evaluate"))
    explain = property(lambda self: self.load("explain"))
    seeds = property(lambda self: self.load("seeds"))     # `make seeds`: the summary over the training seeds
    sizes = property(lambda self: self.load("sizes"))     # `make sizes`: cost against model size
    hostdrift = property(lambda self: self.load("hostdrift"))   # `make hostdrift`: why INT8 moves with the CPU
    gradients = property(lambda self: self.load("gradients"))   # `make gradients`: Integrated Gradients
    cuda_placement = property(lambda self: self.load("cuda_placement"))   # predicted CUDA placement

    @property
    def bench(self) -> BenchResult:
        return self.load("bench")

    @property
    def labels(self) -> list:
        return self.data.labels

    def confidence(self, step: str = "evaluate") -> float:
        """The interval level (``eval.confidence``) that ``step``'s results were computed at, as recorded in
        their provenance (not the profile as it reads now)."""
        return self.load(step).provenance["config"]["eval"]["confidence"]

    @property
    def bench_gpu(self) -> Optional[dict]:
        """A run of ``python -m utils.gpu_bench`` on a GPU machine (bench_gpu.json), where there is one."""
        path = self.dir / "bench_gpu.json"
        return read_json(path) if path.is_file() else None

    @cached_property
    def bench_runs(self) -> list:
        return R.read_runs(self.cfg)

    def run_history(self) -> tuple:
        """(every run of bench_runs.jsonl, the summary of bench.json, the fastest INT8 variant that every
        run measured alike has, or None)."""
        runs, this = self.bench_runs, R.summary(self.bench)
        return runs, this, R.shared_best(runs, this)

    def across_hosts(self) -> Optional[dict]:
        """This evaluation's model on every instruction set eval_runs.jsonl holds it on (``eval_runs.across_hosts``);
        None where it was evaluated on one only."""
        data = self.data if self.has("data") else None
        this = ER.summary(self.evaluate, data.splits["test"]["sha256"] if data else None)
        return ER.across_hosts(ER.read_runs(self.cfg), this) if ER.is_batch1(self.evaluate) else None

    def study_provenance(self) -> Optional[dict]:
        """step -> provenance of the study's eight steps where one commit wrote them all (one run of the study);
        None where a step is missing or they come from several commits."""
        if not all(self.has(s) for s in STUDY_STEPS):
            return None
        provs = {s: self.load(s).provenance for s in STUDY_STEPS}
        return provs if len({p["git"]["commit"] for p in provs.values()}) == 1 else None

    def step_seconds(self) -> Optional[dict]:
        """step -> the wall-clock seconds its provenance records (``write_result(started=...)``), for the eight
        steps of one run of the study on one instruction set; None where a step is missing, records no seconds
        (written before they were recorded) or comes from another run."""
        provs = self.study_provenance()
        if (provs is None or any(p.get("seconds") is None for p in provs.values())
                or len({tuple((p.get("cpu_isa") or {}).get("features", ())) for p in provs.values()}) != 1):
            return None
        return {s: float(p["seconds"]) for s, p in provs.items()}

    def run_to_run(self) -> Optional[dict]:
        """The comparable clean runs and their spread (``bench_runs.run_to_run``); None with fewer than two."""
        runs, this, best = self.run_history()
        if best is None:
            return None
        rr = R.run_to_run(runs, this, best)
        return rr if rr["runs"] >= 2 else None
