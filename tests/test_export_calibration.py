"""MSE-narrowed int8 activation ranges: the chooser against simulated int8 rounding, and a real export."""

import numpy as np
import pytest

from lean_export.calibration import HISTOGRAM_BINS, int8_error_range


def simulated_int8_mse(values: np.ndarray, low: float, high: float) -> float:
    """Mean squared error of clipping to [low, high] and rounding to 255 steps, as int8 does."""
    step = (high - low) / 255
    quantized = np.round((np.clip(values, low, high) - low) / step) * step + low
    return float(np.mean((quantized - values) ** 2))


def histogram(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    low, high = float(values.min()), float(values.max())
    counts, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
    return counts, low, high


def test_heavy_tails_get_a_narrower_range_with_less_int8_error():
    # Laplace: a sharp bulk near 0 and exponential tails, like the LSTM gate inputs.
    values = 0.15 * np.random.default_rng(0).laplace(size=200_000)
    low, high, error = int8_error_range(*histogram(values))
    assert values.min() * 0.9 < low < 0 < high < values.max() * 0.9
    narrowed, full = simulated_int8_mse(values, low, high), simulated_int8_mse(values, values.min(), values.max())
    assert narrowed < 0.85 * full
    assert error == pytest.approx(narrowed, rel=0.05)  # the histogram's estimate of the same error


def test_evenly_spread_values_keep_their_range_and_zero_stays_inside():
    values = np.random.default_rng(1).uniform(-1.0, 2.0, 100_000)
    low, high, _ = int8_error_range(*histogram(values))
    assert low == pytest.approx(values.min(), rel=0.01) and high == pytest.approx(values.max(), rel=0.01)
    positive = np.random.default_rng(2).uniform(0.5, 1.0, 10_000)
    low, high, _ = int8_error_range(*histogram(positive))
    assert low == 0.0 and high == pytest.approx(positive.max(), rel=0.01)


@pytest.mark.slow
def test_mse_ranges_bring_int8_closer_to_float_than_minmax(tmp_path):
    import dataclasses

    import keras

    from lean.config import InputSpec
    from lean.inference import LiteRtPredictor
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model

    keras.utils.set_random_seed(0)
    samples = 4000
    waveform = keras.Input((samples,), batch_size=1, name="waveform")
    hidden = keras.layers.Dense(32, activation="tanh")(keras.layers.Reshape((250, 16))(waveform))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(32, activation="relu")(hidden))
    model = build_serving_model(
        keras.Model(waveform, keras.layers.Dense(4, activation="sigmoid")(pooled)),
        InputSpec(sample_rate=samples, window_seconds=1.0))

    rng = np.random.default_rng(0)
    calibration = (0.05 * rng.standard_normal((128, samples))).astype(np.float32)
    # Two loud samples in 512,000 set min/max. Clipping values rarer than about 1 in 200,000
    # costs less than the coarser int8 steps of a range that holds them.
    calibration[0, 100], calibration[1, 200] = 5.0, -5.0
    held_out = (0.05 * rng.standard_normal((32, samples))).astype(np.float32)
    reference = model.predict(held_out, batch_size=1, verbose=0)
    errors, summaries = {}, {}
    for method in ("minmax", "mse"):
        quantization = dataclasses.replace(
            QuantizationConfig.create_full_integer(float_frontends=False), activation_ranges=method)
        model_bytes, details = convert_model(model, quantization, calibration)
        summaries[method] = details["activation_ranges"]
        path = tmp_path / f"{method}.tflite"
        path.write_bytes(model_bytes)
        scores = LiteRtPredictor(path, labels=["a", "b", "c", "d"],
                                 sample_rate=samples).predict(held_out)
        errors[method] = float(np.abs(scores - reference).mean())
    assert summaries["minmax"] == {"method": "minmax"}
    assert summaries["mse"]["method"] == "mse" and summaries["mse"]["narrowed"] >= 1
    assert summaries["mse"]["max_narrowing"] > 1.5
    assert errors["mse"] < errors["minmax"]
