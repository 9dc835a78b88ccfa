"""Frontends: named float32 Keras layers from waveform to what a model's body reads.

Every frontend subclasses `Frontend`, which declares `keeps_float_in_export`: the exporter
finds such layers by that flag (`float_layer_names`) and keeps every op under their names
float32, whatever the rest of the model is quantized to (int8 destroys log-mel values: 9.7
log-mel units of error measured with an int8 YAMNet frontend). All are TFLite builtin ops.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import keras
import numpy as np

from lean.errors import LeanError


class Frontend(keras.layers.Layer):
    """Base of the frontends: a float32 layer (also under mixed precision) kept float in export."""

    keeps_float_in_export = True

    def __init__(self, **kwargs):
        # float16 DFT sums lose the quiet bands that a log spectrum resolves.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)


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
    bin_mels = hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_bins))[:, None]
    edges = np.linspace(
        hertz_to_mel(config.mel_min_hz), hertz_to_mel(config.mel_max_hz), config.mel_bands + 2
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels - lower) / (center - lower)
    falling = (upper - bin_mels) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


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
class YamnetLogMel(Frontend):
    """YAMNet's log-mel patch: waveform [B, samples] -> log-mel [B, patch_frames, mel_bands].

    With the default config at 16 kHz: [B, 16000] -> [B, 96, 64], from the first 15,600
    samples (96 frames of 400 samples, hop 160). No trainable weights; builtin TFLite ops only.
    """

    def __init__(self, frontend_config: YamnetLogMelConfig | dict | None = None,
                 sample_rate: int = 16000, **kwargs):
        kwargs.setdefault("name", "yamnet_log_mel")
        super().__init__(**kwargs)
        if isinstance(frontend_config, dict):
            frontend_config = YamnetLogMelConfig(**frontend_config)
        self.frontend_config = frontend_config or YamnetLogMelConfig()
        self.sample_rate = int(sample_rate)
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
        # frames has shape [B, patch_frames, window_samples].
        frames = _patch_frames(waveform, self.frontend_config, self.sample_rate)
        # log_mel has shape [B, patch_frames, mel_bands].
        return _log_mel_from_frames(frames, self.frontend_config, self.sample_rate)

    def compute_output_shape(self, input_shape):
        cfg = self.frontend_config
        return (input_shape[0], cfg.patch_frames, cfg.mel_bands)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate,
                "frontend_config": dataclasses.asdict(self.frontend_config)}


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



# --- Waveform front ops: channel downmix, rational resampling, windows ------------------------


@keras.saving.register_keras_serializable(package="lean")
class Downmix(Frontend):
    """Mean over channels: [B, samples, channels] -> [B, samples] (mono passes through).

    The same downmix the data pipeline applies to a mono model's files (the channel mean).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "downmix")
        super().__init__(**kwargs)

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


__all__ = [
    "Downmix",
    "Frontend",
    "PolyphaseFilter",
    "PolyphaseResample",
    "WaveformWindows",
    "YamnetLogMel",
    "YamnetLogMelConfig",
    "float_layer_names",
    "frontend_matrices",
    "hertz_to_mel",
    "mel_weight_matrix",
    "polyphase_filter",
    "waveform_to_log_mel",
]
