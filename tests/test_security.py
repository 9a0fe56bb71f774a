"""Untrusted files: weights from safetensors only, no pickle, no remote code; outputs stay inside the
repository's output folders; the browsable explanation pages escape the texts they show."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import explain_record
from utils.config import ConfigError, load_config
from utils.explain import write_html

SRC = Path(__file__).resolve().parents[1] / "src" / "utils"
CODE = sorted(SRC.rglob("*.py"))


def calls(name: str):
    """Every call of a function or method called ``name`` in the library: (file, line, call node)."""
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if called == name:
                    yield path.name, node.lineno, node


def kwarg(node: ast.Call, key: str):
    for k in node.keywords:
        if k.arg == key:
            return ast.literal_eval(k.value) if isinstance(k.value, ast.Constant) else "dynamic"
    return None


def test_the_scan_sees_the_library():
    assert len(CODE) > 15 and any(True for _ in calls("from_pretrained"))


def test_no_remote_code_is_ever_trusted():
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, (path.name, node.lineno)


def test_models_load_from_safetensors_only():
    for file, line, node in calls("from_pretrained"):
        src = ast.unparse(node)
        if "AutoModel" in src:                       # weights: safetensors, never a pickle
            assert kwarg(node, "use_safetensors") is True, (file, line)
            assert kwarg(node, "trust_remote_code") is False, (file, line)
        elif "AutoTokenizer" in src:
            assert kwarg(node, "trust_remote_code") is False, (file, line)


def test_no_pickle_is_read():
    for file, line, node in calls("load"):
        src = ast.unparse(node.func)
        if src.startswith("torch."):
            assert kwarg(node, "weights_only") is True, (file, line)
        assert not src.startswith(("pickle.", "joblib.", "dill.")), (file, line)
    for path in CODE:
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"pickle", "dill", "joblib", "cloudpickle"}, path.name


@pytest.mark.parametrize("stem", ["..", ".hidden", "a b", "-x"])
def test_a_profile_cannot_write_outside_the_output_folders(repo, stem):
    profile = repo / f"{stem}.yaml"
    profile.write_text("extends: smoke\n")
    with pytest.raises(ConfigError, match="must be letters, digits"):
        load_config(str(profile), root=repo)


def test_output_folders_are_under_the_repository(repo):
    cfg = load_config("smoke", root=repo)
    for d in (cfg.results_dir, cfg.artifacts_dir, cfg.figures_dir, cfg.tables_dir, cfg.processed_dir):
        assert d.resolve().is_relative_to(repo.resolve()) and d.name == "smoke"
    with pytest.raises(ConfigError, match="set by the loader"):
        load_config("smoke", {"name": "../../etc"}, root=repo)


def test_explanation_pages_escape_the_texts_they_show(tmp_path):
    text = 'great film <script>alert("x")</script> & more'
    words = ["great", "film", "script", "alert", "x", "more"]
    ex = {"pred": 0, "proba": [0.9, 0.1], "weights": {"0": [0.1] * len(words)}}
    result = {"reference": "a", "variants": ["a", "b"], "samples": 10,
              "examples": [{"index": 0, "text": text, "label": 0, "reference_pred": 0, "reference_confidence": 0.9,
                            "reason": "stratified"}],
              "explanations": {"a": [ex], "b": [ex]}, "agreement_per_example": {"b": [{"spearman": 1.0}]}}
    write_html(explain_record(**result), tmp_path, ["<neg>", "pos"])
    pages = [p.read_text() for p in tmp_path.glob("*.html")]
    assert len(pages) == 2
    for page in pages:
        assert "<script" not in page and "&lt;neg&gt;" in page
    page = (tmp_path / "example_0.html").read_text()
    assert page.count("&lt;") >= 2 and "&amp; " in page      # the tags and the ampersand shown as text
