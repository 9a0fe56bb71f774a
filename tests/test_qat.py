"""QAT fake quantization that matches the deployed ONNX Runtime INT8 arithmetic."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from utils import qat as QA
from utils import quantize as Q
from utils.modeling import load_checkpoint
from utils.onnx_export import export_with_parity
from utils.predict import OrtPredictor, TorchPredictor


@pytest.fixture()
def qat_model(tiny_model_dir, sentences):
    model, tok = load_checkpoint(tiny_model_dir)
    names_before = set(model.state_dict())
    QA.prepare_qat(model)
    QA.calibrate(model, tok, sentences, max_length=32)
    QA.set_observers(model, False)
    return model, tok, names_before


def test_prepare_keeps_parameter_names_and_shares_qkv_quantizer(qat_model):
    model, _, before = qat_model
    assert before <= set(model.state_dict())                       # parameter names unchanged
    lins = QA.quantized_linears(model)
    assert "classifier" not in lins and "bert.pooler.dense" in lins
    assert len(lins) == 2 * 6 + 1                                   # 2 layers x (q,k,v,o,ffn1,ffn2) + pooler
    attn = model.bert.encoder.layer[0].attention.self
    assert attn.query.act_fq is attn.key.act_fq is attn.value.act_fq
    assert model.bert.encoder.layer[0].attention.output.dense.act_fq is not attn.query.act_fq
    assert set(QA.quantized_embeddings(model)) == {"bert.embeddings.word_embeddings",
                                                   "bert.embeddings.position_embeddings"}
    assert isinstance(model.classifier, nn.Linear) and not isinstance(model.classifier, QA.QATLinear)


@pytest.mark.parametrize("integer", [False, True])
def test_eval_cache_of_quantized_weights_is_exact_and_follows_weights_and_switches(qat_model, sentences, integer):
    """In eval mode without gradients each layer's quantized weights are computed once (``eval_cached``):
    the logits equal an uncached forward bit for bit, and a changed weight or a switched-off fake
    quantizer is seen at once."""
    model, tok, _ = qat_model
    QA.set_integer_eval(model, integer)
    model.eval()
    enc = tok(sentences, padding=True, return_tensors="pt")

    def cached():
        with torch.inference_mode():
            return model(**enc).logits.numpy()

    def uncached():          # gradients recorded: no cache is read
        with torch.enable_grad():
            return model(**enc).logits.detach().numpy()

    first = cached()
    lin = model.bert.encoder.layer[0].intermediate.dense
    assert "_eval_cache" in lin.__dict__
    np.testing.assert_array_equal(cached(), first)
    np.testing.assert_array_equal(uncached(), first)
    with torch.no_grad():
        lin.weight.mul_(3.0)
    changed = cached()
    assert np.abs(changed - first).max() > 1e-4
    np.testing.assert_array_equal(changed, uncached())
    QA.set_fake_quant(model, False)
    np.testing.assert_array_equal(cached(), uncached())
    assert np.abs(cached() - changed).max() > 0


def test_weight_scales_are_onnxruntime_symmetric_rule(qat_model):
    model, _, _ = qat_model
    lin = model.bert.encoder.layer[1].intermediate.dense
    scales, zps = QA.weight_qparams(model)["bert.encoder.layer.1.intermediate.dense"]
    expected = lin.weight.detach().abs().amax(dim=1) / 127.0
    np.testing.assert_allclose(scales, expected.numpy(), rtol=1e-6)
    assert set(zps) == {0}
    wq = lin.w_fq(lin.weight.detach())
    steps = (wq / torch.tensor(scales)[:, None]).numpy()
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)     # on the int8 grid
    assert np.abs(np.round(steps)).max() <= 127


def test_activation_fake_quant_is_uint8_affine(qat_model):
    model, _, _ = qat_model
    fq = model.bert.encoder.layer[0].attention.output.dense.act_fq
    s, zp = float(fq.scale), int(fq.zero_point)
    x = torch.linspace(-20, 20, 1001)
    q = torch.clamp(torch.round(x / s) + zp, 0, 255)
    np.testing.assert_allclose(fq(x).numpy(), ((q - zp) * s).numpy(), atol=1e-6)


def test_strip_gives_plain_fp32_and_load_qat_rebuilds_the_fake_quant_model(qat_model, sentences):
    model, tok, _ = qat_model
    scales = QA.activation_scales(model)
    plain = QA.strip_qat(copy.deepcopy(model))
    assert not any(isinstance(m, (QA.QATLinear, QA.QATEmbedding)) for m in plain.modules())
    QA.set_fake_quant(model, False)
    np.testing.assert_allclose(TorchPredictor(model, tok, 32).predict_logits(sentences),
                               TorchPredictor(plain, tok, 32).predict_logits(sentences), atol=1e-6)
    QA.set_fake_quant(model, True)
    rebuilt = QA.load_qat(copy.deepcopy(plain), scales)
    np.testing.assert_array_equal(TorchPredictor(model, tok, 32).predict_logits(sentences),
                                  TorchPredictor(rebuilt, tok, 32).predict_logits(sentences))


def test_deployed_int8_keeps_the_qat_scales_and_computes_what_qat_simulated(qat_model, tmp_path, sentences):
    """The whole int8-qat route on a real (tiny) model: export the QAT weights, quantize with the
    QAT activation scales as overrides, check the stored scales and the outputs."""
    model, tok, _ = qat_model
    acts, weights = QA.activation_scales(model), QA.weight_qparams(model)
    plain = QA.strip_qat(copy.deepcopy(model))
    fp32 = tmp_path / "qat-fp32.onnx"
    export_with_parity(plain, tok, fp32, sentences, max_length=32)
    lin = Q.module_nodes(fp32, acts)
    emb = Q.module_nodes(fp32, QA.quantized_embeddings(plain), op_types=("Gather",))
    overrides = {node.input[0]: acts[n] for n, node in lin.items()}
    overrides.update({node.input[0]: (weights[n][0][0], weights[n][1][0]) for n, node in emb.items()})
    reader = Q.TextCalibrationReader(tok, sentences[:4], 32, ["input_ids", "attention_mask", "token_type_ids"])
    int8 = Q.quantize_static_int8(fp32, tmp_path / "int8-qat.onnx", reader, overrides=overrides,
                                  nodes_to_quantize=[n.name for n in lin.values()] + [n.name for n in emb.values()])
    stored = Q.qdq_scales(int8)
    for name, node in lin.items():
        a = stored[node.name]["activation"]
        assert np.float32(a["scale"][0]) == np.float32(acts[name][0]) and a["zero_point"][0] == acts[name][1]
        np.testing.assert_allclose(stored[node.name]["weight"]["scale"], weights[name][0], rtol=1e-6)
        assert stored[node.name]["weight"]["dtype"] == "int8"
    for name, node in emb.items():
        w = stored[node.name]["weight"]
        assert w["dtype"] == "uint8" and np.float32(w["scale"][0]) == np.float32(weights[name][0][0])
    assert int8.stat().st_size < 0.35 * fp32.stat().st_size
    a = TorchPredictor(model, tok, 32).predict_logits(sentences)
    b = OrtPredictor(int8, tok, 32).predict_logits(sentences)
    fp = TorchPredictor(plain, tok, 32).predict_logits(sentences)
    # the deployed model is closer to the fake-quant model than the fake-quant model is to FP32
    assert np.abs(a - b).max() < 0.25 * np.abs(a - fp).max() + 1e-4
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))


def test_evaluation_never_moves_activation_scales(tiny_model_dir, sentences):
    """Observers run in training mode (and in calibrate) only: validating between epochs leaves
    the scales alone, training moves them."""
    model, tok = load_checkpoint(tiny_model_dir)
    QA.prepare_qat(model)
    QA.calibrate(model, tok, sentences[:6], max_length=32)
    before = QA.activation_scales(model)
    model.eval()
    TorchPredictor(model, tok, 32).predict(sentences[6:])
    assert QA.activation_scales(model) == before
    model.train()
    enc = tok(sentences[6:], padding=True, return_tensors="pt")
    with torch.no_grad():
        model(**enc)
    assert QA.activation_scales(model) != before


def test_integer_evaluation_is_the_integer_kernel(qat_model, sentences):
    model, tok, _ = qat_model
    lin = next(m for m in model.modules() if isinstance(m, QA.QATLinear))
    x = torch.randn(3, 5, lin.in_features) * 2
    got = QA.integer_linear(x, lin.act_fq, lin.w_fq, lin.weight, lin.bias)
    # by hand, in integers: uint8 activations, int8 weights, an int64 sum, then the float32 scales
    s_x, zp, s_w = float(lin.act_fq.scale), int(lin.act_fq.zero_point), lin.w_fq.scale.float()
    qx = np.clip(np.rint(x.numpy() / np.float32(s_x)) + zp, 0, 255).astype(np.int64) - zp
    qw = np.clip(np.rint(lin.weight.detach().numpy() / s_w.numpy()[:, None]), -127, 127).astype(np.int64)
    want = (qx @ qw.T).astype(np.float32) * (np.float32(s_x) * s_w.numpy()) + lin.bias.detach().numpy()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
    # the same function as fake quantization, up to float32 summation error
    fq = lin(x)
    np.testing.assert_allclose(got.numpy(), fq.detach().numpy(), atol=1e-4)
    QA.set_integer_eval(model, True)
    try:
        a = TorchPredictor(model, tok, 32).predict_logits(sentences)
    finally:
        QA.set_integer_eval(model, False)
    b = TorchPredictor(model, tok, 32).predict_logits(sentences)
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 1e-3
    model.train()
    assert torch.equal(lin(x), fq)            # training always uses the differentiable fake quantization
    model.eval()
