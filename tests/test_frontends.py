"""Frontends against independent references: NumPy, librosa, kaldi-native-fbank, gammatone."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from lean.errors import LeanError
from lean.frontends import (
    Frontend, MaxDecimation, PreEmphasis, Spectrogram, SpectrogramConfig, YamnetLogMel,
    YamnetLogMelConfig, ZNormalization, erb_center_frequencies, filterbank_matrix,
    float_layer_names, mel_weight_matrix, waveform_to_log_mel,
)

SAMPLE_RATE = 16000


# --- YAMNet log-mel -------------------------------------------------------------------------


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


def _signals(sample_rate: int = SAMPLE_RATE, seconds: float = 2.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    # Speech-like: a 120 Hz glottal pulse train through two resonances, syllable envelope.
    pulses = (np.sin(2 * np.pi * 120 * t) > 0.95).astype(float)
    taps = np.arange(int(sample_rate / 80)) / sample_rate

    def resonance(hz, decay_seconds):
        return np.exp(-taps / decay_seconds) * np.sin(2 * np.pi * hz * taps)

    voiced = np.convolve(pulses, resonance(700, 30 / 16000) + 0.5 * resonance(1800, 20 / 16000),
                         "same")
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
    patches = YamnetLogMel()(batch).numpy()
    assert patches.shape == (len(signals), 96, 64)
    for patch, waveform in zip(patches, batch):
        np.testing.assert_allclose(
            patch, reference_log_mel(waveform.astype(np.float64))[:96], atol=2e-3, rtol=0
        )


@pytest.mark.parametrize("formulation", ["dft_matmul", "rfft", "fft_matmul"])
def test_both_formulations_give_the_reference_patch(formulation):
    from lean.frontends import YamnetLogMelConfig

    signals = _signals()
    batch = np.stack([s[:SAMPLE_RATE] for s in signals.values()]).astype(np.float32)
    patches = YamnetLogMel(YamnetLogMelConfig(formulation=formulation))(batch).numpy()
    # float32 RFFT2D rounding lifts nearly empty bands of the pure tones a little more than the
    # DFT matmul does: 0.0048 against 0.0007 log-mel units at most (measured here).
    tolerance = 2e-3 if formulation == "dft_matmul" else 1e-2
    for patch, waveform in zip(patches, batch):
        np.testing.assert_allclose(
            patch, reference_log_mel(waveform.astype(np.float64))[:96], atol=tolerance, rtol=0)


def test_with_formulation_switches_every_frontend_config_in_params():
    from lean.errors import LeanError
    from lean.frontends import with_formulation
    from lean.models.lean import LeanParams

    params = LeanParams()
    switched = with_formulation(params, "rfft")
    assert switched.frontend.formulation == "rfft" and params.frontend.formulation == "dft_matmul"
    assert switched.lstm_units == params.lstm_units
    assert with_formulation(switched, "rfft") is switched
    with pytest.raises(LeanError, match="frontend formulation 'fft'"):
        with_formulation(params, "fft")


def test_silence_is_log_offset():
    patch = YamnetLogMel()(np.zeros((1, SAMPLE_RATE), np.float32)).numpy()
    np.testing.assert_allclose(patch, np.log(0.001), atol=1e-6)


def test_mel_matrix_equals_tensorflows():
    import tensorflow as tf

    expected = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=64, num_spectrogram_bins=257, sample_rate=16000,
        lower_edge_hertz=125.0, upper_edge_hertz=7500.0,
    ).numpy()
    np.testing.assert_allclose(mel_weight_matrix(YamnetLogMelConfig()), expected, atol=1e-5)


def test_other_sample_rates_are_resampled():
    tone = np.sin(2 * np.pi * 1000 * np.arange(44100) / 44100).astype(np.float32)
    resampled = waveform_to_log_mel(tone, sample_rate=44100)
    native_tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    native = waveform_to_log_mel(native_tone)
    assert resampled.shape == native.shape
    # Same loudest band (1 kHz) in the middle frames, away from resampler edge effects.
    assert (resampled[10:-10].argmax(axis=1) == native[10:-10].argmax(axis=1)).all()


def test_layer_config_round_trip():
    config = YamnetLogMelConfig(mel_bands=32, patch_frames=48)
    layer = YamnetLogMel(config)
    clone = YamnetLogMel.from_config(layer.get_config())
    assert clone.frontend_config == config
    assert clone(np.zeros((2, 16000), np.float32)).shape == (2, 48, 32)


def test_shortest_window_and_too_short_window():
    waveform = np.random.default_rng(2).standard_normal((1, 15600)).astype(np.float32)
    patch = YamnetLogMel()(waveform).numpy()[0]
    np.testing.assert_allclose(patch, reference_log_mel(waveform[0].astype(np.float64)), atol=2e-3)
    with pytest.raises(LeanError, match="15599 samples per window.*at least 15600"):
        YamnetLogMel()(np.zeros((1, 15599), np.float32))


# --- Kaldi fbank (Zhou et al.) against kaldi-native-fbank -----------------------------------


def kaldi_reference(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, bands: int = 80,
                    frame_ms: float = 20.0, shift_ms: float = 10.0) -> np.ndarray:
    """kaldi-native-fbank (Kaldi's compute-fbank-feats in C++) on the int16-scaled waveform,
    with Kaldi's defaults spelled out and dither off."""
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    frame = options.frame_opts
    frame.samp_freq, frame.frame_length_ms, frame.frame_shift_ms = sample_rate, frame_ms, shift_ms
    frame.dither, frame.preemph_coeff, frame.remove_dc_offset = 0.0, 0.97, True
    frame.window_type, frame.round_to_power_of_two, frame.snip_edges = "povey", True, True
    options.mel_opts.num_bins, options.mel_opts.low_freq, options.mel_opts.high_freq = bands, 20, 0
    options.use_power, options.use_log_fbank, options.use_energy = True, True, False
    fbank = knf.OnlineFbank(options)
    fbank.accept_waveform(sample_rate, (np.asarray(waveform, np.float64) * 32768).tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def assert_log_spectra_close(actual, expected, atol: float, within_db: float = 80.0,
                             floor_atol: float = 0.2) -> None:
    """|actual - expected| <= atol for the bands within `within_db` of their frame's loudest
    band (log units are natural: power dB = 10 log10(e) x difference); the quieter bands of
    pure tones sit at float32's rounding floor (>100 dB down) in both computations and
    only have to agree within `floor_atol`."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    below_db = 10 * np.log10(np.e) * (expected.max(axis=-1, keepdims=True) - expected)
    loud = below_db <= within_db
    np.testing.assert_allclose(actual[loud], expected[loud], atol=atol, rtol=0)
    np.testing.assert_allclose(actual, expected, atol=floor_atol, rtol=0)


# |ours - kaldi-native-fbank| in log energy, measured: <= 1e-4 on noise and speech, 4.4e-4 on
# the tones within 80 dB of the frame's peak, 0.1 at the tones' float32 floor (>100 dB down).
# Both are float32; the dft_matmul folds DC removal, pre-emphasis and window into one matrix.
KALDI_ATOL = 1e-3


@pytest.mark.parametrize("formulation", ["dft_matmul", "rfft", "fft_matmul"])
@pytest.mark.parametrize("kind", list(_signals()))
def test_kaldi_fbank_matches_kaldi_native_fbank(kind, formulation):
    waveform = _signals(seconds=1.0)[kind].astype(np.float32)
    config = SpectrogramConfig.kaldi_fbank(mean_normalization=False, formulation=formulation)
    actual = Spectrogram(config, SAMPLE_RATE)(waveform[None]).numpy()[0]
    expected = kaldi_reference(waveform)
    assert actual.shape == expected.shape == (99, 80)
    assert_log_spectra_close(actual, expected, KALDI_ATOL)


def test_kaldi_fbank_options_and_frame_count_follow_kaldi():
    # 25 ms / 40 bands (Kaldi's usual ASR setting) on a length that is not a whole hop.
    waveform = _signals(seconds=0.77)["speech"].astype(np.float32)
    config = SpectrogramConfig.kaldi_fbank(bands=40, window_seconds=0.025,
                                           mean_normalization=False)
    expected = kaldi_reference(waveform, bands=40, frame_ms=25.0)
    assert config.frames(len(waveform), SAMPLE_RATE) == len(expected) == 1 + (12320 - 400) // 160
    actual = Spectrogram(config, SAMPLE_RATE)(waveform[None]).numpy()[0]
    np.testing.assert_allclose(actual, expected, atol=KALDI_ATOL, rtol=0)


def test_kaldi_fbank_mean_normalization_is_per_window_cmn():
    waveform = _signals(seconds=1.0)["speech"].astype(np.float32)
    config = SpectrogramConfig.kaldi_fbank()
    assert config.mean_normalization  # the default for Zhou et al.
    expected = kaldi_reference(waveform)
    actual = Spectrogram(config, SAMPLE_RATE)(waveform[None]).numpy()[0]
    np.testing.assert_allclose(actual, expected - expected.mean(axis=0), atol=KALDI_ATOL, rtol=0)
    # CMN removes the clip's gain: a 20 dB quieter copy gives the same features.
    quieter = Spectrogram(config, SAMPLE_RATE)(0.1 * waveform[None]).numpy()[0]
    np.testing.assert_allclose(quieter, actual, atol=2e-3)


# --- log-mel and log-Gammatone (Phan et al.) against librosa and gammatone ------------------

PHAN_RATE = 22050


def librosa_log_mel(waveform: np.ndarray, power: float = 2.0, htk: bool = False,
                    norm="slaney", center: bool = True) -> np.ndarray:
    """librosa in float64: 1102-sample periodic Hann in a 2048-point FFT, hop 551, 64 mel
    bands 50 Hz-Nyquist, zero-padded centring; [frames, bands] log(mel + 1e-6)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(waveform, np.float64), sr=PHAN_RATE, n_fft=2048, hop_length=551,
        win_length=1102, window="hann", center=center, pad_mode="constant", power=power,
        n_mels=64, fmin=50.0, fmax=PHAN_RATE / 2, htk=htk, norm=norm)
    return np.log(mel + 1e-6).T


# |ours - librosa (float64)| in log(mel + 1e-6), measured: <= 1e-5 on noise, speech and
# silence, 1.9e-4 on the tones (within 80 dB of the frame's peak), either formulation.
LOG_MEL_ATOL = 1e-3
# |ours - NumPy (float64)| in log-Gammatone, measured: <= 1.1e-5 on noise and speech, 1.7e-3
# on the tones, whose far bands sum the broad gammatone skirts over float32-rounded bins.
LOG_GAMMATONE_ATOL = 5e-3


@pytest.mark.parametrize("kind", list(_signals()))
def test_log_mel_matches_librosa(kind):
    waveform = _signals(PHAN_RATE)[kind].astype(np.float32)
    config = SpectrogramConfig.log_mel()
    actual = Spectrogram(config, PHAN_RATE)(waveform[None]).numpy()[0]
    expected = librosa_log_mel(waveform)
    # 2 s at 22.05 kHz: librosa centres 81 frames; the paper's T = 80 drops the last.
    assert expected.shape == (81, 64) and actual.shape == (80, 64)
    assert config.frames(2 * PHAN_RATE, PHAN_RATE) == 80
    assert_log_spectra_close(actual, expected[:80], LOG_MEL_ATOL)


@pytest.mark.parametrize("formulation", ["dft_matmul", "rfft", "fft_matmul"])
def test_log_mel_variants_match_librosa(formulation):
    # HTK mel, no area normalisation, magnitude spectrum, and the other two framings.
    waveform = _signals(PHAN_RATE, seconds=1.0)["speech"].astype(np.float32)
    variant = dict(mel_scale="htk", mel_norm="none", spectrum="magnitude",
                   formulation=formulation)
    expected = librosa_log_mel(waveform, power=1.0, htk=True, norm=None)
    for padding, frames in (("center", 41), ("center_drop_last", 40)):
        config = SpectrogramConfig.log_mel(padding=padding, **variant)
        assert config.frames(PHAN_RATE, PHAN_RATE) == frames
        actual = Spectrogram(config, PHAN_RATE)(waveform[None]).numpy()[0]
        assert_log_spectra_close(actual, expected[:frames], LOG_MEL_ATOL)
    # valid: librosa without centring frames whole 2048-sample spans, so compare its frames
    # with the 1102-sample windows at the same centres (offset (2048 - 1102) // 2 = 473).
    config = SpectrogramConfig.log_mel(padding="valid", **variant)
    actual = Spectrogram(config, PHAN_RATE)(waveform[None, 473:]).numpy()[0]
    expected = librosa_log_mel(waveform, power=1.0, htk=True, norm=None, center=False)
    assert config.frames(2 * PHAN_RATE, PHAN_RATE) == 79
    assert_log_spectra_close(actual[:len(expected)], expected, LOG_MEL_ATOL)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_filterbank_equals_librosa(htk):
    import librosa

    config = SpectrogramConfig.log_mel(mel_scale="htk" if htk else "slaney")
    expected = librosa.filters.mel(sr=PHAN_RATE, n_fft=2048, n_mels=64, fmin=50.0,
                                   fmax=PHAN_RATE / 2, htk=htk, norm="slaney", dtype=np.float64)
    np.testing.assert_allclose(filterbank_matrix(config, PHAN_RATE), expected.T, rtol=1e-9,
                               atol=1e-12)


def test_gammatone_weights_equal_the_gammatone_package():
    from gammatone.fftweight import fft_weights

    config = SpectrogramConfig.log_gammatone()
    # The package's (Ellis's fft2gammatonemx) rows run from low to high centre frequency.
    expected, _ = fft_weights(2048, PHAN_RATE, 64, 1.0, 50.0, PHAN_RATE / 2, 1025)
    np.testing.assert_allclose(filterbank_matrix(config, PHAN_RATE), expected.T, rtol=1e-9,
                               atol=1e-12)


def test_gammatone_centres_are_erb_spaced():
    centres = erb_center_frequencies(50.0, PHAN_RATE / 2, 64)
    # Glasberg & Moore (1990) ERB-rate: 21.4 log10(1 + 0.00437 f).
    erb_rate = 21.4 * np.log10(1 + 0.00437 * centres)
    steps = np.diff(erb_rate)
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-4)
    assert centres[0] == pytest.approx(50.0) and centres[-1] < PHAN_RATE / 2
    # One step above the top centre is Nyquist (the ERB space's excluded upper end).
    assert 21.4 * np.log10(1 + 0.00437 * PHAN_RATE / 2) == pytest.approx(
        erb_rate[-1] + steps.mean(), rel=1e-4)
    # Each filter's response peaks at its centre frequency (within one 10.8 Hz FFT bin) and
    # is 1 there (0.965 at worst, between bins); the top one, whose skirt reaches past Nyquist
    # in the digital filter, is the exception.
    weights = filterbank_matrix(SpectrogramConfig.log_gammatone(), PHAN_RATE)
    bin_hz = np.arange(1025) * PHAN_RATE / 2048
    peaks = bin_hz[weights.argmax(axis=0)]
    assert np.abs(peaks - centres)[:-1].max() < PHAN_RATE / 2048
    np.testing.assert_allclose(weights.max(axis=0)[:-1], 1.0, atol=0.04)


@pytest.mark.parametrize("kind", ["speech", "tonal", "noise", "silent"])
def test_log_gammatone_matches_numpy(kind):
    import librosa
    from gammatone.fftweight import fft_weights

    waveform = _signals(PHAN_RATE)[kind].astype(np.float32)
    config = SpectrogramConfig.log_gammatone()
    actual = Spectrogram(config, PHAN_RATE)(waveform[None]).numpy()[0]
    magnitude = np.abs(librosa.stft(waveform.astype(np.float64), n_fft=2048, hop_length=551,
                                    win_length=1102, window="hann", center=True))
    weights, _ = fft_weights(2048, PHAN_RATE, 64, 1.0, 50.0, PHAN_RATE / 2, 1025)
    expected = np.log(weights @ magnitude + 1e-6).T[:80]
    assert actual.shape == (config.frames(2 * PHAN_RATE, PHAN_RATE), 64) == (80, 64)
    assert_log_spectra_close(actual, expected, LOG_GAMMATONE_ATOL)


def test_spectrogram_of_a_multichannel_waveform_is_per_channel():
    signals = _signals(seconds=0.5)
    stereo = np.stack([signals["speech"], signals["tonal"]], axis=-1).astype(np.float32)
    layer = Spectrogram(SpectrogramConfig.kaldi_fbank(), SAMPLE_RATE)
    both = layer(stereo[None]).numpy()
    assert both.shape == (1, 49, 80, 2) == layer.compute_output_shape((1, 8000, 2))
    for channel in range(2):
        np.testing.assert_allclose(both[..., channel], layer(stereo[None, :, channel]).numpy(),
                                   atol=1e-5)


def test_spectrogram_config_is_plain_json_and_checks_its_values():
    from lean.config import from_dict

    for config in (SpectrogramConfig.kaldi_fbank(), SpectrogramConfig.log_mel(),
                   SpectrogramConfig.log_gammatone(bands=32)):
        restored = from_dict(SpectrogramConfig, json.loads(json.dumps(dataclasses.asdict(config))))
        assert restored == config
    with pytest.raises(LeanError, match="spectrogram window='blackman'; expected one of hann"):
        SpectrogramConfig(window="blackman", log_offset=1e-6)
    with pytest.raises(LeanError, match="log_offset or log_floor must be positive"):
        SpectrogramConfig()
    with pytest.raises(LeanError, match="fft_length=1000: the rfft formulation needs a power"):
        SpectrogramConfig.log_mel(fft_length=1000)
    with pytest.raises(LeanError, match="high_hz \\(12000.0\\) <= Nyquist \\(8000.0\\)"):
        Spectrogram(SpectrogramConfig.kaldi_fbank(high_hz=12000.0), SAMPLE_RATE)
    with pytest.raises(LeanError, match="fbank: 300 samples per window make no 320-sample frame"):
        Spectrogram(SpectrogramConfig.kaldi_fbank(), SAMPLE_RATE, name="fbank")(
            np.zeros((1, 300), np.float32))


# --- Waveform front ops against NumPy / SciPy ------------------------------------------------


@pytest.mark.parametrize("drop_first", [True, False])
def test_pre_emphasis_equals_lfilter(drop_first):
    import scipy.signal

    rng = np.random.default_rng(3)
    stereo = rng.standard_normal((2, 4800, 2)).astype(np.float32)
    expected = scipy.signal.lfilter([1.0, -0.97], [1.0], stereo.astype(np.float64), axis=1)
    if drop_first:  # Jung et al.'s (479999, 2) from 480000 samples
        expected = expected[:, 1:]
    layer = PreEmphasis(0.97, drop_first=drop_first)
    actual = layer(stereo).numpy()
    assert actual.shape == layer.compute_output_shape(stereo.shape) == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    np.testing.assert_allclose(layer(stereo[..., 0]).numpy(), expected[..., 0], atol=1e-6)


def test_z_normalization_equals_numpy_per_example_and_channel():
    rng = np.random.default_rng(4)
    scales = np.array([[[0.01, 3.0]], [[1.0, 0.2]]])
    waveform = (rng.standard_normal((2, 4000, 2)) * scales + 0.3).astype(np.float32)
    mean = waveform.astype(np.float64).mean(axis=1, keepdims=True)
    std = waveform.astype(np.float64).std(axis=1, keepdims=True)
    actual = ZNormalization()(waveform).numpy()
    np.testing.assert_allclose(actual, (waveform - mean) / std, atol=1e-4)
    np.testing.assert_allclose(actual.std(axis=1), 1.0, atol=1e-4)
    mono = ZNormalization()(waveform[..., 1]).numpy()
    np.testing.assert_allclose(mono, actual[..., 1], atol=1e-5)
    silence = ZNormalization()(np.zeros((1, 4000), np.float32)).numpy()
    assert np.isfinite(silence).all() and not silence.any()


def array_split_maxima(waveform: np.ndarray, input_rate: int, output_rate: int) -> np.ndarray:
    """Lu et al.'s preprocessing: each second in `output_rate` np.array_split parts, the signed
    maximum of each; a partial last second keeps the parts of the split it holds whole."""
    maxima = []
    for start in range(0, len(waveform), input_rate):
        second = waveform[start:start + input_rate]
        bounds = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(input_rate),
                                                                 output_rate)])
        maxima += [second[lo:hi].max(axis=0) for lo, hi in zip(bounds[:-1], bounds[1:])
                   if hi <= len(second)]
    return np.stack(maxima)


@pytest.mark.parametrize("input_rate, output_rate", [(16000, 4000), (44100, 4000),
                                                     (22050, 4000), (8000, 3000)])
def test_max_decimation_equals_array_split_per_second(input_rate, output_rate):
    rng = np.random.default_rng(5)
    samples = int(2.37 * input_rate)  # two seconds and a partial one
    waveform = rng.standard_normal((2, samples, 2)).astype(np.float32)
    layer = MaxDecimation(input_rate=input_rate, output_rate=output_rate)
    actual = layer(waveform).numpy()
    expected = np.stack([array_split_maxima(clip, input_rate, output_rate) for clip in waveform])
    assert actual.shape == layer.compute_output_shape(waveform.shape) == expected.shape
    assert actual.shape[1] == layer.output_samples(samples)
    assert layer.output_samples(2 * input_rate) == 2 * output_rate
    np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(layer(waveform[..., 0]).numpy(), expected[..., 0])


def test_max_decimation_by_a_factor_is_a_max_pool_of_any_length():
    waveform = np.random.default_rng(6).standard_normal((3, 4003)).astype(np.float32)
    expected = waveform[:, :4000].reshape(3, 1000, 4).max(axis=2)  # signed max, tail dropped
    np.testing.assert_array_equal(MaxDecimation(4)(waveform).numpy(), expected)
    # Variable-length input (Lu et al. truncate each batch to its shortest clip).
    inputs = keras.Input((None,))
    model = keras.Model(inputs, MaxDecimation(4)(inputs))
    np.testing.assert_array_equal(model(waveform).numpy(), expected)
    with pytest.raises(LeanError, match="give either factor or both input_rate and output_rate"):
        MaxDecimation(4, input_rate=16000, output_rate=4000)
    with pytest.raises(LeanError, match="0 < output_rate \\(8000\\) <= input_rate \\(4000\\)"):
        MaxDecimation(input_rate=4000, output_rate=8000)
    with pytest.raises(LeanError, match="non-integer rate ratio needs a fixed number of samples"):
        MaxDecimation(input_rate=44100, output_rate=4000)(keras.Input((None,)))


# --- Serialisation and export: one model holding every frontend ------------------------------


def _every_frontend_model() -> keras.Model:
    """[1, 32000] (2 s at 16 kHz) -> one vector: every frontend's output, flattened."""
    waveform = keras.Input((32000,), batch_size=1, name="waveform")
    stereo = keras.layers.Reshape((16000, 2), name="as_stereo")(waveform)
    outputs = [
        Spectrogram(SpectrogramConfig.kaldi_fbank(), 16000, name="fbank")(waveform),
        Spectrogram(SpectrogramConfig.kaldi_fbank(bands=40), 16000, name="stereo_fbank")(stereo),
        # The 22.05 kHz configs read these samples as 22.05 kHz audio (1.45 s).
        Spectrogram(SpectrogramConfig.log_mel(), 22050, name="log_mel")(waveform),
        Spectrogram(SpectrogramConfig.log_gammatone(bands=32), 22050,
                    name="log_gammatone")(waveform),
        YamnetLogMel(name="yamnet_log_mel")(waveform),
        MaxDecimation(input_rate=16000, output_rate=3000)(
            ZNormalization()(PreEmphasis(drop_first=False)(waveform))),
        MaxDecimation(4, name="stereo_decimation")(
            ZNormalization(name="stereo_z")(PreEmphasis(name="stereo_emphasis")(stereo))),
    ]
    flat = [keras.layers.Flatten(name=f"flat_{i}")(output) for i, output in enumerate(outputs)]
    return keras.Model(waveform, keras.layers.Concatenate(name="all")(flat))


FRONTEND_NAMES = ["fbank", "stereo_fbank", "log_mel", "log_gammatone", "yamnet_log_mel",
                  "pre_emphasis", "z_normalization", "max_decimation", "stereo_emphasis",
                  "stereo_z", "stereo_decimation"]


@pytest.fixture(scope="module")
def every_frontend():
    model = _every_frontend_model()
    signals = _signals(seconds=2.0)
    waveform = (signals["speech"] + signals["tonal"]).astype(np.float32)[None]
    return model, waveform


def test_every_frontend_round_trips_through_a_keras_file(every_frontend, tmp_path):
    model, waveform = every_frontend
    assert sorted(float_layer_names(model)) == sorted(FRONTEND_NAMES)
    path = tmp_path / "frontends.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert sorted(float_layer_names(loaded)) == sorted(FRONTEND_NAMES)
    for name in FRONTEND_NAMES:
        original, restored = model.get_layer(name), loaded.get_layer(name)
        assert isinstance(restored, Frontend) and type(restored) is type(original)
        assert restored.get_config() == original.get_config()
        assert restored.compute_dtype == "float32"
    np.testing.assert_array_equal(loaded(waveform).numpy(), model(waveform).numpy())


def test_every_frontend_converts_to_float32_tflite_builtins(every_frontend, tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model, waveform = every_frontend
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    path = tmp_path / "frontends.tflite"
    path.write_bytes(converter.convert())
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == out["dtype"] == np.float32
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op in ("WHILE", "CUSTOM") for op in ops)
    assert {"RFFT2D", "FULLY_CONNECTED", "LOG", "REDUCE_MAX"} <= ops
    interpreter.set_tensor(inp["index"], waveform)
    interpreter.invoke()
    expected = model(waveform).numpy()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), expected, atol=1e-4,
                               rtol=1e-5)


def test_fft_matmul_yamnet_log_mel_runs_in_tflite_without_rfft(tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from lean.frontends import YamnetLogMelConfig, _fft_matmul_constants

    waveform = keras.Input((SAMPLE_RATE,), batch_size=1)
    layer = YamnetLogMel(YamnetLogMelConfig(formulation="fft_matmul"))
    model = keras.Model(waveform, layer(waveform))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model_bytes = converter.convert()
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "RFFT2D" not in ops and "COMPLEX_ABS" not in ops and "FULLY_CONNECTED" in ops
    assert not any(op.startswith("Flex") or op in ("WHILE", "CUSTOM") for op in ops)
    signals = _signals()
    clip = (signals["speech"] + signals["tonal"])[:SAMPLE_RATE].astype(np.float32)[None]
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], clip)
    interpreter.invoke()
    dft = YamnetLogMel(YamnetLogMelConfig(formulation="dft_matmul"))(clip).numpy()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), dft, atol=2e-3, rtol=0)
    # 512 = 32 x 16: [32, 64], two [16, 32] twiddle tables and [32, 16] are all the constants
    # besides the mel matrix; the folded DFT matrix alone is [400, 470].
    inner, outer, rows, *matrices = _fft_matmul_constants(512, 240)
    assert (inner, outer, rows) == (16, 32, 8)
    assert sum(matrix.size for matrix in matrices) == 32 * 64 + 2 * 16 * 32 + 32 * 16
    assert len(model_bytes) < 0.2 * 400 * 470 * 4


def test_frontends_compute_in_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        waveform = keras.Input((16000,))
        layers = [Spectrogram(SpectrogramConfig.kaldi_fbank()), PreEmphasis(), ZNormalization(),
                  MaxDecimation(4)]
        for layer in layers:
            assert layer.compute_dtype == "float32" and layer(waveform).dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)
