"""Att-CRNN (Phan et al., Interspeech 2019): CNN, stacked BiGRUs, spatio-temporal attention
pooling, and the paper's CNN baseline, for acoustic scenes in 2 s segments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import keras

from lean.config import InputSpec, ModelConfig
from lean.errors import LeanError
from lean.frontends import (BackgroundSubtractedSpectrogram, BackgroundSubtractionConfig,
                            Spectrogram, SpectrogramConfig)
from lean.models.attention import AdditiveAttentionScore, SpatioTemporalPooling
from lean.models.common import check_mono, classifier_head, waveform_input
from lean.models.recurrent import bidirectional
from lean.models.registry import register

# The paper's input: 2 s segments of 22.05 kHz mono audio (LITIS Rouen, 30 s recordings).
SCENE_INPUT = InputSpec(sample_rate=22050, channels=1, window_seconds=2.0)


@dataclass(frozen=True)
class ConvLayer:
    """One row of the conv block: a SAME convolution, ReLU, batch norm, frequency max pooling."""

    kernel: tuple[int, int]
    filters: int
    # Max pooling kernel and stride along frequency only (time stays T).
    frequency_pool: int


# Table 1 of the paper. The text says the pooling stride is 1x1; the table and the stated
# M -> M/4 -> M/16 -> M/64 reduction say 4x1, which is what this is.
CONV_BLOCK = (
    ConvLayer(kernel=(5, 5), filters=64, frequency_pool=4),
    ConvLayer(kernel=(3, 3), filters=128, frequency_pool=4),
    ConvLayer(kernel=(2, 2), filters=256, frequency_pool=4),
)


@dataclass(frozen=True)
class CrnnBaselineParams:
    """The CNN baseline's params (paper values): features, auxiliary channel, conv block."""

    # The time-frequency image: 64-band log-mel (50 Hz to Nyquist) or log-Gammatone
    # (`SpectrogramConfig.log_mel` / `.log_gammatone` with these values).
    features: Literal["log_mel", "log_gammatone"] = "log_mel"
    bands: int = 64
    low_hz: float = 50.0
    # None: the Nyquist frequency of the input (11025 Hz at 22.05 kHz), as in the paper.
    high_hz: float | None = None
    # 50 ms frames with 50 % overlap: centred frames without the last one, N // hop frames,
    # 80 per 2 s segment (1102-sample window, hop 551).
    window_seconds: float = 0.05
    hop_seconds: float = 0.025
    # The paper's second input channel: the same features of the background-subtracted
    # spectrum (minimum statistics, Martin 2001).
    aux_channel: bool = True
    background: BackgroundSubtractionConfig = field(default_factory=BackgroundSubtractionConfig)
    # Dropout after each conv layer's pooling.
    conv_dropout: float = 0.25
    # Momentum of the batch norms' moving statistics: Keras' (and TensorFlow 1's) 0.99, as the
    # paper's 500 epochs of LITIS Rouen can afford. On small data the statistics inference uses
    # lag behind: on the single-label demo (23 steps an epoch) val accuracy stayed at chance
    # (0.10) for 4 epochs with 0.99 and was 0.20 after the first with 0.9, training the same.
    batch_norm_momentum: float = 0.99


@dataclass(frozen=True)
class AttCrnnParams(CrnnBaselineParams):
    """Att-CRNN's params (paper values): the baseline's, then the BiGRUs and the attention."""

    gru_units: int = 128
    gru_layers: int = 2
    # Dropout on each GRU layer's input and output (the paper: "their inputs and outputs").
    gru_dropout: float = 0.1
    # The linear projection z_t = [h_b ; h_f] W + b (eq. 1): after the top BiGRU only (top) or
    # after each of them (each); the paper does not say which.
    projection: Literal["top", "each"] = "top"
    # Size of the temporal and spatial attention layers.
    attention_units: int = 64


def spectrogram_config(params: CrnnBaselineParams) -> SpectrogramConfig:
    """The spectrogram of `params.features` with the params' bands, edges and framing."""
    named = SpectrogramConfig.log_mel if params.features == "log_mel" else \
        SpectrogramConfig.log_gammatone
    return named(bands=params.bands, window_seconds=params.window_seconds,
                 hop_seconds=params.hop_seconds, low_hz=params.low_hz, high_hz=params.high_hz)


def scene_features(waveform, config: ModelConfig):
    """The float frontend: waveform [B, samples] -> image S [B, T, M, K].

    K = 2 with the auxiliary channel (plain and background-subtracted log energies from one
    STFT), else 1. For the paper's 2 s at 22.05 kHz: [B, 44100] -> [B, 80, 64, 2].
    """
    params = config.params
    spectrogram, rate = spectrogram_config(params), config.input.sample_rate
    if params.aux_channel:
        return BackgroundSubtractedSpectrogram(spectrogram, rate, params.background,
                                               name="spectrogram")(waveform)
    # features has shape [B, T, M], then [B, T, M, 1].
    features = Spectrogram(spectrogram, rate, name="spectrogram")(waveform)
    return keras.layers.Reshape((*features.shape[1:], 1), name="spectrogram_channel")(features)


def conv_block(features, params: CrnnBaselineParams):
    """Table 1: features [B, T, M, K] -> feature map [B, T, M / 64, 256].

    Time is axis 1 and frequency axis 2 (the paper writes M x T x K); the kernels are square,
    so only the pooling needs the axis: 4 along frequency, 1 along time. Each conv is followed
    by ReLU, then batch norm (the paper's order), then the pooling and dropout.
    """
    x = features
    for index, layer in enumerate(CONV_BLOCK, start=1):
        # x has shape [B, T, M / 4^(index-1), filters] after the conv, then / 4 after the pool.
        x = keras.layers.Conv2D(layer.filters, layer.kernel, padding="same", activation="relu",
                                name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(momentum=params.batch_norm_momentum,
                                            name=f"conv{index}_bn")(x)
        x = keras.layers.MaxPooling2D((1, layer.frequency_pool), name=f"conv{index}_pool")(x)
        x = keras.layers.Dropout(params.conv_dropout, name=f"conv{index}_dropout")(x)
    return x


def _check_bands(params: CrnnBaselineParams, name: str) -> None:
    reduction = 1
    for layer in CONV_BLOCK:
        reduction *= layer.frequency_pool
    if params.bands < reduction:
        raise LeanError(f"model {name!r}: bands={params.bands}, the conv block's frequency "
                        f"pooling needs at least {reduction}")


def att_crnn_body(features, config: ModelConfig):
    """The Att-CRNN after its frontend: features [B, T, M, K] -> probabilities [B, C].

    Args:
        features: symbolic float32 [B, T, M, K] (paper: [B, 80, 64, 2]).
        config: the model config; its AttCrnnParams and export_ready (unrolled BiGRUs).
    Returns:
        probabilities [B, num_classes] (softmax for single_label, sigmoid for multilabel).
    """
    params = config.params
    _check_bands(params, config.name)
    # o has shape [B, T, 1, 256] for M = 64.
    o = conv_block(features, params)
    steps, bins, channels = o.shape[1:]
    # o has shape [B, T, F] with F = M / 64 * 256: the sequence o_1 .. o_T.
    x = keras.layers.Reshape((steps, bins * channels), name="sequence")(o)
    width = 2 * params.gru_units
    for index in range(1, params.gru_layers + 1):
        x = keras.layers.Dropout(params.gru_dropout, name=f"bigru{index}_input_dropout")(x)
        # x has shape [B, T, 2H]: [h_f ; h_b] per step.
        x = bidirectional("gru", params.gru_units, f"bigru{index}", config.export_ready)(x)
        x = keras.layers.Dropout(params.gru_dropout, name=f"bigru{index}_output_dropout")(x)
        if params.projection == "each" or index == params.gru_layers:
            # z has shape [B, T, 2H] (eq. 1). Keras concatenates [h_f ; h_b], the paper writes
            # [h_b ; h_f]: a permutation of W's rows, the same family of functions.
            x = keras.layers.Dense(width, name=_projection_name(index, params))(x)
    # temporal_scores has shape [B, T]: f(z_t) over the columns of Z (eq. 6).
    temporal_scores = AdditiveAttentionScore(params.attention_units,
                                             name="temporal_attention")(x)
    # rows has shape [B, 2H, T]: z~_s, the rows of Z; spatial_scores [B, 2H] (eq. 7).
    rows = keras.layers.Permute((2, 1), name="spatial_rows")(x)
    spatial_scores = AdditiveAttentionScore(params.attention_units, name="spatial_attention")(rows)
    # pooled has shape [B, 2H]: x_s = sum_t tanh(A_st Z_st) (eqs. 4, 5, 8, 9).
    pooled = SpatioTemporalPooling(name="attention_pooling")([x, temporal_scores, spatial_scores])
    return classifier_head(pooled, config)


def _projection_name(index: int, params: AttCrnnParams) -> str:
    return "projection" if params.projection == "top" else f"projection{index}"


def crnn_baseline_body(features, config: ModelConfig):
    """The CNN baseline after its frontend: features [B, T, M, K] -> probabilities [B, C].

    Args:
        features: symbolic float32 [B, T, M, K] (paper: [B, 80, 64, 2]).
        config: the model config with CrnnBaselineParams.
    Returns:
        probabilities [B, num_classes].
    """
    _check_bands(config.params, config.name)
    # feature_map has shape [B, T, M / 64, 256]; pooled [B, 256] (global max pooling).
    feature_map = conv_block(features, config.params)
    pooled = keras.layers.GlobalMaxPooling2D(name="global_max_pool")(feature_map)
    return classifier_head(pooled, config)


def _build(config: ModelConfig, body) -> keras.Model:
    """waveform [B, samples] -> `scene_features` -> `body` -> probabilities [B, num_classes]."""
    check_mono(config)
    waveform = waveform_input(config)
    return keras.Model(waveform, body(scene_features(waveform, config), config), name=config.name)


@register(
    "att_crnn",
    description="Att-CRNN: log-mel + background-subtracted channel, CNN, 2 x BiGRU(128), "
                "spatio-temporal attention pooling (Phan et al. 2019; 0.90M at 19 classes)",
    params=AttCrnnParams, input=SCENE_INPUT, task="single_label",
)
def build_att_crnn(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    """Att-CRNN: waveform [B, 44100] (2 s at 22.05 kHz) -> probabilities [B, num_classes].

    Args:
        config: the model config with AttCrnnParams (export_ready: unrolled BiGRUs, batch 1).
        load_pretrained: unused (nothing is pretrained).
    Returns:
        The Keras model.
    """
    return _build(config, att_crnn_body)


@register(
    "crnn_baseline",
    description="the Att-CRNN paper's CNN baseline: the same conv block, global max pooling, "
                "softmax (0.22M at 19 classes)",
    params=CrnnBaselineParams, input=SCENE_INPUT, task="single_label",
)
def build_crnn_baseline(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    """The CNN baseline: waveform [B, 44100] -> probabilities [B, num_classes].

    Args:
        config: the model config with CrnnBaselineParams.
        load_pretrained: unused (nothing is pretrained).
    Returns:
        The Keras model.
    """
    return _build(config, crnn_baseline_body)


__all__ = [
    "AttCrnnParams",
    "CONV_BLOCK",
    "ConvLayer",
    "CrnnBaselineParams",
    "SCENE_INPUT",
    "att_crnn_body",
    "build_att_crnn",
    "build_crnn_baseline",
    "conv_block",
    "crnn_baseline_body",
    "scene_features",
    "spectrogram_config",
]
