"""INT8 in PyTorch that stays on the GPU: weights and activations in int8, products in int32.

``torch.ao.quantization.quantize_dynamic`` (the CPU baseline of the benchmark) has no CUDA
kernels, and the library that wraps integer GEMMs for CUDA (torchao) is not on the lent GPU
machine. PyTorch itself exposes the integer GEMM, ``torch._int_mm`` (int8 x int8 -> int32; cuBLASLt
on CUDA, also implemented on the CPU), so the dynamic W8A8 scheme is a few lines here:

* weights: symmetric int8 per output channel, quantized once;
* activations: symmetric int8 per token (row), scaled by the row's absolute maximum at run time;
* the int32 product is rescaled by both scales, the bias added, and the result cast back to the
  activation dtype (fp16 on the GPU), so every other operator runs as before.

This is the same scheme as SmoothQuant's W8A8 baseline without smoothing, and as torchao's
``int8_dynamic_activation_int8_weight``.
"""
from __future__ import annotations

import torch

# torch._int_mm on CUDA needs more than 16 rows and both inner and output sizes divisible by 8
MIN_ROWS, ALIGN = 17, 8


def int8_rows(t: torch.Tensor) -> tuple:
    """Symmetric int8 per row of a 2-D tensor: (int8 values, float scale per row), t ~ values * scale."""
    scale = t.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(t / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


class W8A8Linear(torch.nn.Module):
    """``nn.Linear`` computed as int8 x int8 -> int32 with dynamic per-token activation scales."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        q, scale = int8_rows(linear.weight.detach().float())    # per output channel
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", q.t())            # (in, out), column-major: cuBLASLt's layout
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).float()
        rows = x2.shape[0]
        q, scale = int8_rows(x2)                                # per token
        if rows < MIN_ROWS:                                  # e.g. the pooler at batch 1: pad with zero rows
            q = torch.nn.functional.pad(q, (0, 0, 0, MIN_ROWS - rows))
        y = torch._int_mm(q, self.weight_t)[:rows].float() * scale[:, None] * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8"


def quantize_w8a8(model: torch.nn.Module) -> dict:
    """Replace, in place, every ``nn.Linear`` whose sizes the integer GEMM takes by a ``W8A8Linear``.

    Returns {"quantized": [names], "kept": [names]}: layers with sizes not divisible by 8 (a
    2-label classifier head) keep their floating-point weights."""
    done, kept = [], []
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, torch.nn.Linear):
            continue
        if mod.in_features % ALIGN or mod.out_features % ALIGN:
            kept.append(name)
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, W8A8Linear(mod))
        done.append(name)
    if not done:
        raise ValueError("quantize_w8a8: no nn.Linear with sizes divisible by 8 in this model")
    return {"quantized": done, "kept": kept}
