"""One trained model on several CPUs: the evaluation history (eval_runs.jsonl) and what the report draws from it.

The runs are the golden fixture's real smoke evaluation and that evaluation as another host would give it: the
same FP32 predictions, some INT8 predictions moved, another INT8 GEMM path (what a rerun on an AVX2 host did to
the default, issue 15)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from utils import eval_runs as ER
from utils import report
from utils import variants as V
from utils.provenance import read_json
from utils.report.macros import paper_macros
from utils.report.readers import Results

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden" / "results"


@pytest.fixture(scope="module")
def ev() -> dict:
    doc = read_json(GOLDEN / "evaluate.json")
    doc["provenance"]["git"]["dirty"] = False        # the fixture came from a dirty tree; compared as a clean one
    return doc


def other_host(ev: dict, moved: dict, isa: str = "avx2", date: str = "2026-12-03T00:00:00+00:00") -> dict:
    """``ev`` as a host with INT8 GEMM path ``isa`` gives it: ``moved`` (variant -> how many predictions flip)
    applied from the first text on, accuracy and its change recomputed, the interval moved with it."""
    out = json.loads(json.dumps(ev))
    out["provenance"]["date"] = date
    out["provenance"]["cpu_isa"] = {"features": ["avx2"], "int8_gemm": isa}
    n, labels = ev["n_test"], len(ev["labels"])
    for name, k in moved.items():
        v = out["variants"][name]
        v["predictions"] = [(p + 1) % labels if i < k else p for i, p in enumerate(v["predictions"])]
        truth_hits = ev["variants"][name]["accuracy"] * n
        v["accuracy"] = (truth_hits - k) / n            # the first texts of the fixture: flips taken as losses
        shift = v["accuracy"] - ev["variants"][name]["accuracy"]
        if v.get("accuracy_diff") is not None:           # the reference has none
            v["accuracy_diff"] += shift
            v["accuracy_diff_ci"] = [c + shift for c in v["accuracy_diff_ci"]]
    return out


def test_a_line_is_the_host_and_every_variants_batch1_predictions(ev):
    s = ER.summary(ev, "abc")
    assert s["isa"] == ev["provenance"]["cpu_isa"]["int8_gemm"] and s["features"] and s["onnxruntime"]
    assert s["test_sha256"] == "abc" and s["n_test"] == ev["n_test"] and set(s["variants"]) == set(ev["variants"])
    for name, v in ev["variants"].items():
        assert [int(c) for c in s["variants"][name]["predictions"]] == v["predictions"], name
        assert s["variants"][name]["sha256"] == v.get("sha256")


def test_an_evaluation_is_recorded_once_and_only_at_batch_1(smoke_cfg, ev):
    assert ER.record(smoke_cfg, ev) == 1 and ER.record(smoke_cfg, ev) == 0
    batched = {**ev, "batching": {"headline": "batches of 64"}, "provenance": {**ev["provenance"], "date": "2027"}}
    assert ER.record(smoke_cfg, batched) == 0 and len(ER.read_runs(smoke_cfg)) == 1
    with ER.runs_path(smoke_cfg).open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"eval_runs.jsonl, line 2: not a JSON run record"):
        ER.read_runs(smoke_cfg)


def test_the_same_model_on_two_instruction_sets_gives_moves_and_an_interval_covering_both(ev):
    a = ER.summary(ev)
    b = ER.summary(other_host(ev, {"onnx-int8-dynamic": 3, "onnx-int8-qat": 1}))
    h = ER.across_hosts([a, b], a)
    assert h["isas"] == [a["isa"], "avx2"] and h["n_test"] == ev["n_test"]
    dyn, fp = h["variants"]["onnx-int8-dynamic"], h["variants"]["onnx-fp32"]
    assert dyn["moved"] == 3 and h["variants"]["onnx-int8-qat"]["moved"] == 1 and fp["moved"] == 0
    assert dyn["same_file"] and dyn["weights"] == "fp32" and h["variants"]["onnx-int8-qat"]["weights"] == "qat"
    lo_a, hi_a = ev["variants"]["onnx-int8-dynamic"]["accuracy_diff_ci"]
    shift = -3 / ev["n_test"]
    assert dyn["covering_ci"] == pytest.approx([min(lo_a, lo_a + shift), max(hi_a, hi_a + shift)])
    assert dyn["accuracy_diff"]["avx2"] == pytest.approx(ev["variants"]["onnx-int8-dynamic"]["accuracy_diff"] + shift)
    # one instruction set only: nothing to compare
    assert ER.across_hosts([a, ER.summary(other_host(ev, {}, isa=a["isa"]))], a) is None
    # another trained model (its reference predictions differ) is not the same model on another host
    c = ER.summary(other_host(ev, {"pytorch-fp32": 2, "onnx-int8-dynamic": 3}))
    assert ER.same_model([a, c], a) == [a] and ER.across_hosts([a, c], a) is None
    # a dirty tree's run is not compared, nor compared with
    assert ER.across_hosts([a, {**b, "dirty": True}], a) is None
    assert ER.across_hosts([a, b], {**a, "dirty": True}) is None


def test_more_than_ten_classes_keep_their_predictions_as_a_list(ev):
    wide = json.loads(json.dumps(ev))
    wide["labels"] = [f"c{i}" for i in range(12)]
    before = ER.summary(wide)["variants"]["onnx-fp32"]["predictions"]
    assert before == ev["variants"]["onnx-fp32"]["predictions"]             # a list of ints, not digits
    wide["variants"]["onnx-fp32"]["predictions"][0] = 11
    after = ER.summary(wide)["variants"]["onnx-fp32"]["predictions"]
    assert after[0] == 11 and ER.moved(before, after) == 1


def test_the_report_draws_the_hosts_table_and_macros_from_the_history(smoke_cfg, ev):
    smoke_cfg.results_dir.mkdir(parents=True)
    for f in GOLDEN.glob("*.json*"):
        shutil.copy(f, smoke_cfg.results_dir / f.name)
    (smoke_cfg.results_dir / "evaluate.json").write_text(json.dumps(ev))
    assert report.table(smoke_cfg, "hosts") is None                          # no history: no table, no macros
    assert not any(k.startswith("Cross") for k in paper_macros(Results(smoke_cfg)))
    sha = read_json(GOLDEN / "data.json")["splits"]["test"]["sha256"]
    ER.record(smoke_cfg, ev, sha)
    ER.record(smoke_cfg, other_host(ev, {"onnx-int8-dynamic": 3, "onnx-int8-static-minmax": 2}), sha)
    df = report.table(smoke_cfg, "hosts")
    assert set(df.index) == set(ev["variants"])
    assert df.loc["onnx-int8-dynamic", "moved"] == "3" and df.loc["onnx-fp32", "moved"] == "0"
    m = paper_macros(Results(smoke_cfg))
    ints = [n for n in ev["variants"] if V.is_onnx_int8(n) and V.weights_of(n) == "fp32"]
    assert m["CrossN"] == "2" and m["CrossIntFiles"] == str(len(ints)) and m["CrossIntMovedMax"] == "3"
    assert m["CrossIntMovedMin"] == "0" and m["CrossFloatMovedMax"] == "0" and m["CrossDynMoved"] == "3"
    lo = min(ev["variants"]["onnx-int8-dynamic"]["accuracy_diff_ci"][0] - 3 / ev["n_test"],
             ev["variants"]["onnx-int8-dynamic"]["accuracy_diff_ci"][0])
    assert m["CrossDynCoverLo"] == f"{100 * lo:+.2f}"
    assert m["CrossQatTrain"].startswith("and its training reproduced")      # the fake-quant model did not move


def test_backfill_keeps_the_committed_batch1_evaluations(smoke_cfg, git_repo, ev, monkeypatch, capsys):
    root = Path(smoke_cfg.root)
    smoke_cfg.results_dir.mkdir(parents=True)
    shutil.copy(GOLDEN / "data.json", smoke_cfg.results_dir / "data.json")
    for i, doc in enumerate([{**ev, "batching": {"headline": "batches of 64"}}, ev, other_host(ev, {})]):
        (smoke_cfg.results_dir / "evaluate.json").write_text(json.dumps(doc))
        git_repo([smoke_cfg.results_dir], f"run {i}")
    runs = ER.from_git(smoke_cfg)
    assert len(runs) == 2 and all(r["test_sha256"] == read_json(GOLDEN / "data.json")["splits"]["test"]["sha256"]
                                  for r in runs)
    monkeypatch.chdir(root)
    assert ER.main(["backfill", "smoke"]) == 0 and "2 evaluation(s) added" in capsys.readouterr().out
