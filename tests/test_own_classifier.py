"""The user's own fine-tuned classifier through the study (``model.finetuned: true``): adopted as it is, its classes
matched to the data by name, every mismatch one clear error; PTQ without QAT (``qat.enabled: false``).

The stand-in classifier (``own_classifier``) is a small BERT fine-tuned here on 3-class reviews, saved as a Hugging
Face folder with its head in a non-alphabetical order (positive, neutral, negative)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

import own_classifier as OC
from utils import data as D
from utils import evaluate as E
from utils import modeling as M
from utils import pipeline as PL
from utils import variants as V
from utils.config import ConfigError, deep_merge, load_config
from utils.preflight import preflight
from utils.provenance import read_json, sha256

REPO = Path(__file__).resolve().parents[1]
# the smoke profile's sizes for the stand-in, with the chance floor (smoke allows chance: its model is untrained) and no
# QAT unless a test asks for it; ONLY_FP32: the FP32 references alone, every list of variants narrowed to them
FAST = {"eval": {"bootstrap": 50, "latency_examples": 5, "allow_chance": False}, "qat": {"enabled": False}}
ONLY_FP32 = {"eval": {"variants": ["pytorch-fp32", "onnx-fp32"]},
             "explain": {"variants": ["onnx-fp32"], "disagreements_of": [], "cost_variants": [], "pairs": [],
                         "compare": "onnx-fp32", "shap_variants": []},
             "bench": {"variants": ["pytorch-fp32", "onnx-fp32"], "headline_only": []}}


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """(reviews CSV, checkpoint folder): the data and the classifier fine-tuned on it, once per module."""
    d = tmp_path_factory.mktemp("own")
    df = OC.reviews()
    df.to_csv(d / "reviews.csv", index=False)
    return d / "reviews.csv", OC.train_checkpoint(d / "checkpoint", df)


def profile(repo: Path, csv: Path, ckpt, name: str = "mine", **sections):
    """A user's profile as the README shows it (checkpoint, CSV, columns, finetuned), written into ``repo``."""
    body = {"extends": "smoke",
            "data": {"source": "file", "path": str(csv), "text_column": "review", "label_column": "sentiment"},
            "model": {"source": "local", "name_or_path": str(ckpt), "finetuned": True}}
    body = deep_merge(deep_merge(body, FAST), sections)
    path = repo / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_config(path, root=repo)


def names_of(cfg, preds) -> list:
    labels = read_json(cfg.results_dir / "data.json")["labels"]
    return [labels[int(i)] for i in preds]


# --------------------------------------------------------------------------- the user's case, end to end
def test_adopted_classifier_is_the_fp32_reference_as_it_is(repo, own):
    """Weights byte-identical, no training, every FP32 test prediction the checkpoint's own (a plain transformers
    forward pass outside the study), the classes in the checkpoint's order; without QAT its variants are gone."""
    csv, ckpt = own
    cfg = profile(repo, csv, ckpt)
    data = PL.run_data(cfg, progress=False)
    assert data["labels"] == list(OC.ORDER) and data["checkpoint_id2label"] == list(OC.ORDER)
    fp32 = PL.run_train_fp32(cfg, progress=False)
    adopted = cfg.artifacts_dir / "fp32"
    assert sha256(adopted / "model.safetensors") == sha256(ckpt / "model.safetensors") == fp32["checkpoint_sha256"]
    assert (adopted / "config.json").read_bytes() == (ckpt / "config.json").read_bytes()
    assert fp32["adopted"]["byte_identical"] and fp32["adopted"]["input_sha256"] == sha256(ckpt / "model.safetensors")
    assert fp32["train_seconds"] == 0 and fp32["history"] == [] and fp32["best_val_accuracy"] > 0.9
    # without QAT every train setting goes unused, and the record says so
    assert {"train.epochs", "train.learning_rate", "train.weight_decay"} <= set(fp32["unused_settings"])
    qat = PL.run_train_qat(cfg, progress=False)
    assert qat["enabled"] is False and "onnx-int8-qat" in qat["variants_left_out"]
    assert not (cfg.artifacts_dir / "qat").exists() and (cfg.artifacts_dir / "train_qat.done").is_file()
    export = PL.run_export(cfg, progress=False)
    assert [k for k in export if isinstance(export[k], dict) and "parity" in export[k]] == ["fp32"]
    quant = PL.run_quantize(cfg, progress=False)
    assert "int8-qat" not in quant["variants"] and "int8-static-minmax" in quant["variants"]
    assert quant["variants"]["int8-static-minmax"]["nodes_quantized"] > 0
    ev = PL.run_evaluate(cfg, progress=False)
    assert not any(V.get(n).needs_qat for n in ev["variants"]) and "chance" not in ev
    test = pd.read_csv(cfg.processed_dir / "test.csv", keep_default_na=False)
    theirs = OC.own_predictions(ckpt, test["text"].tolist())
    for name in ("pytorch-fp32", "onnx-fp32"):
        assert names_of(cfg, ev["variants"][name]["predictions"]) == theirs, name
    assert ev["labels"] == list(OC.ORDER)


def test_permuted_checkpoint_gives_the_same_answers_by_name(repo, own, tmp_path):
    """The same classifier with id2label and the head's rows permuted together: the same class for every text."""
    csv, ckpt = own
    other = OC.permuted(ckpt, tmp_path / "permuted", ("neutral", "negative", "positive"))
    answers, texts = {}, pd.read_csv(csv)["review"].tolist()     # every text (the split follows the indices)
    for name, folder in (("first", ckpt), ("second", other)):
        cfg = profile(repo, csv, folder, name=name)
        PL.run_data(cfg, progress=False)
        PL.run_train_fp32(cfg, progress=False)
        pred = V.make_predictor(cfg, "pytorch-fp32").predict(texts, batch_size=1)
        answers[name] = names_of(cfg, pred)
        assert read_json(cfg.results_dir / "data.json")["labels"] == [
            json.loads((folder / "config.json").read_text())["id2label"][str(i)] for i in range(3)]
    assert answers["first"] == answers["second"] == OC.own_predictions(ckpt, texts)
    assert len(set(answers["first"])) == 3


def test_hub_checkpoint_from_the_cache_without_network(repo, own, tmp_path):
    """``source: hub`` with ``finetuned: true`` goes through the same code: a folder in the Hugging Face cache
    layout (blobs, a snapshot of links, refs/main), read offline; the adopted weights are the blob's bytes."""
    csv, ckpt = own
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / "models--someone--my-classifier"
    snap = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for f in ckpt.iterdir():
        blob = repo_dir / "blobs" / sha256(f)
        shutil.copyfile(f, blob)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    path = repo / "hubmine.yaml"
    body = deep_merge({"extends": "smoke",
                   "data": {"source": "file", "path": str(csv), "text_column": "review", "label_column": "sentiment"},
                   "model": {"source": "hub", "name_or_path": "someone/my-classifier", "finetuned": True}}, FAST)
    path.write_text(yaml.safe_dump(body))
    code = ("import sys, json\nfrom utils.config import load_config\nfrom utils import pipeline as PL\n"
            f"cfg = load_config({str(path)!r}, root={str(repo)!r})\n"
            "d = PL.run_data(cfg, progress=False)\nt = PL.run_train_fp32(cfg, progress=False)\n"
            "print(json.dumps({'labels': d['labels'], 'sha': t['checkpoint_sha256'], 'from': t['adopted']['from']}))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec == {"labels": list(OC.ORDER), "sha": sha256(ckpt / "model.safetensors"),
                   "from": "hub:someone/my-classifier"}


def test_qat_from_an_adopted_classifier(repo, own):
    """QAT and its control start from the adopted checkpoint; the train settings QAT reuses stay in use."""
    csv, ckpt = own
    cfg = profile(repo, csv, ckpt, qat={"enabled": True, "control": False, "calibration_examples": 8})
    PL.run_data(cfg, progress=False)
    fp32 = PL.run_train_fp32(cfg, progress=False)
    assert "train.weight_decay" not in fp32["unused_settings"] and "train.epochs" in fp32["unused_settings"]
    qat = PL.run_train_qat(cfg, progress=False)
    assert qat["quantized_linears"] > 0
    trained = load_file(cfg.artifacts_dir / "qat" / "model.safetensors")
    start = load_file(ckpt / "model.safetensors")
    assert set(trained) == set(start) and any(not torch.equal(trained[k], start[k]) for k in start)


# --------------------------------------------------------------------------- every mismatch: one clear error
def _reviews(csv: Path, tmp_path: Path, **change) -> Path:
    df = pd.read_csv(csv)
    for col, fn in change.items():
        df = fn(df)
    out = tmp_path / "data.csv"
    df.to_csv(out, index=False)
    return out


SPELLED = {"positive": "pos", "neutral": "neu", "negative": "neg"}
CASES = {
    # data label values spelled differently: named both sides, and the fix
    "other spellings": (lambda df: df.assign(sentiment=df.sentiment.map(SPELLED)), {},
                        r"In the data, not in the checkpoint: \['neg', 'neu', 'pos'\].*"
                        r"in the checkpoint, never in the data: \['negative', 'neutral', 'positive'\].*label_map"),
    "another case": (lambda df: df.assign(sentiment=df.sentiment.str.capitalize()), {},
                     r"case-sensitive.*\['Negative', 'Neutral', 'Positive'\]"),
    "a missing class": (lambda df: df[df.sentiment != "neutral"], {},
                        r"never in the data: \['neutral'\].*2 classes and the checkpoint 3"),
    "an extra class": (lambda df: df.assign(sentiment=np.where(df.index % 10 == 0, "mixed", df.sentiment)), {},
                       r"In the data, not in the checkpoint: \['mixed'\].*4 classes and the checkpoint 3"),
    "integer labels": (lambda df: df.assign(sentiment=df.sentiment.map({"negative": 0, "neutral": 1,
                                                                         "positive": 2})), {},
                       r"not in the checkpoint: \['0', '1', '2'\].*label_map"),
    "data.labels against the checkpoint's order": (
        lambda df: df, {"data": {"labels": ["negative", "neutral", "positive"]}},
        r"data.labels \['negative', 'neutral', 'positive'\] contradicts the checkpoint's id2label "
        r"\{0: positive, 1: neutral, 2: negative\}"),
    "a label_map key the data never holds": (
        lambda df: df, {"data": {"label_map": {"pos": "positive"}}}, r"data.label_map maps \['pos'\], which"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_label_mismatch_is_one_clear_error(repo, own, tmp_path, case):
    csv, ckpt = own
    change, sections, message = CASES[case]
    cfg = profile(repo, _reviews(csv, tmp_path, sentiment=change), ckpt, **sections)
    with pytest.raises(D.DataError, match=message):
        preflight(cfg)
    assert not cfg.results_dir.exists() and not cfg.processed_dir.exists()


def test_other_spellings_mapped_by_name(repo, own, tmp_path):
    csv, ckpt = own
    data = _reviews(csv, tmp_path, sentiment=lambda df: df.assign(sentiment=df.sentiment.map(SPELLED)))
    cfg = profile(repo, data, ckpt, data={"label_map": {v: k for k, v in SPELLED.items()}})
    ds = D.load_dataset(cfg, checkpoint=M.reference_classes(cfg.model, cfg.root))
    assert ds.labels == list(OC.ORDER)
    raw = pd.read_csv(data)
    back = {v: k for k, v in SPELLED.items()}
    for split in ds.splits.values():      # every text's class, by name, is its own
        want = raw.set_index("review").loc[split["text"], "sentiment"].map(back).tolist()
        assert [ds.labels[i] for i in split["label"]] == want


def _with_config(ckpt: Path, out: Path, **change) -> Path:
    shutil.copytree(ckpt, out)
    c = json.loads((out / "config.json").read_text())
    c.update(change)
    (out / "config.json").write_text(json.dumps(c))
    return out


def test_generic_label_names_need_data_labels(repo, own, tmp_path):
    csv, ckpt = own
    generic = _with_config(ckpt, tmp_path / "generic", id2label={str(i): f"LABEL_{i}" for i in range(3)},
                           label2id={f"LABEL_{i}": i for i in range(3)})
    cfg = profile(repo, csv, generic)
    with pytest.raises(D.DataError, match=r"generically, id2label \{0: LABEL_0.*give data.labels.*index order"):
        preflight(cfg)
    with pytest.raises(D.DataError, match=r"data.labels names 2 classes"):
        preflight(profile(repo, csv, generic, data={"labels": ["positive", "neutral"]}))
    ok = profile(repo, csv, generic, data={"labels": list(OC.ORDER)})
    assert preflight(ok)["labels"] == list(OC.ORDER)


def test_another_class_count_is_an_error_never_a_new_head(repo, own, tmp_path):
    csv, ckpt = own
    two = OC.permuted(ckpt, tmp_path / "three", OC.ORDER)    # a copy, then a 2-class head
    model = M.load_checkpoint(two)[0]
    model.classifier = torch.nn.Linear(model.config.hidden_size, 2)
    model.config.num_labels = 2
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    M.save_checkpoint(model, M.load_tokenizer(str(ckpt)), tmp_path / "two")
    with pytest.raises(D.DataError, match=r"never in the data: none.*3 classes and the checkpoint 2.*finetuned: false"):
        preflight(profile(repo, csv, tmp_path / "two"))
    # a config whose id2label does not describe the head
    wrong = _with_config(ckpt, tmp_path / "wrong", id2label={"0": "negative", "1": "positive"},
                         label2id={"negative": 0, "positive": 1})
    with pytest.raises(M.ModelError, match=r"id2label names 2 classes but the head's output layer has \[3\] rows"):
        preflight(profile(repo, csv, wrong))


def test_finetuned_needs_a_classifier_with_a_head(repo, own, tmp_path):
    csv, _ = own
    backbone = tmp_path / "backbone"
    shutil.copytree(M.packaged_model_dir(), backbone)
    with pytest.raises(M.ModelError, match=r"no classification head in its weights.*finetuned: false"):
        preflight(profile(repo, csv, backbone))
    with pytest.raises(ConfigError, match=r"model.finetuned is true but model.source is 'packaged'"):
        load_config("smoke", overrides={"model": {"finetuned": True}}, root=repo)
    with pytest.raises(ConfigError, match=r"data.label_map must map"):
        load_config("smoke", overrides={"data": {"label_map": {"a": None}}}, root=repo)


def test_a_trained_head_is_never_kept_silently_without_finetuned(repo, own, capsys):
    """``finetuned: false`` on a classifier: the study fine-tunes a new head, and says what became of the old."""
    csv, ckpt = own
    cfg = profile(repo, csv, ckpt, model={"finetuned": False})
    model, _, note = M.new_classifier(cfg, list(OC.ORDER))
    assert note["head"] == "reinitialised" and "finetuned: true" in note["why"]
    assert "finetuned: true" in capsys.readouterr().out
    old = load_file(ckpt / "model.safetensors")
    assert not torch.equal(model.classifier.weight.detach(), old["classifier.weight"])
    emb = "bert.embeddings.word_embeddings.weight"     # the encoder is the checkpoint's
    assert torch.equal(model.bert.embeddings.word_embeddings.weight.detach(), old[emb])
    _, _, note = M.new_classifier(cfg, ["a", "b"])
    assert note["head"] == "replaced"
    smoke = load_config("smoke", root=repo)
    assert M.new_classifier(smoke, ["a", "b"])[2]["head"] == "new"


# --------------------------------------------------------------------------- the floor
def test_a_model_at_chance_fails_the_evaluation(repo, own, tmp_path):
    """A checkpoint whose id2label was renamed without its head (the classic silent error): matched by name, it
    scores below the majority class, and the evaluation stops with the likely causes, writing nothing."""
    csv, ckpt = own
    renamed = _with_config(ckpt, tmp_path / "renamed", id2label={"0": "negative", "1": "positive", "2": "neutral"},
                           label2id={"negative": 0, "positive": 1, "neutral": 2})
    cfg = profile(repo, csv, renamed, **ONLY_FP32)
    for step in ("data", "train_fp32", "train_qat", "export"):
        getattr(PL, f"run_{step}")(cfg, progress=False)
    with pytest.raises(E.ChanceError, match=r"no better than always answering the majority class.*class order"
                                            r".*eval.allow_chance: true"):
        PL.run_evaluate(cfg, progress=False)
    assert not (cfg.results_dir / "evaluate.json").exists()
    allowed = profile(repo, csv, renamed, **deep_merge(ONLY_FP32, {"eval": {"allow_chance": True}}))
    ev = PL.run_evaluate(allowed, progress=False)
    assert ev["chance"]["at_or_below_chance"] and ev["chance"]["allowed"]


# --------------------------------------------------------------------------- PTQ only: the registry's lists
def test_without_qat_the_qat_variants_leave_every_list():
    cfg = load_config("smoke", overrides={"qat": {"enabled": False}})
    assert "onnx-int8-qat" in cfg.bench.variants      # smoke names it; without QAT it leaves the list
    left = V.without_qat(cfg)
    assert left["bench.variants"] == ["onnx-int8-qat"] and "explain.compare" in left
    assert cfg.explain.compare == "onnx-int8-dynamic" and cfg.explain.pairs == []
    assert not any(V.get(n).needs_qat for n in V.names(cfg, baselines=True))
    assert V.exports(cfg) == {"fp32": "fp32"} and V.without_qat(cfg) == {}
    assert V.without_qat(load_config("smoke")) == {}


def test_the_benchmark_plans_a_profile_without_qat_as_it_is():
    """smoke-ptq extends smoke, whose bench.variants names onnx-int8-qat: the benchmark narrows the lists before it
    checks them (checked first, it refused the profile CI runs), and records what it left out."""
    cfg = load_config("smoke-ptq")
    names, sweep, left_out = PL.bench_plan(cfg)
    assert "onnx-int8-qat" not in names and {"pytorch-fp32", "onnx-int8-dynamic"} <= set(names)
    assert left_out["bench.variants"] == ["onnx-int8-qat"] and set(sweep) <= set(names)
    assert "onnx-int8-qat" in PL.bench_plan(load_config("smoke"))[0]
    typo = load_config("smoke-ptq", overrides={"bench": {"variants": ["onnx-int8-dynamc"]}})
    with pytest.raises(KeyError, match=r"bench.variants: unknown variant\(s\) \['onnx-int8-dynamc'\]"):
        PL.bench_plan(typo)



# --------------------------------------------------------------------------- through make, as a user runs it
@pytest.mark.study
def test_your_classifier_through_make_to_its_paper(own, tmp_path):
    """The README's recipe in a copy of the repository: `make paper-figures PROFILE=mine.yaml` with the adopted
    classifier (QAT from it too), every step, the report, and the paper's sources (and PDF where TeX is here)."""
    from test_resume import _env, _repo_copy

    csv, ckpt = own
    root = _repo_copy(tmp_path / "repo")
    (root / "paper").mkdir()      # the LaTeX sources and committed tables, no earlier build's output
    for name in ("main.tex", "references.bib", "tables"):
        (shutil.copytree if name == "tables" else shutil.copy2)(REPO / "paper" / name, root / "paper" / name)
    shutil.copytree(REPO / "data", root / "data", ignore=shutil.ignore_patterns("processed", "packages"))
    mine = root / "mine.yaml"
    mine.write_text(yaml.safe_dump({"extends": "smoke", "data": {"source": "file", "path": str(csv),
                                                                 "text_column": "review", "label_column": "sentiment"},
                                    "model": {"source": "local", "name_or_path": str(ckpt), "finetuned": True},
                                    "eval": {"allow_chance": False}}))
    venv = Path(sys.prefix)
    run = lambda *a: subprocess.run(["make", *a, "PROFILE=mine.yaml", f"VENV={venv}", "-o", f"{venv}/.installed"],  # noqa: E731
                                    cwd=root, env=_env(), capture_output=True, text=True, timeout=1800)
    out = run("paper-figures")
    assert out.returncode == 0, out.stderr[-3000:]
    fp32 = read_json(root / "results" / "mine" / "train_fp32.json")
    assert fp32["adopted"]["byte_identical"] and fp32["train_seconds"] == 0
    assert read_json(root / "results" / "mine" / "evaluate.json")["labels"] == list(OC.ORDER)
    numbers = (root / "paper" / "tables" / "mine" / "numbers.tex").read_text()
    assert r"\newcommand{\Adopted}" in numbers and r"\newcommand{\QatRan}" in numbers
    check = subprocess.run([sys.executable, "-m", "utils.paper", "check-sources", "mine"], cwd=root, env=_env(),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    if shutil.which("latexmk"):
        out = run("paper")
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        assert (root / "paper" / "main-mine.pdf").is_file()
