"""The PyTorch INT8 path that stays on the GPU (int8 x int8 -> int32 GEMMs), checked on the CPU,
where torch._int_mm has a kernel too."""
import copy

import pytest
import torch

from utils.modeling import load_checkpoint
from utils.torch_int8 import MIN_ROWS, W8A8Linear, quantize_w8a8


def test_w8a8_linear_is_the_integer_product_of_the_quantized_operands():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = W8A8Linear(lin)
    assert q.weight_t.dtype == torch.int8 and q.weight_t.shape == (64, 32)
    assert q.weight_t.abs().amax(dim=0).eq(127).all()          # each output channel uses the full range
    x = torch.randn(3, 40, 64)
    y = q(x)
    assert y.shape == (3, 40, 32) and y.dtype == x.dtype
    # the same thing by hand, in exact integer arithmetic
    x2 = x.reshape(-1, 64)
    sx = x2.abs().amax(1, keepdim=True) / 127
    qx = torch.round(x2 / sx).clamp(-127, 127).to(torch.int64)
    ref = (qx @ q.weight_t.to(torch.int64)).double() * sx.double() * q.weight_scale.double() + lin.bias.double()
    torch.testing.assert_close(y.reshape(-1, 32).double(), ref, rtol=1e-5, atol=1e-5)
    # and close to the float layer: 8 bits of each operand
    err = (y - lin(x)).abs().max() / lin(x).abs().max()
    assert 0 < err < 0.03


def test_fewer_rows_than_the_gemm_takes_are_padded_not_wrong():
    torch.manual_seed(1)
    lin = torch.nn.Linear(16, 8)
    q = W8A8Linear(lin)
    x = torch.randn(MIN_ROWS + 5, 16)
    torch.testing.assert_close(q(x[:1]), q(x)[:1])             # one row (a pooler at batch 1) == its row in a batch
    assert q(x[:1]).shape == (1, 8)


def test_quantize_w8a8_keeps_predictions_of_a_real_model(tiny_model_dir, tokenizer, sentences):
    model, _ = load_checkpoint(tiny_model_dir, attn="sdpa")
    q = copy.deepcopy(model)
    info = quantize_w8a8(q)
    assert info["kept"] == ["classifier"] and len(info["quantized"]) == 13
    assert sum(isinstance(m, W8A8Linear) for m in q.modules()) == 13
    enc = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.inference_mode():
        a, b = model(**enc).logits, q(**enc).logits
    assert not torch.equal(a, b) and (a - b).abs().max() < 0.05
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.9


def test_a_model_without_usable_linears_is_refused():
    with pytest.raises(ValueError, match="divisible by 8"):
        quantize_w8a8(torch.nn.Sequential(torch.nn.Linear(3, 5)))
