"""MPNet (the base profile's architecture) through the study on a tiny random MPNet: QAT's Q/K/V share one
quantizer, every recipe builds and runs at batch 1, FP16 loads, and the float nodes that compute MPNet's
relative-position buckets are kept out of FP16 and of static quantization (``quantize.integer_islands``)."""
from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
from transformers import MPNetConfig, MPNetForSequenceClassification

from utils import pipeline as P
from utils import qat as QA
from utils.config import load_config
from utils.modeling import save_checkpoint, set_seed
from utils.quantize import integer_islands
from utils.variants import onnx_path


def tiny_mpnet(tokenizer):
    set_seed(0)
    return MPNetForSequenceClassification(MPNetConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id, num_labels=2)).eval()


def test_qat_gives_mpnets_q_k_v_one_quantizer(tokenizer):
    groups = QA.activation_groups(QA.prepare_qat(tiny_mpnet(tokenizer)))
    assert ["mpnet.encoder.layer.0.attention.attn.q", "mpnet.encoder.layer.0.attention.attn.k",
            "mpnet.encoder.layer.0.attention.attn.v"] in groups
    assert ["mpnet.encoder.layer.0.attention.attn.o"] in groups


def test_a_bert_graph_has_no_integer_island(tiny_onnx):
    assert integer_islands(onnx.load(str(tiny_onnx[0]))) == []


@pytest.mark.slow
def test_the_study_runs_on_mpnet(repo, tokenizer):
    ckpt = save_checkpoint(tiny_mpnet(tokenizer), tokenizer, repo / "tiny-mpnet")
    cfg = load_config("smoke", root=repo, overrides={"model": {"source": "local", "name_or_path": str(ckpt)},
                                                     "data": {"max_examples": 200}})
    for step in ("data", "train_fp32", "train_qat", "export"):
        getattr(P, f"run_{step}")(cfg, progress=False)
    islands = integer_islands(onnx.load(str(onnx_path(cfg, "fp32"))))
    ops = [n.split("/")[-1].rstrip("_0123456789") for n in islands]
    assert ops[0] == "Cast" and ops[-1] == "Cast" and "Log" in ops and len(islands) < 12   # the buckets only
    q = P.run_quantize(cfg, progress=False)
    v = q["variants"]
    # measured, not assumed: ONNX Runtime's BERT fusions do not recognise MPNet's attention (relative-position
    # bias added to the scores), so the optimized file keeps its MatMul/Softmax attention
    assert "Attention" not in v["fp32-opt"]["fusions"] and v["fp32-opt"]["fusions"]
    assert v["int8-qat"]["scales_match_qat"]["activation_scales_equal"] == v["int8-qat"]["scales_match_qat"]["layers"]
    assert v["fp16"]["session_ops"]["Log"] == 1          # the bucket Log kept in float32: the file loads
    static = onnx.load(str(onnx_path(cfg, "int8-static-allops")))
    quantized_inputs = {i for n in static.graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    assert not any(i in quantized_inputs for n in static.graph.node if n.name in islands for i in n.input)
    ev = P.run_evaluate(cfg, progress=False)
    assert all(0 <= r["accuracy"] <= 1 and len(r["predictions"]) == ev["n_test"] for r in ev["variants"].values())
    sess = ort.InferenceSession(str(onnx_path(cfg, "fp16")))
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]     # MPNet has no token types
