"""Frontends: named float32 Keras layers from waveform to what a model's body reads.

YAMNet's log-mel patch (`YamnetLogMel`); one log filterbank spectrogram for the Kaldi fbank,
log-mel and log-Gammatone features (`Spectrogram` + `SpectrogramConfig`); and waveform front
ops (`PreEmphasis`, `ZNormalization`, `MaxDecimation`, `Downmix`, the polyphase resampler
`PolyphaseResample`, `WaveformWindows`).

Every frontend subclasses `Frontend`, which declares `keeps_float_in_export`: the exporter
finds such layers by that flag (`float_layer_names`) and keeps every op under their names
float32, whatever the rest of the model is quantized to (int8 destroys log-mel values: 9.7
log-mel units of error measured with an int8 YAMNet frontend). All are TFLite builtin ops.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Optional

import keras
import numpy as np
from keras import ops

from lean.errors import LeanError


class Frontend(keras.layers.Layer):
    """Base of the frontends: a float32 layer (also under mixed precision) kept float in export."""

    keeps_float_in_export = True
    # (time axis, frequency axis) of a spectrogram frontend's output, where training-time
    # SpecAugment masks (lean.training.specaugment); None: the output is no spectrogram.
    spectrogram_axes = None

    def __init__(self, **kwargs):
        # float16 DFT sums lose the quiet bands that a log spectrum resolves.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)


class _ConfiguredFrontend(Frontend):
    """A frontend built from a frozen config dataclass (or its dict) and the input's rate."""

    default_name = "frontend"

    def __init__(self, frontend_config=None, sample_rate: int = 16000, **kwargs):
        kwargs.setdefault("name", self.default_name)
        super().__init__(**kwargs)
        if isinstance(frontend_config, dict):
            frontend_config = type(self.default_config())(**frontend_config)
        self.frontend_config = frontend_config or self.default_config()
        self.sample_rate = int(sample_rate)

    @classmethod
    def default_config(cls):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate,
                "frontend_config": dataclasses.asdict(self.frontend_config)}


def with_formulation(params, formulation: str):
    """`params` (a family's params dataclass) with every frontend config in it (a field holding
    a `formulation`, nested dataclasses included) switched to `formulation`; the same object
    when it holds none. Export uses it to build the same model with another spectrum op."""
    if formulation not in _FORMULATIONS:
        raise LeanError(f"frontend formulation {formulation!r}; expected one of "
                        f"{', '.join(_FORMULATIONS)}")
    if not dataclasses.is_dataclass(params):
        return params
    changes = {}
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if field.name == "formulation" and isinstance(value, str) and value != formulation:
            changes[field.name] = formulation
        elif dataclasses.is_dataclass(value):
            replaced = with_formulation(value, formulation)
            if replaced is not value:
                changes[field.name] = replaced
    return dataclasses.replace(params, **changes) if changes else params


def float_layer_names(model) -> list[str]:
    """Names of the layers in `model` (nested models included) that declare
    `keeps_float_in_export`, in model order."""
    names = []
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "keeps_float_in_export", False):
            names.append(layer.name)
        names += [name for name in float_layer_names(layer) if name not in names]
    return names


@dataclass(frozen=True)
class YamnetLogMelConfig:
    """YAMNet's log-mel frontend (tensorflow/models research/audioset/yamnet params.py); the
    sample rate is the model's input rate (YAMNet's is 16 kHz)."""

    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.001
    patch_frames: int = 96
    # dft_matmul: the folded windowed-DFT matmul (measured below); rfft: the builtin RFFT2D of
    # `Spectrogram`'s rfft path (smaller file, slower); fft_matmul: the FFT as two small
    # matmuls (`_fft_matmul`: as small as rfft, faster than dft_matmul).
    formulation: str = "dft_matmul"

    def __post_init__(self):
        if self.formulation not in _FORMULATIONS:
            raise LeanError(f"YAMNet log-mel formulation={self.formulation!r}; expected one of "
                            f"{', '.join(_FORMULATIONS)}")

    def spectrogram_config(self) -> "SpectrogramConfig":
        """The same log-mel as a `SpectrogramConfig` (periodic Hann, |FFT| over the next power
        of two, HTK mel triangles between mel_min_hz and mel_max_hz, log(mel + log_offset))."""
        return SpectrogramConfig(
            bands=self.mel_bands, window_seconds=self.stft_window_seconds,
            hop_seconds=self.stft_hop_seconds, window="hann", periodic_window=True,
            padding="valid", spectrum="magnitude", filterbank="mel", low_hz=self.mel_min_hz,
            high_hz=self.mel_max_hz, mel_scale="htk", mel_triangles="mel", mel_norm="none",
            log_offset=self.log_offset, formulation=self.formulation)

    def framing(self, sample_rate: int) -> "Framing":
        """Window, hop and FFT length in samples at `sample_rate`."""
        window = int(round(sample_rate * self.stft_window_seconds))
        # YAMNet: the FFT length is the next power of two above the window (400 -> 512).
        fft_length = 2 ** int(math.ceil(math.log2(window)))
        return Framing(sample_rate, window, int(round(sample_rate * self.stft_hop_seconds)),
                       fft_length)

    def patch_samples(self, sample_rate: int) -> int:
        """Waveform samples one patch reads (15,600 of a 1 s window at 16 kHz)."""
        framing = self.framing(sample_rate)
        return (self.patch_frames - 1) * framing.hop + framing.window


@dataclass(frozen=True)
class Framing:
    """A short-time analysis in samples: frames of `window` every `hop`, FFT of `fft_length`."""

    sample_rate: int
    window: int
    hop: int
    fft_length: int


# How the magnitude spectrum is computed, and why. Measured with
# benchmarks/suite/frontend_formulations.py: float32 TFLite, LiteRT 2.3 + XNNPACK, 1 thread,
# median of 500 runs, the frontend alone on one 1 s window, this project's 2-core AVX2 host
# (shared, so absolute numbers are noisy; the order held over repeated runs). All exact to
# 2e-6 of each other and builtin ops only:
#   tf.signal.stft + abs (RFFT2D + COMPLEX_ABS, outside XNNPACK)     0.64 ms   0.07 MB
#   YAMNet's tflite_compatible DFT: 512-pad, 2 x [512, 257] matmuls   0.72 ms   1.13 MB
#   Hann folded into one [400, 514] DFT matrix (20.1M MACs)          0.56 ms   0.89 MB
#   folded, only bins 5..239: [400, 470] (18.0M MACs), frame op <- used 0.51 ms  0.82 MB
#   the same as one strided CONV_2D (framing inside the conv)        0.65 ms   0.82 MB
# The real FFT is the smallest file but slower: TFLite's RFFT2D and COMPLEX_ABS kernels alone
# took 0.59 ms. Magnitudes do not depend on where the 400 samples sit inside the 512-point
# frame (a shift only changes phase), so the zero padding disappears; bins at or below 125 Hz
# and at or above 7500 Hz carry zero mel weight (31.25 Hz spacing), so only bins 5..239 are
# computed. Framing: tf.signal.frame (a GATHER) and three static slices of the waveform viewed
# as [98, 160] hop blocks ran equally fast, but with the slices the int8 converter left the
# wave encoder's first input projection (2 x [400, 512], fed by the same waveform) in float32.


def hertz_to_mel(frequencies_hertz: np.ndarray) -> np.ndarray:
    """HTK-style mel scale as used by YAMNet: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(frequencies_hertz, dtype=np.float64) / 700.0)


def mel_weight_matrix(config: YamnetLogMelConfig, sample_rate: int = 16000) -> np.ndarray:
    """YAMNet's [fft_length // 2 + 1, mel_bands] triangular mel matrix (float64).

    Same construction as `tf.signal.linear_to_mel_weight_matrix`: triangles equally spaced in
    mel between mel_min_hz and mel_max_hz, evaluated at each FFT bin's mel value; DC row zero.
    """
    num_bins = config.framing(sample_rate).fft_length // 2 + 1
    bin_mels = hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_bins))
    edges = np.linspace(
        hertz_to_mel(config.mel_min_hz), hertz_to_mel(config.mel_max_hz), config.mel_bands + 2
    )
    weights = _triangles(bin_mels, edges)
    weights[0, :] = 0.0
    return weights


def _triangles(positions: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[len(positions), len(edges) - 2] overlapping triangles: band b rises from edges[b] to 1
    at edges[b + 1] and falls to 0 at edges[b + 2], linearly in the positions' unit."""
    positions = np.asarray(positions, dtype=np.float64)[:, None]
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (positions - lower) / (center - lower)
    falling = (upper - positions) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


def used_bins(config: YamnetLogMelConfig, sample_rate: int = 16000) -> tuple[int, int]:
    """[first, stop) range of FFT bins with any non-zero mel weight."""
    nonzero = np.flatnonzero(mel_weight_matrix(config, sample_rate).any(axis=1))
    return int(nonzero[0]), int(nonzero[-1]) + 1


@functools.lru_cache(maxsize=8)
def frontend_matrices(config: YamnetLogMelConfig, sample_rate: int = 16000
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(windowed DFT [window, 2 * bins] with cos columns then -sin columns, mel [bins, bands]).

    The periodic Hann window is folded into the DFT rows; only the bins the mel matrix uses
    are kept. Both float32.
    """
    framing = config.framing(sample_rate)
    n = np.arange(framing.window)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / framing.window)  # periodic, as tf.signal's
    first, stop = used_bins(config, sample_rate)
    k = np.arange(first, stop)
    phase = 2.0 * np.pi * np.outer(n, k) / framing.fft_length
    dft = np.concatenate([np.cos(phase), -np.sin(phase)], axis=1) * hann[:, None]
    mel = mel_weight_matrix(config, sample_rate)[first:stop]
    return dft.astype(np.float32), mel.astype(np.float32)


def _log_mel_from_frames(frames, config: YamnetLogMelConfig, sample_rate: int):
    """[..., frames, window] float32 -> [..., frames, mel_bands] log-mel (TF ops)."""
    import tensorflow as tf

    dft, mel = frontend_matrices(config, sample_rate)
    num_bins = mel.shape[0]
    # spectrum has shape [..., frames, 2 * bins]: real parts, then imaginary parts.
    spectrum = tf.matmul(frames, tf.constant(dft, name="windowed_dft"))
    power = tf.square(spectrum)
    # magnitude has shape [..., frames, bins].
    magnitude = tf.sqrt(power[..., :num_bins] + power[..., num_bins:])
    mel_spectrum = tf.matmul(magnitude, tf.constant(mel, name="mel_matrix"))
    return tf.math.log(mel_spectrum + config.log_offset)


def _patch_frames(waveform, config: YamnetLogMelConfig, sample_rate: int):
    """[B, samples] -> [B, patch_frames, window] frames of the first patch."""
    import tensorflow as tf

    framing = config.framing(sample_rate)
    return tf.signal.frame(waveform[:, :config.patch_samples(sample_rate)], framing.window,
                           framing.hop)


@keras.saving.register_keras_serializable(package="lean")
class YamnetLogMel(_ConfiguredFrontend):
    """YAMNet's log-mel patch: waveform [B, samples] -> log-mel [B, patch_frames, mel_bands].

    With the default config at 16 kHz: [B, 16000] -> [B, 96, 64], from the first 15,600
    samples (96 frames of 400 samples, hop 160). No trainable weights; builtin TFLite ops only.
    """

    default_name = "yamnet_log_mel"
    spectrogram_axes = (1, 2)

    def __init__(self, frontend_config: YamnetLogMelConfig | dict | None = None,
                 sample_rate: int = 16000, **kwargs):
        super().__init__(frontend_config, sample_rate, **kwargs)
        self.min_samples = self.frontend_config.patch_samples(self.sample_rate)

    def build(self, input_shape):
        samples = input_shape[-1]
        if samples is not None and samples < self.min_samples:
            raise LeanError(
                f"{self.name}: {samples} samples per window, the {self.frontend_config.patch_frames}"
                f"-frame log-mel patch needs at least {self.min_samples}"
            )
        super().build(input_shape)

    def call(self, waveform):
        import tensorflow as tf

        cfg = self.frontend_config
        # frames has shape [B, patch_frames, window_samples].
        frames = _patch_frames(waveform, cfg, self.sample_rate)
        if cfg.formulation == "dft_matmul":
            # log_mel has shape [B, patch_frames, mel_bands].
            return _log_mel_from_frames(frames, cfg, self.sample_rate)
        spectrogram = cfg.spectrogram_config()
        constants = spectrogram_constants(spectrogram, self.sample_rate)
        # magnitude has shape [B, patch_frames, used bins].
        magnitude = _spectrum(frames, spectrogram, spectrogram.framing(self.sample_rate),
                              constants)
        mel_spectrum = tf.matmul(magnitude, tf.constant(constants.filterbank, name="mel_matrix"))
        return tf.math.log(mel_spectrum + cfg.log_offset)

    @classmethod
    def default_config(cls) -> YamnetLogMelConfig:
        return YamnetLogMelConfig()

    def compute_output_shape(self, input_shape):
        cfg = self.frontend_config
        return (input_shape[0], cfg.patch_frames, cfg.mel_bands)


def waveform_to_log_mel(waveform: np.ndarray, sample_rate: int = 16000,
                        config: YamnetLogMelConfig | None = None,
                        model_rate: int = 16000) -> np.ndarray:
    """Log-mel spectrogram of a 1-D waveform, YAMNet's features, all frames (no padding).

    Args:
        waveform: 1-D float waveform in [-1, 1].
        sample_rate: its sample rate; other rates are resampled (soxr) to `model_rate`.
        config: the frontend parameters (default: YAMNet's).
        model_rate: the rate the frontend runs at (YAMNet's 16 kHz).
    Returns:
        float32 array [1 + (samples - window) // hop, mel_bands].
    """
    import tensorflow as tf

    config = config or YamnetLogMelConfig()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise LeanError(f"waveform_to_log_mel: expected a 1-D waveform, got shape {waveform.shape}")
    if sample_rate != model_rate:
        import soxr

        waveform = soxr.resample(waveform, sample_rate, model_rate).astype(np.float32)
    framing = config.framing(model_rate)
    if waveform.shape[0] < framing.window:
        raise LeanError(
            f"waveform_to_log_mel: {waveform.shape[0]} samples, need at least "
            f"{framing.window} for one frame"
        )
    frames = tf.signal.frame(waveform, framing.window, framing.hop)
    return _log_mel_from_frames(frames, config, model_rate).numpy()


# --- General spectrogram: Kaldi fbank, log-mel and log-Gammatone from one layer -----------

_WINDOWS = ("hann", "hamming", "povey", "rectangular")
_PADDINGS = ("valid", "center", "center_drop_last")
_SPECTRA = ("power", "magnitude")
_FILTERBANKS = ("mel", "gammatone")
_MEL_SCALES = ("htk", "slaney")
_MEL_TRIANGLES = ("mel", "hertz")
_MEL_NORMS = ("none", "slaney")
_FORMULATIONS = ("dft_matmul", "rfft", "fft_matmul")


@dataclass(frozen=True)
class SpectrogramConfig:
    """A log filterbank spectrogram: framing, window, spectrum, filterbank, log, normalisation.

    Plain fields only (JSON round trip through config.json). The named constructors give the
    papers' settings: `kaldi_fbank` (Zhou et al., acoustic pornography recognition), `log_mel`
    and `log_gammatone` (Phan et al., spatio-temporal attention pooling). Per frame the steps
    are, in Kaldi's order: scale by `input_scale`, subtract the frame mean (`remove_dc_offset`),
    pre-emphasise (x[n] - a x[n-1], x[0] - a x[0]), window, |DFT| or |DFT|^2 over `fft_length`
    points, filterbank, log(max(e, log_floor) + log_offset), then optionally subtract each
    band's mean over the frames of the window (`mean_normalization`).
    """

    bands: int = 64
    window_seconds: float = 0.025
    hop_seconds: float = 0.010
    # None: the next power of two at or above the window (Kaldi's round_to_power_of_two).
    fft_length: Optional[int] = None
    window: str = "hann"  # hann | hamming | povey (Kaldi: hann^0.85) | rectangular
    # True: periodic (librosa, tf.signal); False: symmetric (Kaldi's windows).
    periodic_window: bool = True
    # valid: frames inside the waveform (Kaldi snip_edges=True), 1 + (N - window) // hop;
    # center: frame t centred on sample t * hop, zero padded (librosa center=True), 1 + N // hop;
    # center_drop_last: the same without the last frame, N // hop (one frame per hop).
    padding: str = "valid"
    # Multiplies the waveform first: 32768 feeds Kaldi the int16 scale it expects.
    input_scale: float = 1.0
    remove_dc_offset: bool = False
    pre_emphasis: float = 0.0
    spectrum: str = "power"  # power | magnitude
    filterbank: str = "mel"  # mel | gammatone
    low_hz: float = 0.0
    high_hz: Optional[float] = None  # None: Nyquist
    mel_scale: str = "htk"  # htk: 1127 ln(1 + f / 700) | slaney: linear below 1 kHz, log above
    # mel: triangles linear in mel (Kaldi, tf.signal) | hertz: linear in Hz (librosa)
    mel_triangles: str = "mel"
    mel_norm: str = "none"  # none | slaney: each triangle scaled to unit area over Hz
    gammatone_width: float = 1.0  # bandwidth in ERBs
    log_offset: float = 0.0  # added before the log
    log_floor: float = 0.0  # energies below it are raised to it before the log
    mean_normalization: bool = False
    # dft_matmul: one [window, 2 x used bins] windowed-DFT matmul; rfft: RFFT2D over fft_length;
    # fft_matmul: one radix-sqrt(fft_length) FFT step as two small matmuls (`_fft_matmul`).
    formulation: str = "dft_matmul"

    def __post_init__(self):
        choices = {"window": _WINDOWS, "padding": _PADDINGS, "spectrum": _SPECTRA,
                   "filterbank": _FILTERBANKS, "mel_scale": _MEL_SCALES,
                   "mel_triangles": _MEL_TRIANGLES, "mel_norm": _MEL_NORMS,
                   "formulation": _FORMULATIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise LeanError(f"spectrogram {name}={getattr(self, name)!r}; expected one of "
                                f"{', '.join(allowed)}")
        if self.bands < 1 or not self.window_seconds > 0 or not self.hop_seconds > 0:
            raise LeanError(f"spectrogram: bands ({self.bands}), window_seconds "
                            f"({self.window_seconds}) and hop_seconds ({self.hop_seconds}) "
                            "must be positive")
        if not (self.log_offset > 0 or self.log_floor > 0):
            raise LeanError("spectrogram: log_offset or log_floor must be positive (log of 0)")
        if self.fft_length is not None and self.formulation in ("rfft", "fft_matmul") and (
                self.fft_length & (self.fft_length - 1)):
            raise LeanError(f"spectrogram fft_length={self.fft_length}: the {self.formulation} "
                            "formulation needs a power of two")

    @classmethod
    def kaldi_fbank(cls, bands: int = 80, window_seconds: float = 0.020,
                    hop_seconds: float = 0.010, low_hz: float = 20.0,
                    high_hz: Optional[float] = None, mean_normalization: bool = True,
                    **overrides) -> "SpectrogramConfig":
        """Kaldi's `compute-fbank-feats` log filterbank with its defaults, no dither.

        Zhou et al. (acoustic pornography recognition) use "80-dimensional log filter banks"
        from a 20 ms window with a 10 ms stride at 16 kHz, citing a speech recognition
        (ESPnet) and a speaker verification system, both Kaldi-style front ends; window,
        pre-emphasis, edges, log floor and normalisation are not given, so Kaldi's defaults
        are taken: povey window, pre-emphasis 0.97, DC offset
        removal, power spectrum over the next power of two (320 -> 512 points), triangles
        linear in the mel scale 1127 ln(1 + f / 700) from 20 Hz to Nyquist, log(max(e,
        FLT_EPSILON)), snip_edges framing (1 + (N - 320) // 160 frames: 99 per second).
        The waveform is scaled to int16 range (32768), so values equal Kaldi's on 16-bit audio.
        Dither is a training-time perturbation and is left out. Per-utterance mean
        normalisation (CMN, the usual step after fbank in speaker verification) is on by
        default: it removes the clip's gain and channel colouring, which vary widely across
        internet soundtracks, and needs no training-set statistics; the "utterance" is the
        model's window. `mean_normalization=False` gives Kaldi's raw log energies.

        Args:
            bands: filterbank channels (paper: 80).
            window_seconds, hop_seconds: frame length and shift (paper: 20 ms, 10 ms).
            low_hz, high_hz: filterbank edges (Kaldi: 20 Hz and Nyquist).
            mean_normalization: subtract each band's mean over the window's frames.
            overrides: any other SpectrogramConfig field.
        Returns:
            The config.
        """
        values = dict(bands=bands, window_seconds=window_seconds, hop_seconds=hop_seconds,
                      window="povey", periodic_window=False, padding="valid",
                      input_scale=32768.0, remove_dc_offset=True, pre_emphasis=0.97,
                      spectrum="power", filterbank="mel", low_hz=low_hz, high_hz=high_hz,
                      mel_scale="htk", mel_triangles="mel", mel_norm="none",
                      log_floor=float(np.finfo(np.float32).eps),
                      mean_normalization=mean_normalization, formulation="dft_matmul")
        return cls(**{**values, **overrides})

    @classmethod
    def log_mel(cls, bands: int = 64, window_seconds: float = 0.050, hop_seconds: float = 0.025,
                fft_length: int = 2048, low_hz: float = 50.0, high_hz: Optional[float] = None,
                **overrides) -> "SpectrogramConfig":
        """A librosa-style log-mel spectrogram; defaults are Phan et al.'s (attention pooling).

        The paper: 64 mel filters from 50 Hz to Nyquist at 22.05 kHz, 50 ms frames with 50 %
        overlap, "T = 80 frames" for a 2 s segment. 50 ms is 1102.5 samples: the window is
        floor(seconds x rate) = 1102 (as Kaldi truncates) and the hop 551, inside a 2048-point
        FFT. 44,100 samples give 79 frames without padding and 81 centred, never 80, so frames
        are centred (zero padding, librosa's center=True) and the last one is dropped: N // hop
        frames, one per hop, 80 for 2 s. Window, power and mel formula are not given; these
        are librosa.feature.melspectrogram's defaults (periodic Hann, power spectrum, Slaney
        mel scale, triangles linear in Hz, Slaney area normalisation) with log(mel + 1e-6).
        The rfft formulation is the default here: a 1102 x 2038 windowed-DFT matrix would be
        9 MB and 4x slower than RFFT2D (measured, see the comment above `_spectrum`).

        Args:
            bands: mel filters (paper: 64).
            window_seconds, hop_seconds: frame length and hop (paper: 50 ms, 50 % overlap).
            fft_length: DFT points (2048 holds the 1102-sample window at 22.05 kHz).
            low_hz, high_hz: filterbank edges (paper: 50 Hz to Nyquist).
            overrides: any other SpectrogramConfig field (e.g. spectrum="magnitude",
                mel_scale="htk", mel_norm="none").
        Returns:
            The config.
        """
        values = dict(bands=bands, window_seconds=window_seconds, hop_seconds=hop_seconds,
                      fft_length=fft_length, window="hann", periodic_window=True,
                      padding="center_drop_last", spectrum="power", filterbank="mel",
                      low_hz=low_hz, high_hz=high_hz, mel_scale="slaney",
                      mel_triangles="hertz", mel_norm="slaney", log_offset=1e-6,
                      formulation="rfft")
        return cls(**{**values, **overrides})

    @classmethod
    def log_gammatone(cls, bands: int = 64, window_seconds: float = 0.050,
                      hop_seconds: float = 0.025, fft_length: int = 2048, low_hz: float = 50.0,
                      high_hz: Optional[float] = None, **overrides) -> "SpectrogramConfig":
        """A log-Gammatone spectrogram: Phan et al.'s (attention pooling) alternative feature.

        The paper repeats its log-mel extraction "using M = 64 Gammatone filters in
        replacement of the above-mentioned Mel-scale filters"; it gives no construction. This
        is Ellis's FFT approximation of a gammatonegram: the STFT magnitude weighted by the
        magnitude responses of Slaney's 4th-order gammatone filters (Glasberg-Moore ERB
        bandwidths, 1 ERB wide), centre frequencies equally spaced in ERB rate from 50 Hz up
        to Nyquist, each response 1 at its centre frequency. Same framing as `log_mel`
        (80 frames of 1102 samples, hop 551, 2048-point FFT for 2 s at 22.05 kHz) and the
        same log(energy + 1e-6); magnitude, as Ellis's gammatonegram.

        Args:
            bands: gammatone filters (paper: 64).
            window_seconds, hop_seconds, fft_length: as `log_mel`.
            low_hz: the lowest centre frequency; high_hz: the ERB-space upper limit (Nyquist).
            overrides: any other SpectrogramConfig field.
        Returns:
            The config.
        """
        values = dict(bands=bands, window_seconds=window_seconds, hop_seconds=hop_seconds,
                      fft_length=fft_length, window="hann", periodic_window=True,
                      padding="center_drop_last", spectrum="magnitude",
                      filterbank="gammatone", low_hz=low_hz, high_hz=high_hz,
                      log_offset=1e-6, formulation="rfft")
        return cls(**{**values, **overrides})

    def framing(self, sample_rate: int) -> Framing:
        """Window, hop and FFT length in samples at `sample_rate` (seconds x rate, floored)."""
        # The epsilon keeps 0.025 s x 16000 (399.99999...) at 400.
        window = int(math.floor(self.window_seconds * sample_rate + 1e-6))
        hop = int(math.floor(self.hop_seconds * sample_rate + 1e-6))
        if window < 1 or hop < 1:
            raise LeanError(f"spectrogram: a {self.window_seconds} s window and "
                            f"{self.hop_seconds} s hop are under one sample at {sample_rate} Hz")
        fft_length = self.fft_length or 2 ** int(math.ceil(math.log2(window)))
        if fft_length < window:
            raise LeanError(f"spectrogram fft_length={fft_length} is shorter than the "
                            f"{window}-sample window at {sample_rate} Hz")
        return Framing(sample_rate, window, hop, fft_length)

    def frames(self, num_samples: int, sample_rate: int) -> int:
        """Frames the layer makes of `num_samples` samples at `sample_rate` (0 when too short)."""
        framing = self.framing(sample_rate)
        if self.padding == "valid":
            return max(0, 1 + (num_samples - framing.window) // framing.hop)
        if self.padding == "center":
            return 1 + num_samples // framing.hop
        return num_samples // framing.hop

    def high_edge(self, sample_rate: int) -> float:
        """The filterbank's upper edge in Hz (Nyquist unless `high_hz` is set)."""
        high = sample_rate / 2.0 if self.high_hz is None else float(self.high_hz)
        if not 0.0 <= self.low_hz < high <= sample_rate / 2.0:
            raise LeanError(f"spectrogram: need 0 <= low_hz ({self.low_hz}) < high_hz ({high}) "
                            f"<= Nyquist ({sample_rate / 2.0}) at {sample_rate} Hz")
        return high


def mel_scale(frequencies_hertz: np.ndarray, scale: str) -> np.ndarray:
    """Hz -> mel: 'htk' 1127 ln(1 + f / 700); 'slaney' (Auditory Toolbox) f / (200 / 3) below
    1 kHz, 15 + 27 ln(f / 1000) / ln(6.4) above."""
    hz = np.asarray(frequencies_hertz, dtype=np.float64)
    if scale == "htk":
        return hertz_to_mel(hz)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz * 3.0 / 200.0,
                    15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step)


def mel_to_hertz(mels: np.ndarray, scale: str) -> np.ndarray:
    """The inverse of `mel_scale`."""
    mels = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * np.expm1(mels / 1127.0)
    log_step = np.log(6.4) / 27.0
    return np.where(mels < 15.0, mels * 200.0 / 3.0, 1000.0 * np.exp(log_step * (mels - 15.0)))


# Glasberg & Moore's ERB parameters, as in Slaney's gammatone filters (Apple TR #35):
# ERB(f) = f / EAR_Q + MIN_BW, and ERB rate proportional to ln(f + EAR_Q * MIN_BW).
EAR_Q = 9.26449
MIN_BW = 24.7


def erb_center_frequencies(low_hz: float, high_hz: float, bands: int) -> np.ndarray:
    """`bands` ascending centre frequencies equally spaced in ERB rate (Slaney's ERBSpace): the
    lowest is `low_hz`, the highest one step below `high_hz`."""
    offset = EAR_Q * MIN_BW
    fraction = np.arange(bands, 0, -1) / bands
    return -offset + (high_hz + offset) * ((low_hz + offset) / (high_hz + offset)) ** fraction


def gammatone_weights(bin_hz: np.ndarray, centers_hz: np.ndarray, sample_rate: int,
                      width: float = 1.0) -> np.ndarray:
    """[bins, bands] magnitude responses of Slaney's digital 4th-order gammatone filters at
    `bin_hz`, each divided by its response at its centre frequency (Ellis's FFT gammatone
    weights).

    Each filter is four cascaded biquads sharing the pole pair r e^{+-j theta} (theta the
    centre frequency, r = exp(-2 pi 1.019 ERB / rate)); their zeros sit at
    r (cos theta + s sin theta) for s = +-sqrt(3 +- 2 sqrt 2).
    """
    centers = np.asarray(centers_hz, dtype=np.float64)
    erb = width * (centers / EAR_Q + MIN_BW)
    radius = np.exp(-2.0 * np.pi * 1.019 * erb / sample_rate)
    theta = 2.0 * np.pi * centers / sample_rate
    pole = radius * np.exp(1j * theta)
    signs = (np.sqrt(3 + 2 * np.sqrt(2)), -np.sqrt(3 + 2 * np.sqrt(2)),
             np.sqrt(3 - 2 * np.sqrt(2)), -np.sqrt(3 - 2 * np.sqrt(2)))
    zeros = [radius * (np.cos(theta) + s * np.sin(theta)) for s in signs]

    def response(z):
        numerator = np.prod([np.abs(z - zero) for zero in zeros], axis=0)
        return numerator / np.abs((z - pole) * (z - np.conj(pole))) ** 4

    on_circle = np.exp(2j * np.pi * np.asarray(bin_hz, dtype=np.float64) / sample_rate)[:, None]
    return response(on_circle) / response(np.exp(1j * theta))[None, :]


def filterbank_matrix(config: SpectrogramConfig, sample_rate: int) -> np.ndarray:
    """The [fft_length // 2 + 1, bands] filterbank (float64) applied to the spectrum.

    Args:
        config: the spectrogram settings (filterbank, bands, edges, mel options).
        sample_rate: the waveform's rate.
    Returns:
        Weights, one column per band, one row per FFT bin from DC to Nyquist.
    """
    framing = config.framing(sample_rate)
    high = config.high_edge(sample_rate)
    bin_hz = np.arange(framing.fft_length // 2 + 1) * sample_rate / framing.fft_length
    if config.filterbank == "gammatone":
        centers = erb_center_frequencies(config.low_hz, high, config.bands)
        return gammatone_weights(bin_hz, centers, sample_rate, config.gammatone_width)
    edge_mels = np.linspace(mel_scale(config.low_hz, config.mel_scale),
                            mel_scale(high, config.mel_scale), config.bands + 2)
    edge_hz = mel_to_hertz(edge_mels, config.mel_scale)
    if config.mel_triangles == "mel":
        weights = _triangles(mel_scale(bin_hz, config.mel_scale), edge_mels)
    else:
        weights = _triangles(bin_hz, edge_hz)
    if config.mel_norm == "slaney":
        weights *= 2.0 / (edge_hz[2:] - edge_hz[:-2])
    return weights


def analysis_window(config: SpectrogramConfig, length: int) -> np.ndarray:
    """The [length] float64 analysis window."""
    import scipy.signal

    if config.window == "rectangular":
        return np.ones(length)
    if config.window == "povey":
        # Kaldi: a symmetric Hann raised to 0.85 (periodic_window=True makes it periodic).
        return scipy.signal.get_window("hann", length, fftbins=config.periodic_window) ** 0.85
    return scipy.signal.get_window(config.window, length, fftbins=config.periodic_window)


def frame_preprocessing(config: SpectrogramConfig, length: int) -> np.ndarray:
    """[length, length] float64 matrix M with frame @ M = the scaled, DC-removed,
    pre-emphasised and windowed frame (all four steps are linear)."""
    matrix = config.input_scale * np.eye(length)
    if config.remove_dc_offset:
        matrix = matrix @ (np.eye(length) - 1.0 / length)
    if config.pre_emphasis:
        # y[n] = x[n] - a x[n - 1], y[0] = (1 - a) x[0], as Kaldi.
        emphasis = np.eye(length) - config.pre_emphasis * np.eye(length, k=1)
        emphasis[0, 0] -= config.pre_emphasis
        matrix = matrix @ emphasis
    return matrix * analysis_window(config, length)[None, :]


@dataclass(frozen=True)
class SpectrogramConstants:
    """What a `Spectrogram` layer multiplies by: FFT bins [first, stop) with non-zero filterbank
    weight, the folded analysis matrix (dft_matmul only), the filterbank rows of those bins."""

    first_bin: int
    stop_bin: int
    analysis: Optional[np.ndarray]  # [window, 2 x bins]: cos columns, then -sin columns
    filterbank: np.ndarray  # [bins, bands]


@functools.lru_cache(maxsize=16)
def spectrogram_constants(config: SpectrogramConfig, sample_rate: int) -> SpectrogramConstants:
    """The float32 constants of a `Spectrogram` layer (built once per config and rate)."""
    framing = config.framing(sample_rate)
    weights = filterbank_matrix(config, sample_rate)
    nonzero = np.flatnonzero(weights.any(axis=1))
    first, stop = int(nonzero[0]), int(nonzero[-1]) + 1
    analysis = None
    if config.formulation == "dft_matmul":
        # Magnitudes do not depend on where the window sits in the fft_length-point frame, so
        # the zero padding drops out and the frame's linear steps fold into the DFT rows.
        phase = 2.0 * np.pi * np.outer(np.arange(framing.window), np.arange(first, stop))
        phase /= framing.fft_length
        dft = np.concatenate([np.cos(phase), -np.sin(phase)], axis=1)
        analysis = (frame_preprocessing(config, framing.window) @ dft).astype(np.float32)
    return SpectrogramConstants(first, stop, analysis, weights[first:stop].astype(np.float32))


# Which formulation each named config defaults to, and why. Measured with
# benchmarks/suite/frontend_formulations.py (float32 TFLite, LiteRT + XNNPACK, 1 thread,
# median of 300 runs, one window, this project's shared 2-core AMD EPYC host; the order held
# over two runs), all within 1e-4 of the Keras layer, builtin ops only:
#                              dft_matmul            rfft (RFFT2D)
#   kaldi_fbank, 1 s 16 kHz     0.35 ms  0.74 MB      0.51 ms  0.09 MB   -> dft_matmul
#   log_mel, 2 s 22.05 kHz      8.23 ms  9.25 MB      1.67 ms  0.27 MB   -> rfft
#   log_gammatone, 2 s          7.74 ms  9.30 MB      1.89 ms  0.27 MB   -> rfft
# A 320-sample frame against 255 used bins is a small matmul (as YAMNet's frontend measured);
# a 1102-sample frame against 1019 (mel) or all 1025 (gammatone) bins is 180M MACs per 2 s,
# where the FFT wins by 4x and the file is 34x smaller.


@functools.lru_cache(maxsize=16)
def _fft_matmul_constants(fft_length: int, stop_bin: int):
    """The matrices of `_fft_matmul` for fft_length = outer x inner (both powers of two)."""
    inner = 2 ** (int(np.log2(fft_length)) // 2)  # 512 -> 16
    outer = fft_length // inner  # 512 -> 32
    rows = -(-stop_bin // outer)  # the k2 that reach bin stop_bin - 1
    n1 = np.arange(outer)
    phase = 2.0 * np.pi * np.outer(n1, n1) / outer
    first = np.concatenate([np.cos(phase), -np.sin(phase)], axis=1)  # [outer, 2 outer]
    twiddle = -2.0 * np.pi * np.outer(np.arange(inner), n1) / fft_length  # [inner, outer]
    phase = 2.0 * np.pi * np.outer(np.arange(inner), np.arange(rows)) / inner
    cos, sin = np.cos(phase), -np.sin(phase)  # [inner, rows]
    second = np.block([[cos, sin], [-sin, cos]])  # [2 inner, 2 rows]
    return (inner, outer, rows, first.astype(np.float32), np.cos(twiddle).astype(np.float32),
            np.sin(twiddle).astype(np.float32), second.astype(np.float32))


def _fft_matmul(x, fft_length: int, stop_bin: int):
    """Real and imaginary parts of the DFT of x [..., window] (zero-padded to fft_length), bins
    [0, >= stop_bin) in natural order, as one Cooley-Tukey step: fft_length = outer x inner,
    n = inner n1 + n2, k = k1 + outer k2. An outer-point DFT over n1 (one [outer, 2 outer]
    matmul), the twiddle factors exp(-2 pi i k1 n2 / N) (elementwise), an inner-point DFT over
    n2 for the k2 that are needed (one [2 inner, 2 k2] matmul). For YAMNet's 512-point frames
    that is 49k multiply-adds per frame where the folded DFT matrix needs 188k, with 14 KB of
    constants instead of 752 KB, all FULLY_CONNECTED, MUL, ADD and TRANSPOSE builtins (which
    XNNPACK runs; RFFT2D it does not)."""
    import tensorflow as tf

    inner, outer, rows, first, twiddle_cos, twiddle_sin, second = _fft_matmul_constants(
        fft_length, stop_bin)
    # Static leading dims (a batch of None becomes -1): no shape ops in the TFLite graph.
    lead = [-1 if size is None else size for size in x.shape[:-1]]
    rank = len(x.shape)
    pad = [[0, 0]] * (rank - 1) + [[0, fft_length - int(x.shape[-1])]]
    x = tf.pad(x, pad) if fft_length > int(x.shape[-1]) else x
    # [..., outer (n1), inner (n2)] -> [..., inner (n2), outer (n1)]
    blocks = tf.reshape(x, lead + [outer, inner])
    perm = list(range(rank - 1)) + [rank, rank - 1]
    blocks = tf.transpose(blocks, perm)
    stage = tf.matmul(blocks, tf.constant(first, name="fft_outer_dft"))
    real, imag = stage[..., :outer], stage[..., outer:]  # [..., n2, k1]
    c, s = tf.constant(twiddle_cos, name="fft_twiddle_cos"), tf.constant(twiddle_sin,
                                                                       name="fft_twiddle_sin")
    real, imag = real * c - imag * s, real * s + imag * c
    # [..., k1, 2 inner (re n2, im n2)] @ [2 inner, 2 rows] -> [..., k1, 2 rows (re k2, im k2)]
    twiddled = tf.concat([tf.transpose(real, perm), tf.transpose(imag, perm)], axis=-1)
    spectrum = tf.matmul(twiddled, tf.constant(second, name="fft_inner_dft"))
    # [..., k1, k2] -> [..., k2, k1] -> bins k = k1 + outer k2 in order.
    bins = lead + [rows * outer]
    real = tf.reshape(tf.transpose(spectrum[..., :rows], perm), bins)
    imag = tf.reshape(tf.transpose(spectrum[..., rows:], perm), bins)
    return real, imag


def _spectrum(frames, config: SpectrogramConfig, framing: Framing,
              constants: SpectrogramConstants):
    """[..., frames, window] -> [..., frames, used bins] power or magnitude spectrum."""
    import tensorflow as tf

    num_bins = constants.stop_bin - constants.first_bin
    if config.formulation == "dft_matmul":
        # spectrum has shape [..., frames, 2 * bins]: real parts, then imaginary parts.
        spectrum = tf.matmul(frames, tf.constant(constants.analysis, name="windowed_dft"))
        squares = tf.square(spectrum)
        power = squares[..., :num_bins] + squares[..., num_bins:]
        return power if config.spectrum == "power" else tf.sqrt(power)
    x = frames * config.input_scale if config.input_scale != 1.0 else frames
    if config.remove_dc_offset:
        x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    if config.pre_emphasis:
        a = config.pre_emphasis
        x = tf.concat([x[..., :1] * (1.0 - a), x[..., 1:] - a * x[..., :-1]], axis=-1)
    x = x * analysis_window(config, framing.window).astype(np.float32)
    if config.formulation == "fft_matmul":
        real, imag = _fft_matmul(x, framing.fft_length, constants.stop_bin)
        power = tf.square(real) + tf.square(imag)
        values = power if config.spectrum == "power" else tf.sqrt(power)
        return values[..., constants.first_bin:constants.stop_bin]
    # spectrum has shape [..., frames, fft_length // 2 + 1] (complex64).
    spectrum = tf.signal.rfft(x, fft_length=[framing.fft_length])
    if config.spectrum == "magnitude":
        values = tf.abs(spectrum)
    else:
        values = tf.square(tf.math.real(spectrum)) + tf.square(tf.math.imag(spectrum))
    # Sliced after the complex ops: TFLite has no builtin STRIDED_SLICE of complex64.
    return values[..., constants.first_bin:constants.stop_bin]


@keras.saving.register_keras_serializable(package="lean")
class Spectrogram(_ConfiguredFrontend):
    """Log filterbank energies: waveform [B, samples] -> [B, frames, bands].

    A multi-channel waveform [B, samples, channels] gives [B, frames, bands, channels]
    (each channel analysed alike). `frames = config.frames(samples, sample_rate)`, e.g.
    [B, 16000] -> [B, 99, 80] for `SpectrogramConfig.kaldi_fbank()` at 16 kHz and
    [B, 44100] -> [B, 80, 64] for `log_mel()` / `log_gammatone()` at 22.05 kHz. The
    filterbank (and for dft_matmul the windowed DFT) are constant matrices built once in NumPy;
    no trainable weights; TFLite builtin ops only (GATHER framing, FULLY_CONNECTED or RFFT2D,
    LOG, MEAN).
    """

    default_name = "spectrogram"
    spectrogram_axes = (1, 2)

    def __init__(self, frontend_config: SpectrogramConfig | dict | None = None,
                 sample_rate: int = 16000, **kwargs):
        super().__init__(frontend_config, sample_rate, **kwargs)
        self.framing = self.frontend_config.framing(self.sample_rate)
        self.frontend_config.high_edge(self.sample_rate)  # validates the edges now

    def build(self, input_shape):
        if len(input_shape) not in (2, 3):
            raise LeanError(f"{self.name}: expected a waveform [batch, samples] or [batch, "
                            f"samples, channels], got shape {tuple(input_shape)}")
        samples = input_shape[1]
        if samples is None:
            if self.frontend_config.padding != "valid":
                raise LeanError(f"{self.name}: padding={self.frontend_config.padding!r} needs "
                                "a fixed number of samples per window")
        elif self.frontend_config.frames(samples, self.sample_rate) < 1:
            raise LeanError(f"{self.name}: {samples} samples per window make no "
                            f"{self.framing.window}-sample frame")
        super().build(input_shape)

    def _framed(self, x):
        """[..., samples] -> [..., frames, window]: padded as the config says, then framed."""
        import tensorflow as tf

        framing, cfg = self.framing, self.frontend_config
        samples = x.shape[-1]
        if samples is None:  # valid padding, any length
            return tf.signal.frame(x, framing.window, framing.hop)
        count = cfg.frames(samples, self.sample_rate)
        needed = (count - 1) * framing.hop + framing.window
        left = 0
        if cfg.padding != "valid":
            # Frame t is centred on sample t * hop: the window starts half a window earlier,
            # placed in the fft_length frame as librosa pads it ((fft - window) // 2 first).
            left = framing.fft_length // 2 - (framing.fft_length - framing.window) // 2
        right = max(0, needed - left - samples)
        if left or right:
            x = tf.pad(x, [[0, 0]] * (x.shape.rank - 1) + [[left, right]])
        return tf.signal.frame(x[..., :needed], framing.window, framing.hop)

    def call(self, waveform):
        return self.log_energies(self.spectrum(waveform))

    def spectrum(self, waveform):
        """waveform [B, samples] -> power or magnitude spectrum [B, frames, used bins]
        ([B, samples, channels] -> [B, channels, frames, used bins])."""
        import tensorflow as tf

        multichannel = waveform.shape.rank == 3
        # x has shape [B, samples] or [B, channels, samples].
        x = tf.transpose(waveform, [0, 2, 1]) if multichannel else waveform
        # frames has shape [B, (channels,) frames, window].
        frames = self._framed(x)
        return _spectrum(frames, self.frontend_config, self.framing,
                         spectrogram_constants(self.frontend_config, self.sample_rate))

    def log_energies(self, spectrum):
        """`spectrum`'s output -> log filterbank energies [B, frames, bands] (multi-channel:
        [B, frames, bands, channels])."""
        import tensorflow as tf

        cfg = self.frontend_config
        constants = spectrogram_constants(cfg, self.sample_rate)
        # energies has shape [B, (channels,) frames, bands].
        energies = tf.matmul(spectrum, tf.constant(constants.filterbank, name="filterbank"))
        if cfg.log_floor:
            energies = tf.maximum(energies, cfg.log_floor)
        if cfg.log_offset:
            energies = energies + cfg.log_offset
        features = tf.math.log(energies)
        if cfg.mean_normalization:
            features = features - tf.reduce_mean(features, axis=-2, keepdims=True)
        # [B, channels, frames, bands] -> [B, frames, bands, channels].
        return tf.transpose(features, [0, 2, 3, 1]) if spectrum.shape.rank == 4 else features

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else self.frontend_config.frames(samples,
                                                                          self.sample_rate)
        return (input_shape[0], frames, self.frontend_config.bands, *input_shape[2:])

    @classmethod
    def default_config(cls) -> SpectrogramConfig:
        return SpectrogramConfig.kaldi_fbank()


# --- Waveform front ops ---------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lean")
class PreEmphasis(Frontend):
    """y[n] = x[n] - a x[n-1] along the samples: [B, samples(, channels)] ->
    [B, samples - 1(, channels)].

    Jung et al. (scene classification with tag vectors) feed the CNN a (479999, 2) stereo
    waveform "with pre-emphasis applied": 10 s at 48 kHz minus one sample, so the first
    sample, which has no predecessor, is dropped (`drop_first=True`, the default). With
    `drop_first=False` the length is kept and y[0] = x[0] (scipy.signal.lfilter([1, -a], 1,
    x)). The paper gives no coefficient; 0.97 is the usual one (Kaldi's default).
    """

    def __init__(self, coefficient: float = 0.97, drop_first: bool = True, **kwargs):
        kwargs.setdefault("name", "pre_emphasis")
        super().__init__(**kwargs)
        self.coefficient = float(coefficient)
        self.drop_first = bool(drop_first)

    def build(self, input_shape):
        _check_waveform_rank(self.name, input_shape)
        if input_shape[1] is not None and input_shape[1] < 2:
            raise LeanError(f"{self.name}: needs at least 2 samples, got {input_shape[1]}")
        super().build(input_shape)

    def call(self, waveform):
        import tensorflow as tf

        emphasised = waveform[:, 1:] - self.coefficient * waveform[:, :-1]
        if self.drop_first:
            return emphasised
        return tf.concat([waveform[:, :1], emphasised], axis=1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        if samples is not None and self.drop_first:
            samples -= 1
        return (input_shape[0], samples, *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "coefficient": self.coefficient,
                "drop_first": self.drop_first}


@keras.saving.register_keras_serializable(package="lean")
class ZNormalization(Frontend):
    """Per example and channel, (x - mean) / sqrt(variance + epsilon) over the samples:
    [B, samples(, channels)] -> the same shape.

    Lu et al. (CAB-CNN) "normalize the audio by subtracting the mean followed by dividing by
    the standard deviation" per file, before max-decimation and truncation to the first T
    seconds. In a model the clip is the input window, so a window that is the truncated file
    sees statistics of those T seconds, not of the whole file. `epsilon` (added to the
    variance) only keeps digital silence finite: it maps to zeros.
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        kwargs.setdefault("name", "z_normalization")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        _check_waveform_rank(self.name, input_shape)
        super().build(input_shape)

    def call(self, waveform):
        import tensorflow as tf

        centered = waveform - tf.reduce_mean(waveform, axis=1, keepdims=True)
        variance = tf.reduce_mean(tf.square(centered), axis=1, keepdims=True)
        return centered * tf.math.rsqrt(variance + self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="lean")
class MaxDecimation(Frontend):
    """Signed maximum over consecutive sub-intervals: [B, samples(, channels)] ->
    [B, samples'(, channels)].

    Lu et al. (CAB-CNN): "for every second of the audio, we partition the audio into 4,000
    sub-intervals and pick the maximum element of each sub-interval" (the signed maximum, not
    of |x|). Given `factor`, sub-intervals are blocks of `factor` samples (a max pool,
    samples' = samples // factor). Given `input_rate` and `output_rate`, each second is split
    as `np.array_split(second, output_rate)` does (the first input_rate % output_rate parts
    one sample longer); for an integer ratio that is the same max pool. A trailing partial
    second contributes the sub-intervals of that partition that it holds completely (so
    whole seconds give output_rate samples each; `output_samples` counts them). Static
    reshapes and REDUCE_MAX only: no gather, no index table in the exported file.
    """

    def __init__(self, factor: Optional[int] = None, input_rate: Optional[int] = None,
                 output_rate: Optional[int] = None, **kwargs):
        kwargs.setdefault("name", "max_decimation")
        super().__init__(**kwargs)
        if (factor is None) == (input_rate is None or output_rate is None):
            raise LeanError(f"{self.name}: give either factor or both input_rate and "
                            f"output_rate (got factor={factor}, input_rate={input_rate}, "
                            f"output_rate={output_rate})")
        if factor is not None:
            if int(factor) != factor or factor < 1:
                raise LeanError(f"{self.name}: factor={factor} must be a positive integer")
            input_rate, output_rate = int(factor), 1
        elif not (int(input_rate) == input_rate and int(output_rate) == output_rate
                  and 0 < output_rate <= input_rate):
            raise LeanError(f"{self.name}: need integer rates with 0 < output_rate "
                            f"({output_rate}) <= input_rate ({input_rate})")
        self.factor = None if factor is None else int(factor)
        self.input_rate, self.output_rate = int(input_rate), int(output_rate)
        # One period of `period` samples -> `per_period` maxima: `long_blocks` blocks of
        # block + 1 samples, then blocks of `block` samples (np.array_split's order). An
        # integer ratio is one block per period.
        self.period, self.per_period = self.input_rate, self.output_rate
        if self.input_rate % self.output_rate == 0:
            self.period, self.per_period = self.input_rate // self.output_rate, 1
        self.block, self.long_blocks = divmod(self.period, self.per_period)

    def build(self, input_shape):
        _check_waveform_rank(self.name, input_shape)
        if input_shape[1] is None and self.long_blocks:
            raise LeanError(f"{self.name}: a non-integer rate ratio needs a fixed number of "
                            "samples per window")
        super().build(input_shape)

    def output_samples(self, samples: int) -> int:
        """Sub-intervals held completely by `samples` input samples."""
        periods, tail = divmod(samples, self.period)
        long_span = self.long_blocks * (self.block + 1)
        in_tail = min(tail, long_span) // (self.block + 1) + max(0, tail - long_span) // self.block
        return periods * self.per_period + in_tail

    def call(self, waveform):
        import tensorflow as tf

        def block_max(x, start, count, size):
            # x[:, start : start + count * size] as [B, count, size(, channels)] -> max.
            if count == 0:
                return None
            blocks = x[:, start:start + count * size]
            return tf.reduce_max(tf.reshape(blocks, [-1, count, size, *x.shape[2:]]), axis=2)

        samples = waveform.shape[1]
        if samples is None:  # integer ratio: one block size, any length
            usable = tf.shape(waveform)[1] // self.block * self.block
            blocks = tf.reshape(waveform[:, :usable],
                                [tf.shape(waveform)[0], -1, self.block, *waveform.shape[2:]])
            return tf.reduce_max(blocks, axis=2)
        if not self.long_blocks:
            return block_max(waveform, 0, samples // self.block, self.block)
        periods, tail = divmod(samples, self.period)
        long_span = self.long_blocks * (self.block + 1)
        pieces = []
        if periods:
            # seconds has shape [B, periods, input_rate(, channels)].
            seconds = tf.reshape(waveform[:, :periods * self.period],
                                 [-1, periods, self.period, *waveform.shape[2:]])
            long_max = tf.reduce_max(tf.reshape(
                seconds[:, :, :long_span],
                [-1, periods, self.long_blocks, self.block + 1, *waveform.shape[2:]]), axis=3)
            short_max = tf.reduce_max(tf.reshape(
                seconds[:, :, long_span:],
                [-1, periods, self.per_period - self.long_blocks, self.block,
                 *waveform.shape[2:]]), axis=3)
            pieces.append(tf.reshape(tf.concat([long_max, short_max], axis=2),
                                     [-1, periods * self.per_period, *waveform.shape[2:]]))
        start = periods * self.period
        pieces.append(block_max(waveform, start, min(tail, long_span) // (self.block + 1),
                                self.block + 1))
        pieces.append(block_max(waveform, start + long_span,
                                max(0, tail - long_span) // self.block, self.block))
        pieces = [piece for piece in pieces if piece is not None]
        return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        samples = None if samples is None else self.output_samples(samples)
        return (input_shape[0], samples, *input_shape[2:])

    def get_config(self):
        config = {**super().get_config(), "factor": self.factor}
        if self.factor is None:
            config.update(input_rate=self.input_rate, output_rate=self.output_rate)
        return config


# --- Waveform front ops: channel downmix, rational resampling, windows ------------------------


@keras.saving.register_keras_serializable(package="lean")
class Downmix(Frontend):
    """Mean over channels: [B, samples, channels] -> [B, samples] (mono passes through).

    The same downmix the data pipeline applies to a mono model's files (the channel mean).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "downmix")
        super().__init__(**kwargs)

    def build(self, input_shape):
        _check_waveform_rank(self.name, input_shape)
        super().build(input_shape)

    def call(self, waveform):
        if len(waveform.shape) == 2:
            return waveform
        return keras.ops.mean(waveform, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2])


@dataclass(frozen=True, eq=False)
class PolyphaseFilter:
    """A rational resampler by up/down with a Kaiser-window lowpass FIR, laid out as one strided
    convolution: output phase r of block n is y[n * up + r] = sum_t x[n * down + first + t] *
    kernel[t, r] (with x zero outside the signal)."""

    up: int
    down: int
    # The prototype lowpass at up * input_rate, scaled by `up` (unit passband gain), odd length.
    taps: np.ndarray
    # kernel [span, up]: taps regrouped per output phase.
    kernel: np.ndarray
    # Offset of the kernel's first input sample from n * down (<= 0: the left zero padding).
    first: int

    def output_length(self, samples: int) -> int:
        """ceil(samples * up / down), as scipy.signal.resample_poly."""
        return -(-samples * self.up // self.down)


@functools.lru_cache(maxsize=16)
def polyphase_filter(input_rate: int, output_rate: int, attenuation_db: float = 90.0,
                     passband: float = 0.94) -> PolyphaseFilter:
    """The polyphase form of a Kaiser lowpass for input_rate -> output_rate.

    Args:
        input_rate, output_rate: sample rates in Hz.
        attenuation_db: stopband attenuation (and passband ripple) of the Kaiser design.
        passband: passband edge as a fraction of the lower Nyquist frequency; the transition
            band runs from there to that Nyquist frequency (0.94 at 16 kHz: flat to 7520 Hz,
            above YAMNet's 7500 Hz top mel edge).
    Returns:
        PolyphaseFilter; `taps` is the filter scipy.signal.resample_poly(x, up, down,
        window=taps / up) applies, so that call is an independent reference.
    """
    from scipy import signal

    if input_rate <= 0 or output_rate <= 0:
        raise LeanError(f"resampling {input_rate} Hz -> {output_rate} Hz: rates must be positive")
    if not 0.0 < passband < 1.0 or attenuation_db <= 21.0:
        raise LeanError(f"resampling filter: passband {passband} must be in (0, 1) and "
                        f"attenuation {attenuation_db} dB above 21 dB")
    divisor = math.gcd(input_rate, output_rate)
    up, down = output_rate // divisor, input_rate // divisor
    # Frequencies relative to the Nyquist frequency of the upsampled rate up * input_rate.
    nyquist = 1.0 / max(up, down)
    numtaps, beta = signal.kaiserord(attenuation_db, (1.0 - passband) * nyquist)
    numtaps += 1 - numtaps % 2  # odd: a whole-sample delay of (numtaps - 1) / 2
    taps = up * signal.firwin(numtaps, (1.0 + passband) / 2.0 * nyquist, window=("kaiser", beta))
    # y[m] = sum_i x[i] taps[m * down + delay - i * up]; with m = n * up + r and i = n * down + q
    # the tap index rM + delay - qL no longer depends on n: one kernel column per phase r.
    delay = (numtaps - 1) // 2
    first = -((numtaps - 1 - delay) // up)  # ceil((delay - numtaps + 1) / up)
    last = ((up - 1) * down + delay) // up
    q = np.arange(first, last + 1)[:, None]
    index = np.arange(up)[None, :] * down + delay - q * up
    valid = (index >= 0) & (index < numtaps)
    kernel = np.where(valid, taps[np.clip(index, 0, numtaps - 1)], 0.0)
    return PolyphaseFilter(up, down, taps, kernel.astype(np.float32), int(first))


@keras.saving.register_keras_serializable(package="lean")
class PolyphaseResample(Frontend):
    """Rational resampling in the graph: waveform [B, samples] -> [B, ceil(samples * up / down)].

    A Kaiser-window FIR (`polyphase_filter`) applied in polyphase form as one strided
    convolution (TFLite PAD + CONV_2D + RESHAPE + STRIDED_SLICE builtins): `up` output phases
    per block of `down` input samples. Zero-phase (the filter delay is compensated) with zeros
    beyond both ends, as scipy.signal.resample_poly; the filter is a constant, not a weight.
    """

    def __init__(self, input_rate: int, output_rate: int, attenuation_db: float = 90.0,
                 passband: float = 0.94, **kwargs):
        kwargs.setdefault("name", "resample")
        super().__init__(**kwargs)
        self.input_rate, self.output_rate = int(input_rate), int(output_rate)
        self.attenuation_db, self.passband = float(attenuation_db), float(passband)
        self.filter = polyphase_filter(self.input_rate, self.output_rate, self.attenuation_db,
                                       self.passband)

    def call(self, waveform):
        import tensorflow as tf

        resampler = self.filter
        samples = waveform.shape[-1]
        outputs = resampler.output_length(samples)
        span = resampler.kernel.shape[0]
        blocks = -(-outputs // resampler.up)
        # Zeros before the signal for negative offsets, after it for the last block's span.
        left = -resampler.first
        right = max(0, (blocks - 1) * resampler.down + span - left - samples)
        # padded has shape [B, left + samples + right, 1].
        padded = tf.pad(waveform[:, :, None], [[0, 0], [left, right], [0, 0]])
        kernel = tf.constant(resampler.kernel[:, None, :], name="polyphase_kernel")
        # phases has shape [B, blocks, up]: output sample n * up + r at [n, r].
        phases = tf.nn.conv1d(padded, kernel, stride=resampler.down, padding="VALID")
        return tf.reshape(phases, [-1, blocks * resampler.up])[:, :outputs]

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        return (input_shape[0], None if samples is None else self.filter.output_length(samples))

    def get_config(self):
        return {**super().get_config(), "input_rate": self.input_rate,
                "output_rate": self.output_rate, "attenuation_db": self.attenuation_db,
                "passband": self.passband}


@keras.saving.register_keras_serializable(package="lean")
class WaveformWindows(Frontend):
    """Cuts each waveform into fixed windows and stacks them on the batch axis:
    [B, samples] -> [B * len(starts), window] (window k of clip b at row b * len(starts) + k).

    Static slices (STRIDED_SLICE + PACK, or one RESHAPE when the windows tile the waveform).
    """

    def __init__(self, window: int, starts, **kwargs):
        kwargs.setdefault("name", "windows")
        super().__init__(**kwargs)
        self.window = int(window)
        self.starts = tuple(int(start) for start in starts)
        if not self.starts or self.window < 1 or min(self.starts) < 0:
            raise LeanError(f"{self.name}: invalid windows of {window} samples at {starts}")

    def build(self, input_shape):
        samples = input_shape[-1]
        if samples is not None and self.starts[-1] + self.window > samples:
            raise LeanError(f"{self.name}: window {self.window} at {self.starts[-1]} runs past "
                            f"the {samples}-sample waveform")
        super().build(input_shape)

    def call(self, waveform):
        window, starts = self.window, self.starts
        tiles = starts == tuple(range(0, len(starts) * window, window))
        if tiles and waveform.shape[-1] == len(starts) * window:
            return keras.ops.reshape(waveform, (-1, window))
        # stacked has shape [B, windows, window].
        stacked = keras.ops.stack([waveform[:, start:start + window] for start in starts], axis=1)
        return keras.ops.reshape(stacked, (-1, window))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch * len(self.starts), self.window)

    def get_config(self):
        return {**super().get_config(), "window": self.window, "starts": list(self.starts)}


def _check_waveform_rank(name: str, input_shape) -> None:
    if len(input_shape) not in (2, 3):
        raise LeanError(f"{name}: expected a waveform [batch, samples] or [batch, samples, "
                        f"channels], got shape {tuple(input_shape)}")


__all__ = [
    "Downmix",
    "Frontend",
    "MaxDecimation",
    "PolyphaseFilter",
    "PolyphaseResample",
    "PreEmphasis",
    "Spectrogram",
    "SpectrogramConfig",
    "WaveformWindows",
    "YamnetLogMel",
    "YamnetLogMelConfig",
    "ZNormalization",
    "erb_center_frequencies",
    "filterbank_matrix",
    "float_layer_names",
    "frontend_matrices",
    "gammatone_weights",
    "hertz_to_mel",
    "mel_scale",
    "mel_to_hertz",
    "mel_weight_matrix",
    "polyphase_filter",
    "spectrogram_constants",
    "waveform_to_log_mel",
]


# Minimum statistics of Martin (2001), Table III: M(D) for a minimum over D frames.
_MARTIN_WINDOW_FRAMES = (1, 2, 5, 8, 10, 15, 20, 30, 40, 60, 80, 120, 140, 160)
_MARTIN_M = (0.0, 0.26, 0.48, 0.58, 0.61, 0.668, 0.705, 0.762, 0.8, 0.841, 0.865, 0.89, 0.9, 0.91)


@dataclass(frozen=True)
class BackgroundSubtractionConfig:
    """Minimum-statistics background estimate and spectral subtraction, per frequency bin.

    After R. Martin, "Noise power spectral density estimation based on optimal smoothing and
    minimum statistics" (IEEE TSAP 2001), simplified to fixed parameters so that it is a few
    static float ops: the power P_t is smoothed recursively, S_t = a S_{t-1} + (1 - a) P_t
    (S_0 = P_0; Martin adapts a per bin, this keeps it fixed); the background estimate is the
    minimum of S over a window of D frames times Martin's bias compensation B (the minimum of
    D noisy estimates lies below their mean); the output is the spectral subtraction
    max(P_t - N_t, floor * N_t) with N_t = B min S.

    Measured with benchmarks/suite/background_estimate.py (200 synthetic 2 s segments at 25 ms
    hops: exponential periodogram frames of a random background plus three 5-15 frame events),
    mean |error| of N_t in dB for frames 0-9 / 10-29 / 30-79: centred 2.9 / 2.8 / 0.9, causal
    4.2 / 3.4 / 2.1; the mean error (bias) stays within 0.8 dB with the per-frame Q_eq below,
    against up to -2.4 dB with the steady-state Q_eq. Hence centred by default.
    """

    # a: the recursive smoothing factor of the power (Martin's alpha; 0.85 with 25 ms hops is a
    # time constant of about 150 ms).
    smoothing: float = 0.85
    # D in seconds: the minimum is taken over this much history (Martin: about 1.5 s, long
    # enough to bridge a foreground event, short enough to follow a changing background).
    min_window_seconds: float = 1.5
    # centred: the window is centred on the frame, so every frame of a short segment sees D / 2
    # to D frames; causal: it ends at the frame (Martin's online estimator), so the first frames
    # of a segment see almost none.
    alignment: typing.Literal["centred", "causal"] = "centred"
    # None: Martin's B(D, Q_eq) (his eq. 17) for the frames each window really holds, with Q_eq
    # the harmonic mean over the window of each smoothed frame's equivalent degrees of freedom
    # (2 / variance of S_t for independent exponential frames: 2 at t = 0, 2 (1 + a) / (1 - a)
    # in the steady state); a number: that fixed factor.
    bias: typing.Optional[float] = None
    # Spectral floor (Berouti et al. 1979): the output never falls below floor * N_t, so bins
    # that hold only background keep its spectral shape, 20 dB down, instead of zeros.
    floor: float = 0.01

    def __post_init__(self):
        if not 0.0 <= self.smoothing < 1.0:
            raise LeanError(f"background subtraction: smoothing {self.smoothing} must be in [0, 1)")
        if not self.min_window_seconds > 0:
            raise LeanError("background subtraction: min_window_seconds must be positive, not "
                            f"{self.min_window_seconds}")
        if self.alignment not in ("centred", "causal"):
            raise LeanError(f"background subtraction: alignment {self.alignment!r} must be "
                            "centred or causal")
        if self.bias is not None and not self.bias > 0:
            raise LeanError(f"background subtraction: bias {self.bias} must be positive")
        if not 0.0 <= self.floor <= 1.0:
            raise LeanError(f"background subtraction: floor {self.floor} must be in [0, 1]")

    def window_frames(self, hop_seconds: float) -> int:
        """D: frames in the minimum window at a frame hop of `hop_seconds` (60 at 25 ms)."""
        return max(1, int(round(self.min_window_seconds / hop_seconds)))

    def window_span(self, hop_seconds: float) -> tuple[int, int]:
        """(frames before, frames after) the frame that its minimum window covers."""
        window = self.window_frames(hop_seconds)
        before = window - 1 if self.alignment == "causal" else (window - 1) // 2
        return before, window - 1 - before

    def window_bounds(self, frames: int, hop_seconds: float) -> list[tuple[int, int]]:
        """[first, last] frame of the minimum window of each of `frames` frames, clipped to
        the segment (the first frames of a causal window, and both ends of a centred one, hold
        fewer than D frames)."""
        before, after = self.window_span(hop_seconds)
        return [(max(0, t - before), min(frames - 1, t + after)) for t in range(frames)]

    def smoothed_degrees(self, frames: int) -> np.ndarray:
        """Q_eq of S_t per frame [frames]: 2 / Var(S_t) for unit-mean exponential frames."""
        a, t = self.smoothing, np.arange(frames)
        variance = a ** (2 * t) + (1 - a) ** 2 * (1 - a ** (2 * t)) / (1 - a ** 2)
        return 2.0 / variance

    def frame_bias(self, frames: int, hop_seconds: float) -> np.ndarray:
        """B per frame [frames] (float64): the configured number, or Martin's B(D_t, Q_t) for
        the D_t frames each frame's window holds."""
        if self.bias is not None:
            return np.full(frames, float(self.bias))
        degrees = self.smoothed_degrees(frames)
        bias = []
        for first, last in self.window_bounds(frames, hop_seconds):
            held = degrees[first : last + 1]
            bias.append(minimum_statistics_bias(len(held), len(held) / np.sum(1.0 / held)))
        return np.array(bias)


def minimum_statistics_bias(window_frames: int, degrees: float) -> float:
    """Martin's (2001, eq. 17) bias compensation B(D, Q_eq) of a minimum over D frames.

    B = 1 + 2 (D - 1) (1 - M(D)) / (Q_eq - 2 M(D)), with Q_eq the equivalent degrees of freedom
    of the smoothed power (2 (1 + a) / (1 - a) in the steady state of a fixed smoothing factor
    a) and M(D) from Martin's Table III, interpolated in sqrt(D). B(1) = 1; B(60) = 1.82 at
    Q_eq = 24.7 (a = 0.85).
    """
    m = float(np.interp(np.sqrt(window_frames), np.sqrt(_MARTIN_WINDOW_FRAMES), _MARTIN_M))
    return 1.0 + 2.0 * (window_frames - 1) * (1.0 - m) / (degrees - 2.0 * m)


@keras.saving.register_keras_serializable(package="lean")
class BackgroundSubtraction(Frontend):
    """Background-subtracted power spectrum: power [B, T, K] -> [B, T, K] (float32, >= 0).

    The auxiliary channel of Phan et al. 2019 (after Han et al. 2017): minimum-statistics
    background estimate and spectral subtraction, `BackgroundSubtractionConfig`, on each of the
    K bins of a power spectrogram whose frames are `hop_seconds` apart. T must be static (the
    smoothing is one [T, T] matmul, the minimum a MAX_POOL over -S; builtin ops only).

    Limits on a 2 s segment (80 frames at 25 ms, D = 60): the estimate sees only the segment
    itself (the app has no longer history to give it), so the background is whatever stays at
    its level for most of a window, and a foreground sound that fills a whole window is taken
    for background and removed: 1.5 s mid-segment, 0.8 s at either end of a centred window. The
    smoothing starts at frame 0, so the first ~1 / (1 - a) = 7 frames have few degrees of
    freedom; the per-frame Q_eq keeps the bias within 1 dB (measured, see the config) but not
    the spread, so the estimate is 3 times noisier in the first 30 frames than later (mean
    |error| 2.8 against 0.9 dB, centred). A causal window gives frame 0 only itself: it is
    subtracted to the floor. Frames at 50 % overlap are correlated, so the true Q_eq is lower
    than the formula's and B somewhat too small.
    """

    def __init__(self, config: BackgroundSubtractionConfig | dict | None = None,
                 hop_seconds: float = 0.025, **kwargs):
        kwargs.setdefault("name", "background_subtraction")
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = BackgroundSubtractionConfig(**config)
        self.config = config or BackgroundSubtractionConfig()
        self.hop_seconds = float(hop_seconds)

    def build(self, input_shape):
        frames = input_shape[1]
        if frames is None:
            raise LeanError(f"{self.name}: needs a static number of frames")
        cfg = self.config
        steps = np.arange(frames)
        # smoothing[t, i]: the weight of P_i in S_t (S_0 = P_0, then the recursion).
        lag = steps[:, None] - steps[None, :]
        smoothing = np.where(lag >= 0, (1.0 - cfg.smoothing) * cfg.smoothing ** np.maximum(lag, 0),
                             0.0)
        smoothing[:, 0] = cfg.smoothing ** steps
        self._smoothing_t = smoothing.T.astype(np.float32)
        self._window = cfg.window_frames(self.hop_seconds)
        self._pad = cfg.window_span(self.hop_seconds)
        self._bias = cfg.frame_bias(frames, self.hop_seconds).astype(np.float32)[:, None]
        super().build(input_shape)

    def background(self, power):
        """The background estimate N [B, T, K]: the bias-compensated minimum of the smoothed
        power over each frame's window."""
        # smoothed has shape [B, T, K]: the [T, T] smoothing applied along time.
        smoothed = ops.transpose(
            ops.matmul(ops.transpose(power, (0, 2, 1)), self._smoothing_t), (0, 2, 1))
        # Minimum over each frame's window = -max of -S; the padding never wins the max.
        padded = ops.pad(-smoothed, ((0, 0), self._pad, (0, 0)),
                         constant_values=-np.finfo(np.float32).max)
        minimum = -ops.max_pool(padded, pool_size=self._window, strides=1, padding="valid")
        return minimum * self._bias

    def call(self, power):
        noise = self.background(power)
        return ops.maximum(power - noise, self.config.floor * noise)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config),
                "hop_seconds": self.hop_seconds}


@keras.saving.register_keras_serializable(package="lean")
class BackgroundSubtractedSpectrogram(Spectrogram):
    """A `Spectrogram` of the background-subtracted spectrum, optionally beside the plain one.

    waveform [B, samples] (mono) -> [B, frames, bands, 2] (channel 0 the plain log energies,
    channel 1 those of the background-subtracted spectrum: Phan et al.'s two-channel input S)
    or, with `keep_original=False`, [B, frames, bands] (the subtracted channel alone). One STFT
    serves both channels. The subtraction (`BackgroundSubtraction`, minimum statistics after
    Martin 2001) works on the power spectrum of every used FFT bin, before the filterbank; a
    magnitude spectrum (log_gammatone) is squared for it and its square root taken after.
    """

    default_name = "background_subtracted_spectrogram"

    def __init__(self, frontend_config: SpectrogramConfig | dict | None = None,
                 sample_rate: int = 16000,
                 background: BackgroundSubtractionConfig | dict | None = None,
                 keep_original: bool = True, **kwargs):
        super().__init__(frontend_config, sample_rate, **kwargs)
        self.subtraction = BackgroundSubtraction(
            background, hop_seconds=self.framing.hop / self.sample_rate,
            name="background_subtraction")
        self.keep_original = bool(keep_original)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[1] is None:
            raise LeanError(f"{self.name}: expected a mono waveform [batch, samples] with a "
                            f"fixed number of samples, got shape {tuple(input_shape)}")
        super().build(input_shape)
        frames = self.frontend_config.frames(input_shape[1], self.sample_rate)
        constants = spectrogram_constants(self.frontend_config, self.sample_rate)
        self.subtraction.build((input_shape[0], frames, constants.stop_bin - constants.first_bin))

    def call(self, waveform):
        # spectrum has shape [B, frames, used bins].
        spectrum = self.spectrum(waveform)
        if self.frontend_config.spectrum == "power":
            subtracted = self.subtraction(spectrum)
        else:
            subtracted = ops.sqrt(self.subtraction(ops.square(spectrum)))
        if not self.keep_original:
            return self.log_energies(subtracted)
        # [B, frames, bands, 2]: plain, then background-subtracted.
        return ops.stack([self.log_energies(spectrum), self.log_energies(subtracted)], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        return (*shape, 2) if self.keep_original else shape

    @classmethod
    def default_config(cls) -> SpectrogramConfig:
        return SpectrogramConfig.log_mel()

    def get_config(self):
        return {**super().get_config(),
                "background": dataclasses.asdict(self.subtraction.config),
                "keep_original": self.keep_original}


__all__ += ["BackgroundSubtractedSpectrogram", "BackgroundSubtraction",
            "BackgroundSubtractionConfig", "minimum_statistics_bias"]
