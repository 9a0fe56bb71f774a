"""A stand-in for the user's own fine-tuned classifier: a small BERT (2 layers, 64 wide, the packaged MiniLM's
tokenizer) trained here on a 3-class CSV of short reviews, saved as a Hugging Face folder (config.json with
id2label, model.safetensors, tokenizer files) with its classes in a non-alphabetical order, as IndoNLU SmSA's
(positive, neutral, negative). Training takes some 20 s on 2 cores; its test accuracy is far above chance.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from utils.config import TrainConfig
from utils.modeling import load_tokenizer, packaged_model_dir, save_checkpoint, set_seed
from utils.training import fine_tune

ORDER = ("positive", "neutral", "negative")          # the head's rows: not the sorted names
WORDS = {"negative": ("awful", "terrible", "boring", "dull", "hated", "worst"),
         "neutral": ("okay", "average", "fine", "decent", "mixed", "passable"),
         "positive": ("great", "excellent", "wonderful", "loved", "superb", "best")}
FILLER = "the movie plot acting film was really quite a story and cast music scenes".split()
MAX_LENGTH = 32


def reviews(n: int = 420, seed: int = 0) -> pd.DataFrame:
    """``n`` short reviews in columns ``review`` and ``sentiment`` (negative / neutral / positive, balanced)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("negative", "neutral", "positive")[i % 3]
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 9))]
        for _ in range(2):
            words.insert(rng.randint(0, len(words)), rng.choice(WORDS[label]))
        rows.append((" ".join(words), label))
    return pd.DataFrame(rows, columns=["review", "sentiment"])


def train_checkpoint(out: Path, data: pd.DataFrame, order=ORDER, seed: int = 0) -> Path:
    """Fine-tune the small BERT on ``data`` with its classes in ``order``; save it as a Hugging Face folder."""
    tok = load_tokenizer(str(packaged_model_dir()))
    set_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64, num_labels=len(order),
                     id2label=dict(enumerate(order)), label2id={n: i for i, n in enumerate(order)})
    model = BertForSequenceClassification(cfg)
    d = pd.DataFrame({"text": data["review"], "label": data["sentiment"].map({n: i for i, n in enumerate(order)})})
    cut = int(0.8 * len(d))
    fine_tune(model, tok, d[:cut], d[cut:], TrainConfig(epochs=6, batch_size=16, learning_rate=2e-3, patience=6),
              MAX_LENGTH, seed, progress=False)
    return save_checkpoint(model, tok, out)


def permuted(src: Path, out: Path, order: tuple) -> Path:
    """The same classifier with its classes in ``order``: id2label and the head's rows permuted together, so
    every text gets the same class by name."""
    model = AutoModelForSequenceClassification.from_pretrained(src, use_safetensors=True)
    tok = load_tokenizer(str(src))
    old = [model.config.id2label[i] for i in range(model.config.num_labels)]
    idx = torch.tensor([old.index(n) for n in order])
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[idx].clone())
        model.classifier.bias.copy_(model.classifier.bias[idx].clone())
    model.config.id2label = dict(enumerate(order))
    model.config.label2id = {n: i for i, n in enumerate(order)}
    return save_checkpoint(model, tok, out)


def own_predictions(folder: Path, texts: list) -> list:
    """The checkpoint's own answers by name, outside the study: a plain transformers forward pass, each text
    alone, and the class name from its config's id2label."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    tok = load_tokenizer(str(folder))
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            out.append(model.config.id2label[int(np.argmax(model(**enc).logits[0].numpy()))])
    return out
