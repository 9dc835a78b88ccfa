"""The log-mel frontend against an independent NumPy implementation of YAMNet's features."""

import numpy as np
import pytest

from lean.config import FrontendConfig
from lean.errors import LeanError
from lean.features import LogMelFrontend, mel_weight_matrix, waveform_to_log_mel

SAMPLE_RATE = 16000


def reference_log_mel(waveform: np.ndarray) -> np.ndarray:
    """YAMNet features in float64 NumPy: periodic Hann 400, hop 160, |rfft 512|, HTK mel
    triangles 125-7500 Hz over 64 bands (zero DC row), log(mel + 0.001)."""
    window, hop, fft_length = 400, 160, 512
    count = 1 + (len(waveform) - window) // hop
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    frames = np.stack([waveform[i * hop : i * hop + window] for i in range(count)])
    magnitude = np.abs(np.fft.rfft(frames * hann, n=fft_length, axis=-1))

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bin_hz = np.arange(fft_length // 2 + 1) * SAMPLE_RATE / fft_length
    edges = np.linspace(mel(125.0), mel(7500.0), 64 + 2)
    weights = np.zeros((len(bin_hz), 64))
    for band in range(64):
        low, mid, high = edges[band], edges[band + 1], edges[band + 2]
        for index in range(1, len(bin_hz)):  # DC bin stays zero
            m = mel(bin_hz[index])
            if low < m <= mid:
                weights[index, band] = (m - low) / (mid - low)
            elif mid < m < high:
                weights[index, band] = (high - m) / (high - mid)
    return np.log(magnitude @ weights + 0.001)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    # Speech-like: a 120 Hz glottal pulse train through two resonances, syllable envelope.
    pulses = (np.sin(2 * np.pi * 120 * t) > 0.95).astype(float)
    taps = np.arange(200) / SAMPLE_RATE

    def resonance(hz, decay_samples):
        return np.exp(-taps * SAMPLE_RATE / decay_samples) * np.sin(2 * np.pi * hz * taps)

    voiced = np.convolve(pulses, resonance(700, 30) + 0.5 * resonance(1800, 20), "same")
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)  # 4 Hz syllable rate
    speech = 0.3 * voiced * envelope + 0.01 * rng.standard_normal(len(t))
    tonal = 0.5 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    noise = 0.1 * rng.standard_normal(len(t))
    return {
        "speech": speech,
        "tonal": tonal,
        "noise": noise,
        "silent": np.zeros_like(t),
        "full_scale": np.clip(3 * rng.standard_normal(len(t)), -1, 1),
    }


@pytest.mark.parametrize("kind", list(_signals()))
def test_waveform_to_log_mel_matches_numpy_reference(kind):
    waveform = _signals()[kind].astype(np.float32)
    expected = reference_log_mel(waveform.astype(np.float64))
    actual = waveform_to_log_mel(waveform)
    assert actual.shape == (1 + (len(waveform) - 400) // 160, 64) == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, atol=2e-3, rtol=0)


def test_layer_gives_the_first_96_frames_of_each_window():
    signals = _signals()
    batch = np.stack([s[:SAMPLE_RATE] for s in signals.values()]).astype(np.float32)
    patches = LogMelFrontend()(batch).numpy()
    assert patches.shape == (len(signals), 96, 64)
    for patch, waveform in zip(patches, batch):
        np.testing.assert_allclose(
            patch, reference_log_mel(waveform.astype(np.float64))[:96], atol=2e-3, rtol=0
        )


def test_silence_is_log_offset():
    patch = LogMelFrontend()(np.zeros((1, SAMPLE_RATE), np.float32)).numpy()
    np.testing.assert_allclose(patch, np.log(0.001), atol=1e-6)


def test_mel_matrix_equals_tensorflows():
    import tensorflow as tf

    expected = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=64, num_spectrogram_bins=257, sample_rate=16000,
        lower_edge_hertz=125.0, upper_edge_hertz=7500.0,
    ).numpy()
    np.testing.assert_allclose(mel_weight_matrix(FrontendConfig()), expected, atol=1e-5)


def test_other_sample_rates_are_resampled():
    tone = np.sin(2 * np.pi * 1000 * np.arange(44100) / 44100).astype(np.float32)
    resampled = waveform_to_log_mel(tone, sample_rate=44100)
    native_tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    native = waveform_to_log_mel(native_tone)
    assert resampled.shape == native.shape
    # Same loudest band (1 kHz) in the middle frames, away from resampler edge effects.
    assert (resampled[10:-10].argmax(axis=1) == native[10:-10].argmax(axis=1)).all()


def test_layer_config_round_trip():
    config = FrontendConfig(mel_bands=32, patch_frames=48)
    layer = LogMelFrontend(config)
    clone = LogMelFrontend.from_config(layer.get_config())
    assert clone.frontend_config == config
    assert clone(np.zeros((2, 16000), np.float32)).shape == (2, 48, 32)


def test_shortest_window_and_too_short_window():
    waveform = np.random.default_rng(2).standard_normal((1, 15600)).astype(np.float32)
    patch = LogMelFrontend()(waveform).numpy()[0]
    np.testing.assert_allclose(patch, reference_log_mel(waveform[0].astype(np.float64)), atol=2e-3)
    with pytest.raises(LeanError, match="15599 samples per window.*at least 15600"):
        LogMelFrontend()(np.zeros((1, 15599), np.float32))
