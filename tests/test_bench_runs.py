"""Run-to-run history of the benchmark: one line per run, compared only with runs measured alike."""
import json
import shutil
from pathlib import Path

import pytest

from utils import bench_runs as R
from utils import report
from utils import variants as V
from utils.provenance import read_json, write_json

DEFAULT = Path(__file__).resolve().parents[1] / "results" / "default"
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden" / "results"


@pytest.fixture(scope="module")
def committed():
    return read_json(DEFAULT / "bench.json")


def _variant(run: dict, **change) -> dict:
    return {**json.loads(json.dumps(run)), **change}


def test_a_run_line_is_the_headline_and_how_it_was_measured(committed):
    s = R.summary(committed)
    head = committed["cpu"][f"threads_{committed['provenance']['threads']}"]["headline"]
    assert s["median_ms"] == {n: v["median_ms"] for n, v in head.items()}
    assert s["protocol"] == committed["protocol"]["description"] and s["reps"] == committed["protocol"]["reps"]
    assert s["commit"] == committed["provenance"]["git"]["commit"] and s["dirty"] is False
    assert R.label(s).startswith(f"turns of {s['block']} after {s['block_warmup']}")
    assert R.label({**s, "ort_spinning": True, "ort_spin_stop": True}).endswith("ORT spinning in calls")
    assert s["round_medians_ms"] == {n: v["round_medians_ms"] for n, v in head.items()}
    assert s["seconds"] == committed.get("seconds")                          # the step's wall time, where recorded
    assert R.summary({**committed, "seconds": 512.0})["seconds"] == 512.0
    # a run from before the protocol was recorded: its repetitions come from its config
    old = {k: v for k, v in committed.items() if k != "protocol"}
    o = R.summary(old)
    assert o["protocol"] == R.UNRECORDED and R.label(o) == "call by call"
    assert o["reps"] == committed["provenance"]["config"]["bench"]["reps"]


def test_runs_are_added_once_kept_in_date_order_and_a_bad_line_is_named(smoke_cfg, committed):
    s = R.summary(committed)
    earlier = _variant(s, date="2020-01-01T00:00:00+00:00")
    assert R.add_runs(smoke_cfg, [s]) == 1
    assert R.add_runs(smoke_cfg, [s, earlier]) == 1           # the same run (date, commit) is not added twice
    assert [r["date"] for r in R.read_runs(smoke_cfg)] == [earlier["date"], s["date"]]
    with R.runs_path(smoke_cfg).open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"bench_runs.jsonl, line 3"):
        R.read_runs(smoke_cfg)


def test_only_runs_measured_alike_from_a_clean_tree_are_compared(committed):
    s = R.summary(committed)
    b = _variant(s, date="x1", median_ms={n: 1.1 * v for n, v in s["median_ms"].items()},
                 speedup_vs_onnx_fp32={n: (0.5 * v if n != "onnx-fp32" else v)
                                       for n, v in s["speedup_vs_onnx_fp32"].items()})
    runs = [s, b, _variant(s, date="x2", dirty=True), _variant(s, date="x3", protocol=R.UNRECORDED),
            _variant(s, date="x4", threads=1), _variant(s, date="x5", cpu="another CPU")]
    assert R.comparable(runs, s) == [s, b]
    assert len(R.comparable(runs, s, clean=False)) == 3
    rr = R.run_to_run(runs, s, "onnx-fp32")
    assert rr["runs"] == 2 and rr["median_ms"]["onnx-fp32"]["spread"] == pytest.approx(0.1 / 1.05)
    assert rr["speedup_vs_onnx_fp32"]["spread"] == pytest.approx(0.0)          # fp32 over itself: 1 in both runs
    best = R.run_to_run(runs, s, "onnx-int8-dynamic-pt")["speedup_vs_onnx_fp32"]
    assert best["values"] == [s["speedup_vs_onnx_fp32"]["onnx-int8-dynamic-pt"],
                              b["speedup_vs_onnx_fp32"]["onnx-int8-dynamic-pt"]]
    assert best["spread"] == pytest.approx(0.5 / 0.75)
    assert R.relative_range([9.0, 10.0, 11.0]) == pytest.approx(0.2)
    assert R.run_to_run(runs[2:], s, "onnx-fp32")["runs"] == 0               # nothing measured alike: no spread
    # a variant added since the earlier runs has no run-to-run spread: the fastest one they all have is compared
    fastest = min((n for n in s["median_ms"] if V.is_onnx_int8(n)), key=s["median_ms"].get)
    new = _variant(s, date="x6", median_ms={**s["median_ms"], "onnx-int8-new": 0.5 * s["median_ms"][fastest]})
    with V.registered(V.Variant("onnx-int8-new", "onnxruntime", "int8-dynamic", integer=True)):
        assert R.shared_best([s, b, new], new) == fastest
        assert R.shared_best([new], new) == "onnx-int8-new"


def test_backfill_reads_every_committed_version_of_bench_json(smoke_cfg, git_repo, committed, monkeypatch, capsys):
    root = Path(smoke_cfg.root)
    path = smoke_cfg.results_dir / "bench.json"
    for i, date in enumerate(["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]):
        write_json(path, {**committed, "provenance": {**committed["provenance"], "date": date}})
        git_repo([path], f"run {i}")
    runs = R.from_git(smoke_cfg)
    assert sorted(r["date"] for r in runs) == ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]
    monkeypatch.chdir(root)
    assert R.main(["backfill", "smoke"]) == 0 and "2 run(s) added" in capsys.readouterr().out
    assert R.add_runs(smoke_cfg, R.from_git(smoke_cfg)) == 0 and len(R.read_runs(smoke_cfg)) == 2


def test_the_report_table_lists_every_run_and_the_spread_of_the_compared_ones(smoke_cfg):
    # the golden fixture's two clean runs measured alike (the committed default's run is the only one on its
    # recorded instruction set, so it has no spread yet)
    smoke_cfg.results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(GOLDEN / "bench.json", smoke_cfg.results_dir / "bench.json")
    assert report.table(smoke_cfg, "bench_runs") is None                                 # no history yet
    shutil.copy(GOLDEN / "bench_runs.jsonl", smoke_cfg.results_dir / "bench_runs.jsonl")
    df = report.table(smoke_cfg, "bench_runs")
    runs = R.read_runs(smoke_cfg)
    assert len(df) == len(runs) + 1 and df.index[-1].startswith("spread of the")
    n = int(df.index[-1].split()[3])
    assert n == len(R.comparable(runs, R.summary(read_json(GOLDEN / "bench.json")))) >= 2
    assert (df["compared"] == "yes").sum() == n
