import shutil
from pathlib import Path

import pandas as pd
import pytest

from utils import report
from utils import variants as V
from utils.bench import fixed_length_batch, iobinding_latency, torch_dtype_latency
from utils.provenance import read_json, write_json
from utils.report import Table, variant_palette, write_macros, write_table


def test_booktabs_table_escapes_latex(smoke_cfg):
    df = pd.DataFrame({"size (MB)": ["23.1"], "share_fresh": ["57%"], "$\\Delta$acc": ["+0.1"]},
                      index=["onnx-int8_dynamic"])
    path = write_table(Table("t", df, caption="A caption", label="tab:t"), smoke_cfg)
    tex = path.read_text()
    assert path == smoke_cfg.tables_dir / "t.tex"
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\caption{A caption}", "\\label{tab:t}",
                  "share\\_fresh", "57\\%", "onnx-int8\\_dynamic", "$\\Delta$acc"):
        assert token in tex, token


def test_macros_are_letters_only(smoke_cfg):
    p = write_macros(smoke_cfg, {"FPAcc": "87.6"})
    assert "\\newcommand{\\FPAcc}{87.6}" in p.read_text()
    with pytest.raises(ValueError, match="letters only"):
        write_macros(smoke_cfg, {"FP32Acc": "1"})


def _bench_with_gpu(cfg, gpu: dict) -> None:
    """The committed default's bench.json with ``gpu`` in place of its GPU record, as ``cfg``'s."""
    rec = read_json(Path(__file__).resolve().parents[1] / "results" / "default" / "bench.json")
    write_json(cfg.results_dir / "bench.json", {**rec, "length": 16, "gpu": gpu})


def test_gpu_table_from_a_gpu_run_and_none_without(smoke_cfg, tiny_model_dir, tokenizer, sentences):
    _bench_with_gpu(smoke_cfg, {"torch_cuda": False, "note": "no GPU"})
    assert report.build(smoke_cfg, "gpu_table") is None
    run = torch_dtype_latency(tiny_model_dir, tokenizer, sentences, 16, [1], reps=2, device="cpu", warmup=1)
    _bench_with_gpu(smoke_cfg, {"torch_cuda": True, "torch_device": "CPU stand-in", "pytorch": run})
    t = report.build(smoke_cfg, "gpu_table")
    df = t.df
    assert list(df.index) == list(run) and df.loc["pytorch-cpu-fp32", "same argmax"] == "100.0%"
    assert "CPU stand-in" in t.caption and not smoke_cfg.tables_dir.exists()     # built, not written


def test_gpu_table_lists_onnxruntime_gpu_rows(smoke_cfg, tiny_onnx, tokenizer, sentences):
    feed = fixed_length_batch(tokenizer, sentences, 16, 1)
    rec = iobinding_latency(tiny_onnx[0], feed, 2, ["CPUExecutionProvider"], device="cpu", warmup=1)
    _bench_with_gpu(smoke_cfg, {"torch_cuda": True, "onnxruntime": {
        "CUDAExecutionProvider": {"onnx-fp32": rec, "onnx-int8-dynamic": {"skipped": "no kernel"}}}})
    df = report.table(smoke_cfg, "gpu")
    assert df.loc["onnx-int8-dynamic [CUDA]", "b1 median (ms)"] == "skipped"
    assert float(df.loc["onnx-fp32 [CUDA]", "b1 median (ms)"]) == pytest.approx(rec["median_ms"], abs=0.01)


def test_variant_colours_keep_families_together():
    names = ["pytorch-fp32", "pytorch-int8-dynamic", "onnx-fp32", "onnx-fp16", "onnx-int8-dynamic",
             "onnx-int8-dynamic-opt", "onnx-int8-qat-seed", "onnx-int8-static-minmax", "onnx-int8-qat", "other"]
    c = variant_palette(names)
    assert set(c) == set(names) and len({c[n] for n in names[:-1]}) == len(names) - 1   # no two alike
    grey = lambda rgb: max(rgb) - min(rgb) < 1e-6                                       # noqa: E731
    assert grey(c["pytorch-fp32"]) and grey(c["pytorch-int8-dynamic"]) and grey(c["other"])
    green = lambda rgb: rgb[1] == max(rgb) and not grey(rgb)                            # noqa: E731
    assert all(green(c[n]) for n in ("onnx-int8-dynamic", "onnx-int8-dynamic-opt", "onnx-int8-qat-seed"))


def test_tradeoff_figure_writes_a_far_outlier_off_scale_with_its_value(smoke_cfg):
    # the committed default results: the every-op static file lost 14 points, the others within 2
    default = Path(__file__).resolve().parents[1] / "results" / "default"
    smoke_cfg.results_dir.mkdir(parents=True, exist_ok=True)
    for f in ("bench.json", "evaluate.json", "bench_runs.jsonl"):
        shutil.copy(default / f, smoke_cfg.results_dir / f)
    fig = report.figure(smoke_cfg, "tradeoff")
    ax = fig.axes[0]
    diff = 100 * read_json(default / "evaluate.json")["variants"]["onnx-int8-static-allops"]["accuracy_diff"]
    assert diff < -5 and ax.get_ylim()[0] > diff                   # off the axis, which stays readable
    texts = [t.get_text() for t in ax.texts]
    assert f"off scale: int8-static-allops \u2212{abs(diff):.1f} pt" in texts      # a minus sign, not a hyphen
    # the frontier's variants are named, and the legend holds one entry per family (and the frontier), not 17
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "frontier" in labels and len(labels) <= len(V.FAMILIES) + 1
    assert {t.get_text() for t in ax.texts} >= {"int8-dynamic"}
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks and all("^" not in t and "times" not in t for t in ticks)      # plain numbers on the log axis
    assert not smoke_cfg.figures_dir.exists()                 # drawn, not saved: render_all writes
