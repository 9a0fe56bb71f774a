"""Golden test of the report: every table, the macro file, summary.md and the data of every figure,
rendered from a small frozen results fixture (tests/fixtures/golden/results/, a real smoke-sized run),
must equal the expected files byte for byte. A change in a builder that moves a number, a caption or a
row fails here, without rerunning the study.

After a report change that is meant, regenerate the expected files and review their diff:
    GOLDEN_REGENERATE=1 .venv/bin/python -m pytest tests/test_golden.py
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from utils.config import load_config
from utils.report import ARTIFACTS, Results, render_all
from utils.report.frames import FRAMES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "golden"
EXPECTED = FIXTURE / "expected"
REGENERATE = os.environ.get("GOLDEN_REGENERATE") == "1"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "configs", root / "configs")
    shutil.copy(repo / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(FIXTURE / "golden.yaml", root / "configs" / "golden.yaml")
    shutil.copytree(FIXTURE / "results", root / "results" / "golden")
    cfg = load_config("golden", root=root)
    done = render_all(cfg)
    out = {f"tables/{p.name}": p.read_text() for p in sorted(cfg.tables_dir.glob("*.tex"))}
    out["summary.md"] = (cfg.results_dir / "summary.md").read_text()
    res = Results(cfg)
    for fig, build in FRAMES.items():
        for name, df in (build(res) or {}).items():
            out[f"frames/{fig}__{name}.csv"] = df.to_csv(float_format="%.10g")
    return cfg, done, out


def test_every_artifact_of_the_report_is_built_from_the_fixture(rendered):
    cfg, done, out = rendered
    # the fixture holds one-thread rounds, two runs, explanations and the model-size sweep; the GPU table has no
    # data, the summary over training seeds (`make seeds`, tests/test_seeds.py) is another profile's, and its
    # explanations predate KernelSHAP, and it has no Integrated Gradients (`make gradients`; tests/test_variants.py
    # builds both tables from a real run); one host's evaluation only, so no hosts table (tests/test_eval_runs.py);
    # its steps predate the steps' recorded seconds, so no steps table (tests/test_variants.py builds it)
    # its explanations are of the earlier, asymmetric design: no agreement table is set beside the floor for them
    # it predates OpenVINO's variants and the predicted CUDA placement: no deploy, runtime-profile or placement table
    # (tests/test_variants.py builds them from the smoke study)
    assert set(done) == {a.name for a in ARTIFACTS} - {"gpu_table", "seeds_figure", "seeds_table", "hosts_table",
                                                       "explain_shap_table", "gradients_table", "steps_table",
                                                       "explain_agreement_table", "deploy_table",
                                                       "runtime_profile_table", "cuda_placement_table"} | {
        "paper_macros", "explain_html"}
    assert {p.stem for p in cfg.figures_dir.glob("*.png")} == set(FRAMES) - {"seeds"}
    numbers = out["tables/numbers.tex"]
    for macro in ("BestIntVsOnnxOneThread", "AmdahlX", "RunsN", "SLNSlowdown", "SymMs", "FusedIntGain",
                  "ExplainAsymmetric", "PerCallBestVsOnnx", "SpinBestIntVsOnnx", "ProfSlowdown", "FastInt",
                  "HolmN", "EqMargin"):
        assert f"\\newcommand{{\\{macro}}}" in numbers, macro


def test_the_rendered_report_equals_the_golden_files(rendered):
    _, _, out = rendered
    if REGENERATE:
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for rel, text in out.items():
            (EXPECTED / rel).parent.mkdir(parents=True, exist_ok=True)
            (EXPECTED / rel).write_text(text)
        pytest.skip("golden files regenerated: review their diff")
    expected = {str(p.relative_to(EXPECTED)): p.read_text() for p in sorted(EXPECTED.rglob("*")) if p.is_file()}
    assert sorted(out) == sorted(expected)
    changed = [rel for rel in out if out[rel] != expected[rel]]
    assert changed == [], f"report output changed: {changed}"
