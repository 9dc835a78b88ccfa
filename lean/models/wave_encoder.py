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
    matmul, and both directions advance together as a batch of two, so each of the T recurrent
    steps costs one batched matmul and a handful of elementwise ops (no WHILE loop, which
    int8 calibration cannot handle, and about a third of the ops of Keras's `unroll=True`).
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
        import tensorflow as tf

        units = self.units
        steps = inputs.shape[1]
        # Keras variables go through keras.ops, which converts them to tensors.
        kernel = ops.concatenate([self.forward_kernel, self.backward_kernel], axis=1)
        bias = ops.concatenate([self.forward_bias, self.backward_bias], axis=0)
        # projected has shape [B, T, 8 * units]: x W + b of both directions for all frames.
        projected = tf.matmul(inputs, kernel) + bias
        forward_in, backward_in = tf.split(projected, 2, axis=-1)
        # both has shape [2, B, T, 4 * units]; the backward direction reads time reversed.
        both = tf.stack([forward_in, tf.reverse(backward_in, axis=[1])], axis=0)
        # tf.stack cannot read a Keras variable's dtype; stack the backing tf.Variables.
        recurrent = tf.stack(
            [self.forward_recurrent_kernel.value, self.backward_recurrent_kernel.value]
        )
        hidden = previous_cell = None
        outputs = []
        for z in tf.unstack(both, num=steps, axis=2):
            # z has shape [2, B, 4 * units]; the first step has zero state, so no matmul.
            if hidden is not None:
                z = z + tf.matmul(hidden, recurrent)
            sig = tf.sigmoid(z)
            input_gate = sig[..., :units]
            candidate = tf.tanh(z[..., 2 * units : 3 * units])
            cell = input_gate * candidate
            if hidden is not None:
                cell += sig[..., units : 2 * units] * previous_cell
            hidden = sig[..., 3 * units :] * tf.tanh(cell)
            previous_cell = cell
            outputs.append(hidden)
        # sequence has shape [2, B, T, units].
        sequence = tf.stack(outputs, axis=2)
        forward_out = sequence[0]
        backward_out = tf.reverse(sequence[1], axis=[1])
        return tf.concat([forward_out, backward_out], axis=-1)

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
        config: wave_frames, lstm_units, lstm_layers and export_ready are used.
    Returns:
        h: [B, wave_frames, 2 * lstm_units] (paper: [B, 40, 256]).
    """
    frame_samples = config.window_samples // config.wave_frames
    # x has shape [B, 40, 400]: non-overlapping 25 ms frames.
    x = keras.layers.Reshape((config.wave_frames, frame_samples), name="wave_frames")(waveform)
    for index in range(1, config.lstm_layers + 1):
        name = bilstm_layer_name(index)
        if config.export_ready:
            x = UnrolledBiLSTM(config.lstm_units, name=name)(x)
        else:
            x = keras.layers.Bidirectional(
                keras.layers.LSTM(config.lstm_units, return_sequences=True), name=name
            )(x)
    return x


__all__ = ["UnrolledBiLSTM", "bilstm_layer_name", "build_wave_encoder"]
