"""Typed, versioned step results: ``results/<profile>/<step>.json``.

Each step's result is a dataclass that declares its top-level fields (``RESULTS``: step -> class); ``SCHEMA`` is
the version of the format this code writes. ``to_json`` writes one (the step, the schema version, its fields in the
order the step gave them, provenance) and ``from_json`` reads one back. A file without a version is the format from
before versions were written (1): it is read through ``MIGRATIONS``, so results committed then still render. A
version this code does not know, a field a step does not declare or a declared field missing are refused with the
file's path. Nested records (per variant, per example) are still plain mappings: their keys are documented where
the step writes them.

    rec = from_json("results/default/evaluate.json")     # an Evaluate
    rec.variants["onnx-int8-dynamic"]["accuracy"], rec.headline_batch_size
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from .provenance import provenance, read_json, write_json

SCHEMA = 2                       # the format this code writes (1: before ``schema`` was recorded)
KNOWN_SCHEMAS = (1, 2)


class ResultSchemaError(ValueError):
    """A results file this code cannot read as its step's declared result."""


@dataclass(kw_only=True)
class StepResult:
    """What every step's result carries: the step that wrote it, the schema version, provenance (config, git
    commit, packages, CPU and its instruction set, threads, seconds)."""
    STEP: ClassVar[str] = ""
    provenance: dict = field(default_factory=dict)
    schema: int = SCHEMA
    _order: tuple = field(default=(), repr=False, compare=False)    # the keys in the order the step gave them

    @classmethod
    def fields(cls) -> dict:
        return {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}

    @classmethod
    def from_dict(cls, rec: dict, where: str = "") -> "StepResult":
        """``rec`` (a step's payload, or a file's record with step, schema and provenance) as this step's result."""
        known = cls.fields()
        body = {k: v for k, v in rec.items() if k != "step"}
        unknown = [k for k in body if k not in known]
        if unknown:
            raise ResultSchemaError(f"{where or cls.STEP}: field(s) {', '.join(unknown)} are not declared by "
                                    f"{cls.__name__} (utils.results): declare them there, with the schema version")
        try:
            return cls(**body, _order=tuple(k for k in body if k not in ("schema", "provenance")))
        except TypeError as e:
            raise ResultSchemaError(f"{where or cls.STEP}: not a {cls.STEP} result: {e}") from None

    def to_dict(self) -> dict:
        """The record as written: step, schema, the fields the step gave (in its order; then any set later),
        provenance."""
        names = [n for n in self.fields() if n not in ("schema", "provenance")]
        order = [*self._order, *(n for n in names if n not in self._order and getattr(self, n) is not None)]
        out = {"step": self.STEP, "schema": self.schema, **{n: getattr(self, n) for n in order}}
        if self.provenance:
            out["provenance"] = self.provenance
        return out


def _opt():
    return field(default=None)


@dataclass(kw_only=True)
class Data(StepResult):
    STEP: ClassVar[str] = "data"
    source: str
    labels: list
    n_examples: int
    splits: dict
    group_overlap: Optional[int]
    token_lengths: dict
    max_length: int
    majority_class_test_accuracy: float
    label_order: Optional[str] = _opt()
    label_map: Optional[dict] = _opt()
    checkpoint_id2label: Optional[list] = _opt()


@dataclass(kw_only=True)
class TrainFP32(StepResult):
    STEP: ClassVar[str] = "train_fp32"
    history: list
    best_epoch: Optional[int]
    best_val_accuracy: float
    stopped_early: bool
    steps_per_epoch: Optional[int]
    train_seconds: float
    n_train: int
    n_validation: int
    parameters: int
    checkpoint: str
    checkpoint_mb: float
    checkpoint_sha256: Optional[str] = _opt()
    origin: Optional[str] = _opt()
    head: Optional[str] = _opt()
    why: Optional[str] = _opt()
    architecture: Optional[dict] = _opt()
    adopted: Optional[dict] = _opt()
    unused_settings: Optional[dict] = _opt()
    val_macro_f1: Optional[float] = _opt()


@dataclass(kw_only=True)
class TrainQAT(StepResult):
    STEP: ClassVar[str] = "train_qat"
    train_seconds: float
    enabled: Optional[bool] = _opt()                # False: QAT left out (qat.enabled: false)
    skipped: Optional[str] = _opt()
    variants_left_out: Optional[list] = _opt()
    settings_left_out: Optional[dict] = _opt()
    unused_settings: Optional[dict] = _opt()
    history: Optional[list] = _opt()
    best_epoch: Optional[int] = _opt()
    best_val_accuracy: Optional[float] = _opt()
    stopped_early: Optional[bool] = _opt()
    steps_per_epoch: Optional[int] = _opt()
    calibration_examples: Optional[int] = _opt()
    quantized_linears: Optional[int] = _opt()
    quantized_embeddings: Optional[list] = _opt()
    activation_quantizers: Optional[int] = _opt()
    activation_scales: Optional[dict] = _opt()
    checkpoint: Optional[str] = _opt()
    fakequant_state_mb: Optional[float] = _opt()
    checkpoint_mb: Optional[float] = _opt()
    checkpoint_sha256: Optional[str] = _opt()
    control: Optional[dict] = _opt()


@dataclass(kw_only=True)
class Export(StepResult):
    STEP: ClassVar[str] = "export"
    fp32: dict
    qat_fp32: Optional[dict] = _opt()          # written as "qat-fp32"

    @classmethod
    def from_dict(cls, rec: dict, where: str = "") -> "Export":
        rec = {("qat_fp32" if k == "qat-fp32" else k): v for k, v in rec.items()}
        return super().from_dict(rec, where)

    def to_dict(self) -> dict:
        return {("qat-fp32" if k == "qat_fp32" else k): v for k, v in super().to_dict().items()}

    @property
    def files(self) -> dict:
        """ONNX stem -> its export record (FP32's, and QAT's weights unquantized where QAT ran)."""
        return {k: v for k, v in (("fp32", self.fp32), ("qat-fp32", self.qat_fp32)) if v is not None}


@dataclass(kw_only=True)
class Quantize(StepResult):
    STEP: ClassVar[str] = "quantize"
    fp32_mb: float
    calibration_split: Any
    variants: dict
    calibration_examples: Optional[int] = _opt()
    calibration_batch_size: Optional[int] = _opt()
    openvino: Optional[dict] = _opt()


@dataclass(kw_only=True)
class Evaluate(StepResult):
    STEP: ClassVar[str] = "evaluate"
    reference: str
    labels: list
    n_test: int
    majority_class_accuracy: float
    variants: dict
    batching: Optional[dict] = _opt()               # absent before batch-1 evaluation (the headline was batched)
    latency_note: Optional[str] = _opt()
    headline_batch_size: Optional[int] = _opt()    # texts per call of the headline predictions (1: as deployed)
    chance: Optional[dict] = _opt()


@dataclass(kw_only=True)
class Bench(StepResult):
    STEP: ClassVar[str] = "bench"
    variants: list
    length: int
    cpu: dict
    gpu: Any
    placement: dict
    speedup_vs_onnx_fp32: dict
    speedup_vs_pytorch_fp32: dict
    memory: Optional[dict] = _opt()                 # bench.memory: false leaves it out
    protocol: Optional[dict] = _opt()               # these four absent from the earliest runs (bench_runs' history)
    profiler_overhead: Any = _opt()
    speedup_vs_onnx_fp32_rounds: Optional[dict] = _opt()
    seconds: Optional[float] = _opt()
    left_out_without_qat: Optional[dict] = _opt()
    openvino_profile: Optional[dict] = _opt()

    # the lookups every benchmark builder shares
    @property
    def threads(self) -> int:
        return self.provenance["threads"]

    @property
    def all_threads(self) -> dict:
        """The CPU record at all cores (the headline's thread count)."""
        return self.cpu[f"threads_{self.threads}"]

    @property
    def headline(self) -> dict:
        return self.all_threads["headline"]

    @property
    def op_times(self) -> dict:
        """variant -> the CPU placement record with operator times (bench.json from before has none)."""
        return {n: recs[0] for n, recs in self.placement.items() if "op_ms" in recs[0]}

    @property
    def profile_threads(self) -> int:
        """The thread count of the CPU operator profiles (all cores where bench.json predates it)."""
        return next((rec["threads"] for rec in self.op_times.values() if rec.get("threads")), self.threads)

    def protocol_text(self) -> str:
        return (self.protocol or {}).get("description", "variants interleaved call by call")


@dataclass(kw_only=True)
class Explain(StepResult):
    STEP: ClassVar[str] = "explain"
    reference: str
    variants: list
    samples: int
    batch_size: int
    kernel_width: Any
    split_expression: str
    bow: bool
    feature_selection: str
    seed: int
    noise_seeds: list
    fractions: list
    top_k: list
    selection: dict
    n_examples: int
    examples: list
    cost_variants: list
    cost_examples: list
    predictions: dict
    explanations: dict
    noise_explanations: dict
    agreement_per_example: dict
    agreement: dict
    faithfulness_per_example: dict
    faithfulness: dict
    pairs: Any
    batching: dict
    cost: dict
    throughput_baseline: Any
    total_seconds: float
    figure_examples: list
    compare: str
    cross_seed: Optional[dict] = _opt()
    cross_seed_explanations: Optional[dict] = _opt()
    shap: Optional[dict] = _opt()
    recall: Optional[dict] = _opt()
    left_out_without_qat: Optional[dict] = _opt()
    design: Optional[str] = _opt()
    agreement_same_seed_per_example: Optional[dict] = _opt()
    equivalence_margin: Optional[float] = _opt()
    naopc: Optional[dict] = _opt()
    convergence: Optional[dict] = _opt()


@dataclass(kw_only=True)
class Seeds(StepResult):
    STEP: ClassVar[str] = "seeds"
    seeds: list
    reference: str
    control: Optional[str]
    n_test: int
    test_split_sha256: str
    confidence: float
    headline: Any
    interval: Any
    replicates: Any
    int8_gemm_paths: Any
    minutes_first_to_last: Any
    variants: dict


@dataclass(kw_only=True)
class Sizes(StepResult):
    STEP: ClassVar[str] = "sizes"
    random_init: Any
    seed: int
    tokenizer: Any
    vocab_size: int
    num_labels: int
    lengths: list
    batch_size: int
    variants: list
    protocol: Any
    models: list
    seconds: float


@dataclass(kw_only=True)
class Hostdrift(StepResult):
    STEP: ClassVar[str] = "hostdrift"
    n_test: int
    files: dict
    saturation: dict
    float: dict
    seconds: float


@dataclass(kw_only=True)
class Gradients(StepResult):
    STEP: ClassVar[str] = "gradients"
    method: Any
    steps: int
    integration: Any
    reference: str
    labels: list
    n_examples: int
    models: Any
    lime_of: Any
    attributions: Any
    completeness_gap: Any
    pairs: Any
    vs_lime: Any
    seconds: float
    inputs: Optional[dict] = _opt()      # the SHA-256 of the files measured (the report refuses a result without)


@dataclass(kw_only=True)
class CudaPlacement(StepResult):
    STEP: ClassVar[str] = "cuda_placement"
    kernel_table: dict
    method: Any
    inputs: dict
    files: dict


RESULTS = {c.STEP: c for c in (Data, TrainFP32, TrainQAT, Export, Quantize, Evaluate, Bench, Explain, Seeds, Sizes,
                               Hostdrift, Gradients, CudaPlacement)}


def _evaluate_1_to_2(rec: dict) -> dict:
    """Version 1 said which batch the headline predictions were made at in prose only ("batch 1: each text
    alone ..."): the one place that prose is read."""
    head = (rec.get("batching") or {}).get("headline") or ""
    return {**rec, "headline_batch_size": 1 if head.startswith("batch 1") else None}


# (step, version) -> the function that upgrades a record of that version by one
MIGRATIONS = {("evaluate", 1): _evaluate_1_to_2}


def migrate(step: str, rec: dict, where: str = "") -> dict:
    """``rec`` of any known version, upgraded to ``SCHEMA``; an unknown version is refused with ``where``."""
    version = rec.get("schema", 1)
    if version not in KNOWN_SCHEMAS:
        raise ResultSchemaError(f"{where or step}: schema version {version!r} is not one this code reads "
                                f"({', '.join(map(str, KNOWN_SCHEMAS))}); written by a newer version of the code?")
    while version < SCHEMA:
        rec = MIGRATIONS.get((step, version), lambda r: r)(rec)
        version += 1
    return {**rec, "schema": SCHEMA}


def from_dict(step: str, rec: dict, where: str = "") -> StepResult:
    if step not in RESULTS:
        raise ResultSchemaError(f"{where or step}: no step {step!r} declares a result; known: {', '.join(RESULTS)}")
    if rec.get("step", step) != step:
        raise ResultSchemaError(f"{where}: holds the {rec['step']!r} step's result, not {step!r}'s")
    return RESULTS[step].from_dict(migrate(step, rec, where), where)


def as_result(step: str, rec) -> StepResult:
    """``rec`` as ``step``'s typed result (a record read elsewhere, e.g. from git history, is read here)."""
    return rec if isinstance(rec, StepResult) else from_dict(step, rec)


def from_json(path: str | os.PathLike, step: Optional[str] = None) -> StepResult:
    """The result in ``path`` (its step: ``step``, else the file's ``step`` field, else its name)."""
    path = Path(path)
    rec = read_json(path)
    if not isinstance(rec, dict):
        raise ResultSchemaError(f"{path}: not a step result (a JSON object)")
    return from_dict(step or rec.get("step") or path.stem, rec, str(path))


def to_json(result: StepResult, path: str | os.PathLike) -> Path:
    """Write ``result`` atomically (``provenance.write_json``)."""
    return write_json(path, result.to_dict())


def write_result(cfg, step: str, payload: dict, threads: Optional[int] = None,
                 started: Optional[float] = None) -> Path:
    """``results/<profile>/<step>.json``: ``payload`` checked against the step's declared result, with provenance,
    written atomically; ``started``: the step's ``time.perf_counter()`` when it began, so that the provenance
    records the step's wall-clock ``seconds``. A field the step does not declare is refused before anything is
    written."""
    extra = {"seconds": round(time.perf_counter() - started, 1)} if started is not None else None
    path = Path(cfg.results_dir) / f"{step}.json"
    result = from_dict(step, {**payload, "schema": SCHEMA}, str(path))
    result.provenance = provenance(cfg, threads, extra=extra)
    return to_json(result, path)


def load_result(cfg, step: str) -> StepResult:
    """The typed result ``step`` wrote for ``cfg``'s profile."""
    return from_json(Path(cfg.results_dir) / f"{step}.json", step)
