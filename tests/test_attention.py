"""Cross attention layers against NumPy versions of the paper's equations."""

import keras
import numpy as np
import pytest

from lean.models.attention import AffinityAttention, BahdanauAttention, MeanPooling


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def query_values():
    rng = np.random.default_rng(3)
    return (
        rng.standard_normal((3, 6)).astype(np.float32),
        rng.standard_normal((3, 5, 6)).astype(np.float32),
    )


def test_affinity_matches_numpy(query_values):
    query, values = query_values
    layer = AffinityAttention()
    context, weights = (t.numpy() for t in layer.attention(query, values))
    expected_weights = np.stack(
        [_softmax(np.tanh(np.array([q @ h_t for h_t in h]))) for q, h in zip(query, values)]
    )
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    expected_context = np.stack([w @ h for w, h in zip(expected_weights, values)])
    np.testing.assert_allclose(context, expected_context, atol=1e-5)
    np.testing.assert_allclose(layer([query, values]).numpy(), expected_context, atol=1e-5)
    assert layer.count_params() == 0


def test_bahdanau_matches_numpy(query_values):
    query, values = query_values
    layer = BahdanauAttention(units=4)
    layer([query, values])  # builds the weights
    rng = np.random.default_rng(5)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights])
    wq, bq, wk, bk, wv, bv = layer.get_weights()
    context, weights = (t.numpy() for t in layer.attention(query, values))
    for b in range(len(query)):
        q_proj = query[b] @ wq + bq  # [d]
        energies = np.array([(np.tanh(q_proj + h_t @ wk + bk) @ wv + bv)[0] for h_t in values[b]])
        expected = _softmax(energies)
        np.testing.assert_allclose(weights[b], expected, atol=1e-5)
        np.testing.assert_allclose(context[b], expected @ values[b], atol=1e-5)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    # Wq [6, 4] + bq [4], Wk [6, 4] + bk [4], Wv [4, 1] + bv [1]
    assert layer.count_params() == 6 * 4 + 4 + 6 * 4 + 4 + 4 + 1


def test_mean_pooling_is_uniform_attention(query_values):
    _, values = query_values
    np.testing.assert_allclose(MeanPooling()(values).numpy(), values.mean(axis=1), atol=1e-6)


def test_bahdanau_config_round_trip(query_values):
    query, values = query_values
    layer = BahdanauAttention(units=7, name="context")
    output = layer([query, values]).numpy()
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert clone.units == 7 and clone.name == "context"
    clone([query, values])
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone([query, values]).numpy(), output, atol=1e-6)
