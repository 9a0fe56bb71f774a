"""Batch invariance, measured on a real (tiny) BERT run by ONNX Runtime: a dynamic INT8 file's answer
for a text moves with the text it shares a batch with, a static INT8 file's does not, and the moving
activation scale is what differs."""
import numpy as np
import pytest
from transformers import BertConfig, BertForSequenceClassification

from utils import quantize as Q
from utils import variants as V
from utils.modeling import load_checkpoint, save_checkpoint, set_seed
from utils.onnx_export import export_with_parity
from utils.ort_inspect import activation_scales, dynamic_scale_outputs, session_ops
from utils.predict import OrtPredictor

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer, sentences):
    """A tiny BERT with weights wide enough (initializer_range 0.2) that quantization error can flip a
    near-tied prediction, exported, then quantized dynamically and statically."""
    tmp = tmp_path_factory.mktemp("batch")
    set_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128, num_labels=3, initializer_range=0.2)
    model, tok = load_checkpoint(save_checkpoint(BertForSequenceClassification(cfg).eval(), tokenizer, tmp / "ckpt"))
    fp32 = tmp / "fp32.onnx"
    export_with_parity(model, tok, fp32, sentences, max_length=32, atol=1e-3)
    reader = Q.TextCalibrationReader(tok, sentences, 32, INPUTS, batch_size=4)
    dyn = Q.quantize_dynamic_int8(fp32, tmp / "dyn.onnx", per_channel=True)
    return {"fp32": fp32, "dynamic": dyn, "static": Q.quantize_static_int8(fp32, tmp / "static.onnx", reader),
            "token": Q.per_token_activations(dyn, tmp / "token.onnx")}, tok


def pool(sentences, n=120, seed=0):
    words = " ".join(sentences).replace(",", "").split()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 8)))) for _ in range(n)]


def in_pairs(pr, targets, neighbour):
    """Each target's logits in a batch of two: itself and ``neighbour`` (padded to the longer)."""
    return np.stack([pr._forward(pr.encode([t, neighbour]))[0] for t in targets])


def test_dynamic_int8_prediction_moves_with_a_batch_neighbour_static_does_not(files, tokenizer, sentences):
    paths, tok = files
    targets = pool(sentences)
    neighbours = sentences + ["!" * 30, "zzz qqq xxx " * 5]
    dyn, st = (OrtPredictor(paths[k], tok, 32, batch_size=2) for k in ("dynamic", "static"))
    d_alone, s_alone = dyn.predict_logits(targets, batch_size=1), st.predict_logits(targets, batch_size=1)
    moved = []
    for nb in neighbours:
        d = in_pairs(dyn, targets, nb)
        moved += [(t, nb) for t, a, b in zip(targets, d_alone.argmax(-1), d.argmax(-1)) if a != b]
        # static scales: the same text gets the same logits whatever shares its batch, to the bit
        np.testing.assert_array_equal(in_pairs(st, targets, nb), s_alone)
    assert moved, "no crafted neighbour moved a dynamic INT8 prediction"
    # the mechanism: the moved text's activation scales alone vs beside the neighbour that moved it
    t, nb = moved[0]
    assert len(dynamic_scale_outputs(paths["dynamic"])) > 0 and not dynamic_scale_outputs(paths["static"])
    alone, beside = activation_scales(paths["dynamic"], [dyn.encode([t]), dyn.encode([t, nb])])
    assert np.any(np.abs(beside / alone - 1) > 1e-3)
    # and the file a text alone runs through gives the text its own scales: the same feed, the same scales
    again = activation_scales(paths["dynamic"], [dyn.encode([t])])[0]
    np.testing.assert_array_equal(again, alone)


def test_per_token_dynamic_int8_is_batch_invariant_and_runs_integer_kernels(files, sentences):
    paths, tok = files
    targets = pool(sentences, n=60)
    tokn, fp, dyn = (OrtPredictor(paths[k], tok, 32, batch_size=2) for k in ("token", "fp32", "dynamic"))
    alone = tokn.predict_logits(targets, batch_size=1)
    for nb in sentences + ["!" * 30, "zzz qqq xxx " * 5]:
        np.testing.assert_array_equal(in_pairs(tokn, targets, nb), alone)   # no neighbour enters a token's scale
    np.testing.assert_array_equal(tokn.predict_logits(targets, batch_size=16, order="random"), alone)
    # still INT8: integer matrix products, no DynamicQuantizeLinear left, int8 weights as in the dynamic file
    ops = session_ops(paths["token"])
    assert ops.get("MatMulInteger", 0) == session_ops(paths["dynamic"]).get("MatMulInteger", 0) + \
        session_ops(paths["dynamic"]).get("DynamicQuantizeMatMul", 0) + \
        session_ops(paths["dynamic"]).get("MatMulIntegerToFloat", 0) > 0
    assert not dynamic_scale_outputs(paths["token"])
    int8 = lambda k: Q.graph_stats(paths[k])["initializer_bytes_by_type"]["int8"]  # noqa: E731
    assert int8("token") == int8("dynamic") > 0
    # the arithmetic is right (a wrong zero-point correction is off by whole logits): as close to FP32 as
    # one scale per tensor is, within a factor of 2
    ref = fp.predict_logits(targets, batch_size=1)
    d_token, d_tensor = np.abs(alone - ref).mean(), np.abs(dyn.predict_logits(targets, batch_size=1) - ref).mean()
    assert d_token <= 2 * d_tensor, (d_token, d_tensor)
    with pytest.raises(ValueError, match="not a dynamic INT8 file"):
        Q.per_token_activations(paths["static"], paths["static"].with_name("x.onnx"))
    assert not paths["static"].with_name("x.onnx").exists()


def test_activation_scales_refuses_a_file_without_dynamic_quantization(files):
    paths, tok = files
    with pytest.raises(ValueError, match="not a dynamic INT8 file"):
        activation_scales(paths["static"], [])


def test_batches_cover_every_text_once_in_each_order(files, sentences):
    paths, tok = files
    pr = OrtPredictor(paths["fp32"], tok, 32, batch_size=5)
    for order in ("length", "given", "random"):
        b = pr.batch_indices(sentences, order=order, seed=3)
        assert sorted(np.concatenate(b).tolist()) == list(range(len(sentences)))
        assert max(len(x) for x in b) == 5
    assert [len(x) for x in pr.batch_indices(sentences, batch_size=1)] == [1] * len(sentences)
    assert not np.array_equal(np.concatenate(pr.batch_indices(sentences, order="random", seed=3)),
                              np.concatenate(pr.batch_indices(sentences, order="random", seed=4)))
    with pytest.raises(ValueError, match="order must be"):
        pr.batch_indices(sentences, order="shuffled")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        pr.predict_logits(sentences, batch_size=-1)
    # the caller's order comes back whatever the batching
    ref = pr.predict_logits(sentences, batch_size=1)
    np.testing.assert_allclose(pr.predict_logits(sentences, order="random", seed=1), ref, atol=1e-5)


def test_registry_declares_dynamic_quantization_batch_dependent():
    dependent = {v.name for v in V.REGISTRY.values() if v.batch_invariant is False}
    assert all(v.batch_invariant is not None for v in V.REGISTRY.values())    # every built-in recipe declares
    assert {"onnx-int8-dynamic", "onnx-int8-dynamic-pt", "onnx-int8-dynamic-opt", "onnx-int8-qat-seed",
            "pytorch-int8-dynamic"} == dependent
    assert V.is_batch_invariant("onnx-int8-qat") and not V.is_batch_invariant("onnx-int8-dynamic")
    assert V.is_batch_invariant("onnx-int8-dynamic-token") and V.is_batch_invariant("onnx-qat-fp32")
    assert not V.is_batch_invariant("no-such-variant")
