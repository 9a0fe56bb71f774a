import numpy as np
import pytest

from utils.modeling import ModelError, load_checkpoint
from utils.predict import OrtPredictor, TorchPredictor, ort_session, softmax


def test_batching_and_length_sorting_keep_the_callers_order(tiny_model_dir, sentences):
    model, tok = load_checkpoint(tiny_model_dir)
    one = TorchPredictor(model, tok, 32, batch_size=1).predict_logits(sentences)
    many = TorchPredictor(model, tok, 32, batch_size=5).predict_logits(sentences)
    np.testing.assert_allclose(one, many, atol=1e-5)
    # reversing the input reverses the output
    rev = TorchPredictor(model, tok, 32, batch_size=5).predict_logits(sentences[::-1])
    np.testing.assert_allclose(rev[::-1], many, atol=1e-5)


def test_probabilities_are_a_distribution(tiny_model_dir, sentences):
    model, tok = load_checkpoint(tiny_model_dir)
    p = TorchPredictor(model, tok, 32).predict_proba(sentences)
    assert p.shape == (len(sentences), 3)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(softmax(np.array([[0.0, 0.0]])), [[0.5, 0.5]])


def test_no_texts_is_an_error(tiny_model_dir):
    model, tok = load_checkpoint(tiny_model_dir)
    with pytest.raises(ValueError, match="no texts"):
        TorchPredictor(model, tok, 32).predict([])


def test_corrupt_and_missing_onnx_are_named(tmp_path, tokenizer):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match=f"corrupt or unreadable ONNX model {bad}"):
        ort_session(bad)
    with pytest.raises(ModelError, match="ONNX model not found"):
        OrtPredictor(tmp_path / "absent.onnx", tokenizer, 32)
