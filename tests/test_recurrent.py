"""The unrolled recurrent layers against Keras' own Bidirectional LSTM and GRU."""

import numpy as np
import pytest

from lean.models.recurrent import UnrolledBiGRU, UnrolledBiLSTM, bidirectional


def _random_weights(layer, rng):
    """Every weight random and non-zero (both GRU bias rows too), so a misplaced one shows."""
    layer.set_weights([0.5 * rng.standard_normal(w.shape) for w in layer.weights])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_two_stacked_unrolled_layers_equal_keras(cell):
    rng = np.random.default_rng(11)
    inputs = rng.standard_normal((3, 7, 5)).astype(np.float32)
    trained = [bidirectional(cell, 4, f"layer{i}", export_ready=False) for i in (1, 2)]
    unrolled = [bidirectional(cell, 4, f"layer{i}", export_ready=True) for i in (1, 2)]
    expected, actual = inputs, inputs
    for reference, twin in zip(trained, unrolled):
        reference(expected)  # builds the layer
        _random_weights(reference, rng)
        twin(actual)
        assert [tuple(w.shape) for w in twin.weights] == [tuple(w.shape) for w in reference.weights]
        twin.set_weights(reference.get_weights())
        expected, actual = reference(expected), twin(actual)
    assert type(unrolled[0]) is (UnrolledBiGRU if cell == "gru" else UnrolledBiLSTM)
    assert actual.shape == (3, 7, 8)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-5)


def test_gru_directions_and_reset_after():
    """The forward half reads the past, the backward half the future; Keras' weights are those
    of GRU(reset_after=True), with a [2, 3 units] bias."""
    rng = np.random.default_rng(3)
    reference = bidirectional("gru", 3, "gru", export_ready=False)
    inputs = rng.standard_normal((1, 6, 2)).astype(np.float32)
    reference(inputs)
    assert reference.forward_layer.reset_after
    assert [tuple(w.shape) for w in reference.weights][2] == (2, 9)
    _random_weights(reference, rng)
    unrolled = UnrolledBiGRU(3)
    unrolled(inputs)
    unrolled.set_weights(reference.get_weights())
    base = unrolled(inputs).numpy()
    changed = inputs.copy()
    changed[0, -1] += 1.0  # the last frame: only the backward half may change before it
    after = unrolled(changed).numpy()
    np.testing.assert_array_equal(after[0, :-1, :3], base[0, :-1, :3])
    assert np.abs(after[0, :-1, 3:] - base[0, :-1, 3:]).max() > 1e-3
    np.testing.assert_allclose(after, reference(changed).numpy(), atol=1e-5)


def test_unrolled_gru_round_trips_its_config():
    layer = UnrolledBiGRU(5, name="bigru")
    clone = UnrolledBiGRU.from_config(layer.get_config())
    assert (clone.units, clone.name) == (5, "bigru")
    with pytest.raises(ValueError, match="unknown recurrent cell"):
        bidirectional("rnn", 4, "x", export_ready=True)
