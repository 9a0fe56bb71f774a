"""The model-size sweep (``utils.sizes``): sizes, the variants it can build, and a real sweep over two tiny
randomly initialised BERT configurations on the smoke profile's data."""
from __future__ import annotations

import pytest

from utils import pipeline, report
from utils import sizes as S
from utils.config import ConfigError, load_config
from utils.provenance import read_json
from utils.report import Results
from utils.report.macros import sizes_macros, trend_word

TWO_TINY = [{"name": "t1", "layers": 1, "hidden": 32, "heads": 2},
            {"name": "t2", "layers": 2, "hidden": 64, "heads": 4, "intermediate": 128}]


def bert_parameters(layers: int, hidden: int, ffn: int, vocab: int, positions: int, labels: int) -> int:
    """BERT's parameter count, written out: embeddings (words, positions, 2 token types, LayerNorm), per layer
    Q/K/V/O + LayerNorm + the two feed-forward matrices + LayerNorm, the pooler and the classifier."""
    emb = (vocab + positions + 2) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden + (hidden * ffn + ffn) + (ffn * hidden + hidden) + 2 * hidden
    return emb + layers * layer + (hidden * hidden + hidden) + (hidden * labels + labels)


def sized(repo, **sizes):
    return load_config("smoke", overrides={"sizes": sizes}, root=repo)


def test_presets_span_tiny_to_large_and_custom_sizes_resolve(repo):
    cfg = load_config("default", root=repo)
    got = {s.name: (s.layers, s.hidden) for s in S.resolve(cfg)}
    assert got["bert-tiny"] == (2, 128) and got["minilm-l6"] == (6, 384)
    assert got["bert-base"] == (12, 768) and got["bert-large"] == (24, 1024)
    custom = S.resolve(sized(repo, models=["bert-mini", *TWO_TINY]))
    assert [s.name for s in custom] == ["bert-mini", "t1", "t2"] and custom[1].ffn == 128 and custom[2].ffn == 128


@pytest.mark.parametrize("models, needle", [
    (["bert-huge"], "unknown size 'bert-huge'"),
    ([{"name": "x", "layers": 2, "hidden": 30}], "missing key(s) ['heads']"),
    ([{"name": "x", "layers": 2, "hidden": 30, "heads": 4}], "hidden divisible by heads"),
    ([{"name": "x", "layers": 0, "hidden": 32, "heads": 4}], "positive integers"),
    ([{"name": "x", "layers": 1, "hidden": 32, "heads": 4, "width": 3}], "unknown key(s) ['width']"),
    (["bert-tiny", "bert-tiny"], "names a size twice"),
    ([3], "expected a size name or a mapping"),
])
def test_bad_sizes_are_one_clear_error(repo, models, needle):
    with pytest.raises(ConfigError, match="sizes.models") as e:
        S.check(sized(repo, models=models))
    assert needle in str(e.value)


def test_variants_the_sweep_cannot_build_are_refused(repo):
    with pytest.raises(ConfigError, match="onnx-int8-static-minmax is built with Static"):
        S.check(sized(repo, variants=["onnx-int8-static-minmax"]))
    with pytest.raises(ConfigError, match="onnx-int8-qat-seed is not an ONNX file built from the FP32 export"):
        S.check(sized(repo, variants=["onnx-int8-qat-seed"]))
    with pytest.raises(KeyError, match="sizes.variants: unknown variant"):
        S.check(sized(repo, variants=["onnx-int8-nope"]))
    with pytest.raises(ConfigError, match="sizes: batch_size"):
        sized(repo, reps=2, min_reps=3)
    assert S.check_variants(sized(repo, variants=["onnx-int8-dynamic-opt"])) == [
        "pytorch-fp32", "onnx-fp32", "onnx-int8-dynamic-opt"]


def test_sweep_over_two_tiny_configs(repo):
    cfg = sized(repo, models=TWO_TINY, lengths=[16, 32], batch_size=4, reps=3, min_reps=2, throughput_reps=2,
                profile_reps=2, budget_s=1.0, memory=False)
    pipeline.run_data(cfg, progress=False)
    out = S.run_sizes(cfg, progress=False)
    saved = read_json(cfg.results_dir / "sizes.json")
    assert saved["provenance"]["cpu_isa"]["int8_gemm"] and saved["random_init"] is True
    names = ["pytorch-fp32", "onnx-fp32", "onnx-int8-dynamic", "onnx-int8-dynamic-opt", "onnx-fp16", "openvino-fp32",
             "openvino-int8-nncf"]
    assert out["variants"] == names and [m["name"] for m in out["models"]] == ["t1", "t2"]
    for m, spec in zip(out["models"], TWO_TINY):
        ffn = spec.get("intermediate", 4 * spec["hidden"])
        assert m["parameters"] == bert_parameters(spec["layers"], spec["hidden"], ffn, out["vocab_size"], 512,
                                                  out["num_labels"])
        fp32 = m["file_mb"]["onnx-fp32"]
        assert abs(m["file_mb"]["pytorch-fp32"] - fp32) / fp32 < 0.05        # the same float32 weights
        assert m["file_mb"]["onnx-int8-dynamic"] < fp32 / 3.5                # int8 weights and embedding tables
        assert 0.45 < m["file_mb"]["onnx-fp16"] / fp32 < 0.55
        assert m["parity"]["argmax_identical"] == 1.0
        assert set(m["latency"]) == {"16", "32"} and m["reps"]["latency_16"] >= 2
        assert all(m["latency"][L][n]["n"] == m["reps"][f"latency_{L}"] for L in m["latency"] for n in names)
        assert m["best_int8"] in ("onnx-int8-dynamic", "onnx-int8-dynamic-opt")
        best = m["latency"]["32"][m["best_int8"]]["median_ms"]
        assert m["speedup_vs_onnx_fp32"]["32"][m["best_int8"]] == pytest.approx(
            m["latency"]["32"]["onnx-fp32"]["median_ms"] / best)
        assert m["throughput"]["onnx-fp32"]["texts_per_s"] > 0
        assert m["file_mb"]["openvino-int8-nncf"] < fp32 / 2.5              # NNCF's IR: int8 weights
        # the CUDA provider's predicted placement of every ONNX file of the size
        assert set(m["cuda_placement"]) == set(names[1:5])
        assert m["cuda_placement"]["onnx-int8-dynamic"]["memcpy_predicted"] > \
            m["cuda_placement"]["onnx-fp32"]["memcpy_predicted"]
        for n in names[1:5]:
            p = m["profiles"][n]
            assert 0 < p["matmul_ms"] <= p["kernel_ms"]
        assert "MatMulInteger" in m["profiles"]["onnx-int8-dynamic"]["op_ms"] or \
            "DynamicQuantizeMatMul" in m["profiles"]["onnx-int8-dynamic"]["op_ms"]
        assert m["memory"] is None
    assert out["models"][1]["parameters"] > out["models"][0]["parameters"]
    assert not any((cfg.artifacts_dir / "sizes").iterdir())                   # the files are gone, the numbers kept

    # the report: a figure, a table row per size, and the paper's macros, all read from sizes.json
    res = Results(cfg)
    fig = report.figure(cfg, "sizes")
    assert fig is not None and len(fig.axes) == 7          # six panels and the products' speed-up axis
    t = report.build(cfg, "sizes_table")
    assert list(t.df.index) == ["t1", "t2"] and {"ceiling", "INT8 products"} <= set(t.df.columns)
    assert "peak MB FP32 / INT8" not in t.df
    assert {"OpenVINO INT8 vs ONNX @32", "CUDA Memcpy FP32 / dyn. INT8"} <= set(t.df.columns)
    assert t.df.loc["t2", "params (M)"] == f"{out['models'][1]['parameters'] / 1e6:.1f}"
    mac = sizes_macros(res)
    best = out["models"][1]["best_int8"]
    assert mac["SizesN"] == "2" and mac["SizesLargest"] == "t2" and mac["SizesLength"] == "32"
    assert mac["SizesOvLargestX"] == f"{out['models'][1]['speedup_vs_onnx_fp32']['32']['openvino-int8-nncf']:.2f}"
    assert mac["SizesLargestX"] == f"{out['models'][1]['speedup_vs_onnx_fp32']['32'][best]:.2f}"
    assert mac["SizesTrendWord"] == trend_word(float(mac["SizesSmallestX"]), float(mac["SizesLargestX"]))


@pytest.mark.parametrize("first, last, word", [(1.5, 2.4, "grows"), (2.4, 1.5, "shrinks"),
                                               (2.0, 2.1, "stays about the same")])
def test_trend_word(first, last, word):
    assert trend_word(first, last) == word


def test_fresh_process_memory_of_one_file(tiny_onnx, tiny_model_dir):
    onnx = S.fresh_process_memory(tiny_onnx[0], 1, 4, 16, str(tiny_onnx[0].parent))
    torch_ = S.fresh_process_memory(tiny_model_dir, 1, 4, 16, str(tiny_model_dir.parent))
    ov = S.fresh_process_memory(tiny_onnx[0], 1, 4, 16, str(tiny_onnx[0].parent), runtime="openvino")
    for r in (onnx, torch_, ov):
        assert r["peak_rss_mb"] > r["model_rss_mb"] > 0 and r["create_seconds"] > 0
