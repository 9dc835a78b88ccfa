"""int8 activation ranges (MSE, percentile, entropy) on simulated data against their
definitions, a real export, bias correction, and stratified calibration windows."""

import numpy as np
import pytest

from lean_export.calibration import (
    HISTOGRAM_BINS,
    chosen_range,
    entropy_range,
    int8_error_range,
    kl_divergence_of_range,
    percentile_range,
)


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


def test_percentile_range_clips_the_rarest_values_at_each_end():
    values = np.random.default_rng(3).standard_normal(400_000)
    low, high = percentile_range(*histogram(values))
    # The 0.01 % quantiles of a standard normal are at -+3.72.
    assert low == pytest.approx(np.quantile(values, 1e-4), abs=0.01)
    assert high == pytest.approx(np.quantile(values, 1 - 1e-4), abs=0.01)
    assert low == pytest.approx(-3.72, abs=0.08) and high == pytest.approx(3.72, abs=0.08)
    positive = np.random.default_rng(4).exponential(size=100_000)
    low, high = percentile_range(*histogram(positive))
    assert low == 0.0 and high == pytest.approx(np.quantile(positive, 1 - 1e-4), rel=0.01)


def test_entropy_range_cuts_outliers_and_lowers_the_int8_error():
    rng = np.random.default_rng(5)
    # A bulk of Laplace values and two far outliers: min/max wastes most int8 levels on them.
    values = np.concatenate([0.2 * rng.laplace(size=300_000), [25.0, -18.0]])
    counts, low, high = histogram(values)
    chosen_low, chosen_high, divergence = entropy_range(counts, low, high)
    assert low < chosen_low < 0 < chosen_high < 0.5 * high
    # Independent of the divergence itself: the int8 error of the bulk (all but the two
    # outliers, which entropy calibration gives up) is far smaller than with min/max.
    bulk = values[:-2]
    assert simulated_int8_mse(bulk, chosen_low, chosen_high) < 0.1 * simulated_int8_mse(
        bulk, low, high)
    full = kl_divergence_of_range(counts, 0, len(counts))
    assert 0 <= divergence < full
    assert chosen_range("entropy", counts, low, high) == (chosen_low, chosen_high)
    assert chosen_range("minmax", counts, low, high) == (low, high)


def test_every_method_keeps_zero_inside_the_range():
    positive = np.random.default_rng(6).uniform(0.5, 1.0, 50_000)
    for method in ("mse", "percentile", "entropy", "minmax"):
        low, high = chosen_range(method, *histogram(positive))
        assert low == 0.0 < high <= positive.max() + 1e-9, method


def test_stratified_order_takes_every_class_in_turn():
    from types import SimpleNamespace

    from lean_export.export import stratified_order

    clips = [SimpleNamespace(name=name, label_indices=labels) for name, labels in [
        ("a0", [0]), ("a1", [0]), ("a2", [0, 2]), ("b0", [1]), ("c0", [2, 1]), ("c1", [2])]]
    assert [clip.name for clip in stratified_order(clips, 3)] == [
        "a0", "b0", "c0", "a1", "c1", "a2"]


@pytest.mark.slow
def test_bias_correction_removes_the_mean_shift_of_coarse_weights():
    import dataclasses

    import keras

    from lean.config import InputSpec
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model
    from lean_export.sensitivity import tflite_scores

    keras.utils.set_random_seed(0)
    samples = 512
    waveform = keras.Input((samples,), batch_size=1, name="waveform")
    frames = keras.layers.Reshape((32, 16))(waveform)
    # Inputs with a large common offset: weight rounding then shifts every output's mean.
    # A non-zero bias, as a trained layer has: the converter drops an all-zero one, and the
    # correction then has no int32 bias to adjust.
    hidden = keras.layers.Dense(64, name="wide", bias_initializer="ones")(frames)
    model = build_serving_model(keras.Model(waveform, keras.layers.GlobalAveragePooling1D()(
        hidden)), InputSpec(sample_rate=samples))
    rng = np.random.default_rng(0)
    calibration = (3.0 + 0.1 * rng.standard_normal((64, samples))).astype(np.float32)
    held_out = (3.0 + 0.1 * rng.standard_normal((16, samples))).astype(np.float32)
    reference = model.predict(held_out, batch_size=1, verbose=0)
    base = QuantizationConfig.create_full_integer(float_frontends=False, float_output_head=False,
                                                  weight_granularity="per_tensor")
    shifts = {}
    for corrected in (False, True):
        quantization = dataclasses.replace(base, bias_correction=corrected)
        model_bytes, details = convert_model(model, quantization, calibration, progress=False)
        error = tflite_scores(model_bytes, held_out) - reference
        # The mean error per output channel over windows: what bias correction targets.
        shifts[corrected] = np.abs(error.mean(axis=0)).mean()
        if corrected:
            assert details["bias_correction"]["ops_corrected"] == 1
            assert details["bias_correction"]["max_abs_shift"] > 0
    assert shifts[True] < 0.5 * shifts[False]


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


def test_weight_granularity_sets_one_scale_per_tensor_where_asked():
    import keras

    from ai_edge_litert import schema_py_generated as schema

    from lean.config import InputSpec
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model
    from lean_export.verify import op_list

    keras.utils.set_random_seed(0)
    samples = 256
    waveform = keras.Input((samples,), batch_size=1, name="waveform")
    x = keras.layers.Reshape((16, 16, 1))(waveform)
    x = keras.layers.Conv2D(8, 3, name="conv", bias_initializer="ones")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(12, name="dense", bias_initializer="ones")(x)
    model = build_serving_model(keras.Model(waveform, x), InputSpec(sample_rate=samples))
    calibration = np.random.default_rng(0).standard_normal((16, samples)).astype(np.float32)

    def weight_scales(granularity: str) -> dict[str, int]:
        quantization = QuantizationConfig.create_full_integer(
            float_frontends=False, float_output_head=False, weight_granularity=granularity)
        model_bytes, _ = convert_model(model, quantization, calibration, progress=False)
        graph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
        return {op["op"]: graph.Tensors(op["input_indices"][1]).Quantization().ScaleLength()
                for op in op_list(model_bytes) if op["op"] in ("CONV_2D", "FULLY_CONNECTED")}

    assert weight_scales("per_channel") == {"CONV_2D": 8, "FULLY_CONNECTED": 12}
    assert weight_scales("dense_per_tensor") == {"CONV_2D": 8, "FULLY_CONNECTED": 1}
    assert weight_scales("per_tensor") == {"CONV_2D": 1, "FULLY_CONNECTED": 1}
