"""ONNX export (parity) and dynamic INT8 on real models run by real ONNX Runtime sessions."""
import numpy as np
import onnx
import pytest

from utils import quantize as Q
from utils.modeling import ModelError, load_checkpoint, packaged_model_dir
from utils.onnx_export import ParityError, export_with_parity, load_onnx
from utils.predict import OrtPredictor, TorchPredictor


def test_export_has_dynamic_axes_and_passes_parity(tiny_onnx, tiny_model_dir, tokenizer):
    path, par = tiny_onnx
    assert par["passed"] and par["max_abs_diff"] <= 1e-4 and par["argmax_identical"] == 1.0
    m = load_onnx(path)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    # a batch size and a length never seen at export time
    texts = ["short", "a considerably longer text than any of the two export samples, with commas, "
             "and many more words to stretch the sequence axis well beyond its traced length"] * 3
    model, _ = load_checkpoint(tiny_model_dir)
    a = TorchPredictor(model, tokenizer, 48, batch_size=6).predict_logits(texts)
    b = OrtPredictor(path, tokenizer, 48, batch_size=6).predict_logits(texts)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_failed_parity_leaves_no_file(tiny_model_dir, tmp_path, sentences):
    model, tok = load_checkpoint(tiny_model_dir)
    path = tmp_path / "strict.onnx"
    with pytest.raises(ParityError, match="fails parity on 12 texts"):
        export_with_parity(model, tok, path, sentences, max_length=32, atol=-1.0)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_dynamic_int8_is_really_integer(tiny_onnx, tmp_path, tokenizer, sentences):
    src, _ = tiny_onnx
    dst = Q.quantize_dynamic_int8(src, tmp_path / "int8.onnx", per_channel=True)
    before, after = Q.graph_stats(src), Q.graph_stats(dst)
    assert before["integer_weight_fraction"] == 0 and not before["integer_ops"]
    assert after["initializers_by_type"].get("int8", 0) > 0
    assert after["integer_ops"].get("MatMulInteger", 0) > 0
    assert after["integer_ops"].get("DynamicQuantizeLinear", 0) > 0
    assert after["integer_weight_fraction"] > 0.9          # word embeddings (Gather) included
    assert dst.stat().st_size < 0.35 * src.stat().st_size
    p32 = OrtPredictor(src, tokenizer, 32).predict_proba(sentences)
    p8 = OrtPredictor(dst, tokenizer, 32).predict_proba(sentences)
    assert np.abs(p32 - p8).max() < 0.05                    # quantized, not broken


def test_quantizing_a_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelError, match=f"corrupt or unreadable ONNX model {bad}"):
        Q.quantize_dynamic_int8(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.slow
def test_packaged_minilm_int8_is_at_most_26_percent_of_fp32(tmp_path, tokenizer, sentences):
    """The default model: the INT8 file is <= 26% of the FP32 file (a real export of 22.7M params)."""
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(
        str(packaged_model_dir()), num_labels=2, attn_implementation="eager", use_safetensors=True).eval()
    fp32 = tmp_path / "fp32.onnx"
    export_with_parity(model, tokenizer, fp32, sentences, max_length=32)
    int8 = Q.quantize_dynamic_int8(fp32, tmp_path / "int8.onnx")
    ratio = int8.stat().st_size / fp32.stat().st_size
    assert ratio <= 0.26, ratio
    assert onnx.load(str(int8)).graph.node
