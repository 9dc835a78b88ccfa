"""The LEAN family (arXiv 2305.12712), built from config values: YAMNet alone up to LEAN."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import keras

from lean.config import InputSpec, ModelConfig
from lean.errors import LeanError
from lean.frontends import YamnetLogMel, YamnetLogMelConfig
from lean.models.attention import AffinityAttention, BahdanauAttention, MeanPooling
from lean.models.common import check_mono, classifier_head, waveform_input
from lean.models.registry import register
from lean.models.wave_encoder import build_wave_encoder
from lean.models.yamnet import build_yamnet_trunk, load_yamnet_weights, warn_random_init_once

# The paper's input: 1 s of 16 kHz mono audio per window.
LEAN_INPUT = InputSpec(sample_rate=16000, channels=1, window_seconds=1.0)


@dataclass(frozen=True)
class LeanParams:
    """The LEAN family's params (paper values); `trainable_backbone` fine-tunes YAMNet."""

    frontend: YamnetLogMelConfig = field(default_factory=YamnetLogMelConfig)
    # Right channel: YAMNet embedding -> Dense projection (E_yam).
    projection_units: int = 256
    # Left channel ("wave encoder"): waveform as (wave_frames, samples/wave_frames) -> BiLSTMs.
    wave_frames: int = 40
    lstm_units: int = 128
    lstm_layers: int = 2
    # Bahdanau cross attention width d.
    attention_units: int = 128
    # Path of the official yamnet.h5 (or a TF Hub SavedModel dir) the trunk is loaded from.
    yamnet_weights: Optional[str] = None


def _yamnet_embedding(waveform, config: ModelConfig, load_pretrained: bool):
    """waveform [B, samples] -> YAMNet embedding [B, 1024], trunk frozen unless trainable."""
    params = config.params
    # log_mel has shape [B, 96, 64].
    log_mel = YamnetLogMel(params.frontend, config.input.sample_rate)(waveform)
    trunk = build_yamnet_trunk(params.frontend.patch_frames, params.frontend.mel_bands,
                               batch_size=1 if config.export_ready else None)
    if load_pretrained:
        if params.yamnet_weights:
            load_yamnet_weights(trunk, params.yamnet_weights)
        else:
            warn_random_init_once()
    trunk.trainable = config.trainable_backbone
    return trunk(log_mel)


def _check_wave_encoder(config: ModelConfig, context: str) -> None:
    params = config.params
    if config.window_samples % params.wave_frames:
        raise LeanError(
            f"model {config.name!r}: {config.window_samples} samples do not split into "
            f"wave_frames={params.wave_frames} equal frames"
        )
    if context == "affinity" and params.projection_units != 2 * params.lstm_units:
        # The affinity score is a dot product of E_yam with h_t: their widths must agree.
        raise LeanError(
            f"model {config.name!r}: affinity attention needs projection_units "
            f"({params.projection_units}) == 2 * lstm_units ({2 * params.lstm_units})"
        )


def _build(config: ModelConfig, load_pretrained: bool, context: str | None, project: bool):
    """One builder for the whole family; `context` picks how h is summarised (None: no h)."""
    params = config.params
    check_mono(config)
    waveform = waveform_input(config)
    # embedding has shape [B, 1024].
    features = _yamnet_embedding(waveform, config, load_pretrained)
    if project:
        # features (E_yam) has shape [B, 256].
        features = keras.layers.Dense(params.projection_units, name="yamnet_projection")(features)
    if context is not None:
        _check_wave_encoder(config, context)
        # h has shape [B, 40, 256].
        h = build_wave_encoder(waveform, config)
        if context == "mean":
            summary = MeanPooling(name="context")(h)
        elif context == "affinity":
            summary = AffinityAttention(name="context")([features, h])
        else:
            summary = BahdanauAttention(params.attention_units, name="context")([features, h])
        # features has shape [B, 512]: concat(E_yam, C).
        features = keras.layers.Concatenate(name="joint_features")([features, summary])
    return keras.Model(waveform, classifier_head(features, config), name=config.name)


def _lean_member(name: str, description: str):
    """Registers one member of the LEAN family with its params and the paper's input."""
    return register(name, description=description, params=LeanParams, input=LEAN_INPUT,
                    task="multilabel")


@_lean_member("yamnet", "frozen YAMNet embedding + logistic head (paper: 3.42M params)")
def build_yamnet(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context=None, project=False)


@_lean_member(
    "yamnet_proj",
    "frozen YAMNet + Dense(256) projection + logistic head (paper: 3.53M)",
)
def build_yamnet_proj(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context=None, project=True)


@_lean_member(
    "joint",
    "projection + BiLSTM wave encoder mean over time, concatenated (paper: 4.51M)",
)
def build_joint(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context="mean", project=True)


@_lean_member(
    "joint_affinity",
    "joint model with parameter-free affinity cross attention (paper: 4.51M)",
)
def build_joint_affinity(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context="affinity", project=True)


@_lean_member("lean", "LEAN: joint model with Bahdanau cross attention (paper: 4.58M)")
def build_lean(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context="bahdanau", project=True)
