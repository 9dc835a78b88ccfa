"""The wave encoder: waveform as 40 frames of 25 ms -> stacked BiLSTMs -> h [B, 40, 256]."""

from __future__ import annotations

import keras
from keras import ops

from lean.config import ModelConfig


@keras.saving.register_keras_serializable(package="lean")
class UnrolledBiLSTM(keras.layers.Layer):
    """A bidirectional LSTM for export: same weights and outputs as Bidirectional(LSTM(...)).

    Input [B, T, D] -> output [B, T, 2 * units] (forward then backward features, like Keras's
    concat merge). Weights in the order of `Bidirectional(LSTM(units)).weights` (forward kernel,
    recurrent kernel, bias, then backward), Keras gate order i, f, c, o, so `set_weights` copies
    a trained layer. Built for TFLite speed: the input projections of all T frames are one
    matmul per direction, then only the recurrence is unrolled: per step one [1, units] x
    [units, 4 units] matmul and a dozen elementwise/slice ops, all delegated to XNNPACK, no
    WHILE loop (int8 calibration crashes on it). Measured on the shared 2-core host, LiteRT
    1 thread, interleaved runs: whole LEAN int8 (frontend float) with this layer 4.64 ms min /
    9.29 ms median against 8.82 / 18.87 with Keras's `LSTM(unroll=True)`; YAMNet float32 2.71
    / 6.98 in the same run. Wave encoder alone, float32: both directions as a batch of two
    (BATCH_MATMUL, half the ops) 7.8 ms and a block-diagonal [256, 1024] recurrent matmul (a
    third of the ops) 6.7 ms min, against 3.6-4.1 ms for this one: the ops are not the cost,
    the matmuls are. A later variant stacked both directions on the batch axis in each step
    (1,133 int8 ops instead of 2,233; measured in commit 7ffc92b, reverted): in one
    export_targets run on the quickstart's model it was no faster overall (LEAN int8 / YAMNet
    float32 1.71x against 1.72x here) and its shared int8 scales cost val mAP 0.0178 against
    0.0028 for this layer, so this layer stays.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        gates = 4 * self.units
        for direction in ("forward", "backward"):
            setattr(self, f"{direction}_kernel",
                    self.add_weight((input_dim, gates), name=f"{direction}_kernel"))
            setattr(self, f"{direction}_recurrent_kernel",
                    self.add_weight((self.units, gates), name=f"{direction}_recurrent_kernel"))
            setattr(self, f"{direction}_bias",
                    self.add_weight((gates,), initializer="zeros", name=f"{direction}_bias"))

    def call(self, inputs):
        steps = inputs.shape[1]
        forward = self._direction(inputs, "forward", range(steps))
        backward = self._direction(inputs, "backward", range(steps - 1, -1, -1))
        return ops.concatenate([forward, backward], axis=-1)

    def _direction(self, inputs, direction: str, order):
        """One direction over the time steps in `order`; returns [B, T, units] in time order."""
        units = self.units
        kernel, recurrent_kernel, bias = (
            getattr(self, f"{direction}_{part}") for part in ("kernel", "recurrent_kernel", "bias")
        )
        # projected has shape [B, T, 4 * units]: x W + b for all frames in one matmul.
        projected = ops.matmul(inputs, kernel) + bias
        hidden = cell = None
        outputs = {}
        for step in order:
            # z has shape [B, 1, 4 * units]; the first step has zero state, so no matmul.
            z = projected[:, step : step + 1, :]
            if hidden is not None:
                z = z + ops.matmul(hidden, recurrent_kernel)
            gates = ops.sigmoid(z)
            candidate = ops.tanh(z[:, :, 2 * units : 3 * units])
            if cell is None:
                cell = gates[:, :, :units] * candidate
            else:
                cell = gates[:, :, units : 2 * units] * cell + gates[:, :, :units] * candidate
            hidden = gates[:, :, 3 * units :] * ops.tanh(cell)
            outputs[step] = hidden
        return ops.concatenate([outputs[step] for step in sorted(outputs)], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], 2 * self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


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
        name = bilstm_layer_name(index)
        if config.export_ready:
            x = UnrolledBiLSTM(params.lstm_units, name=name)(x)
        else:
            x = keras.layers.Bidirectional(
                keras.layers.LSTM(params.lstm_units, return_sequences=True), name=name
            )(x)
    return x


__all__ = ["UnrolledBiLSTM", "bilstm_layer_name", "build_wave_encoder"]
