import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import modeling as M
from utils.config import load_config
from utils.predict import TorchPredictor


def test_packaged_backbone_is_the_documented_minilm(smoke_cfg):
    model, tok = M.build_classifier(smoke_cfg, ["rotten", "fresh"])
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_labels) == (6, 384, 2)
    assert 22.5e6 < M.count_parameters(model) < 23.0e6
    assert c.id2label == {0: "rotten", 1: "fresh"}
    assert tok("a test")["input_ids"][0] == tok.cls_token_id


def test_head_initialisation_is_seeded(smoke_cfg):
    a, _ = M.build_classifier(smoke_cfg, ["a", "b", "c"])
    b, _ = M.build_classifier(smoke_cfg, ["a", "b", "c"])
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert a.classifier.weight.shape == (3, 384)


def test_checkpoint_roundtrip_is_exact_and_safetensors_only(tiny_model_dir, tmp_path, sentences):
    model, tok = M.load_checkpoint(tiny_model_dir)
    out = M.save_checkpoint(model, tok, tmp_path / "copy")
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    again, tok2 = M.load_checkpoint(out)
    a = TorchPredictor(model, tok, 32).predict_logits(sentences)
    b = TorchPredictor(again, tok2, 32).predict_logits(sentences)
    np.testing.assert_array_equal(a, b)


def test_folder_without_weights_is_named(tiny_model_dir, tmp_path):
    broken = tmp_path / "noweights"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(M.ModelError, match=f"model folder {broken} has no weights: expected model.safetensors$"):
        M.load_checkpoint(broken)
    (broken / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(M.ModelError, match="only PyTorch pickle weights, which are not loaded"):
        M.load_checkpoint(broken)


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(M.ModelError, match="model folder not found"):
        M.load_checkpoint(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(M.ModelError, match="has no config.json"):
        M.load_checkpoint(tmp_path / "empty")


def test_corrupt_weights_are_named(tiny_model_dir, tmp_path):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for f in tiny_model_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(M.ModelError, match=f"cannot load model '{bad}'"):
        M.load_checkpoint(bad)


def test_local_model_source_relative_to_root(repo, tiny_model_dir):
    cfg = load_config("smoke", {"model": {"source": "local", "name_or_path": str(tiny_model_dir)}}, root=repo)
    model, _ = M.build_classifier(cfg, ["x", "y"])
    assert model.config.hidden_size == 32 and model.config.num_labels == 2


def test_hub_model_id_loads_from_a_local_cache_offline(tiny_model_dir, tmp_path):
    """The hub source passes a model id to from_pretrained. Offline, with a cache laid out as the
    hub client writes it (models--org--name/snapshots/<rev>/ + refs/main), the id resolves locally."""
    cache = tmp_path / "hf-cache"
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--someorg--tiny-bert" / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (cache / "models--someorg--tiny-bert" / "refs").mkdir()
    (cache / "models--someorg--tiny-bert" / "refs" / "main").write_text(rev)
    code = ("from utils.config import load_config; from utils.modeling import build_classifier\n"
            "cfg = load_config('smoke', {'model': {'source': 'hub', 'name_or_path': 'someorg/tiny-bert'}})\n"
            "m, t = build_classifier(cfg, ['a', 'b'])\nprint('hidden', m.config.hidden_size)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "hidden 32" in r.stdout
    # and an id that is not in the cache gets one clear error naming it
    bad = code.replace("someorg/tiny-bert", "someorg/absent")
    r = subprocess.run([sys.executable, "-c", bad], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "someorg/absent" in r.stderr and "ModelError" in r.stderr


def test_file_size_of_file_and_folder(tiny_model_dir):
    f = M.file_size_mb(tiny_model_dir / "model.safetensors")
    assert 0 < f < M.file_size_mb(tiny_model_dir)
