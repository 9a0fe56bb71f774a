"""Quantization-aware training whose fake quantization is the deployed integer arithmetic.

What ONNX Runtime runs for the ``int8-qat`` model (static QDQ, see ``quantize.py``):

* every ``Linear`` but the classification head (a ``MatMul``, or a ``Gemm`` for the pooler,
  in ONNX): weights int8, symmetric, per output channel, range [-127, 127],
  scale = max|w| / 127 (ORT's ``WeightSymmetric`` rule);
* the input activation of each such layer: uint8, asymmetric, per tensor, one *static*
  scale and zero point; a tensor read by several MatMuls (Q, K and V read the same hidden
  states) is quantized once, so the three layers share one fake-quantizer here;
* the word- and position-embedding tables (``Gather``): uint8, asymmetric, per tensor
  (ORT quantizes a Gather's data with the activation type);
* rounding half to even, saturation at the range ends; everything else FP32.

The fake quantizers below simulate exactly that (``torch.ao.quantization.FakeQuantize``),
so the activation scales learned in training can be handed to ONNX Runtime unchanged,
and the weight scales it derives from the trained weights are the ones training used.
"""
from __future__ import annotations

import warnings
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

ACT_QMIN, ACT_QMAX = 0, 255        # uint8 activations
W_QMIN, W_QMAX = -127, 127         # int8 symmetric weights (ORT's restricted range)


class ActivationFakeQuantize(FakeQuantize):
    """Observes ranges in training mode only (plus during ``calibrate``), so evaluating the
    model, e.g. on the validation split between epochs, never moves its scales."""

    observe_in_eval = False

    def forward(self, X):
        if self.training or self.observe_in_eval or not bool(self.observer_enabled[0]):
            return super().forward(X)
        self.observer_enabled[0] = 0
        try:
            return super().forward(X)
        finally:
            self.observer_enabled[0] = 1


def activation_fq(averaging_constant: float = 0.01) -> FakeQuantize:
    return ActivationFakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=ACT_QMIN, quant_max=ACT_QMAX,
                                  dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False,
                                  averaging_constant=averaging_constant)


def weight_fq() -> FakeQuantize:
    """int8 symmetric per output channel; averaging_constant=1: the scale always follows the
    current weights, as ORT computes it from the stored weights."""
    return FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, quant_min=W_QMIN, quant_max=W_QMAX,
                        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0,
                        reduce_range=False, averaging_constant=1.0)


def table_fq() -> FakeQuantize:
    """An embedding table as ORT quantizes a Gather's data: uint8 affine per tensor, from the
    table's current min / max (in every mode: the scale is a function of the table)."""
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=ACT_QMIN, quant_max=ACT_QMAX,
                        dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False,
                        averaging_constant=1.0)


class QATLinear(nn.Linear):
    """``nn.Linear`` whose input and weight pass through fake quantizers (same parameter names).

    ``integer_eval`` (off by default; see ``set_integer_eval``): in eval mode, compute the layer
    as ONNX Runtime's integer kernel does instead of as a float product of dequantized values."""

    act_fq: FakeQuantize
    w_fq: FakeQuantize
    integer_eval = False

    def forward(self, x):
        if self.integer_eval and not self.training:
            return integer_linear(x, self.act_fq, self.w_fq, self.weight, self.bias,
                                  weights=eval_cached(self, "integer", lambda w: integer_weights(self.w_fq, w)))
        return F.linear(self.act_fq(x), eval_cached(self, "fake", self.w_fq), self.bias)


def eval_cached(module: nn.Module, tag: str, fn):
    """``fn(module.weight)`` (one value per ``tag``), remembered while the module is in eval mode, no gradient is
    recorded and the weight is unchanged (same storage, same version counter: an optimizer step or
    ``load_state_dict`` bumps it). The weights' fake quantization is a function of the weights alone, and
    recomputing it on every call made the fake-quantized MPNet-base 16x slower than FP32 at batch 1 (0.57 s
    against 0.036 s a text, 90% of it in the weights' and the embedding table's quantizers); the cached value is
    the same tensor the call would compute, bit for bit."""
    w, fq = module.weight, module.w_fq
    if module.training or torch.is_grad_enabled():
        module.__dict__.pop("_eval_cache", None)
        return fn(w)

    def key():   # the weights and the quantizer's state (switches, scale: set_fake_quant, a copy_ into it)
        return (tag, w.data_ptr(), w._version, bool(fq.fake_quant_enabled[0]), bool(fq.observer_enabled[0]),
                fq.scale.data_ptr(), fq.scale._version, fq.zero_point._version)
    hit = module.__dict__.get("_eval_cache")
    if hit is None or hit[0] != key():
        out = fn(w)                # the observer writes the scale in place: the key is taken after
        hit = module.__dict__["_eval_cache"] = (key(), out)
    return hit[1]


def integer_weights(w_fq: FakeQuantize, weight) -> tuple:
    """The int8 weights (as float64) and their float32 per-channel scales, as the integer kernel reads them."""
    with torch.no_grad():
        w_fq(weight)          # refresh the weight scales from the current weights
        s_w = w_fq.scale.float()
        qw = torch.clamp(torch.round(weight.detach() / s_w[:, None]), W_QMIN, W_QMAX)
        return qw.double(), s_w


def round_ste(v: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (half to even), whose gradient, where one is asked for, passes straight through, as
    fake quantization's does (the clamp that follows zeroes it outside the range). The value is exactly the
    rounded one: ``r + (v - v)`` adds an exact zero."""
    r = torch.round(v)
    return r + (v - v.detach()) if v.requires_grad else r


def integer_linear(x, act_fq: FakeQuantize, w_fq: FakeQuantize, weight, bias=None, weights=None):
    """What ``MatMulIntegerToFloat`` computes for a QDQ MatMul with these scales: x quantized to
    uint8 (x / scale, rounded half to even, plus the zero point, saturated), weights to int8 with
    their symmetric per-channel scales, the integer products summed exactly (in float64, exact far
    beyond the int32 range any layer here reaches), then times scale_x * scale_w (float32), plus the
    bias. Fake quantization computes the same sum in float32 over dequantized values; the ulp-level
    difference is what flips a later rounding now and then (measured in the evaluation step). Gradients
    with respect to ``x`` (gradient attributions), where ``x`` asks for them, pass the rounding straight
    through (``round_ste``); nothing else gets a gradient (the weights are the deployed integers).
    ``weights``: ``integer_weights(w_fq, weight)`` where the caller already has it."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):   # a graph only for x's gradient
        qw, s_w = weights if weights is not None else integer_weights(w_fq, weight)
        s_x, zp = act_fq.scale.float(), act_fq.zero_point.float()
        qx = torch.clamp(round_ste(x / s_x) + zp, ACT_QMIN, ACT_QMAX) - zp
        out = torch.matmul(qx.double(), qw.T).float() * (s_x * s_w)
        return out if bias is None else out + bias.detach()


class QATEmbedding(nn.Embedding):
    w_fq: FakeQuantize

    def forward(self, ids):
        return F.embedding(ids, eval_cached(self, "fake", self.w_fq), self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


HEADS = ("classifier", "score", "qa_outputs")


def quantized_linears(model) -> dict:
    """Module name -> Linear for every Linear except the classification head."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and n.split(".")[0] not in HEADS}


def quantized_embeddings(model, min_rows: int = 64) -> dict:
    """Module name -> Embedding for the large tables (word and position; not token type)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding) and m.num_embeddings >= min_rows}


# the leaf names of the query, key and value projections, which read one tensor: BERT's, MPNet's, and most
# decoder-style models'
QKV_LEAVES = frozenset({"query", "key", "value", "q", "k", "v", "q_proj", "k_proj", "v_proj"})


def activation_groups(model) -> list:
    """Lists of Linear names that read the same input tensor (the Q/K/V projections of one attention)."""
    groups: dict = {}
    for name in quantized_linears(model):
        parent, leaf = name.rsplit(".", 1)
        key = parent if leaf in QKV_LEAVES else name
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def prepare_qat(model, averaging_constant: float = 0.01):
    """Insert fake quantizers in place (parameter names unchanged) and return the model."""
    modules = dict(model.named_modules())
    for group in activation_groups(model):
        shared = activation_fq(averaging_constant)
        for name in group:
            lin = modules[name]
            lin.__class__ = QATLinear
            lin.act_fq = shared
            lin.w_fq = weight_fq()
    for emb in quantized_embeddings(model).values():
        emb.__class__ = QATEmbedding
        emb.w_fq = table_fq()
    return model


def fake_quantizers(model) -> Iterable[FakeQuantize]:
    return (m for m in model.modules() if isinstance(m, FakeQuantize))


def set_observers(model, enabled: bool) -> None:
    """Freeze (False) or resume (True) the activation observers. Weight observers always
    follow the weights (their scale is a function of the weights, as in deployment)."""
    act = {id(m.act_fq) for m in model.modules() if isinstance(m, QATLinear)}
    for fq in fake_quantizers(model):
        if id(fq) in act:
            fq.enable_observer() if enabled else fq.disable_observer()


def set_integer_eval(model, enabled: bool = True):
    """Evaluate every quantized Linear with ONNX Runtime's integer arithmetic (``integer_linear``)."""
    for m in model.modules():
        if isinstance(m, QATLinear):
            m.integer_eval = enabled
    return model


def set_fake_quant(model, enabled: bool) -> None:
    for fq in fake_quantizers(model):
        fq.enable_fake_quant() if enabled else fq.disable_fake_quant()


@torch.inference_mode()
def calibrate(model, tokenizer, texts, max_length: int, batch_size: int = 32) -> None:
    """Initialise activation ranges from data (observers on, fake quantization off)."""
    model.eval()
    set_fake_quant(model, False)
    set_observers(model, True)
    acts = [m for m in fake_quantizers(model) if isinstance(m, ActivationFakeQuantize)]
    for fq in acts:
        fq.observe_in_eval = True
    try:
        for s in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[s:s + batch_size]), padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            model(**enc)
    finally:
        for fq in acts:
            fq.observe_in_eval = False
    set_fake_quant(model, True)


def activation_scales(model) -> dict:
    """Linear name -> (scale, zero_point) of its input fake quantizer."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, QATLinear):
            out[name] = (float(m.act_fq.scale.item()), int(m.act_fq.zero_point.item()))
    return out


def weight_qparams(model) -> dict:
    """Module name -> (scales, zero points) of its weights (per channel for Linear, one pair for
    an embedding table), from the current weights, as the fake quantizer computes them."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (QATLinear, QATEmbedding)):
            obs = type(m.w_fq.activation_post_process)(**_observer_kwargs(m.w_fq))
            obs(m.weight.detach())
            scale, zp = obs.calculate_qparams()
            out[name] = (scale.detach().float().reshape(-1).tolist(), zp.detach().reshape(-1).tolist())
    return out


def _observer_kwargs(fq: FakeQuantize) -> dict:
    o = fq.activation_post_process
    kw = dict(dtype=o.dtype, qscheme=o.qscheme, quant_min=o.quant_min, quant_max=o.quant_max,
              averaging_constant=o.averaging_constant)
    if hasattr(o, "ch_axis"):
        kw["ch_axis"] = o.ch_axis
    return kw


def strip_qat(model):
    """Remove the fake quantizers in place: a plain FP32 model with the QAT-trained weights."""
    for m in model.modules():
        if isinstance(m, QATLinear):
            m.__class__ = nn.Linear
            del m.act_fq, m.w_fq
        elif isinstance(m, QATEmbedding):
            m.__class__ = nn.Embedding
            del m.w_fq
    return model


def load_qat(model, scales: dict, averaging_constant: float = 0.01):
    """Rebuild the fake-quant model from a plain checkpoint and the saved activation scales
    (observers frozen), e.g. for evaluation after a restart."""
    prepare_qat(model, averaging_constant)
    modules = dict(model.named_modules())
    for name, (scale, zp) in scales.items():
        fq = modules[name].act_fq
        fq.scale.copy_(torch.tensor([scale]))
        fq.zero_point.copy_(torch.tensor([zp], dtype=fq.zero_point.dtype))
    set_observers(model, False)
    set_fake_quant(model, True)
    return model.eval()
