"""SpecAugment: masks of bounded width in training, the identity at inference, absent from the
export-ready build."""

import keras
import numpy as np
import pytest


def _spans(mask_1d):
    """[(start, width)] of the runs of True in a 1-D boolean array."""
    spans, start = [], None
    for index, value in enumerate(list(mask_1d) + [False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            spans.append((start, index - start))
            start = None
    return spans


def test_training_masks_bands_and_spans_with_the_example_mean():
    from lean.training.specaugment import SpecAugment

    rng = np.random.default_rng(0)
    frames, bins = 96, 64
    features = rng.normal(-5.0, 2.0, size=(16, frames, bins)).astype(np.float32)
    layer = SpecAugment(freq_width=15, time_width=70, seed=3)
    masked = np.asarray(layer(features, training=True))
    time_limit = int(0.2 * frames)  # Park et al.'s p = 0.2 caps the 70 frames at 19
    total_masked = 0
    for example, original in zip(masked, features):
        changed = example != original
        mean = original.mean()
        np.testing.assert_allclose(example[changed], mean, rtol=1e-5)
        total_masked += changed.sum()
        # A masked frame is masked across every bin; a masked band across every frame.
        frame_masked = changed.all(axis=1)
        band_masked = changed.all(axis=0)
        assert np.array_equal(changed, frame_masked[:, None] | band_masked[None, :])
        time_spans, freq_spans = _spans(frame_masked), _spans(band_masked)
        # At most two masks each; overlapping masks merge, so a run spans up to two widths.
        assert len(time_spans) <= 2 and len(freq_spans) <= 2
        assert sum(width for _, width in time_spans) <= 2 * time_limit
        assert all(width <= 2 * 15 for _, width in freq_spans)
        assert sum(width for _, width in freq_spans) <= 2 * 15
    assert total_masked > 0


def test_identity_at_inference_and_in_predict():
    from lean.training.specaugment import SpecAugment

    features = np.random.default_rng(1).normal(size=(3, 20, 8)).astype(np.float32)
    layer = SpecAugment(4, 5)
    np.testing.assert_array_equal(layer(features, training=False), features)
    inputs = keras.Input((20, 8))
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_array_equal(model.predict(features, verbose=0), features)


def test_axes_and_channels_are_respected():
    from lean.training.specaugment import SpecAugment

    # [B, bands, frames, channels], as a two-channel model might lay out its input.
    features = np.random.default_rng(2).normal(size=(8, 10, 40, 2)).astype(np.float32)
    layer = SpecAugment(freq_width=3, time_width=8, time_axis=2, freq_axis=1, seed=1)
    masked = np.asarray(layer(features, training=True))
    changed = masked != features
    # Both channels masked alike, and each masked cell lies in a masked band or frame span.
    assert np.array_equal(changed[..., 0], changed[..., 1])
    per_example = changed[..., 0]
    bands, frames = per_example.all(axis=2), per_example.all(axis=1)
    assert np.array_equal(per_example, bands[:, :, None] | frames[:, None, :])
    assert changed.any()


class Spectrogram(keras.layers.Layer):
    """A stand-in spectrogram frontend: [B, 160] -> [B, 20 frames, 8 bins]."""

    spectrogram_axes = (1, 2)

    def call(self, waveform):
        return keras.ops.reshape(waveform, (-1, 20, 8))


def _model(nested=False):
    inputs = keras.Input((160,), name="waveform")
    spectrogram = Spectrogram(name="spectrogram")
    if nested:
        inner_inputs = keras.Input((160,))
        frontend = keras.Model(inner_inputs, spectrogram(inner_inputs), name="frontend")
        features = frontend(inputs)
    else:
        features = spectrogram(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(features)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled), name="tiny")


@pytest.mark.parametrize("nested", [False, True])
def test_training_copy_masks_after_the_frontend_and_shares_weights(nested):
    from lean.training.specaugment import SpecAugment, with_spec_augment, without_spec_augment

    model = _model(nested)
    augmented = with_spec_augment(model, "4:5", seed=1)
    masks = [layer for layer in _layers(augmented) if isinstance(layer, SpecAugment)]
    assert [layer.name for layer in masks] == ["spectrogram_specaugment"]
    assert augmented.get_layer("logits") is model.get_layer("logits")
    assert not any(isinstance(layer, SpecAugment) for layer in _layers(model))
    waveform = np.random.default_rng(0).normal(size=(4, 160)).astype(np.float32)
    np.testing.assert_array_equal(augmented(waveform, training=False), model(waveform))
    assert not np.allclose(augmented(waveform, training=True), model(waveform))
    stripped = without_spec_augment(augmented)
    assert not any(isinstance(layer, SpecAugment) for layer in _layers(stripped))
    assert stripped.get_layer("logits") is model.get_layer("logits")
    np.testing.assert_array_equal(stripped(waveform, training=True), model(waveform))


def _layers(model):
    layers = []
    for layer in model.layers:
        layers += [layer, *(_layers(layer) if hasattr(layer, "layers") else [])]
    return layers


def test_a_model_without_a_spectrogram_frontend_is_a_clear_error():
    from lean.errors import LeanError
    from lean.training.specaugment import with_spec_augment

    inputs = keras.Input((160,), name="waveform")
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="raw_wave")
    with pytest.raises(LeanError, match=r"^--specaugment 15:70: model 'raw_wave' has no "
                       "spectrogram frontend"):
        with_spec_augment(model, "15:70")


def test_layer_round_trips_through_a_keras_file(tmp_path):
    from lean.training.specaugment import SpecAugment

    inputs = keras.Input((20, 8))
    model = keras.Model(inputs, keras.layers.Dense(2)(SpecAugment(4, 5, seed=2)(inputs)))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    layer = loaded.get_layer("specaugment")
    assert (layer.freq_width, layer.time_width, layer.freq_masks, layer.time_masks) == (4, 5, 2, 2)
    features = np.ones((2, 20, 8), np.float32)
    np.testing.assert_allclose(loaded.predict(features, verbose=0),
                               model.predict(features, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("text,widths", [("default", (15, 70)), ("8:0", (8, 0))])
def test_specaugment_option_widths(text, widths):
    from lean.training.options import parse_specaugment

    spec = parse_specaugment(text)
    assert (spec.freq_width, spec.time_width) == widths


def test_masks_continue_where_a_saved_layer_stopped(tmp_path):
    """A resumed run draws the masks an uninterrupted one would: the draw counter is saved."""
    from lean.training.specaugment import SpecAugment

    inputs = keras.Input((20, 8))
    model = keras.Model(inputs, SpecAugment(4, 5, seed=3)(inputs))
    features = np.random.default_rng(0).normal(size=(2, 20, 8)).astype(np.float32)
    first, second = (np.asarray(model(features, training=True)) for _ in range(2))
    assert not np.array_equal(first, second)
    model.save(tmp_path / "model.keras")
    expected = np.asarray(model(features, training=True))
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded(features, training=True), expected)
