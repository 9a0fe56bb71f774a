"""Integrated Gradients over LIME's words (src/utils/gradients.py), with Captum on the real tiny BERT: the
word mapping, completeness, the integer-evaluated QAT model's straight-through gradient, and the value of
its rounding left exactly as the integer kernel's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils import gradients as G
from utils import qat as QA
from utils.explain import indexed
from utils.modeling import load_checkpoint


def test_every_character_of_a_word_belongs_to_it_and_repeated_words_are_one_feature():
    text = "Good film, good cast; film-ish."
    owner = G.word_owner(text)
    words = list(indexed(text).inverse_vocab)
    assert words == ["Good", "film", "good", "cast", "ish"]
    spans = {"Good": [0], "film": [5, 22], "good": [11], "cast": [16], "ish": [27]}
    for w, word in enumerate(words):
        for start in spans[word]:
            assert text[start:start + len(word)] == word and (owner[start:start + len(word)] == w).all()
    assert (owner[[4, 9, 10, 20, 21, 30]] == -1).all()          # spaces and punctuation belong to no word


def test_attributions_are_complete_and_every_token_lands_on_its_word(tiny_model_dir):
    model, tok = load_checkpoint(tiny_model_dir, attn="eager")
    text = "a gripping, beautifully acted film and a dull plot"
    r = G.integrated_gradients(model, tok, text, label=1, max_length=32, steps=64)
    assert len(r["weights"]) == len(indexed(text).inverse_vocab)
    # completeness: the attributions sum to f(x) - f(baseline), within Captum's reported gap
    enc = tok(text, return_special_tokens_mask=True)
    special = np.asarray(enc["special_tokens_mask"], bool)
    assert r["completeness_gap"] < 1e-3
    # every token's attribution is on a word, on punctuation (the comma) or on a special token
    np.testing.assert_allclose(r["weights"].sum() + r["outside_words"], r["tokens"][~special].sum(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["special_tokens"], r["tokens"][special].sum(), rtol=0, atol=1e-12)
    comma = tok.convert_ids_to_tokens(enc["input_ids"]).index(",")
    assert r["outside_words"] == pytest.approx(r["tokens"][comma], abs=1e-12)
    # 'a' occurs twice: one feature, the sum of both tokens
    a_tokens = [i for i, t in enumerate(tok.convert_ids_to_tokens(enc["input_ids"])) if t == "a"]
    assert len(a_tokens) == 2
    np.testing.assert_allclose(r["weights"][list(indexed(text).inverse_vocab).index("a")],
                               r["tokens"][a_tokens].sum(), atol=1e-9)
    assert 0 < r["proba"] < 1


@pytest.fixture()
def qat_integer(tiny_model_dir, sentences):
    model, tok = load_checkpoint(tiny_model_dir, attn="eager")
    QA.prepare_qat(model)
    QA.calibrate(model, tok, sentences, max_length=32)
    QA.set_observers(model, False)
    return QA.set_integer_eval(model.eval()), tok


def test_the_integer_model_has_a_straight_through_gradient_and_unchanged_values(qat_integer, sentences):
    model, tok = qat_integer
    r = G.integrated_gradients(model, tok, sentences[0], label=0, max_length=32, steps=32)
    assert np.abs(r["weights"]).sum() > 0          # torch.round alone would give zero gradients everywhere
    # the rounding's value is the integer kernel's with or without a gradient asked for
    lin = next(m for m in model.modules() if isinstance(m, QA.QATLinear))
    x = torch.randn(3, lin.in_features) * 3
    with torch.no_grad():
        plain = QA.integer_linear(x, lin.act_fq, lin.w_fq, lin.weight, lin.bias)
    xg = x.clone().requires_grad_(True)
    ste = QA.integer_linear(xg, lin.act_fq, lin.w_fq, lin.weight, lin.bias)
    assert torch.equal(plain, ste.detach())
    ste.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_a_text_without_words_is_refused(tiny_model_dir):
    model, tok = load_checkpoint(tiny_model_dir, attn="eager")
    with pytest.raises(ValueError, match="no words"):
        G.integrated_gradients(model, tok, "?!", label=0, max_length=32)
