"""SE, CBAM and coordinate attention against NumPy implementations of their equations."""

import keras
import numpy as np
import pytest

from lean.models.conv_attention import (ConvBlockAttention, CoordinateAttention,
                                        SqueezeExcitation)

# Small feature map [B, T, F, C]: time and frequency differ so a swapped axis shows.
SHAPE = (2, 9, 5, 32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _relu(x):
    return np.maximum(x, 0.0)


def _batch_norm(x, norm):
    """Inference batch norm over the last axis with the layer's statistics."""
    gamma, beta, mean, variance = [w.numpy() for w in
                                   (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)]
    return (x - mean) / np.sqrt(variance + norm.epsilon) * gamma + beta


def _conv_same(x, kernel):
    """x [B, H, W, Cin], kernel [k, k, Cin, Cout], stride 1, zero padding (k - 1) / 2."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(k):
        for j in range(k):
            out += padded[:, i:i + x.shape[1], j:j + x.shape[2], :] @ kernel[i, j]
    return out


def _randomize(layer, rng):
    """Random values in every weight (moving variances positive), so no term can vanish."""
    for weight in layer.weights:
        values = rng.standard_normal(weight.shape) * 0.5
        if "variance" in weight.path:
            values = rng.uniform(0.5, 2.0, weight.shape)
        weight.assign(values.astype(np.float32))


def _built(layer, rng):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    layer(x)
    _randomize(layer, rng)
    return x, layer(x, training=False).numpy()


def _mlp(z, layer):
    hidden = _relu(z @ layer.reduce_kernel.numpy() + layer.reduce_bias.numpy())
    return hidden @ layer.expand_kernel.numpy() + layer.expand_bias.numpy()


def test_squeeze_excitation_matches_its_equations():
    rng = np.random.default_rng(0)
    layer = SqueezeExcitation(reduction=16)
    x, out = _built(layer, rng)
    # z_c = mean over H x W; s = sigmoid(W2 ReLU(W1 z)); X^ = X * s.
    s = _sigmoid(_mlp(x.mean(axis=(1, 2)), layer))
    np.testing.assert_allclose(out, x * s[:, None, None, :], rtol=1e-5, atol=1e-5)


def test_cbam_matches_its_equations():
    rng = np.random.default_rng(1)
    layer = ConvBlockAttention(reduction=16, kernel_size=7)
    x, out = _built(layer, rng)
    channel_gate = _sigmoid(_mlp(x.mean(axis=(1, 2)), layer) + _mlp(x.max(axis=(1, 2)), layer))
    refined = x * channel_gate[:, None, None, :]
    pooled = np.stack([refined.mean(axis=-1), refined.max(axis=-1)], axis=-1)
    spatial_gate = _sigmoid(_batch_norm(_conv_same(pooled, layer.spatial_kernel.numpy()),
                                        layer.spatial_norm))
    np.testing.assert_allclose(out, refined * spatial_gate, rtol=1e-5, atol=1e-5)


def test_coordinate_attention_matches_its_equations():
    rng = np.random.default_rng(2)
    layer = CoordinateAttention(reduction=32, min_channels=8)
    x, out = _built(layer, rng)
    frequencies = SHAPE[2]
    # z^h: per frequency row, pooled over time; z^w: per time column, pooled over frequency.
    z = np.concatenate([x.mean(axis=1), x.mean(axis=2)], axis=1)
    u = _batch_norm(z @ layer.reduce_kernel.numpy() + layer.reduce_bias.numpy(), layer.norm)
    u = u * np.clip(u + 3.0, 0.0, 6.0) / 6.0  # h-swish
    s_frequency = _sigmoid(u[:, :frequencies] @ layer.frequency_kernel.numpy()
                           + layer.frequency_bias.numpy())
    s_time = _sigmoid(u[:, frequencies:] @ layer.time_kernel.numpy() + layer.time_bias.numpy())
    expected = x * s_frequency[:, None, :, :] * s_time[:, :, None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [64, 512])
def test_each_module_has_the_parameters_its_equations_give(channels):
    """Hand counts for one block of C channels (trainable; BN moving statistics apart)."""
    def counts(layer):
        layer.build((None, 10, 6, channels))
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        return trainable, layer.count_params() - trainable

    c = channels
    # SE: W1 [C/16, C] + b1, W2 [C, C/16] + b2.
    assert counts(SqueezeExcitation(16)) == (2 * c * (c // 16) + c // 16 + c, 0)
    # CBAM: the same MLP, a 7x7 conv from 2 maps to 1 (no bias), BN gamma/beta (+ 2 stats).
    assert counts(ConvBlockAttention(16, 7)) == (2 * c * (c // 16) + c // 16 + c + 2 * 49 + 2, 2)
    # CA: mip = max(8, C/32); conv C -> mip + bias, BN(mip), two convs mip -> C + bias.
    mip = max(8, c // 32)
    assert counts(CoordinateAttention(32, 8)) == (c * mip + mip + 2 * mip + 2 * (mip * c + c),
                                                  2 * mip)


def test_gates_keep_shape_and_reload(tmp_path):
    rng = np.random.default_rng(3)
    inputs = keras.Input(SHAPE[1:])
    x = SqueezeExcitation(4, name="se")(inputs)
    x = ConvBlockAttention(4, 3, name="cbam")(x)
    outputs = CoordinateAttention(8, 4, name="ca")(x)
    model = keras.Model(inputs, outputs)
    for layer in model.layers[1:]:
        _randomize(layer, rng)
    data = rng.standard_normal(SHAPE).astype(np.float32)
    path = tmp_path / "gates.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert [layer.get_config()["reduction"] for layer in reloaded.layers[1:]] == [4, 4, 8]
    assert reloaded.get_layer("cbam").kernel_size == 3
    assert reloaded.get_layer("ca").min_channels == 4
    np.testing.assert_array_equal(reloaded(data).numpy(), model(data).numpy())
    assert model.output.shape == (None, *SHAPE[1:])
