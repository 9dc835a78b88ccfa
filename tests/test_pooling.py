"""Average, max and attentive pooling over time against NumPy."""

import keras
import numpy as np
import pytest

from lean.errors import LeanError
from lean.models.pooling import temporal_pooling

FRAMES = (3, 7, 12)  # [B, T, D]


def _model(method, units=5):
    frames = keras.Input(FRAMES[1:])
    return keras.Model(frames, temporal_pooling(frames, method, units, name="pool"))


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).standard_normal(FRAMES).astype(np.float32)


def test_average_and_max(frames):
    np.testing.assert_allclose(_model("average")(frames).numpy(), frames.mean(axis=1), atol=1e-6)
    np.testing.assert_array_equal(_model("max")(frames).numpy(), frames.max(axis=1))


def test_attentive_pooling_matches_its_equation_and_weights_sum_to_one(frames):
    rng = np.random.default_rng(1)
    model = _model("attentive")
    for weight in model.weights:
        weight.assign(rng.standard_normal(weight.shape).astype(np.float32))
    w, b = model.get_layer("pool_projection").get_weights()
    (v,) = model.get_layer("pool_score").get_weights()
    # a_t = softmax_t(v^T tanh(W h_t + b)); h_utt = sum_t a_t h_t.
    scores = (np.tanh(frames @ w + b) @ v)[..., 0]
    expected_weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected_weights /= expected_weights.sum(axis=1, keepdims=True)
    weights = keras.Model(model.input, model.get_layer("pool_softmax").output)(frames).numpy()
    assert weights.shape == FRAMES[:2]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(frames).numpy(),
                               np.einsum("bt,btd->bd", expected_weights, frames),
                               rtol=1e-5, atol=1e-5)
    # W [D, d] + b [d] + v [d].
    assert model.count_params() == FRAMES[2] * 5 + 5 + 5


def test_unknown_method_is_one_line_error():
    with pytest.raises(LeanError, match="unknown temporal pooling 'median'"):
        _model("median")
