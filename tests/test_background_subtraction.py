"""The minimum-statistics background subtraction frontend against a loop-by-loop NumPy version."""

import numpy as np
import pytest

from lean.errors import LeanError
from lean.frontends import (BackgroundSubtraction, BackgroundSubtractionConfig,
                            minimum_statistics_bias)

HOP = 0.025


def reference_subtraction(power: np.ndarray, config: BackgroundSubtractionConfig) -> np.ndarray:
    """[T, K] float64: the recursion frame by frame, the minimum window by window."""
    frames = power.shape[0]
    smoothed = np.empty_like(power)
    smoothed[0] = power[0]
    for t in range(1, frames):
        smoothed[t] = config.smoothing * smoothed[t - 1] + (1 - config.smoothing) * power[t]
    # Var(S_t) of unit exponential frames, by the same recursion: Q_t = 2 / Var(S_t).
    variance = np.empty(frames)
    variance[0] = 1.0
    for t in range(1, frames):
        variance[t] = config.smoothing ** 2 * variance[t - 1] + (1 - config.smoothing) ** 2
    degrees = 2.0 / variance
    window = int(round(config.min_window_seconds / HOP))
    output = np.empty_like(power)
    for t in range(frames):
        if config.alignment == "causal":
            first, last = max(0, t - window + 1), t
        else:
            first = max(0, t - (window - 1) // 2)
            last = min(frames - 1, t + window - 1 - (window - 1) // 2)
        held = last - first + 1
        harmonic = held / np.sum(1.0 / degrees[first : last + 1])
        bias = config.bias if config.bias is not None else minimum_statistics_bias(held, harmonic)
        noise = bias * smoothed[first : last + 1].min(axis=0)
        output[t] = np.maximum(power[t] - noise, config.floor * noise)
    return output


def _scene_power(rng, frames=80, bins=6) -> np.ndarray:
    """Exponential periodogram frames of a steady background, with two louder events."""
    background = np.linspace(1.0, 3.0, bins)
    power = background * rng.exponential(size=(frames, bins))
    power[20:30, 1:3] += 40.0
    power[55:58] += 25.0
    return power


@pytest.mark.parametrize("config", [
    BackgroundSubtractionConfig(),
    BackgroundSubtractionConfig(alignment="causal", smoothing=0.6, floor=0.05),
    BackgroundSubtractionConfig(min_window_seconds=0.3, bias=1.5, floor=0.0),
])
def test_layer_equals_the_numpy_algorithm(config):
    rng = np.random.default_rng(5)
    power = np.stack([_scene_power(rng), _scene_power(rng)])
    layer = BackgroundSubtraction(config, hop_seconds=HOP)
    actual = layer(power.astype(np.float32)).numpy()
    for row in range(2):
        expected = reference_subtraction(power[row], config)
        np.testing.assert_allclose(actual[row], expected, rtol=2e-5, atol=1e-5)


def test_it_removes_the_background_and_keeps_the_events():
    rng = np.random.default_rng(1)
    power = _scene_power(rng, bins=4)
    output = BackgroundSubtraction(hop_seconds=HOP)(power[None].astype(np.float32)).numpy()[0]
    event = output[20:30, 1:3].mean()
    quiet = np.delete(output, np.r_[20:30, 55:58], axis=0).mean()
    assert event > 30.0  # about 40 above a background of 1.7-2.3
    # Subtracting the exact mean N of exponential periodogram frames leaves E max(P - N, 0)
    # = N / e: 0.37 of the input; an estimate a little high leaves less.
    ratio = quiet / np.delete(power, np.r_[20:30, 55:58], axis=0).mean()
    assert 0.2 < ratio < 0.45
    assert (output >= 0).all()


def test_martins_bias_compensation():
    # Steady state of a = 0.85: Q_eq = 2 (1 + 0.85) / 0.15 = 24.67; M(60) = 0.841 (Martin).
    steady = 2 * 1.85 / 0.15
    expected = 1 + 2 * 59 * (1 - 0.841) / (steady - 2 * 0.841)
    assert minimum_statistics_bias(60, steady) == pytest.approx(expected, rel=1e-9)
    assert minimum_statistics_bias(60, steady) == pytest.approx(1.816, abs=1e-3)
    assert minimum_statistics_bias(1, steady) == 1.0
    # More degrees of freedom (heavier smoothing): a less noisy minimum, less to compensate.
    assert minimum_statistics_bias(60, 60.0) < minimum_statistics_bias(60, steady)
    config = BackgroundSubtractionConfig(alignment="causal")
    assert config.window_frames(HOP) == 60
    degrees = config.smoothed_degrees(80)
    assert degrees[0] == pytest.approx(2.0) and degrees[79] == pytest.approx(steady, rel=1e-4)
    bias = config.frame_bias(80, HOP)
    assert bias[0] == 1.0
    assert bias[79] == pytest.approx(minimum_statistics_bias(60, 60 / np.sum(1 / degrees[20:])))
    centred = BackgroundSubtractionConfig().window_bounds(80, HOP)
    assert centred[0] == (0, 30) and centred[40] == (11, 70) and centred[79] == (50, 79)


def test_the_estimate_is_unbiased_within_a_db():
    """The background estimate N_t against the true background of synthetic noise segments
    (what benchmarks/suite/background_estimate.py measures with events too)."""
    rng = np.random.default_rng(2)
    background = rng.uniform(0.5, 5.0, size=(40, 1, 16))
    power = (background * rng.exponential(size=(40, 80, 16))).astype(np.float32)
    for alignment in ("centred", "causal"):
        layer = BackgroundSubtraction(BackgroundSubtractionConfig(alignment=alignment),
                                      hop_seconds=HOP)
        layer.build(power.shape)
        error_db = 10 * np.log10(layer.background(power).numpy() / background)
        assert abs(error_db[:, :30].mean()) < 1.0 and abs(error_db[:, 30:].mean()) < 1.0
    # Centred windows: later frames within 1.2 dB on average (causal: about 2 dB).
    assert np.abs(error_db[:, 30:]).mean() > 1.5
    centred = BackgroundSubtraction(hop_seconds=HOP)
    centred.build(power.shape)
    assert np.abs(10 * np.log10(centred.background(power).numpy() / background))[:, 30:].mean() < 1.2


def test_round_trip_and_bad_values():
    layer = BackgroundSubtraction(BackgroundSubtractionConfig(floor=0.1), hop_seconds=0.02,
                                  name="aux")
    clone = BackgroundSubtraction.from_config(layer.get_config())
    assert clone.config == layer.config and clone.hop_seconds == 0.02 and clone.name == "aux"
    assert clone.keeps_float_in_export
    for bad in (dict(smoothing=1.0), dict(min_window_seconds=0), dict(alignment="ahead"),
                dict(bias=0.0), dict(floor=2.0)):
        with pytest.raises(LeanError, match="background subtraction"):
            BackgroundSubtractionConfig(**bad)


RATE = 22050


def _scene_waveform(seconds=2.0) -> np.ndarray:
    """Pink-ish background hum and noise with a chirp event in the middle."""
    rng = np.random.default_rng(9)
    t = np.arange(int(seconds * RATE)) / RATE
    background = 0.05 * rng.standard_normal(len(t)) + 0.05 * np.sin(2 * np.pi * 120 * t)
    event = np.where((t > 0.8) & (t < 1.1), 0.4 * np.sin(2 * np.pi * (800 + 2000 * t) * t), 0.0)
    return (background + event).astype(np.float32)


@pytest.mark.parametrize("features", ["log_mel", "log_gammatone"])
def test_two_channel_spectrogram_equals_numpy(features):
    import librosa

    from lean.frontends import (BackgroundSubtractedSpectrogram, Spectrogram,
                                SpectrogramConfig, filterbank_matrix, spectrogram_constants)

    config = getattr(SpectrogramConfig, features)()
    waveform = _scene_waveform()
    layer = BackgroundSubtractedSpectrogram(config, RATE)
    actual = layer(waveform[None]).numpy()[0]
    assert actual.shape == (80, 64, 2)
    # Channel 0 is the plain spectrogram.
    plain = Spectrogram(config, RATE)(waveform[None]).numpy()[0]
    np.testing.assert_allclose(actual[..., 0], plain, atol=1e-5)
    # Channel 1 in float64 NumPy: centred STFT without its last frame, the used bins' power,
    # the subtraction frame by frame, back to magnitude for gammatone, filterbank, log.
    stft = librosa.stft(waveform.astype(np.float64), n_fft=2048, hop_length=551,
                        win_length=1102, window="hann", center=True, pad_mode="constant")
    constants = spectrogram_constants(config, RATE)
    used = slice(constants.first_bin, constants.stop_bin)
    power = np.abs(stft[used, :80].T) ** 2
    background = BackgroundSubtractionConfig()
    hop = 551 / RATE
    cleaned = _reference_at_hop(power, background, hop)
    if features == "log_gammatone":
        cleaned = np.sqrt(cleaned)
    expected = np.log(cleaned @ filterbank_matrix(config, RATE)[used] + 1e-6)
    np.testing.assert_allclose(actual[..., 1], expected, atol=2e-3)
    # The chirp stands out more against the subtracted background than in the plain channel
    # (measured: in its strongest band 4.4 against 3.4 log units, gammatone 2.8 against 2.0).
    event, quiet = slice(33, 43), np.r_[0:28, 50:80]
    contrast = (actual[event].mean(axis=0) - actual[quiet].mean(axis=0)).max(axis=0)
    assert contrast[1] > contrast[0] + 0.5
    alone = BackgroundSubtractedSpectrogram(config, RATE, keep_original=False)
    np.testing.assert_allclose(alone(waveform[None]).numpy()[0], actual[..., 1], atol=1e-5)
    clone = BackgroundSubtractedSpectrogram.from_config(layer.get_config())
    assert clone.subtraction.config == background and clone.keep_original
    with pytest.raises(LeanError, match="mono waveform"):
        BackgroundSubtractedSpectrogram(config, RATE)(np.zeros((1, 44100, 2), np.float32))


def _reference_at_hop(power, config, hop):
    """`reference_subtraction` at another frame hop."""
    global HOP
    saved, HOP = HOP, hop
    try:
        return reference_subtraction(power, config)
    finally:
        HOP = saved
