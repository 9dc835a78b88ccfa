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
    a trained layer. Built for TFLite speed, no WHILE loop (int8 calibration crashes on it):
    the input projections of all T frames are one matmul per direction (the backward one on
    the time-reversed input), unstacked once; then the recurrence is unrolled with both
    directions stacked on the batch axis ([2B, ...], forward rows then backward rows), so each
    elementwise op serves both directions. Per step: SPLIT of h, two [units, 4 units] FCs (no
    zero blocks), CONCATENATION, ADD, SPLIT_V of z into the sigmoid gates and the candidate
    (weight columns reordered to i, f, o, c at trace time, folded into the constants), one
    LOGISTIC, SPLIT into i, f, o, TANH, the cell update: 14 ops for both directions instead of
    about 28. All ops are int8 with XNNPACK.

    Measured (benchmarks/suite/wave_encoder_variants.py: the 2-layer wave encoder alone, int8,
    LiteRT 1 thread, interleaved rounds on the shared 2-core host; ratios to the previous
    per-direction layer with STRIDED_SLICE gates, 2,233 ops, 1.14-1.38 ms on a quiet core):
    this layer (1,129 ops) 0.89-0.96 on a quiet core (0.73 under load from other processes);
    per-direction with SPLIT/SPLIT_V gates 0.96-0.99 (1,767 ops); both directions gate-major
    with a block-diagonal [2 units, 8 units] recurrent matmul 1.06-1.55 (1,140 ops, twice the
    recurrent MACs); the same with two zero-padded matmuls 1.16-1.63. A probe without the
    recurrent matmuls (wrong outputs) gave 0.52-0.53: the 160 int8 [1, 128] x [128, 512] FCs
    with their ADDs are half the encoder's time and the elementwise ops are cheap, so halving
    the op count buys only ~5-10 %. Whole LEAN int8 with this layer against the previous one,
    interleaved: 0.95x (3.87 vs 4.06 ms; YAMNet float32 2.20 ms in the same rounds). Earlier:
    LEAN int8 with the per-direction layer 4.64 ms min against 8.82 with `LSTM(unroll=True)`.
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

    def _reordered(self, direction: str):
        """(kernel, recurrent kernel, bias) of one direction with gate columns i, f, o, c."""
        units = self.units

        def reorder(weight):
            return ops.concatenate(
                [weight[..., : 2 * units], weight[..., 3 * units :], weight[..., 2 * units : 3 * units]],
                axis=-1,
            )

        return tuple(reorder(getattr(self, f"{direction}_{part}"))
                     for part in ("kernel", "recurrent_kernel", "bias"))

    def call(self, inputs):
        units = self.units
        kernel_f, recurrent_f, bias_f = self._reordered("forward")
        kernel_b, recurrent_b, bias_b = self._reordered("backward")
        # projected: T tensors [2B, 4 * units]; rows :B forward at step t, rows B: backward
        # at time T - 1 - t (its projection of the time-reversed input).
        projected = ops.unstack(
            ops.concatenate(
                [ops.matmul(inputs, kernel_f) + bias_f,
                 ops.matmul(ops.flip(inputs, axis=1), kernel_b) + bias_b],
                axis=0,
            ),
            axis=1,
        )
        hidden = cell = None
        outputs = []
        for z in projected:
            # The first step has zero state, so no matmul.
            if hidden is not None:
                hidden_f, hidden_b = ops.split(hidden, 2, axis=0)
                z = z + ops.concatenate(
                    [ops.matmul(hidden_f, recurrent_f), ops.matmul(hidden_b, recurrent_b)], axis=0
                )
            sigmoid_part, candidate_part = ops.split(z, [3 * units], axis=-1)
            gates = ops.sigmoid(sigmoid_part)
            if cell is None:
                # Zero state: no forget gate. Slices, not a SPLIT with an unused output (the
                # int8 quantizer left such a SPLIT float, with DEQUANTIZE/QUANTIZE around it).
                input_gate, output_gate = gates[:, :units], gates[:, 2 * units :]
                cell = input_gate * ops.tanh(candidate_part)
            else:
                input_gate, forget_gate, output_gate = ops.split(gates, 3, axis=-1)
                cell = forget_gate * cell + input_gate * ops.tanh(candidate_part)
            hidden = output_gate * ops.tanh(cell)
            outputs.append(hidden)
        # stacked: [2B, T, units], the backward rows in reversed time.
        forward, backward = ops.split(ops.stack(outputs, axis=1), 2, axis=0)
        return ops.concatenate([forward, ops.flip(backward, axis=1)], axis=-1)

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
