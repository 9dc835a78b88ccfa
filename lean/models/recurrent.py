"""Recurrence: bidirectional LSTM and GRU layers, and their unrolled twins for TFLite export.

Keras 3 recurrent layers convert to WHILE loops in TFLite, and int8 calibration crashes on
them (it segfaults in the calibrator); TFLite has no GRU op at all. So every recurrent layer has
an export twin here that computes the same function with builtin ops only: one input
projection per direction for all frames, then the recurrence unrolled step by step. The
training build uses Keras' `Bidirectional` layer, the export build (`export_ready=True`) the
twin under the same layer name, with the same weights in the same order, so
`registry.export_ready_copy` copies a trained layer into it.
"""

from __future__ import annotations

import keras
from keras import ops

CELLS = ("lstm", "gru")


class UnrolledBidirectional(keras.layers.Layer):
    """Base of the unrolled bidirectional layers: [B, T, D] -> [B, T, 2 * units].

    Per direction (forward, then backward) a kernel [D, gates * units], a recurrent kernel
    [units, gates * units] and a bias of `bias_shape`, named and ordered as in
    `Bidirectional(<cell>(units)).weights`. The output concatenates the forward and backward
    features, like Keras' concat merge. Subclasses implement `_direction`.
    """

    gates = 0

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        gates = self.gates * self.units
        for direction in ("forward", "backward"):
            setattr(self, f"{direction}_kernel",
                    self.add_weight((input_dim, gates), name=f"{direction}_kernel"))
            setattr(self, f"{direction}_recurrent_kernel",
                    self.add_weight((self.units, gates), name=f"{direction}_recurrent_kernel"))
            setattr(self, f"{direction}_bias",
                    self.add_weight(self.bias_shape(), initializer="zeros",
                                    name=f"{direction}_bias"))

    def call(self, inputs):
        steps = inputs.shape[1]
        forward = self._direction(inputs, "forward", range(steps))
        backward = self._direction(inputs, "backward", range(steps - 1, -1, -1))
        return ops.concatenate([forward, backward], axis=-1)

    def _weights_of(self, direction: str):
        """(kernel, recurrent kernel, bias) of one direction."""
        return tuple(getattr(self, f"{direction}_{part}")
                     for part in ("kernel", "recurrent_kernel", "bias"))

    def _direction(self, inputs, direction: str, order):
        """One direction over the time steps in `order`; returns [B, T, units] in time order."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], 2 * self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="lean")
class UnrolledBiLSTM(UnrolledBidirectional):
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

    gates = 4

    def _direction(self, inputs, direction: str, order):
        """One direction over the time steps in `order`; returns [B, T, units] in time order."""
        units = self.units
        kernel, recurrent_kernel, bias = self._weights_of(direction)
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


@keras.saving.register_keras_serializable(package="lean")
class UnrolledBiGRU(UnrolledBidirectional):
    """A bidirectional GRU for export: same weights and outputs as
    Bidirectional(GRU(units, reset_after=True)), Keras 3's default GRU (Cho et al. 2014).

    Input [B, T, D] -> output [B, T, 2 * units] (forward then backward). Per direction the
    weights of Keras' GRU cell: kernel [D, 3 units], recurrent kernel [units, 3 units] and bias
    [2, 3 units] (row 0 input bias, row 1 recurrent bias), gate order z (update), r (reset),
    h (candidate). With x_t = o_t W + b_in and g_t = h_{t-1} U + b_rec, each split z, r, h:
        z_t = sigmoid(x_z + g_z), r_t = sigmoid(x_r + g_r),
        c_t = tanh(x_h + r_t * g_h),  h_t = z_t * h_{t-1} + (1 - z_t) * c_t.
    reset_after=True keeps one [units, 3 units] recurrent matmul per step (reset_after=False
    would need a second one, after the reset gate). The recurrent biases of z and r are
    constant per step, so they are added to the input projection once, and h_t is computed
    as c_t + z_t * (h_{t-1} - c_t) (three ops instead of four); the first step, from the zero
    state, needs no matmul.
    """

    gates = 3

    def bias_shape(self) -> tuple[int, ...]:
        return (2, self.gates * self.units)

    def _direction(self, inputs, direction: str, order):
        """One direction over the time steps in `order`; returns [B, T, units] in time order."""
        units = self.units
        kernel, recurrent_kernel, bias = self._weights_of(direction)
        input_bias, recurrent_bias = bias[0], bias[1]
        # projected has shape [B, T, 3 * units]: x W + b_in, plus the z and r recurrent biases.
        gate_bias = ops.concatenate([recurrent_bias[: 2 * units], ops.zeros((units,))])
        projected = ops.matmul(inputs, kernel) + (input_bias + gate_bias)
        candidate_bias = recurrent_bias[2 * units :]
        hidden = None
        outputs = {}
        for step in order:
            # x has shape [B, 1, 3 * units].
            x = projected[:, step : step + 1, :]
            if hidden is None:
                gates = ops.sigmoid(x[:, :, : 2 * units])
                recurrent_candidate = candidate_bias
            else:
                # recurrent has shape [B, 1, 3 * units]: h_{t-1} U.
                recurrent = ops.matmul(hidden, recurrent_kernel)
                gates = ops.sigmoid(x[:, :, : 2 * units] + recurrent[:, :, : 2 * units])
                recurrent_candidate = recurrent[:, :, 2 * units :] + candidate_bias
            update, reset = gates[:, :, :units], gates[:, :, units:]
            candidate = ops.tanh(x[:, :, 2 * units :] + reset * recurrent_candidate)
            if hidden is None:
                hidden = candidate - update * candidate
            else:
                hidden = candidate + update * (hidden - candidate)
            outputs[step] = hidden
        return ops.concatenate([outputs[step] for step in sorted(outputs)], axis=1)


def bidirectional(cell: str, units: int, name: str, export_ready: bool):
    """The bidirectional recurrent layer of the training or the export build.

    Args:
        cell: "lstm" or "gru" (reset_after=True, Keras 3's default).
        units: hidden units per direction.
        name: the layer name, the same in both builds so weights copy by name.
        export_ready: the unrolled twin (builtin TFLite ops, no WHILE loop) instead of Keras'.
    Returns:
        A layer [B, T, D] -> [B, T, 2 * units], forward features then backward.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown recurrent cell {cell!r}; expected one of {CELLS}")
    if export_ready:
        unrolled = UnrolledBiLSTM if cell == "lstm" else UnrolledBiGRU
        return unrolled(units, name=name)
    if cell == "lstm":
        recurrent = keras.layers.LSTM(units, return_sequences=True)
    else:
        recurrent = keras.layers.GRU(units, return_sequences=True, reset_after=True)
    return keras.layers.Bidirectional(recurrent, name=name)


__all__ = ["CELLS", "UnrolledBiGRU", "UnrolledBiLSTM", "UnrolledBidirectional", "bidirectional"]
