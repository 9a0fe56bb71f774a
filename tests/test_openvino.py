"""OpenVINO beside ONNX Runtime: the same ONNX file gives the same logits; NNCF's INT8 model runs its matrix products
in int8 and says so; the performance counters split the time; the registry's openvino variants resolve their files."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from utils import openvino_rt as OR
from utils import variants as V
from utils.config import load_config
from utils.modeling import ModelError
from utils.predict import OrtPredictor


def _feeds(tokenizer, texts, length=None):
    kw = {"padding": "max_length", "max_length": length} if length else {}
    return [{k: v.astype(np.int64) for k, v in tokenizer(t, truncation=True, return_tensors="np", **kw).items()}
            for t in texts]


def test_the_same_onnx_file_gives_the_same_logits_in_both_runtimes(tiny_onnx, tokenizer, sentences):
    path, _ = tiny_onnx
    ort = OrtPredictor(path, tokenizer, 32, batch_size=4, threads=1).predict_logits(sentences, batch_size=1)
    ov = OR.OvPredictor(path, tokenizer, 32, batch_size=4, threads=1).predict_logits(sentences, batch_size=1)
    assert ov.shape == ort.shape == (len(sentences), 3)
    assert np.abs(ov - ort).max() < 1e-4          # FP32 precision forced: no bfloat16 on a BF16/AMX host
    batched = OR.OvPredictor(path, tokenizer, 32, batch_size=4, threads=1).predict_logits(sentences)
    assert np.abs(batched - ov).max() < 1e-4      # padding and batching: dynamic shapes, the same answers


def test_compiled_models_take_the_thread_count_the_latency_hint_and_fp32(tiny_onnx):
    cfg = OR.effective_config(OR.compile_model(tiny_onnx[0], threads=1))
    assert cfg["INFERENCE_NUM_THREADS"] == "1" and cfg["NUM_STREAMS"] == "1"
    assert "LATENCY" in cfg["PERFORMANCE_HINT"] and cfg["INFERENCE_PRECISION_HINT"] == "f32"


def test_a_missing_or_corrupt_model_gets_one_clear_error(tmp_path, tokenizer):
    with pytest.raises(ModelError, match="not found: .*nowhere.onnx"):
        OR.OvPredictor(tmp_path / "nowhere.onnx", tokenizer, 32)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="corrupt or unreadable model .*bad.onnx"):
        OR.OvPredictor(bad, tokenizer, 32)


def test_nncf_quantizes_every_matrix_product_and_the_counters_see_int8(tiny_onnx, tokenizer, sentences, tmp_path):
    src = tiny_onnx[0]
    dst = tmp_path / "ov" / "int8-nncf.xml"
    rec = OR.nncf_int8(src, dst, _feeds(tokenizer, sentences))
    assert dst.is_file() and dst.with_suffix(".bin").is_file()
    assert not list(dst.parent.glob("*partial*"))           # written under another name, then moved
    assert rec["fake_quantize_nodes"] > 0 and rec["subset_size"] == len(sentences)
    assert rec["preset"] == "MIXED" and rec["model_type"] == "TRANSFORMER"
    nodes = OR.int8_nodes(OR.compile_model(dst, threads=1))
    assert nodes["matmul_nodes"] > 0 and nodes["int8_matmul_nodes"] == nodes["matmul_nodes"]
    assert OR.int8_nodes(OR.compile_model(src, threads=1))["int8_matmul_nodes"] == 0
    # the INT8 model is a close copy of the FP32 one, not another model
    fp = OR.OvPredictor(src, tokenizer, 32, threads=1).predict_proba(sentences, batch_size=1)
    q8 = OR.OvPredictor(dst, tokenizer, 32, threads=1).predict_proba(sentences, batch_size=1)
    assert np.abs(fp - q8).max() < 0.1
    feed = _feeds(tokenizer, sentences[:1], length=32)[0]
    prof = OR.perf_counts({"fp32": src, "int8": dst}, feed, reps=3, threads=1)
    assert prof["fp32"]["int8_matmul_ms"] == 0 and prof["int8"]["int8_matmul_ms"] > 0
    for p in prof.values():
        assert p["kernel_ms"] > 0 and p["int8_matmul_ms"] + p["other_ms"] == pytest.approx(p["kernel_ms"])
        assert p["profiled_runs"] == 3 and p["op_ms"] and p["exec_ms"]


def test_the_registry_resolves_each_openvino_variant_to_the_file_it_runs(repo):
    cfg = load_config("smoke", root=repo)
    ov = {v.name: v for v in V.variants(cfg) if v.runtime == "openvino"}
    assert set(ov) == {"openvino-fp32", "openvino-int8-qat", "openvino-int8-static", "openvino-int8-nncf"}
    onnx = cfg.artifacts_dir / "onnx"
    assert ov["openvino-fp32"].path(cfg) == onnx / "fp32.onnx"
    assert ov["openvino-int8-qat"].path(cfg) == onnx / "int8-qat.onnx" and ov["openvino-int8-qat"].needs_qat
    first = cfg.quantize.calibration_methods[0]
    assert ov["openvino-int8-static"].path(cfg) == onnx / f"int8-static-{first}.onnx"
    assert ov["openvino-int8-nncf"].path(cfg) == cfg.artifacts_dir / "openvino" / "int8-nncf.xml"
    assert ov["openvino-int8-nncf"].built and not ov["openvino-int8-static"].built
    assert V.weights_of("openvino-int8-qat") == "qat" and V.weights_of("openvino-int8-nncf") == "fp32"
    assert all(v.batch_invariant for v in ov.values())
    assert V.is_file_int8("openvino-int8-nncf") and not V.is_onnx_int8("openvino-int8-nncf")
    # without QAT, the QAT file's OpenVINO variant leaves with it; without calibration, the static one
    noqat = dataclasses.replace(cfg, qat=dataclasses.replace(cfg.qat, enabled=False),
                                quantize=dataclasses.replace(cfg.quantize, calibration_methods=[]))
    assert "openvino-int8-qat" not in V.names(noqat) and "openvino-int8-static" not in V.names(noqat)


def test_an_openvino_variant_is_named_for_its_runtime():
    with pytest.raises(ValueError, match="OpenVINO variants are named openvino-"):
        V.Variant("ov-int8", "openvino", "openvino", recipe=V.OpenVINOFile("fp32"))
    with pytest.raises(ValueError, match="runtime must be one of pytorch, onnxruntime, openvino"):
        V.Variant("tvm-int8", "tvm", "openvino")


def test_nncf_is_refused_without_calibration_texts(tiny_onnx, tmp_path):
    with pytest.raises(ValueError, match="NNCF needs calibration texts"):
        OR.nncf_int8(tiny_onnx[0], tmp_path / "x.xml", [])
    assert not list(tmp_path.glob("x*"))
