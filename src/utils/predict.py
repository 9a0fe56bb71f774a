"""One predictor interface over PyTorch models and ONNX Runtime sessions.

``predictor.predict_proba(texts) -> (n, classes)`` is all that evaluation,
benchmarks and explanations need, so a PyTorch FP32 model, a fake-quant model and
every ONNX variant are treated alike. Texts are batched (sorted by length, so that
dynamic padding stays short) and returned in the caller's order.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from google.protobuf.message import DecodeError
from tqdm.auto import tqdm

from .modeling import ModelError, forward_inputs


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Predictor:
    """Texts in, logits / probabilities out. Subclasses implement ``_forward``."""

    name = "predictor"

    def __init__(self, tokenizer, max_length: int, batch_size: int = 64):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)

    def encode(self, texts: Sequence[str]) -> dict:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="np")
        return {k: v.astype(np.int64) for k, v in enc.items()}

    def _forward(self, enc: dict) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch_indices(self, texts: Sequence[str], batch_size: Optional[int] = None, order: str = "length",
                seed: int = 0) -> list:
        """The index arrays of the batches ``texts`` are predicted in: ``order`` ``length`` (sorted by
        length, so that dynamic padding stays short: the default), ``given`` (the caller's order) or
        ``random`` (a random batching drawn with ``seed``); ``batch_size`` None: the predictor's own."""
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise ValueError(f"predict: batch_size must be >= 1, got {bs}")
        n = len(texts)
        if order == "length":
            idx = np.argsort([len(t) for t in texts], kind="stable")
        elif order == "given":
            idx = np.arange(n)
        elif order == "random":
            idx = np.random.default_rng(seed).permutation(n)
        else:
            raise ValueError(f"predict: order must be length, given or random, got {order!r}")
        return [idx[s:s + bs] for s in range(0, n, bs)]

    def predict_logits(self, texts: Sequence[str], progress: bool = False, batch_size: Optional[int] = None,
                       order: str = "length", seed: int = 0) -> np.ndarray:
        """Logits in the caller's order, computed in the batches ``batch_indices`` makes (batch_size 1:
        each text alone, without padding: what a service answering one request at a time runs)."""
        texts = list(texts)
        if not texts:
            raise ValueError("predict: no texts given")
        out: list = [None] * len(texts)
        for idx in tqdm(self.batch_indices(texts, batch_size, order, seed), desc=f"predict {self.name}",
                        disable=not progress, leave=False):
            logits = self._forward(self.encode([texts[i] for i in idx]))
            for j, i in enumerate(idx):
                out[i] = logits[j]
        return np.stack(out).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], progress: bool = False, **batching) -> np.ndarray:
        return softmax(self.predict_logits(texts, progress=progress, **batching))

    def predict(self, texts: Sequence[str], progress: bool = False, **batching) -> np.ndarray:
        return self.predict_logits(texts, progress=progress, **batching).argmax(axis=-1)

    __call__ = predict_proba


class TorchPredictor(Predictor):
    name = "torch"

    def __init__(self, model, tokenizer, max_length: int, batch_size: int = 64,
                 threads: Optional[int] = None, name: str = "torch"):
        super().__init__(tokenizer, max_length, batch_size)
        self.model = model.eval()
        self.name = name
        if threads:
            torch.set_num_threads(int(threads))
        self._accepts = forward_inputs(model)

    @torch.inference_mode()
    def _forward(self, enc: dict) -> np.ndarray:
        feed = {k: torch.from_numpy(v) for k, v in enc.items() if k in self._accepts}
        out = self.model(**feed)
        logits = out.logits if hasattr(out, "logits") else out
        return logits.float().numpy()


# Metadata key of an ONNX file: ONNX Runtime graph optimizers (comma-separated names) to leave off when
# the file runs on the CPU provider. The optimized variants set it: ORT's fused SkipLayerNormalization CPU
# kernel is a scalar loop, slower on this model than the Add and LayerNormalization it replaces.
ORT_CPU_DISABLED_OPTIMIZERS = "onnxruntime.cpu.disabled_optimizers"


def _varint(f) -> int:
    shift = value = 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError("truncated")
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7


def onnx_metadata(path: str | os.PathLike) -> dict:
    """An ONNX file's ``metadata_props`` (ModelProto field 14) as a dict, read without parsing the
    graph: every other top-level field is skipped by its length, so a session created next does not
    pay for a second copy of the weights (the memory probe measures that process)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model not found: {path}")
    size, out = path.stat().st_size, {}
    with open(path, "rb") as f:
        try:
            while f.tell() < size:
                tag = _varint(f)
                field, wire = tag >> 3, tag & 7
                if wire == 0:
                    _varint(f)
                elif wire in (1, 5):
                    f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
                elif wire == 2:
                    n = _varint(f)
                    if field == 14:
                        entry = onnx.StringStringEntryProto.FromString(f.read(n))
                        out[entry.key] = entry.value
                    else:
                        f.seek(n, os.SEEK_CUR)
                else:
                    raise ValueError(f"wire type {wire} at byte {f.tell()}")
            if f.tell() != size:
                raise EOFError("truncated")
        except (EOFError, ValueError, DecodeError) as e:
            raise ModelError(f"corrupt or unreadable ONNX model {path}: {e}") from None
    return out


def disabled_optimizers(path: str | os.PathLike, providers: Optional[list] = None) -> list:
    """The ONNX Runtime graph optimizers ``path`` asks to leave off (metadata
    ``ORT_CPU_DISABLED_OPTIMIZERS``); only where the CPU provider comes first."""
    if (providers or ["CPUExecutionProvider"])[0] != "CPUExecutionProvider":
        return []
    return [s for s in onnx_metadata(path).get(ORT_CPU_DISABLED_OPTIMIZERS, "").split(",") if s]


def ort_session(path: str | os.PathLike, threads: Optional[int] = None,
                providers: Optional[list] = None, optimization: str = "all", spinning: bool = False,
                spin_stop: bool = False, profile_prefix: Optional[str] = None, optimized_model: Optional[str] = None,
                quiet: bool = False):
    """An ONNX Runtime session; a missing or corrupt file gets one clear error.

    ``spinning=False`` stops the intra-op threads from busy-waiting after each run: with
    several models called in turn, a spinning pool steals the cores of the next model.
    ``spinning=True`` is ONNX Runtime's default, what a server running one model gets;
    with ``spin_stop`` the threads spin between operators within a call and stop when it returns
    (``session.force_spinning_stop``), so they do not hold the cores once the call is over.
    Graph optimizers the file's metadata names are left off on the CPU provider
    (``disabled_optimizers``). ``profile_prefix``: ORT's profiler on; ``optimized_model``: where ORT
    saves the graph it runs; ``quiet``: errors only in ORT's log."""
    path = Path(path)
    providers = providers or ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:     # ONNX Runtime would warn and fall back to the CPU: timings labelled with a GPU, run on a CPU
        raise ModelError(f"{path.name}: execution provider(s) {missing} not available in this onnxruntime build "
                         f"(available: {', '.join(ort.get_available_providers())})")
    disabled = disabled_optimizers(path, providers)     # also: one clear error for a missing file
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning and spin_stop:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    so.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    if optimized_model:
        so.optimized_model_filepath = str(optimized_model)
    if quiet:
        so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=providers, disabled_optimizers=disabled or None)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise ModelError(f"corrupt or unreadable ONNX model {path}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None


class OrtPredictor(Predictor):
    name = "onnx"

    def __init__(self, path: str | os.PathLike, tokenizer, max_length: int, batch_size: int = 64,
                 threads: Optional[int] = None, providers: Optional[list] = None, name: Optional[str] = None,
                 spinning: bool = False, spin_stop: bool = False):
        super().__init__(tokenizer, max_length, batch_size)
        self.path = Path(path)
        self.session = ort_session(path, threads=threads, providers=providers, spinning=spinning,
                                   spin_stop=spin_stop)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.name = name or self.path.stem

    def _forward(self, enc: dict) -> np.ndarray:
        missing = [n for n in self.input_names if n not in enc]
        if missing:
            raise ModelError(f"ONNX model {self.path} expects input(s) {missing} that the tokenizer "
                             f"does not produce ({sorted(enc)})")
        return self.session.run(None, {n: enc[n] for n in self.input_names})[0]
