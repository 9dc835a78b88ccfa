"""The LEAN family (arXiv 2305.12712), built from config values: YAMNet alone up to LEAN."""

from __future__ import annotations

import keras

from lean.config import ModelConfig
from lean.errors import LeanError
from lean.features import LogMelFrontend
from lean.models.attention import AffinityAttention, BahdanauAttention, MeanPooling
from lean.models.registry import register
from lean.models.wave_encoder import build_wave_encoder
from lean.models.yamnet import build_yamnet_trunk, load_yamnet_weights, warn_random_init_once


def _waveform_input(config: ModelConfig):
    batch_size = 1 if config.export_ready else None
    return keras.Input((config.window_samples,), batch_size=batch_size, name="waveform")


def _yamnet_embedding(waveform, config: ModelConfig, load_pretrained: bool):
    """waveform [B, samples] -> YAMNet embedding [B, 1024], trunk frozen unless fine-tuned."""
    frontend = config.frontend
    # log_mel has shape [B, 96, 64].
    log_mel = LogMelFrontend(frontend)(waveform)
    trunk = build_yamnet_trunk(
        frontend.patch_frames, frontend.mel_bands, batch_size=1 if config.export_ready else None
    )
    if load_pretrained:
        if config.yamnet_weights:
            load_yamnet_weights(trunk, config.yamnet_weights)
        else:
            warn_random_init_once()
    trunk.trainable = config.finetune_yamnet
    return trunk(log_mel)


def _classifier(features, config: ModelConfig):
    """Logistic head: features -> probabilities [B, num_classes] (sigmoid inside the model)."""
    logits = keras.layers.Dense(config.num_classes, name="logits")(features)
    # float32 even under mixed precision: the contract's output dtype.
    return keras.layers.Activation("sigmoid", name="probabilities", dtype="float32")(logits)


def _check_wave_encoder(config: ModelConfig, context: str) -> None:
    if config.window_samples % config.wave_frames:
        raise LeanError(
            f"model {config.name!r}: {config.window_samples} samples do not split into "
            f"wave_frames={config.wave_frames} equal frames"
        )
    if context == "affinity" and config.projection_units != 2 * config.lstm_units:
        # The affinity score is a dot product of E_yam with h_t: their widths must agree.
        raise LeanError(
            f"model {config.name!r}: affinity attention needs projection_units "
            f"({config.projection_units}) == 2 * lstm_units ({2 * config.lstm_units})"
        )


def _build(config: ModelConfig, load_pretrained: bool, context: str | None, project: bool):
    """One builder for the whole family; `context` picks how h is summarised (None: no h)."""
    waveform = _waveform_input(config)
    # embedding has shape [B, 1024].
    features = _yamnet_embedding(waveform, config, load_pretrained)
    if project:
        # features (E_yam) has shape [B, 256].
        features = keras.layers.Dense(config.projection_units, name="yamnet_projection")(features)
    if context is not None:
        _check_wave_encoder(config, context)
        # h has shape [B, 40, 256].
        h = build_wave_encoder(waveform, config)
        if context == "mean":
            summary = MeanPooling(name="context")(h)
        elif context == "affinity":
            summary = AffinityAttention(name="context")([features, h])
        else:
            summary = BahdanauAttention(config.attention_units, name="context")([features, h])
        # features has shape [B, 512]: concat(E_yam, C).
        features = keras.layers.Concatenate(name="joint_features")([features, summary])
    return keras.Model(waveform, _classifier(features, config), name=config.name)


@register("yamnet", description="frozen YAMNet embedding + logistic head (paper: 3.42M params)")
def build_yamnet(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context=None, project=False)


@register(
    "yamnet_proj",
    description="frozen YAMNet + Dense(256) projection + logistic head (paper: 3.53M)",
)
def build_yamnet_proj(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context=None, project=True)


@register(
    "joint",
    description="projection + BiLSTM wave encoder mean over time, concatenated (paper: 4.51M)",
)
def build_joint(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context="mean", project=True)


@register(
    "joint_affinity",
    description="joint model with parameter-free affinity cross attention (paper: 4.51M)",
)
def build_joint_affinity(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context="affinity", project=True)


@register("lean", description="LEAN: joint model with Bahdanau cross attention (paper: 4.58M)")
def build_lean(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    return _build(config, load_pretrained, context="bahdanau", project=True)
