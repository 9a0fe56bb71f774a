"""Bad input, tried as a user would: a profile file, maybe a data file or a model folder, then the command
``make`` runs before a profile's first step (``python -m utils.preflight <profile>``, the same checks the
steps make). Each case: exit status 2, one line on stderr naming the problem, and nothing written (an
earlier good run of the same profile stays as it was)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from utils import data as D
from utils.modeling import ModelError, packaged_model_dir
from utils.predict import ort_session
from utils.preflight import main as preflight
from utils.provenance import OutputError, atomic_path, write_json

SMOKE = "extends: smoke\n"
REVIEWS = pd.DataFrame({"review": [f"review number {i} of a film" for i in range(60)],
                        "sentiment": ["good", "bad", "meh"] * 20})


def _csv(df):
    return lambda d: df.to_csv(d / "my.csv", index=False)


def _text(name, content, mode="w"):
    def write(d):
        (d / name).write_bytes(content) if mode == "wb" else (d / name).write_text(content)
    return write


def _model_folder(kind):
    def make(d):
        m = d / "mymodel"
        shutil.copytree(packaged_model_dir(), m)
        if kind == "no-weights":
            (m / "model.safetensors").unlink()
            (m / "pytorch_model.bin").write_bytes(b"pickle")
        else:
            data = (m / "model.safetensors").read_bytes()
            (m / "model.safetensors").write_bytes(data[:1000])
    return make


FILE = "data: {source: file, path: my.csv, text_column: review, label_column: sentiment}\n"
# (id, profile text after `extends: smoke`, what to create in the repository, what the one line must say)
CASES = [
    ("path-with-packaged-source", "data: {path: my.csv, text_column: review, label_column: sentiment}\n",
     _csv(REVIEWS), "data.path is set ('my.csv') but data.source is 'packaged'"),
    ("columns-with-packaged-source", "data: {text_column: review}\n", None,
     "data.text_column is set but data.source is 'packaged'"),
    ("hub-name-with-file", "data: {source: file, path: my.csv, name: imdb, text_column: review, "
     "label_column: sentiment}\n", _csv(REVIEWS), "data.name is set ('imdb') but data.source is 'file'"),
    ("model-path-with-packaged", "model: {name_or_path: bert-base-uncased}\n", None,
     "model.name_or_path is set ('bert-base-uncased') but model.source is 'packaged'"),
    ("missing-file", FILE, None, "data file not found: "),
    ("empty-file", FILE, _text("my.csv", ""), "cannot parse data file"),
    ("header-only", FILE, _text("my.csv", "review,sentiment\n"), "no rows"),
    ("wrong-column", FILE.replace("text_column: review", "text_column: body"), _csv(REVIEWS),
     "text column 'body' not found"),
    ("missing-label-column", FILE, _csv(REVIEWS.drop(columns="sentiment")), "label column 'sentiment' not found"),
    ("empty-text", FILE, _csv(REVIEWS.assign(review=["   "] + list(REVIEWS.review[1:]))),
     "empty, NaN or non-text value(s) in text column 'review'"),
    ("nan-text", FILE, _text("my.csv", "review,sentiment\n,good\n" + "a film,bad\n" * 30),
     "empty, NaN or non-text value(s)"),
    ("nan-label", FILE, _text("my.csv", "review,sentiment\nfine film,\n" + "a film,bad\nother,good\n" * 15),
     "missing label(s) in column 'sentiment'"),
    ("single-class", FILE, _csv(REVIEWS.assign(sentiment="good")), "has a single class"),
    ("too-few-rows", FILE, _csv(REVIEWS.head(3)), "fewer than 5"),
    ("label-outside-list", FILE.replace("}", ", labels: [good, bad]}"), _csv(REVIEWS), "outside the"),
    ("malformed-jsonl", FILE.replace("my.csv", "my.jsonl"),
     _text("my.jsonl", '{"review": "a", "sentiment": "good"}\n{"review": "b", "sentiment": "bad"}\n{"review": \n'),
     "line 3: not valid JSON"),
    ("unsupported-extension", FILE.replace("my.csv", "my.xlsx"), _text("my.xlsx", "x"),
     "unsupported data file type '.xlsx'"),
    ("not-utf8", FILE, _text("my.csv", "review,sentiment\n".encode() + "caf\xe9 film,good\n".encode("latin-1") * 40,
                             "wb"), "is not UTF-8 text"),
    ("fractions", "data: {train_fraction: 0.8, validation_fraction: 0.1, test_fraction: 0.2}\n", None,
     "fractions must be positive and sum to 1"),
    ("negative-epochs", "train: {epochs: -1}\n", None, "train.epochs must be >= 1, got -1"),
    ("zero-qat-epochs", "qat: {epochs: 0}\n", None, "qat.epochs must be >= 1, got 0"),
    ("zero-length", "model: {max_length: 0}\n", None, "model.max_length must be >= 8"),
    ("zero-batch", "train: {batch_size: 0}\n", None, "train.batch_size must be >= 1, got 0"),
    ("wrong-type", "train: {batch_size: many}\n", None, "train.batch_size = 'many': expected int"),
    ("negative-lr", "train: {learning_rate: -0.001}\n", None, "train.learning_rate must be > 0"),
    ("typo-key", "train: {epocs: 2}\n", None, "unknown key(s) in train: epocs"),
    ("yaml-syntax", "train: {epochs: 2\n", None, "is not valid YAML"),
    ("unknown-extends", None, None, "unknown profile 'smok'"),
    ("unknown-bench-variant", "bench: {variants: [onnx-int9]}\n", None,
     "bench.variants: unknown variant(s) ['onnx-int9']"),
    ("unknown-explain-variant", "explain: {variants: [onnx-fp32, onnx-int9], pairs: []}\n", None,
     "explain.variants: unknown variant(s) ['onnx-int9']"),
    ("unknown-pair", "explain: {pairs: [[onnx-fp32, onnx-int9]]}\n", None, "explain.pairs"),
    ("missing-group-column", FILE.replace("}", ", group_column: film}"), _csv(REVIEWS),
     "group column 'film' not found"),
    ("model-without-weights", "model: {source: local, name_or_path: mymodel}\n", _model_folder("no-weights"),
     "has no weights: expected model.safetensors (only PyTorch pickle weights"),
    ("corrupt-safetensors", "model: {source: local, name_or_path: mymodel}\n", _model_folder("corrupt"),
     "corrupt or truncated weights"),
    ("absent-model-folder", "model: {source: local, name_or_path: nowhere}\n", None, "model folder not found"),
    ("hub-model-no-network", "model: {source: hub, name_or_path: someone/some-bert-model}\n", None,
     "it needs a network"),
    ("local-without-path", "model: {source: local}\n", None, "model.name_or_path is not set"),
]


@pytest.mark.parametrize("case, body, make, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(repo, monkeypatch, capsys, case, body, make, message):
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")      # no network here either way; offline mode answers at once
    profile = repo / "mine.yaml"
    profile.write_text("extends: smok\n" if body is None else SMOKE + body)
    if make:
        make(repo)
    earlier = repo / "results" / "mine" / "data.json"      # a good run of the same profile, before
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"earlier": true}')
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    assert preflight([str(profile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: profile "), err
    assert message in err, err
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before       # nothing written
    assert earlier.read_text() == '{"earlier": true}'


def test_a_bad_profile_name_is_refused(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    profile = repo / "my study.yaml"
    profile.write_text(SMOKE)
    assert preflight([str(profile)]) == 2
    assert "must be letters, digits" in capsys.readouterr().err


def test_a_good_profile_passes(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    (repo / "mine.yaml").write_text(SMOKE + FILE)
    REVIEWS.to_csv(repo / "my.csv", index=False)
    assert preflight([str(repo / "mine.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("preflight ok: profile mine, data my.csv") and "test " in out
    assert not (repo / "results").exists() and not (repo / "data").exists()


def test_the_command_a_user_types_fails_with_status_2_and_one_line(repo):
    """The real process: what make runs first, with its exit status and its stderr."""
    (repo / "mine.yaml").write_text(SMOKE + "data: {path: my.csv, text_column: review, label_column: sentiment}\n")
    src = str(Path(D.__file__).resolve().parents[1])       # the package under test, wherever it is installed
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "utils.preflight", "mine.yaml"], cwd=repo, capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith(("Loading", "  "))]
    assert lines[-1].startswith("error: profile mine.yaml: data.path is set") and len(lines) == 1, r.stderr


def test_a_truncated_onnx_file_between_steps_is_named(tmp_path, tiny_onnx):
    bad = tmp_path / "int8-qat.onnx"
    bad.write_bytes(Path(tiny_onnx[0]).read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"corrupt or unreadable ONNX model .*int8-qat.onnx"):
        ort_session(bad)


def test_an_unavailable_execution_provider_is_named(tiny_onnx):
    with pytest.raises(ModelError, match=r"fp32.onnx: execution provider\(s\) \['NoSuchExecutionProvider'\] not avail"):
        ort_session(tiny_onnx[0], providers=["NoSuchExecutionProvider"])


def test_data_errors_name_the_file(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(D.DataError, match=r"x.jsonl line 2: expected a JSON object"):
        D.read_table(p)


def test_a_read_only_results_folder_is_one_clear_error(tmp_path):
    target = Path("/sys/no-such-study/results/evaluate.json")     # sysfs: the kernel refuses new folders
    with pytest.raises(OutputError, match=r"cannot write /sys/no-such-study/results/evaluate.json: .*nothing was"):
        write_json(target, {"x": 1})


def test_a_full_disk_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "evaluate.json"
    target.write_text('{"previous": true}')
    with pytest.raises(OutputError, match="No space left on device; nothing was written"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            with open("/dev/full", "w") as full:     # a device that is always full: a real ENOSPC
                full.write("x" * 4096)
                full.flush()
    assert target.read_text() == '{"previous": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["evaluate.json"]   # no temporary left behind
