"""Att-CRNN and its CNN baseline (Phan et al. 2019): shapes, parameter counts, the attention
pooling against NumPy, the export build's parity and the .keras round trip."""

import types

import keras
import numpy as np
import pytest

from lean.models.att_crnn import (AttCrnnParams, CrnnBaselineParams, att_crnn_body,
                                  crnn_baseline_body)
from lean.models.attention import AdditiveAttentionScore, SpatioTemporalPooling
from lean.models.registry import load_model

FEATURES_SHAPE = (80, 64, 2)  # T frames x M bands x K channels of a 2 s segment

# Every tensor through the Att-CRNN for one 2 s segment, 19 classes (batch axis left out).
ATT_CRNN_SHAPES = {
    "conv1": (80, 64, 64), "conv1_bn": (80, 64, 64), "conv1_pool": (80, 16, 64),
    "conv2": (80, 16, 128), "conv2_pool": (80, 4, 128),
    "conv3": (80, 4, 256), "conv3_pool": (80, 1, 256),
    "sequence": (80, 256), "bigru1": (80, 256), "bigru2": (80, 256), "projection": (80, 256),
    "temporal_attention": (80,), "spatial_rows": (256, 80), "spatial_attention": (256,),
    "attention_pooling": (256,), "logits": (19,), "probabilities": (19,),
}

# The parameter count by part, derived from the layer sizes (reset_after GRUs, 19 classes).
ATT_CRNN_PARTS = {
    # (5*5*2 + 1) * 64 + (3*3*64 + 1) * 128 + (2*2*128 + 1) * 256
    "conv": 3_264 + 73_856 + 131_328,
    # gamma, beta, moving mean and variance of 64 + 128 + 256 channels
    "batch_norm": 4 * (64 + 128 + 256),
    # per layer and direction: 3 gates x 128 x (256 inputs + 128 recurrent) + 2 x 3 x 128 biases
    "bigru": 2 * 2 * (3 * 128 * (256 + 128) + 2 * 3 * 128),
    "projection": 256 * 256 + 256,
    "temporal_attention": 256 * 64 + 64 + 64,
    "spatial_attention": 80 * 64 + 64 + 64,
    "classifier": 256 * 19 + 19,
}


def _config(params, num_classes=19, task="single_label", export_ready=False):
    return types.SimpleNamespace(name="att_crnn", params=params, num_classes=num_classes,
                                 task=task, export_ready=export_ready)


def _body_model(body, config):
    features = keras.Input(FEATURES_SHAPE, batch_size=1 if config.export_ready else None)
    return keras.Model(features, body(features, config))


def _part(layer_name: str) -> str:
    if layer_name.startswith("conv"):
        return "batch_norm" if layer_name.endswith("_bn") else "conv"
    if layer_name.startswith("bigru"):
        return "bigru"
    return "classifier" if layer_name == "logits" else layer_name


def _randomize(model, seed=1):
    """Non-zero weights everywhere (BN statistics too), so a misplaced copy would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path
                               else 0.1 * rng.standard_normal(w.shape) for w in layer.weights])


@pytest.fixture(scope="module")
def att_crnn():
    model = _body_model(att_crnn_body, _config(AttCrnnParams()))
    _randomize(model)
    return model


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, *FEATURES_SHAPE)).astype(np.float32)


def test_every_tensor_shape_of_a_2s_segment(att_crnn):
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in att_crnn.layers}
    for name, shape in ATT_CRNN_SHAPES.items():
        assert shapes[name] == shape, name


def test_parameter_count_exactly_and_by_part(att_crnn):
    parts = {}
    for layer in att_crnn.layers:
        if layer.count_params():
            parts[_part(layer.name)] = parts.get(_part(layer.name), 0) + layer.count_params()
    assert parts == ATT_CRNN_PARTS
    assert att_crnn.count_params() == sum(ATT_CRNN_PARTS.values()) == 895_571
    # BatchNorm's moving mean and variance do not train.
    trainable = sum(int(np.prod(w.shape)) for w in att_crnn.trainable_weights)
    assert trainable == 895_571 - 2 * (64 + 128 + 256)


def test_parameter_count_of_the_variants():
    def count(body, params, **config):
        return _body_model(body, _config(params, **config)).count_params()

    # The CNN baseline: the same conv block and batch norm, then the classifier on 256 maxima.
    baseline = count(crnn_baseline_body, CrnnBaselineParams())
    assert baseline == ATT_CRNN_PARTS["conv"] + ATT_CRNN_PARTS["batch_norm"] + 256 * 19 + 19
    assert baseline == 215_123
    # A projection after each BiGRU adds one 256 x 256 + 256 Dense: 0.96 M.
    assert count(att_crnn_body, AttCrnnParams(projection="each")) == 895_571 + 65_792
    # Multi-label: the same layers, a sigmoid instead of the softmax.
    assert count(att_crnn_body, AttCrnnParams(), task="multilabel", num_classes=5) == \
        895_571 - 14 * 257


def test_additive_scores_equal_numpy():
    rng = np.random.default_rng(2)
    inputs = rng.standard_normal((2, 5, 3)).astype(np.float32)
    layer = AdditiveAttentionScore(4)
    layer(inputs)
    kernel, bias, context = [rng.standard_normal(w.shape) for w in layer.weights]
    layer.set_weights([kernel, bias, context])
    expected = np.tanh(inputs @ kernel + bias) @ context[:, 0]
    np.testing.assert_allclose(layer(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_spatio_temporal_pooling_equals_numpy():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((2, 5, 3)).astype(np.float32)  # Z as [B, T, S]
    temporal_scores = rng.standard_normal((2, 5)).astype(np.float32)
    spatial_scores = rng.standard_normal((2, 3)).astype(np.float32)
    pooled, mask = SpatioTemporalPooling().attention([values, temporal_scores, spatial_scores])
    for b in range(2):
        a_tem, a_spa = _softmax(temporal_scores[b]), _softmax(spatial_scores[b])
        # A_st = a_spa_s a_tem_t; x_s = sum_t tanh(A_st Z_st), loop by loop.
        expected_mask = np.array([[a_spa[s] * a_tem[t] for t in range(5)] for s in range(3)])
        expected = [sum(np.tanh(expected_mask[s, t] * values[b, t, s]) for t in range(5))
                    for s in range(3)]
        np.testing.assert_allclose(mask.numpy()[b].T, expected_mask, rtol=1e-5)
        np.testing.assert_allclose(pooled.numpy()[b], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mask.numpy().sum(axis=(1, 2)), [1.0, 1.0], rtol=1e-6)
    # Each row of the mask sums to that time step's temporal weight.
    np.testing.assert_allclose(mask.numpy()[0].sum(axis=1), _softmax(temporal_scores[0]),
                               rtol=1e-5)


def test_the_network_pools_its_own_Z_like_numpy(att_crnn, features):
    """Inside the full network: x from Z and the two scorers' weights, computed in NumPy."""
    probe = keras.Model(att_crnn.input, [att_crnn.get_layer("projection").output,
                                          att_crnn.get_layer("attention_pooling").output])
    z, pooled = (t.numpy() for t in probe(features))
    w_t, b_t, u_t = att_crnn.get_layer("temporal_attention").get_weights()
    w_s, b_s, u_s = att_crnn.get_layer("spatial_attention").get_weights()
    for b in range(2):
        a_tem = _softmax(np.tanh(z[b] @ w_t + b_t) @ u_t[:, 0])  # over the 80 columns z_t
        a_spa = _softmax(np.tanh(z[b].T @ w_s + b_s) @ u_s[:, 0])  # over the 256 rows
        expected = np.tanh(np.outer(a_spa, a_tem) * z[b].T).sum(axis=1)
        np.testing.assert_allclose(pooled[b], expected, rtol=1e-4, atol=1e-7)
    # The pooled feature is tiny: A averages 1 / (256 * 80).
    assert np.abs(pooled).max() < 0.05


@pytest.mark.parametrize("body,params", [(att_crnn_body, AttCrnnParams()),
                                         (crnn_baseline_body, CrnnBaselineParams())])
def test_export_build_equals_the_training_build(body, params, features, att_crnn):
    config = _config(params, num_classes=7)
    model = _body_model(body, config)
    _randomize(model, seed=4)
    exported = _body_model(body, types.SimpleNamespace(**{**vars(config), "export_ready": True}))
    source = {layer.name: layer for layer in model.layers}
    for layer in exported.layers:
        if layer.weights:
            layer.set_weights(source[layer.name].get_weights())
    if body is att_crnn_body:
        assert type(exported.get_layer("bigru1")).__name__ == "UnrolledBiGRU"
    expected = model(features).numpy()
    for row in range(2):
        np.testing.assert_allclose(exported(features[row : row + 1]).numpy()[0], expected[row],
                                   atol=2e-6)


def test_keras_file_round_trip(tmp_path, att_crnn, features):
    path = tmp_path / "att_crnn.keras"
    att_crnn.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded(features).numpy(), att_crnn(features).numpy())
    assert isinstance(loaded.get_layer("attention_pooling"), SpatioTemporalPooling)
