"""The wave encoder: waveform as 40 frames of 25 ms -> stacked BiLSTMs -> h [B, 40, 256]."""

from __future__ import annotations

import keras

from lean.config import ModelConfig
# UnrolledBiLSTM lives with the other recurrent layers; imported here, where LEAN used to
# define it, so existing imports keep working (its registered name is unchanged).
from lean.models.recurrent import UnrolledBiLSTM, bidirectional


def bilstm_layer_name(index: int) -> str:
    """Shared by the training and export builds, so weights copy by layer name."""
    return f"wave_bilstm_{index}"


def build_wave_encoder(waveform, config: ModelConfig):
    """Applies the wave encoder to a waveform tensor.

    Args:
        waveform: symbolic float32 [B, window_samples].
        config: its LeanParams' wave_frames, lstm_units, lstm_layers, and export_ready.
    Returns:
        h: [B, wave_frames, 2 * lstm_units] (paper: [B, 40, 256]).
    """
    params = config.params
    frame_samples = config.window_samples // params.wave_frames
    # x has shape [B, 40, 400]: non-overlapping 25 ms frames.
    x = keras.layers.Reshape((params.wave_frames, frame_samples), name="wave_frames")(waveform)
    for index in range(1, params.lstm_layers + 1):
        layer = bidirectional("lstm", params.lstm_units, bilstm_layer_name(index),
                              config.export_ready)
        x = layer(x)
    return x


__all__ = ["UnrolledBiLSTM", "bilstm_layer_name", "build_wave_encoder"]
