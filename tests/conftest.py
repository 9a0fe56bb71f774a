"""Shared fixtures: real (small) models, real data, an isolated repository root."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from transformers import BertConfig, BertForSequenceClassification

from utils.config import load_config
from utils.modeling import load_tokenizer, packaged_model_dir, save_checkpoint, set_seed

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """``study`` tests (the whole smoke study through make, three times: about 7 minutes on 2 cores) run in CI
    (CI=true) and where asked (STUDY_TESTS=1); STUDY_TESTS=0 skips them anywhere."""
    asked = os.environ.get("STUDY_TESTS")
    if asked == "1" or (asked != "0" and os.environ.get("CI") == "true"):
        return
    skip = pytest.mark.skip(reason="runs the whole study three times (~7 min): set STUDY_TESTS=1 (CI runs them)")
    for item in items:
        if "study" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    """The real tokenizer of the packaged MiniLM model."""
    return load_tokenizer(str(packaged_model_dir()))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A real, randomly initialised 2-layer BERT classifier (3 classes) saved as a checkpoint."""
    set_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                     num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
                     label2id={"neg": 0, "neu": 1, "pos": 2})
    model = BertForSequenceClassification(cfg).eval()
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model_dir, tmp_path_factory, sentences):
    """The tiny checkpoint exported to ONNX (parity-checked): (path, parity record)."""
    from utils.modeling import load_checkpoint
    from utils.onnx_export import export_with_parity

    model, tok = load_checkpoint(tiny_model_dir)
    path = tmp_path_factory.mktemp("onnx") / "fp32.onnx"
    return path, export_with_parity(model, tok, path, SENTENCES, max_length=32)


@pytest.fixture()
def repo(tmp_path) -> Path:
    """An isolated copy of the repository's configs, so outputs land in tmp_path."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.fixture()
def smoke_cfg(repo):
    return load_config("smoke", root=repo)


@pytest.fixture()
def git_repo(repo):
    """``repo`` made a git repository with a committer; returns ``commit(paths, message)``, which adds the paths
    (git-ignored or not) and commits them."""
    def git(*a):
        subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")

    def commit(paths, message: str) -> None:
        git("add", "-f", *map(str, paths))
        git("commit", "-qm", message)
    return commit


SENTENCES = [
    "a gripping, beautifully acted film", "dull and far too long", "the plot never comes together",
    "one of the best comedies of the year", "an utterly forgettable sequel", "warm, funny and wise",
    "i have seen worse", "a mess from start to finish", "the cast is wonderful", "tedious",
    "smart writing and a great score", "it drags in the middle but the ending works",
]


@pytest.fixture(scope="session")
def sentences():
    return list(SENTENCES)



def explain_record(**fields) -> dict:
    """A whole explain.json record (the golden fixture's, a real smoke run's) with ``fields`` in place and no noise
    explanations: what a test of one reader of explain results needs, typed as the step declares it."""
    golden = Path(__file__).resolve().parent / "fixtures" / "golden" / "results" / "explain.json"
    return {**json.loads(golden.read_text()), "noise_explanations": {}, **json.loads(json.dumps(fields))}
