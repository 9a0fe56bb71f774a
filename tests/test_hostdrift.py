"""Why INT8 predictions change with the CPU (src/utils/hostdrift.py): the 16-bit pair sums of an AVX2 host,
counted exactly from a real dynamic INT8 file's own integer operands, and the last-bit perturbations, on the
tiny test model with ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from utils import hostdrift as H
from utils.predict import OrtPredictor, ort_session
from utils.quantize import quantize_dynamic_int8


def test_pair_sums_beyond_int16_are_counted_exactly():
    a = np.array([[255, 255, 128, 0]], dtype=np.uint8)          # one text, K = 4
    w = np.array([[127, -1], [127, 2], [127, 100], [-128, 3]], dtype=np.int8)
    # pairs: (255*127 + 255*127 = 64770: beyond), (-255 + 510), (128*127 + 0), (12800 + 0)
    sat, pairs, cells_sat, cells, mx = H.saturated_pairs(a, w)
    assert (sat, pairs, cells_sat, cells, mx) == (1, 4, 1, 2, 64770)
    # the lowest pair: 255 * -128 twice = -65280
    assert H.saturated_pairs(np.array([[255, 255]], np.uint8), np.array([[-128], [-128]], np.int8))[0] == 1
    # an odd K is padded with zero: 255*127 alone fits
    assert H.saturated_pairs(np.array([[255]], np.uint8), np.array([[127]], np.int8))[:2] == (0, 1)


def test_the_pruned_count_equals_every_pair_summed():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(2, 7, 33), dtype=np.uint8)          # [batch, tokens, K], K odd
    w = rng.integers(-128, 128, size=(33, 17), dtype=np.int8)
    ap = np.pad(a.reshape(-1, 33).astype(np.int32), ((0, 0), (0, 1)))
    wp = np.pad(w.astype(np.int32), ((0, 1), (0, 0)))
    s = ap[:, 0::2, None] * wp[None, 0::2] + ap[:, 1::2, None] * wp[None, 1::2]
    bad = (s > 32767) | (s < -32768)
    sat, pairs, cells_sat, cells, mx = H.saturated_pairs(a, w)
    assert bad.sum() > 0
    assert (sat, pairs, cells_sat, cells) == (bad.sum(), bad.size, bad.any(axis=1).sum(), 14 * 17)
    assert mx == np.abs(s).max()


@pytest.fixture(scope="module")
def dyn(tiny_onnx, tmp_path_factory):
    path, _ = tiny_onnx
    out = tmp_path_factory.mktemp("dyn") / "int8-dynamic.onnx"
    return quantize_dynamic_int8(path, out, per_channel=False)


def test_saturation_reads_the_operands_the_file_multiplies(dyn, tokenizer, sentences):
    """The u8 activations read back as outputs, times the s8 weights, reproduce ORT's own MatMulInteger
    results exactly (so the pairs counted are the ones a kernel adds), and the counts cover every product."""
    model = onnx.load(str(dyn))
    mats = H.matmul_integer_weights(model)
    assert mats and all(w.dtype == np.int8 for _, _, w in mats)
    node = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
    zp_a = node.input[2]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(x, t, None) for x, t in (
        (node.input[0], onnx.TensorProto.UINT8), (node.output[0], onnx.TensorProto.INT32),
        (zp_a, onnx.TensorProto.UINT8)))
    probe = dyn.parent / "probe.onnx"
    onnx.save(model, str(probe))
    sess = ort_session(probe, quiet=True)
    enc = OrtPredictor(dyn, tokenizer, 32, batch_size=1).encode([sentences[0]])
    a, y, za = sess.run([node.input[0], node.output[0], zp_a], {i.name: enc[i.name] for i in sess.get_inputs()})
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w = inits[node.input[1]].astype(np.int32)
    zw = inits[node.input[3]].astype(np.int32) if len(node.input) > 3 and node.input[3] else 0
    np.testing.assert_array_equal((a.astype(np.int32) - int(za)) @ (w - zw), y)

    feeds = [OrtPredictor(dyn, tokenizer, 32, batch_size=1).encode([s]) for s in sentences[:4]]
    r = H.saturation(dyn, feeds)
    assert r["texts"] == 4 and r["matmuls"] == len(mats)
    # every product's pairs are (rows of its input) x K/2 x N: a token's row in the encoder's first product,
    # one row per text in the pooler's
    lengths = [f["input_ids"].shape[1] for f in feeds]
    first = r["per_matmul"][node.name or node.output[0]]
    assert first["pairs"] == sum(lengths) * ((w.shape[0] + 1) // 2) * w.shape[1]
    for name, _, wm in mats:
        rows = r["per_matmul"][name]["pairs"] / (((wm.shape[0] + 1) // 2) * wm.shape[1])
        assert rows in (len(feeds), sum(lengths)), name
    assert r["pairs"] == sum(v["pairs"] for v in r["per_matmul"].values())
    assert 0 <= r["saturated_pairs"] <= r["pairs"] and 0 <= r["pair_fraction"] <= 1
    assert r["max_abs_pair"] <= 2 * 255 * 128


def test_saturation_refuses_a_file_without_integer_products(tiny_onnx, tokenizer, sentences):
    path, _ = tiny_onnx
    feeds = [OrtPredictor(path, tokenizer, 32, batch_size=1).encode([sentences[0]])]
    with pytest.raises(ValueError, match="no MatMulInteger"):
        H.saturation(path, feeds)


def test_one_ulp_moves_every_weight_by_exactly_one_ulp(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    rec = H.perturb_ulp(path, tmp_path / "ulp.onnx", seed=3)
    a = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    b = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "ulp.onnx")).graph.initializer}
    n = 0
    for k, x in a.items():
        if x.dtype != np.float32 or x.size < 2:
            np.testing.assert_array_equal(x, b[k])
            continue
        up, down = np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))
        assert np.all((b[k] == up) | (b[k] == down)) and not np.any(b[k] == x)
        n += x.size
    assert rec["weights_moved"] == n > 0


def test_float_sensitivity_compares_fp32_and_int8_under_the_same_perturbations(tiny_onnx, dyn, tokenizer, sentences):
    path, _ = tiny_onnx
    calls = []

    def requantize(name, src, dst):
        calls.append(name)
        quantize_dynamic_int8(src, dst, per_channel=False)

    r = H.float_sensitivity(path, {"onnx-int8-dynamic-pt": dyn}, tokenizer, 32, sentences, requantize, seed=1)
    assert calls == ["onnx-int8-dynamic-pt"] * 2
    assert r["texts"] == len(sentences)
    for kind in ("weights_ulp", "optimization"):
        assert set(r[kind]) == {"onnx-fp32", "onnx-int8-dynamic-pt"}
        for rec in r[kind].values():
            assert 0 <= rec["predictions_moved"] <= len(sentences) and rec["max_abs_logit_diff"] >= 0
    # one ulp on every weight leaves FP32's logits within float noise; quantizing again from the unperturbed
    # file reproduces the study's file byte for byte
    assert r["weights_ulp"]["onnx-fp32"]["max_abs_logit_diff"] < 1e-4
    assert r["weights_ulp"]["onnx-int8-dynamic-pt"]["same_file_as_study"] is True
