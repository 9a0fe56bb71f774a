"""PyTorch -> ONNX (FP32) export with a parity check against PyTorch logits.

The TorchScript exporter (``dynamo=False``) is used on a model loaded with the
eager attention implementation: its graph is the one ONNX Runtime's transformer
optimizer recognises and fuses, and it exports fake-quant modules as Q/DQ pairs
(needed for QAT later). Batch and sequence axes are dynamic.

The file only lands at its final path after the parity check passed.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
import torch

from .modeling import ModelError, forward_inputs
from .predict import OrtPredictor, TorchPredictor
from .provenance import atomic_path


class ParityError(AssertionError):
    """The exported model does not reproduce the PyTorch logits."""


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args))).logits


def input_names_for(model, tokenizer) -> list:
    accepts = forward_inputs(model)
    enc = tokenizer(["a"], return_tensors="pt")
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc and n in accepts]


def export_onnx(model, tokenizer, path: str | os.PathLike, opset: int = 17,
                sample_texts: Sequence[str] = ("an example sentence", "another, longer example sentence here"),
                max_length: int = 64, check: Optional[callable] = None) -> Path:
    """Export ``model`` (logits output) to ``path``; ``check(tmp_path)`` runs before the rename."""
    path = Path(path)
    model = model.eval()
    names = input_names_for(model, tokenizer)
    enc = tokenizer(list(sample_texts), padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
    args = tuple(enc[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(model, names), args, str(tmp), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
        onnx.checker.check_model(str(tmp))
        if check is not None:
            check(tmp)
    return path


def parity(model, tokenizer, onnx_path: str | os.PathLike, texts: Sequence[str], max_length: int,
           batch_size: int = 32, threads: Optional[int] = None) -> dict:
    """Compare PyTorch and ONNX Runtime logits on ``texts``."""
    a = TorchPredictor(model, tokenizer, max_length, batch_size, threads).predict_logits(texts)
    b = OrtPredictor(onnx_path, tokenizer, max_length, batch_size, threads).predict_logits(texts)
    diff = np.abs(a - b)
    return {"n": len(texts), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "argmax_identical": float((a.argmax(-1) == b.argmax(-1)).mean())}


def export_with_parity(model, tokenizer, path: str | os.PathLike, texts: Sequence[str], max_length: int,
                       opset: int = 17, atol: float = 1e-4, threads: Optional[int] = None) -> dict:
    """Export, then check parity on ``texts``; the file is kept only if
    max |logit difference| <= ``atol`` and every argmax is identical."""
    result: dict = {}

    def check(tmp):
        result.update(parity(model, tokenizer, tmp, texts, max_length, threads=threads))
        if result["max_abs_diff"] > atol or result["argmax_identical"] < 1.0:
            raise ParityError(f"ONNX export {path} fails parity on {result['n']} texts: max |logit diff| "
                              f"{result['max_abs_diff']:.2e} (limit {atol:.0e}), identical argmax "
                              f"{result['argmax_identical']:.2%}")

    export_onnx(model, tokenizer, path, opset=opset, sample_texts=list(texts[:2]), max_length=max_length,
                check=check)
    result.update({"atol": atol, "opset": opset, "passed": True})
    return result


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and check an ONNX file, with one clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model not found: {path}")
    try:
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
        return m
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"corrupt or unreadable ONNX model {path}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
