"""Static QDQ, FP16 and the transformer optimizer on a real (tiny) BERT, run by ONNX Runtime."""
import numpy as np
import onnx
import pytest

from utils import quantize as Q
from utils.bench import interleaved_latency
from utils.modeling import ModelError, load_checkpoint
from utils.ort_inspect import session_ops
from utils.predict import (
    ORT_CPU_DISABLED_OPTIMIZERS,
    OrtPredictor,
    TorchPredictor,
    disabled_optimizers,
    onnx_metadata,
    ort_session,
)

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.fixture(scope="module")
def fp32(tiny_onnx):
    return tiny_onnx[0]


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_qdq_runs_integer_kernels_with_fixed_scales(fp32, tmp_path, tokenizer, sentences, method):
    # 11 texts, at most 5 a batch: no batch size but 1 divides them, and a short last batch broke the histogram
    # calibrators (numpy's inhomogeneous shape); every text is calibrated on, in batches of one shape
    reader = Q.TextCalibrationReader(tokenizer, sentences[:11], 32, INPUTS, batch_size=5)
    assert reader.batch_size == 1 and len(reader.batches) == 11
    assert Q.TextCalibrationReader(tokenizer, sentences, 32, INPUTS, batch_size=5).batch_size == 4
    dst = Q.quantize_static_int8(fp32, tmp_path / f"{method}.onnx", reader, method=method)
    ops = session_ops(dst)
    assert ops.get("MatMulIntegerToFloat", 0) > 0
    assert "DynamicQuantizeLinear" not in ops and "DynamicQuantizeMatMul" not in ops   # static scales
    st = Q.graph_stats(dst)
    assert st["initializers_by_type"].get("int8", 0) > 0 and st["integer_weight_fraction"] > 0.9
    p = OrtPredictor(dst, tokenizer, 32).predict_proba(sentences)
    ref = OrtPredictor(fp32, tokenizer, 32).predict_proba(sentences)
    assert np.abs(p - ref).max() < 0.05


def test_unknown_calibration_method(fp32, tmp_path, tokenizer, sentences):
    reader = Q.TextCalibrationReader(tokenizer, sentences, 32, INPUTS)
    with pytest.raises(ValueError, match="calibration method must be one of"):
        Q.quantize_static_int8(fp32, tmp_path / "x.onnx", reader, method="mse")
    assert not (tmp_path / "x.onnx").exists()


def test_residual_adds_read_fp32_not_the_quantized_tensor(fp32, tmp_path, tokenizer, sentences):
    reader = Q.TextCalibrationReader(tokenizer, sentences, 32, INPUTS)
    m = onnx.load(str(Q.quantize_static_int8(fp32, tmp_path / "s.onnx", reader)))
    producer = {o: n for n in m.graph.node for o in n.output}
    for node in m.graph.node:
        if node.op_type in ("Add", "LayerNormalization"):
            for i in node.input:
                src = producer.get(i)
                assert src is None or src.op_type != "DequantizeLinear" or \
                    producer.get(src.input[0]) is None or producer[src.input[0]].op_type != "QuantizeLinear" or \
                    producer[producer[src.input[0]].input[0]].op_type == "Gather", node.name


def test_fp16_runs_on_cpu_without_type_mismatch(fp32, tmp_path, tokenizer, sentences, tiny_model_dir):
    dst = Q.convert_fp16(fp32, tmp_path / "fp16.onnx")
    m = onnx.load(str(dst))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in m.graph.input)
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT     # FP32 I/O kept
    assert Q.graph_stats(dst)["initializers_by_type"].get("float16", 0) > 0
    assert dst.stat().st_size < 0.6 * fp32.stat().st_size
    a = OrtPredictor(dst, tokenizer, 32).predict_logits(sentences)
    model, _ = load_checkpoint(tiny_model_dir)
    b = TorchPredictor(model, tokenizer, 32).predict_logits(sentences)
    np.testing.assert_allclose(a, b, atol=2e-2)


def test_transformer_optimizer_reports_fusions(fp32, tmp_path, tokenizer, sentences):
    fused = Q.optimize_transformer(fp32, tmp_path / "opt.onnx", num_heads=4, hidden_size=32)
    assert fused.get("SkipLayerNormalization", 0) > 0
    a = OrtPredictor(tmp_path / "opt.onnx", tokenizer, 32).predict_logits(sentences)
    b = OrtPredictor(fp32, tokenizer, 32).predict_logits(sentences)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_optimizer_without_skip_layer_norm_keeps_it_off_on_the_cpu(fp32, tmp_path, tokenizer, sentences):
    """skip_layer_norm=False: no SkipLayerNormalization in the file, and none in what ORT's CPU provider
    runs either, because the file's metadata turns off ORT's load-time fusion, which otherwise fuses
    Add + LayerNormalization again; the metadata survives dynamic quantization."""
    fused = Q.optimize_transformer(fp32, tmp_path / "opt.onnx", num_heads=4, hidden_size=32,
                                   skip_layer_norm=False)
    assert "SkipLayerNormalization" not in fused and fused.get("Attention", 0) > 0
    assert disabled_optimizers(tmp_path / "opt.onnx") == ["SkipLayerNormFusion"]
    assert disabled_optimizers(tmp_path / "opt.onnx", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == []
    ops = session_ops(tmp_path / "opt.onnx")
    assert ops.get("LayerNormalization", 0) > 0 and "SkipLayerNormalization" not in ops
    bare = onnx.load(str(tmp_path / "opt.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert session_ops(tmp_path / "bare.onnx").get("SkipLayerNormalization", 0) > 0   # what the metadata stops
    a = OrtPredictor(tmp_path / "opt.onnx", tokenizer, 32).predict_logits(sentences)
    b = OrtPredictor(fp32, tokenizer, 32).predict_logits(sentences)
    np.testing.assert_allclose(a, b, atol=1e-4)
    q = Q.quantize_dynamic_int8(tmp_path / "opt.onnx", tmp_path / "opt-int8.onnx", per_channel=False)
    assert disabled_optimizers(q) == ["SkipLayerNormFusion"]
    ops = session_ops(q)
    assert ops.get("QAttention", 0) > 0 and "SkipLayerNormalization" not in ops


def test_threads_that_spin_within_a_call_can_stop_when_it_returns(fp32):
    entry = lambda s, k: s.get_session_options().get_session_config_entry(k)  # noqa: E731
    s = ort_session(fp32, threads=2, spinning=True, spin_stop=True)
    assert entry(s, "session.intra_op.allow_spinning") == "1" and entry(s, "session.force_spinning_stop") == "1"
    for s in (ort_session(fp32, threads=2, spinning=True), ort_session(fp32, threads=2, spin_stop=True)):
        with pytest.raises(RuntimeError, match="force_spinning_stop"):   # ORT's default: spin after the call too
            entry(s, "session.force_spinning_stop")


def test_onnx_metadata_is_read_without_parsing_the_graph(fp32, tmp_path):
    m = onnx.load(str(fp32))
    onnx.helper.set_model_props(m, {"a": "1", ORT_CPU_DISABLED_OPTIMIZERS: "X,Y"})
    onnx.save(m, str(tmp_path / "meta.onnx"))
    props = onnx.load(str(tmp_path / "meta.onnx")).metadata_props
    assert onnx_metadata(tmp_path / "meta.onnx") == {p.key: p.value for p in props}
    assert disabled_optimizers(tmp_path / "meta.onnx") == ["X", "Y"]
    assert disabled_optimizers(fp32) == []
    data = (tmp_path / "meta.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelError, match="corrupt or unreadable ONNX model .*cut.onnx"):
        onnx_metadata(tmp_path / "cut.onnx")
    with pytest.raises(ModelError, match="ONNX model not found: .*nope.onnx"):
        ort_session(tmp_path / "nope.onnx")


def test_module_nodes_names_the_missing_module(fp32):
    with pytest.raises(KeyError, match="no MatMul/Gemm node for module 'bert.encoder.layer.9.output.dense'"):
        Q.module_nodes(fp32, ["bert.encoder.layer.9.output.dense"])


def test_interleaved_latency_reports_every_variant(fp32, tokenizer, sentences):
    preds = {"a": OrtPredictor(fp32, tokenizer, 32), "b": OrtPredictor(fp32, tokenizer, 32)}
    res = interleaved_latency(preds, sentences, warmup=1)
    assert set(res) == {"a", "b"}
    for r in res.values():
        assert r["n"] == len(sentences) and 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]


def test_static_qdq_of_every_operator(fp32, tmp_path, tokenizer, sentences):
    """op_types=None quantizes every op ORT can (LayerNorm, Softmax, Add ... too): the variant whose
    accuracy justifies quantizing only the Linear inputs and the embedding tables."""
    reader = Q.TextCalibrationReader(tokenizer, sentences, 32, INPUTS)
    narrow = Q.graph_stats(Q.quantize_static_int8(fp32, tmp_path / "narrow.onnx", reader))
    wide = Q.graph_stats(Q.quantize_static_int8(fp32, tmp_path / "all.onnx", reader, op_types=None))
    assert wide["integer_ops"]["QuantizeLinear"] > 2 * narrow["integer_ops"]["QuantizeLinear"]
    assert OrtPredictor(tmp_path / "all.onnx", tokenizer, 32).predict_proba(sentences).shape == (len(sentences), 3)


def test_symmetric_int8_activations_have_zero_points_of_zero(fp32, tmp_path, tokenizer, sentences):
    # TensorRT's explicit quantization: int8 activations, every zero point 0; ORT's CPU provider runs it too
    reader = Q.TextCalibrationReader(tokenizer, sentences, 32, INPUTS, batch_size=4)
    dst = Q.quantize_static_int8(fp32, tmp_path / "sym.onnx", reader, activation_type="qint8",
                                 symmetric_activations=True)
    acts = [r["activation"] for r in Q.qdq_scales(dst).values() if "activation" in r]
    assert acts and all(z == 0 for a in acts for z in a["zero_point"])
    m = onnx.load(str(dst))
    q_types = {m.graph.initializer[[i.name for i in m.graph.initializer].index(n.input[2])].data_type
               for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2}
    assert q_types == {onnx.TensorProto.INT8}
    asym = Q.quantize_static_int8(fp32, tmp_path / "asym.onnx", reader)
    assert any(z != 0 for r in Q.qdq_scales(asym).values() if "activation" in r for z in r["activation"]["zero_point"])
    p = OrtPredictor(dst, tokenizer, 32).predict_proba(sentences)
    ref = OrtPredictor(fp32, tokenizer, 32).predict_proba(sentences)
    assert np.abs(p - ref).max() < 0.05
    with pytest.raises(ValueError, match="activation_type"):
        Q.quantize_static_int8(fp32, tmp_path / "x.onnx", reader, activation_type="int4")
    assert not (tmp_path / "x.onnx").exists()


def test_dynamic_int8_of_the_optimized_graph_fuses_attention(fp32, tmp_path, tokenizer, sentences):
    # ONNX Runtime's BERT recipe: the optimizer's fused graph, then dynamic quantization
    fused = Q.optimize_transformer(fp32, tmp_path / "opt.onnx", num_heads=4, hidden_size=32)
    q = Q.quantize_dynamic_int8(tmp_path / "opt.onnx", tmp_path / "opt-int8.onnx", per_channel=False)
    ops = session_ops(q)
    assert fused.get("Attention", 0) > 0 and ops.get("QAttention", 0) == fused["Attention"]
    assert ops.get("DynamicQuantizeMatMul", 0) + ops.get("MatMulIntegerToFloat", 0) > 0
    p = OrtPredictor(q, tokenizer, 32).predict_proba(sentences)
    ref = OrtPredictor(fp32, tokenizer, 32).predict_proba(sentences)
    assert np.abs(p - ref).max() < 0.05
