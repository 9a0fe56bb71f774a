"""Fine-tuning loop: seeded, progress bars, validation every epoch, early stopping.

The same loop trains the FP32 model and (later) quantization-aware models: it only
needs a ``torch.nn.Module`` whose forward takes the tokenizer's outputs and
returns ``.logits``.
"""
from __future__ import annotations

import copy
import time
from typing import Optional

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from .config import TrainConfig
from .modeling import forward_inputs, set_seed
from .predict import TorchPredictor


def _batches(lengths: list, batch_size: int, seed: int, group_by_length: bool):
    """Shuffled batches of indices; with ``group_by_length``, transformers'
    LengthGroupedSampler puts texts of similar length together (less padding)."""
    if group_by_length:
        g = torch.Generator().manual_seed(seed)
        order = np.fromiter(LengthGroupedSampler(batch_size, lengths=lengths, generator=g), dtype=np.int64)
    else:
        order = np.random.default_rng(seed).permutation(len(lengths))
    for s in range(0, len(order), batch_size):
        yield order[s:s + batch_size]


def evaluate_split(model, tokenizer, df: pd.DataFrame, max_length: int, batch_size: int = 64) -> dict:
    pred = TorchPredictor(model, tokenizer, max_length, batch_size).predict(df["text"].tolist())
    y = df["label"].to_numpy()
    return {"accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro"))}


def fine_tune(model, tokenizer, train: pd.DataFrame, validation: pd.DataFrame, tc: TrainConfig,
              max_length: int, seed: int, threads: Optional[int] = None, progress: bool = True,
              eval_batch_size: int = 64) -> dict:
    """Train ``model`` in place; the weights of the best validation epoch are restored.

    Returns the history: per epoch mean training loss, validation accuracy and
    macro-F1, seconds; plus the best epoch and whether training stopped early.
    """
    if len(train) == 0 or len(validation) == 0:
        raise ValueError("fine_tune: empty training or validation split")
    if threads:
        torch.set_num_threads(int(threads))
    set_seed(seed)
    texts = train["text"].tolist()
    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    labels = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
    accepts = forward_inputs(model)

    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and not any(k in n for k in no_decay)],
         "weight_decay": tc.weight_decay},
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=tc.learning_rate)
    steps_per_epoch = (len(texts) + tc.batch_size - 1) // tc.batch_size
    total = steps_per_epoch * tc.epochs
    sched = get_linear_schedule_with_warmup(opt, int(tc.warmup_ratio * total), total)

    history, best, best_state, bad_epochs = [], -1.0, None, 0
    stopped_early = False
    for epoch in range(1, tc.epochs + 1):
        model.train()
        t0, losses = time.perf_counter(), []
        bar = tqdm(_batches(lengths, tc.batch_size, seed + epoch, tc.group_by_length), total=steps_per_epoch,
                   desc=f"epoch {epoch}/{tc.epochs}", disable=not progress, leave=False)
        for idx in bar:
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            out = model(**{k: v for k, v in enc.items() if k in accepts}, labels=labels[idx])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(float(out.loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        model.eval()
        val = evaluate_split(model, tokenizer, validation, max_length, eval_batch_size)
        rec = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": val["accuracy"],
               "val_macro_f1": val["macro_f1"], "seconds": time.perf_counter() - t0}
        history.append(rec)
        if progress:
            print(f"epoch {epoch}: loss {rec['train_loss']:.4f}  val acc {val['accuracy']:.4f}  "
                  f"val F1 {val['macro_f1']:.4f}  ({rec['seconds']:.0f}s)")
        if val["accuracy"] > best:
            best, bad_epochs = val["accuracy"], 0
            best_state = copy.deepcopy(model.state_dict())
            best_epoch = epoch
        else:
            bad_epochs += 1
            if bad_epochs >= tc.patience:
                stopped_early = epoch < tc.epochs
                break
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_accuracy": best,
            "stopped_early": stopped_early, "steps_per_epoch": steps_per_epoch}
