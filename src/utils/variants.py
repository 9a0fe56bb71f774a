"""Every variant of the study, declared once: the registry.

A variant is one way to run the classifier (PyTorch FP32, an ONNX file of a given recipe ...).
Its declaration says everything the steps and the report need to treat it alike:

* ``name``, ``runtime`` (``pytorch`` | ``onnxruntime`` | ``openvino``) and ``family`` (its colour family in the
  figures and its group in the paper: ``FAMILIES``);
* whether it computes in integers (``integer``), and whether it is a baseline built in memory
  for the benchmark and explanation cost only (``baseline``: not evaluated);
* what it is built from and how: a *recipe*, a small frozen dataclass, and the ``source`` ONNX
  file (step 05 builds it), or a PyTorch *loader* recipe (how to make the model in memory).

Recipes follow torchao's ``register_quantize_module_handler``: one dataclass, one function,
joined by ``register_recipe``. A new variant is one ``register_variant`` call (and a new recipe
one dataclass and one function); quantization, evaluation, the benchmark, LIME, the GPU run,
the figures and the macros all read the registry::

    register_variant(Variant("onnx-int8-dynamic-u8", "onnxruntime", "int8-dynamic", integer=True,
                             recipe=Dynamic(per_channel=True, weight_type="quint8"), source="fp32"))
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Optional

import torch

from . import modeling as M
from . import openvino_rt as OR
from . import qat as QA
from . import quantize as Q
from .config import Config, QuantizeConfig
from .predict import OrtPredictor, TorchPredictor
from .provenance import read_json


# --------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    """A kind of variant: its colours in every figure (a seaborn palette, one shade per member)."""
    name: str
    palette: str
    label: str


FAMILIES = {f.name: f for f in (
    Family("pytorch", "Greys", "PyTorch"),
    Family("onnx-float", "Blues_d", "ONNX floating point"),
    Family("int8-dynamic", "Greens_d", "dynamic INT8 (activation scales computed at run time)"),
    Family("int8-static", "Oranges_d", "static INT8 (calibrated activation scales)"),
    Family("int8-qat", "Purples_d", "static INT8 with the scales QAT learned"),
    Family("openvino", "Reds_d", "OpenVINO (the same ONNX files, and NNCF's INT8 model)"),
)}
RUNTIMES = {"pytorch": "pytorch-", "onnxruntime": "onnx-", "openvino": "openvino-"}   # runtime -> name prefix


# --------------------------------------------------------------------------- recipes
_HANDLERS: dict = {}


def register_recipe(recipe_cls):
    """Decorator: ``fn`` builds (ONNX recipes) or loads (PyTorch recipes) what ``recipe_cls`` describes."""
    def deco(fn):
        _HANDLERS[recipe_cls] = fn
        return fn
    return deco


def handler(recipe) -> Callable:
    try:
        return _HANDLERS[type(recipe)]
    except KeyError:
        raise KeyError(f"no handler registered for recipe {type(recipe).__name__}") from None


@dataclass
class BuildContext:
    """What an ONNX recipe may need besides its source file. ``nodes``: the nodes static recipes
    quantize (the linear layers and embedding tables QAT quantizes); ``qat_overrides``: tensor ->
    (scale, zero point) learned by QAT; ``calibration``: texts for static calibration."""
    tokenizer: object
    max_length: int
    settings: QuantizeConfig
    calibration: list = field(default_factory=list)
    nodes: Optional[list] = None
    qat_overrides: Optional[dict] = None
    num_heads: Optional[int] = None
    hidden_size: Optional[int] = None
    _reader: object = None

    @property
    def calibration_batch_size(self) -> Optional[int]:
        """The batch static calibration ran in (one shape: a divisor of the texts); None if no file was calibrated."""
        return getattr(self._reader, "batch_size", None)

    def reader(self, src: Path):
        """Calibration batches for ``src``'s inputs (built once)."""
        if self._reader is None:
            names = [i.name for i in Q.load_onnx(src).graph.input]
            self._reader = Q.TextCalibrationReader(self.tokenizer, self.calibration, self.max_length, names,
                                                   batch_size=self.settings.calibration_batch_size)
        return self._reader


# Recipes declare ``batch_invariant`` (a field, class attribute or property): whether the model they make can
# answer a text differently depending on the other texts of its batch.
@dataclass(frozen=True)
class Optimize:
    """ONNX Runtime's transformer optimizer (graph fusions); ``skip_layer_norm`` None: the profile's
    ``quantize.skip_layer_norm_fusion``."""
    skip_layer_norm: Optional[bool] = None
    batch_invariant: ClassVar[bool] = True


@dataclass(frozen=True)
class Dynamic:
    """``quantize_dynamic``: int8 weights, activation scales computed at run time; ``weight_type``
    None: the profile's ``quantize.weight_type``. Not batch-invariant: ONNX Runtime's
    DynamicQuantizeLinear takes one scale per tensor, over every text of the batch and its padding;
    ``per_token``: one scale and zero point per token instead (``quantize.per_token_activations``), which is."""
    per_channel: bool = True
    weight_type: Optional[str] = None
    per_token: bool = False

    @property
    def batch_invariant(self) -> bool:
        return self.per_token


@dataclass(frozen=True)
class Static:
    """``quantize_static`` QDQ: calibrated activation scales (``method``), or the QAT scales
    (``qat_scales``); ``every_op``: every operator ONNX Runtime can quantize instead of the linear
    layers and embedding tables; ``symmetric``: int8 activations with zero point 0 (TensorRT's format)."""
    method: str = "minmax"
    every_op: bool = False
    symmetric: bool = False
    qat_scales: bool = False
    batch_invariant: ClassVar[bool] = True      # scales fixed in the file


@dataclass(frozen=True)
class FP16:
    """float16 weights and compute (onnxconverter-common), FP32 inputs and outputs."""
    block: tuple = Q.FP16_BLOCK
    batch_invariant: ClassVar[bool] = True


@dataclass(frozen=True)
class OpenVINOFile:
    """An ONNX file the quantize step built (or step 04 exported), run as it is by OpenVINO's CPU plugin: ``onnx`` is
    its stem; ``{calibration}`` in it stands for the profile's first calibration method (its static file)."""
    onnx: str
    builds: ClassVar[bool] = False

    def stem(self, cfg: Config) -> str:
        methods = cfg.quantize.calibration_methods
        return self.onnx.format(calibration=methods[0] if methods else "minmax")

    @property
    def kind(self) -> str:
        """The ONNX variant whose recipe and weights the file has, whatever the profile's calibration method (every
        calibrated static file is built alike from the FP32 export)."""
        return "onnx-" + self.onnx.format(calibration="minmax")

    @property
    def batch_invariant(self) -> Optional[bool]:
        """As the file's own recipe declares (the calibrated static files: scales fixed in the file)."""
        v = REGISTRY.get(self.kind)
        return None if v is None else v.batch_invariant


@dataclass(frozen=True)
class NNCF:
    """NNCF post-training quantization of the FP32 ONNX model into an OpenVINO IR (``openvino_rt.NNCF_OPTIONS``:
    transformer model type, mixed preset, SmoothQuant on matrix products), calibrated on the validation texts the
    static ONNX recipes are calibrated on."""
    builds: ClassVar[bool] = True
    batch_invariant: ClassVar[bool] = True      # static scales


@register_recipe(OpenVINOFile)
def _no_build(r, src, dst, ctx):      # pragma: no cover - nothing to build: the variant runs its ONNX file
    raise RuntimeError("an OpenVINOFile variant runs an ONNX file as it is; nothing to build")


@register_recipe(NNCF)
def _build_nncf(r: NNCF, src: Path, dst: Path, ctx: BuildContext) -> dict:
    feeds = [{k: v.astype("int64") for k, v in ctx.tokenizer(t, truncation=True, max_length=ctx.max_length,
                                                             return_tensors="np").items()} for t in ctx.calibration]
    return OR.nncf_int8(src, dst, feeds)


@register_recipe(Optimize)
def _build_optimize(r: Optimize, src: Path, dst: Path, ctx: BuildContext) -> dict:
    sln = ctx.settings.skip_layer_norm_fusion if r.skip_layer_norm is None else r.skip_layer_norm
    fusions = Q.optimize_transformer(src, dst, ctx.num_heads, ctx.hidden_size, skip_layer_norm=sln)
    return {"method": "onnxruntime.transformers optimize_model" + ("" if sln else ", no SkipLayerNormalization"),
            "fusions": fusions}


@register_recipe(Dynamic)
def _build_dynamic(r: Dynamic, src: Path, dst: Path, ctx: BuildContext) -> dict:
    Q.quantize_dynamic_int8(src, dst, per_channel=r.per_channel, weight_type=r.weight_type or ctx.settings.weight_type)
    if r.per_token:
        Q.per_token_activations(dst, dst)
        return {"method": "quantize_dynamic, then one activation scale per token (batch-invariant)",
                "per_channel": r.per_channel, "per_token": True}
    return {"method": "quantize_dynamic", "per_channel": r.per_channel}


@register_recipe(Static)
def _build_static(r: Static, src: Path, dst: Path, ctx: BuildContext) -> dict:
    kw = {"method": r.method, "percentile": ctx.settings.percentile}
    if r.every_op:
        kw["op_types"] = None
    else:
        kw["nodes_to_quantize"] = ctx.nodes
    if r.symmetric:
        kw.update(activation_type="qint8", symmetric_activations=True)
    if r.qat_scales:
        if not ctx.qat_overrides:
            raise ValueError(f"{dst.name}: a QAT-scales recipe needs the scales QAT learned (none given)")
        kw["overrides"] = ctx.qat_overrides
    Q.quantize_static_int8(src, dst, ctx.reader(src), **kw)
    if r.qat_scales:
        return {"method": "quantize_static QDQ with the QAT scales as TensorQuantOverrides",
                "scales_from_qat": len(ctx.qat_overrides), "nodes_quantized": len(ctx.nodes or [])}
    method = f"quantize_static QDQ, {r.method} calibration" + (
        ", every quantizable op" if r.every_op else
        ", symmetric int8 activations (zero point 0: TensorRT's format)" if r.symmetric else "")
    return {"method": method, "calibration_examples": len(ctx.calibration),
            **({} if r.every_op else {"nodes_quantized": len(ctx.nodes or [])})}


@register_recipe(FP16)
def _build_fp16(r: FP16, src: Path, dst: Path, ctx: BuildContext) -> dict:
    Q.convert_fp16(src, dst, op_block_list=r.block)
    return {"method": "onnxconverter_common float16, keep_io_types", "blocked_ops": list(r.block)}


@dataclass(frozen=True)
class TorchModel:
    """A PyTorch model made from a checkpoint (``fp32`` | ``qat``): in ``dtype``, optionally with
    PyTorch's own dynamic INT8 linear layers (``torch.ao.quantization.quantize_dynamic``)."""
    checkpoint: str = "fp32"
    dtype: str = "float32"
    dynamic_int8: bool = False

    @property
    def batch_invariant(self) -> bool:
        """PyTorch's dynamic INT8 linear layers take one activation scale per batch tensor."""
        return not self.dynamic_int8


@dataclass(frozen=True)
class FakeQuant:
    """The QAT checkpoint with its fake quantizers and learned scales (the seed's QAT model);
    ``integer``: each quantized layer computed as the integer kernel does (``qat.set_integer_eval``)."""
    integer: bool = False
    batch_invariant: ClassVar[bool] = True      # the scales QAT learned, fixed


@register_recipe(TorchModel)
def _load_torch(r: TorchModel, cfg: Config):
    model, tok = M.load_checkpoint(checkpoint_dir(cfg, r.checkpoint), attn="sdpa")
    if r.dtype != "float32":
        model = model.to(getattr(torch, r.dtype))
    if r.dynamic_int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model, tok


@register_recipe(FakeQuant)
def _load_fakequant(r: FakeQuant, cfg: Config):
    model, tok = load_qat_model(cfg)
    return (QA.set_integer_eval(model) if r.integer else model), tok


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One variant. ``recipe``: how step 05 builds its ONNX file from ``source`` (the stem of an
    exported or earlier-built file), or how a PyTorch model is made; ``artifact``: the file it runs,
    relative to artifacts/<profile>/ (ONNX: onnx/<stem>.onnx); ``method``: replaces the recipe's own
    description in quantize.json; ``enabled``: whether a profile builds it (default: always);
    ``control``: a control for a comparison (evaluated and explained), not a way to deploy the model
    (not benchmarked unless ``bench.variants`` names it)."""
    name: str
    runtime: str
    family: str
    integer: bool = False
    recipe: object = None
    source: Optional[str] = None
    artifact: Optional[str] = None
    baseline: bool = False
    method: Optional[str] = None
    enabled: Optional[Callable[[Config], bool]] = None
    control: bool = False

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"variant {self.name!r}: runtime must be one of {', '.join(RUNTIMES)}, "
                             f"got {self.runtime!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"variant {self.name!r}: unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.runtime == "onnxruntime" and not self.name.startswith("onnx-"):
            raise ValueError(f"variant {self.name!r}: ONNX variants are named onnx-<file stem>")
        if self.runtime == "openvino" and not self.name.startswith("openvino-"):
            raise ValueError(f"variant {self.name!r}: OpenVINO variants are named openvino-<what they run>")
        if self.recipe is not None:
            handler(self.recipe)      # a recipe without a handler is refused at registration

    @property
    def stem(self) -> Optional[str]:
        """The ONNX file's stem (``onnx-int8-qat`` -> ``int8-qat``)."""
        return self.name[len("onnx-"):] if self.runtime == "onnxruntime" else None

    @property
    def built(self) -> bool:
        """Built by the quantize step (an ONNX recipe, or one that ``builds`` another runtime's file)."""
        if self.runtime == "onnxruntime":
            return self.recipe is not None
        return bool(getattr(self.recipe, "builds", False))

    def path(self, cfg: Config) -> Path:
        """The file it runs: an ONNX file, an OpenVINO IR (artifacts/<profile>/openvino/<name>.xml) or a checkpoint."""
        if self.runtime == "onnxruntime":
            return onnx_path(cfg, self.stem)
        if self.runtime == "openvino":
            if isinstance(self.recipe, OpenVINOFile):
                return onnx_path(cfg, self.recipe.stem(cfg))
            return cfg.artifacts_dir / "openvino" / f"{self.name[len('openvino-'):]}.xml"
        return cfg.artifacts_dir / (self.artifact or "fp32/model.safetensors")

    def active(self, cfg: Config) -> bool:
        """Whether ``cfg`` runs it: not where it needs the QAT step and ``qat.enabled`` is false, else as its
        ``enabled`` says."""
        if not cfg.qat.enabled and self.needs_qat:
            return False
        return self.enabled is None or bool(self.enabled(cfg))

    @property
    def needs_qat(self) -> bool:
        """Made from what the QAT step trains (the QAT weights, or its control)."""
        return weights_of(self.name) in QAT_CHECKPOINTS

    @property
    def batch_invariant(self) -> Optional[bool]:
        """Declared by its recipe: whether its answer for a text cannot depend on the other texts of its
        batch (False where activation scales are computed over the whole batch tensor); None where the
        recipe does not say (the evaluation measures it either way, and LIME explains an undeclared
        variant as a batch-dependent one: each perturbed text alone). No recipe: an export, invariant."""
        if self.recipe is None:
            return True
        declared = getattr(self.recipe, "batch_invariant", None)
        return None if declared is None else bool(declared)


REGISTRY: dict = {}
EXPORTS = {"fp32": "fp32", "qat-fp32": "qat"}   # ONNX stems of step 04 -> the checkpoint each is exported from
QAT_CHECKPOINTS = ("qat", "fp32-plus-epoch")    # the checkpoints step 03 trains (none with qat.enabled false)


def exports(cfg: Config) -> dict:
    """The exports ``cfg`` makes (stem -> checkpoint): not the QAT weights' without QAT."""
    return {stem: kind for stem, kind in EXPORTS.items() if cfg.qat.enabled or kind not in QAT_CHECKPOINTS}


def register_variant(v: Variant) -> Variant:
    """Add ``v`` to the registry (after the variants declared so far: the order of every table)."""
    if v.name in REGISTRY:
        raise ValueError(f"variant {v.name!r} is already registered")
    if v.built:
        earlier = set(EXPORTS) | {x.stem for x in REGISTRY.values() if x.built}
        if v.source not in earlier:
            raise ValueError(f"variant {v.name!r}: source {v.source!r} is neither an export ({', '.join(EXPORTS)}) "
                             f"nor a variant built before it")
    REGISTRY[v.name] = v
    return v


def unregister_variant(name: str) -> None:
    REGISTRY.pop(name, None)


@contextlib.contextmanager
def registered(v: Variant) -> Iterator[Variant]:
    """``v`` registered for the duration of a ``with`` block (a test's toy variant)."""
    register_variant(v)
    try:
        yield v
    finally:
        unregister_variant(v.name)


def get(name: str) -> Variant:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(REGISTRY)}") from None


def variants(cfg: Config, baselines: bool = False) -> list:
    """The variants ``cfg`` runs, in registry order; ``baselines`` adds the in-memory PyTorch baselines."""
    return [v for v in REGISTRY.values() if v.active(cfg) and (baselines or not v.baseline)]


def names(cfg: Config, baselines: bool = False) -> list:
    return [v.name for v in variants(cfg, baselines)]


def check_names(cfg: Config, given, key: str) -> None:
    """One clear error for names in ``given`` (a config list at ``key``) that ``cfg`` does not run."""
    known = names(cfg, baselines=True)
    unknown = [n for n in (given or []) if n not in known]
    if unknown:
        raise KeyError(f"{key}: unknown variant(s) {sorted(unknown)}; known: {', '.join(known)}")


# the profile's lists of variant names: those naming a variant that needs QAT are narrowed where qat.enabled is
# false, so a profile extending one that names them (smoke's bench.variants) runs without QAT as it is
NAME_LISTS = (("bench", "variants"), ("bench", "headline_only"), ("eval", "variants"), ("explain", "variants"),
              ("explain", "cost_variants"), ("explain", "disagreements_of"),
              ("explain", "shap_variants"))


def without_qat(cfg: Config) -> dict:
    """Where ``qat.enabled`` is false, remove the names of variants that need QAT from ``cfg``'s lists of variant
    names, in place (``explain.pairs`` naming one dropped; ``explain.compare`` naming one becomes the first integer
    variant explained); returns {setting: names removed}, recorded by the steps. Idempotent; nothing where QAT runs."""
    if cfg.qat.enabled:
        return {}
    gone = lambda n: n in REGISTRY and REGISTRY[n].needs_qat   # noqa: E731
    left_out = {}
    for section, key in NAME_LISTS:
        given = getattr(getattr(cfg, section), key)
        if given and any(gone(n) for n in given):
            left_out[f"{section}.{key}"] = [n for n in given if gone(n)]
            setattr(getattr(cfg, section), key, [n for n in given if not gone(n)])
    x = cfg.explain
    if any(gone(n) for p in x.pairs for n in p):
        left_out["explain.pairs"] = [p for p in x.pairs if any(gone(n) for n in p)]
        x.pairs = [p for p in x.pairs if not any(gone(n) for n in p)]
    if gone(x.compare):
        pool = [n for n in (x.variants or names(cfg)) if is_integer(n) and not gone(n)] or [x.reference]
        left_out["explain.compare"] = [x.compare]
        x.compare = pool[0]
    if x.shap_variants is not None and len(x.shap_variants) < 2:
        x.shap_variants = []
    return left_out


def evaluated(cfg: Config) -> list:
    """The variants step 06 evaluates (``eval.variants``, else every one), in registry order."""
    without_qat(cfg)
    return [n for n in names(cfg) if cfg.eval.variants is None or n in cfg.eval.variants]


def check_profile(cfg: Config) -> None:
    """Every variant name a profile gives (benchmark and explanation lists) is one it runs: checked by the
    first step, so a typo fails before training, not an hour later when the step that reads it starts."""
    without_qat(cfg)
    b, x = cfg.bench, cfg.explain
    if cfg.model.source == "packaged":
        M.packaged_model_spec(cfg.model.packaged)      # a known packaged model (ModelError naming the known ones)
    for key, given in (("bench.variants", b.variants), ("bench.headline_only", b.headline_only),
                       ("explain.reference", [x.reference]), ("explain.compare", [x.compare]),
                       ("explain.variants", x.variants), ("explain.cost_variants", x.cost_variants),
                       ("explain.disagreements_of", x.disagreements_of),
                       ("explain.pairs", [n for p in x.pairs for n in p])):
        check_names(cfg, given, key)
    if cfg.eval.variants is not None:
        check_names(cfg, cfg.eval.variants, "eval.variants")
        known = names(cfg)
        baselines = [n for n in cfg.eval.variants if n not in known]
        if baselines:
            raise KeyError(f"eval.variants: {baselines} are benchmark baselines (built in memory, never evaluated)")
        ev = set(cfg.eval.variants)
        explained = [*(x.variants or []), x.reference, x.compare, *x.disagreements_of]
        outside = sorted({n for n in explained if n not in ev})
        if outside:
            raise KeyError(f"explain names {outside}, which eval.variants does not evaluate (LIME explains the "
                           f"texts step 06 predicted); add them to eval.variants")


def is_onnx_int8(name: str) -> bool:
    """An integer ONNX variant (what 'the fastest INT8 file' is chosen among); unregistered names: no."""
    v = REGISTRY.get(name)
    return v is not None and v.runtime == "onnxruntime" and v.integer


def is_file_int8(name: str) -> bool:
    """An integer variant that runs a file (ONNX Runtime or OpenVINO): what 'the fastest INT8 deployment' of a runtime
    is chosen among."""
    v = REGISTRY.get(name)
    return v is not None and v.runtime in ("onnxruntime", "openvino") and v.integer


def is_batch_invariant(name: str) -> bool:
    """Declared batch-invariant (``Variant.batch_invariant`` is True); undeclared or unregistered: no."""
    v = REGISTRY.get(name)
    return v is not None and v.batch_invariant is True


def is_integer(name: str) -> bool:
    v = REGISTRY.get(name)
    return v is not None and v.integer


def runtime_of(name: str) -> Optional[str]:
    v = REGISTRY.get(name)
    return v.runtime if v else None


def family_of(name: str) -> Optional[Family]:
    v = REGISTRY.get(name)
    return FAMILIES[v.family] if v else None


def _calibrated(method: str) -> Callable[[Config], bool]:
    return lambda cfg: method in cfg.quantize.calibration_methods


def _onnx(stem: str, family: str, recipe=None, source: Optional[str] = "fp32", integer: bool = True, **kw) -> Variant:
    return register_variant(Variant(f"onnx-{stem}", "onnxruntime", family, integer=integer, recipe=recipe,
                                    source=source if recipe is not None else None, **kw))


# the declarations: this order is the order of every table (PyTorch, then ONNX)
register_variant(Variant("pytorch-fp32", "pytorch", "pytorch", recipe=TorchModel()))
register_variant(Variant("pytorch-int8-dynamic", "pytorch", "pytorch", integer=True, baseline=True,
                         recipe=TorchModel(dynamic_int8=True)))
register_variant(Variant("pytorch-bf16", "pytorch", "pytorch", baseline=True, recipe=TorchModel(dtype="bfloat16")))
register_variant(Variant("pytorch-qat-fakequant", "pytorch", "pytorch", recipe=FakeQuant(),
                         artifact="qat_fakequant.safetensors"))
# QAT's control: FP32 fine-tuned for QAT's extra epoch(s) without fake quantizers (step 03, qat.control)
register_variant(Variant("pytorch-fp32-plus-epoch", "pytorch", "pytorch",
                         recipe=TorchModel(checkpoint="fp32-plus-epoch"), artifact="fp32-plus-epoch/model.safetensors",
                         control=True, enabled=lambda cfg: cfg.qat.control))
_onnx("fp32", "onnx-float", integer=False)
_onnx("fp32-opt", "onnx-float", Optimize(), integer=False)
# QAT's weights exported without quantization (step 04): separates what QAT's training changed from
# what its INT8 file's quantization changed
_onnx("qat-fp32", "onnx-float", integer=False, control=True)
_onnx("int8-dynamic", "int8-dynamic", Dynamic(per_channel=True))
_onnx("int8-dynamic-pt", "int8-dynamic", Dynamic(per_channel=False))
# ONNX Runtime's recipe for BERT: fuse (Attention, EmbedLayerNorm, ...), then quantize -> QAttention
_onnx("int8-dynamic-opt", "int8-dynamic", Dynamic(per_channel=False), source="fp32-opt",
      method="transformer optimizer, then quantize_dynamic")
# one activation scale per token: no other text of the batch enters a text's answer (batch-invariant)
_onnx("int8-dynamic-token", "int8-dynamic", Dynamic(per_channel=True, per_token=True))
for _m in Q.CALIBRATION:
    _onnx(f"int8-static-{_m}", "int8-static", Static(method=_m), enabled=_calibrated(_m))
# int8 activations with zero point 0: the explicit-quantization format TensorRT takes
_onnx("int8-static-sym", "int8-static", Static(symmetric=True))
# the measurement behind leaving LayerNorm, Softmax, GELU and the residual Adds in FP32 above
_onnx("int8-static-allops", "int8-static", Static(every_op=True))
_onnx("int8-qat-seed", "int8-dynamic", Dynamic(per_channel=True), source="qat-fp32",
      method="the seed's pipeline: QAT weights -> FP32 export -> quantize_dynamic")
_onnx("int8-qat", "int8-qat", Static(qat_scales=True), source="qat-fp32")
_onnx("fp16", "onnx-float", FP16(), integer=False)
# OpenVINO's CPU plugin: the same FP32, QAT and calibrated static files as they are, and NNCF's INT8 model
register_variant(Variant("openvino-fp32", "openvino", "openvino", recipe=OpenVINOFile("fp32")))
register_variant(Variant("openvino-int8-qat", "openvino", "openvino", integer=True, recipe=OpenVINOFile("int8-qat")))
register_variant(Variant("openvino-int8-static", "openvino", "openvino", integer=True,
                         recipe=OpenVINOFile("int8-static-{calibration}"),
                         enabled=lambda cfg: bool(cfg.quantize.calibration_methods)))
register_variant(Variant("openvino-int8-nncf", "openvino", "openvino", integer=True, recipe=NNCF(), source="fp32"))
REFERENCE = "pytorch-fp32"


def weights_of(name: str) -> str:
    """The checkpoint a variant's weights come from: ``fp32``, ``qat`` or ``fp32-plus-epoch`` (an ONNX file
    through its sources to the export it was built from; a PyTorch variant through its recipe)."""
    v = get(name)
    if isinstance(v.recipe, OpenVINOFile):
        v = get(v.recipe.kind)
    elif v.runtime == "openvino":
        v = get(f"onnx-{v.source}")
    if v.runtime == "onnxruntime":
        while v.source is not None:
            v = get(f"onnx-{v.source}")
        return EXPORTS[v.stem]
    if isinstance(v.recipe, FakeQuant):
        return "qat"
    return getattr(v.recipe, "checkpoint", None) or "fp32"


def quantized_from_qat(cfg: Config) -> list:
    """The ONNX variants built from the QAT-trained weights (compared with the QAT model itself)."""
    return [v.name for v in variants(cfg) if v.built and v.source == "qat-fp32"]


# the PyTorch models that compute what an ONNX file computes, for an explainer that needs gradients
# (utils.gradients): FP32's checkpoint, QAT's weights unquantized, and QAT's model with every quantized layer computed
# as ONNX Runtime's integer kernel computes its INT8 file. Not variants: nothing deploys them. Twin -> its file.
GRADIENT_TWINS = {"pytorch-fp32": "onnx-fp32", "pytorch-qat-fp32": "onnx-qat-fp32",
                  "pytorch-qat-integer": "onnx-int8-qat"}


# roles in the comparisons, from the declarations above (no name outside this module says which variant plays them)
def qat_model() -> str:
    """The QAT model itself: PyTorch with fake quantizers."""
    return next(v.name for v in REGISTRY.values() if isinstance(v.recipe, FakeQuant))


def onnx_reference() -> str:
    """The FP32 ONNX export every file's size and speed-up is set against."""
    return next(v.name for v in REGISTRY.values() if v.runtime == "onnxruntime" and v.recipe is None
                and weights_of(v.name) == "fp32")


def qat_control() -> str:
    """QAT's control: the PyTorch model fine-tuned as long as QAT, without fake quantizers."""
    return next(v.name for v in REGISTRY.values()
                if v.control and v.runtime == "pytorch" and weights_of(v.name) == "fp32-plus-epoch")


def compared_with_qat_control(cfg: Config) -> list:
    """What QAT's control is compared with: the QAT model, its weights exported unquantized, the ONNX files built
    from them."""
    export = next(v.name for v in REGISTRY.values() if v.runtime == "onnxruntime" and v.recipe is None
                  and weights_of(v.name) == "qat")
    return [qat_model(), export, *quantized_from_qat(cfg)]


# --------------------------------------------------------------------------- artifacts
def checkpoint_dir(cfg: Config, kind: str = "fp32") -> Path:
    """``fp32``, ``qat`` (the QAT-trained weights, fake quantizers stripped, + qat_scales.json) or
    ``fp32-plus-epoch`` (QAT's control)."""
    return cfg.artifacts_dir / kind


def onnx_path(cfg: Config, stem: str) -> Path:
    return cfg.artifacts_dir / "onnx" / f"{stem}.onnx"


def read_qat_scales(cfg: Config) -> dict:
    """The scales QAT ended with: {"activation": {layer: (scale, zp)}, "weight": {module: (scales, zps)}}."""
    return read_json(checkpoint_dir(cfg, "qat") / "qat_scales.json")


def load_qat_model(cfg: Config, attn: str = "sdpa"):
    """The fake-quant PyTorch model, rebuilt from the QAT checkpoint and its scales."""
    model, tok = M.load_checkpoint(checkpoint_dir(cfg, "qat"), attn=attn)
    return QA.load_qat(model, read_qat_scales(cfg)["activation"]), tok


def build(v: Variant, cfg: Config, ctx: BuildContext) -> dict:
    """Build ``v``'s ONNX file from its source; its record for quantize.json (before the graph stats)."""
    t0 = time.perf_counter()
    meta = handler(v.recipe)(v.recipe, onnx_path(cfg, v.source), v.path(cfg), ctx)
    if v.method:
        meta["method"] = v.method
    return {"seconds": time.perf_counter() - t0, "source": v.source, **meta}


# --------------------------------------------------------------------------- predictors
def make_predictor(cfg: Config, name: str, threads=None, batch_size=None, tokenizer=None, spinning: bool = False,
                   spin_stop: bool = False, recipe=None):
    """The predictor of one registered variant by name; ``spinning``: ONNX Runtime's threads busy-wait
    between ops (its default; off unless one model runs at a time); ``spin_stop``: and stop when a call
    returns (``predict.ort_session``). ``recipe`` replaces a PyTorch variant's own (e.g. ``FakeQuant(
    integer=True)``)."""
    v = get(name)
    threads = threads or cfg.threads
    bs = batch_size or cfg.eval.batch_size
    if v.runtime == "onnxruntime":
        tok = tokenizer or M.load_tokenizer(str(checkpoint_dir(cfg)))
        return OrtPredictor(v.path(cfg), tok, cfg.model.max_length, bs, threads, name=name, spinning=spinning,
                            spin_stop=spin_stop)
    if v.runtime == "openvino":
        tok = tokenizer or M.load_tokenizer(str(checkpoint_dir(cfg)))
        return OR.OvPredictor(v.path(cfg), tok, cfg.model.max_length, bs, threads, name=name)
    r = recipe or v.recipe
    model, tok = handler(r)(r, cfg)
    return TorchPredictor(model, tokenizer or tok, cfg.model.max_length, bs, threads, name=name)


def predictors(cfg: Config, baselines: bool = False, only: Optional[list] = None, **kw) -> dict:
    """A predictor for every variant ``cfg`` runs (or those of ``only``, in registry order)."""
    tok = M.load_tokenizer(str(checkpoint_dir(cfg)))
    return {n: make_predictor(cfg, n, tokenizer=tok, **kw) for n in names(cfg, baselines)
            if only is None or n in only}
