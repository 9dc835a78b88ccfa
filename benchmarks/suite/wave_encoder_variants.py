"""Times variants of the export-ready wave encoder (2 BiLSTM(128) layers over [40, 400]) in int8.

Variants ("current" is lean.models.wave_encoder.UnrolledBiLSTM as it is now, the baseline
"per_direction" the layer before it) share the weights (copied with set_weights) and are checked
against Keras's Bidirectional(LSTM) in float; then the wave encoder alone is converted to
full-integer int8 (random-noise calibration) and timed with LiteRT + XNNPACK, 1 thread, in
interleaved rounds in one process (the host is shared: only the ratios mean something).

    python benchmarks/suite/wave_encoder_variants.py [--rounds 7] [--runs 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FRAMES, FRAME_SAMPLES, UNITS, LAYERS = 40, 400, 128, 2


def _variants():
    import keras
    from keras import ops

    from lean.models.wave_encoder import UnrolledBiLSTM

    class PerDirection(UnrolledBiLSTM):
        """The layer before the stacked one (commit e1fedd3): one direction at a time, gates by
        STRIDED_SLICE, outputs joined by CONCATENATION."""

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

    class SplitGates(PerDirection):
        """Per direction like PerDirection, but one UNPACK of the projections and one
        SPLIT of z into the four gates (sigmoid on i, f, o, tanh on c) per step."""

        def _direction(self, inputs, direction, order):
            kernel, recurrent_kernel, bias = (
                getattr(self, f"{direction}_{part}") for part in ("kernel", "recurrent_kernel", "bias"))
            projected = ops.unstack(ops.matmul(inputs, kernel) + bias, axis=1)
            hidden = cell = None
            outputs = {}
            for step in order:
                z = projected[step]
                if hidden is not None:
                    z = z + ops.matmul(hidden, recurrent_kernel)
                i, f, c, o = ops.split(z, 4, axis=-1)
                candidate = ops.sigmoid(i) * ops.tanh(c)
                cell = candidate if cell is None else ops.sigmoid(f) * cell + candidate
                hidden = ops.sigmoid(o) * ops.tanh(cell)
                outputs[step] = hidden
            return ops.stack([outputs[step] for step in sorted(outputs)], axis=1)

    class SplitV(PerDirection):
        """Kernel columns reordered to i, f, o, c (folded into the constants), one UNPACK of the
        projections; per step: FC, ADD, SPLIT_V [3u, u], one LOGISTIC over 3u, one TANH, SPLIT
        of the sigmoid into i, f, o, then the cell update (11 ops per direction and step)."""

        skip_recurrence = False

        def _direction(self, inputs, direction, order):
            u = self.units
            kernel, recurrent_kernel, bias = (
                self._reorder(getattr(self, f"{direction}_{part}"))
                for part in ("kernel", "recurrent_kernel", "bias"))
            projected = ops.unstack(ops.matmul(inputs, kernel) + bias, axis=1)
            hidden = cell = None
            outputs = {}
            for step in order:
                z = projected[step]
                if hidden is not None and not self.skip_recurrence:
                    z = z + ops.matmul(hidden, recurrent_kernel)
                ifo, c = ops.split(z, [3 * u], axis=-1)
                i, f, o = ops.split(ops.sigmoid(ifo), 3, axis=-1)
                candidate = i * ops.tanh(c)
                cell = candidate if cell is None else f * cell + candidate
                hidden = o * ops.tanh(cell)
                outputs[step] = hidden
            return ops.stack([outputs[step] for step in sorted(outputs)], axis=1)

        def _reorder(self, weight):
            u = self.units
            return ops.concatenate([weight[..., :2 * u], weight[..., 3 * u:], weight[..., 2 * u:3 * u]], axis=-1)

    class NoRecurrence(SplitV):
        """Timing probe only (wrong outputs): SplitV without the recurrent matmul."""

        skip_recurrence = True

    class Joint(UnrolledBiLSTM):
        """Both directions in one step: gate-major, direction-minor columns [i_f i_b f_f f_b o_f
        o_b c_f c_b]; recurrent matmul either one block-diagonal [2u, 8u] or two [u, 4u]."""

        block_diagonal = True

        def _layout(self, forward, backward):
            # [..., 4u] x 2 in gate order i f c o -> [..., 8u] gate-major (i f o c), direction-minor.
            u = self.units
            pieces = []
            for gate in (0, 1, 3, 2):
                pieces += [forward[..., gate * u:(gate + 1) * u], backward[..., gate * u:(gate + 1) * u]]
            return ops.concatenate(pieces, axis=-1)

        def _reorder(self, weight):
            u = self.units
            return ops.concatenate([weight[..., :2 * u], weight[..., 3 * u:], weight[..., 2 * u:3 * u]], axis=-1)

        def call(self, inputs):
            u = self.units
            steps = inputs.shape[1]
            w = {d: [getattr(self, f"{d}_{p}") for p in ("kernel", "recurrent_kernel", "bias")]
                 for d in ("forward", "backward")}
            zeros = ops.zeros_like(w["forward"][1])
            # Projections: forward on x, backward on x reversed in time, then merged gate-major
            # (per direction [B, T, 4, u] joined on the last axis: no zero blocks).
            def project(x, d):
                kernel, bias = self._reorder(w[d][0]), self._reorder(w[d][2])
                p = ops.matmul(x, kernel) + bias
                return ops.reshape(p, (-1, steps, 4, u))
            projected = ops.concatenate([project(inputs, "forward"),
                                         project(ops.flip(inputs, axis=1), "backward")], axis=-1)
            projected = ops.reshape(projected, (-1, steps, 8 * u))
            projected = ops.unstack(projected, axis=1)
            if self.block_diagonal:
                recurrent = ops.concatenate([self._layout(w["forward"][1], zeros),
                                             self._layout(zeros, w["backward"][1])], axis=0)
            else:
                recurrent_f = self._layout(w["forward"][1], zeros)
                recurrent_b = self._layout(zeros, w["backward"][1])
            hidden = cell = None
            outputs = []
            for step in range(steps):
                z = projected[step]
                if hidden is not None:
                    if self.block_diagonal:
                        z = z + ops.matmul(hidden, recurrent)
                    else:
                        z = z + ops.matmul(hidden[:, :u], recurrent_f) + ops.matmul(hidden[:, u:], recurrent_b)
                sig = ops.sigmoid(z[:, :6 * u])
                candidate = sig[:, :2 * u] * ops.tanh(z[:, 6 * u:])
                cell = candidate if cell is None else sig[:, 2 * u:4 * u] * cell + candidate
                hidden = sig[:, 4 * u:] * ops.tanh(cell)
                outputs.append(hidden)
            stacked = ops.stack(outputs, axis=1)  # [B, T, 2u]: forward at t, backward at T-1-t
            return ops.concatenate([stacked[:, :, :u], ops.flip(stacked[:, :, u:], axis=1)], axis=-1)

    class JointTwoMatmuls(Joint):
        block_diagonal = False

    return {"per_direction": PerDirection, "current": UnrolledBiLSTM, "split": SplitGates, "joint_blockdiag": Joint,
            "joint_two_fc": JointTwoMatmuls, "split_v": SplitV,
            "probe_no_recurrence": NoRecurrence}


def build(layer_class, weights=None):
    import keras

    waveform = keras.Input(shape=(FRAMES * FRAME_SAMPLES,), batch_size=1, name="waveform")
    x = keras.layers.Reshape((FRAMES, FRAME_SAMPLES))(waveform)
    for index in range(LAYERS):
        x = layer_class(UNITS, name=f"wave_bilstm_{index + 1}")(x)
    model = keras.Model(waveform, x)
    if weights is not None:
        model.set_weights(weights)
    return model


def convert_int8(model, windows) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ({"waveform": w[None]} for w in windows)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def op_counts(model_bytes: bytes) -> Counter:
    from lean_export.verify import op_list

    return Counter(op["op"] for op in op_list(model_bytes))


def float_weight_bytes(model_bytes: bytes) -> int:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    total = 0
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        if tensor.Type() == schema.TensorType.FLOAT32:
            total += model.Buffers(tensor.Buffer()).DataLength()
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/wave_encoder_variants"))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    import keras

    from ai_edge_litert.interpreter import Interpreter

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((40, FRAMES * FRAME_SAMPLES))).astype(np.float32)
    keras.utils.set_random_seed(0)
    # Reference: Keras Bidirectional(LSTM), with non-zero biases.
    waveform = keras.Input(shape=(FRAMES * FRAME_SAMPLES,), batch_size=1)
    x = keras.layers.Reshape((FRAMES, FRAME_SAMPLES))(waveform)
    for _ in range(LAYERS):
        x = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))(x)
    reference = keras.Model(waveform, x)
    weights = [w + (0.1 * rng.standard_normal(w.shape)).astype(np.float32) if w.ndim == 1 else w
               for w in reference.get_weights()]
    reference.set_weights(weights)
    expected = reference.predict(windows[:2], verbose=0, batch_size=1)

    variants = _variants()
    paths = {}
    for name, layer_class in variants.items():
        if args.only and name not in args.only:
            continue
        model = build(layer_class, weights)
        got = model.predict(windows[:2], verbose=0, batch_size=1)
        error = float(np.abs(got - expected).max())
        path = args.out / f"{name}.tflite"
        model_bytes = convert_int8(model, windows)
        path.write_bytes(model_bytes)
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.set_tensor(inp["index"], windows[:1])
        interpreter.invoke()
        int8_error = float(np.abs(interpreter.get_tensor(out["index"]) - expected[:1]).max())
        counts = op_counts(model_bytes)
        print(f"{name}: float max|diff| vs Keras {error:.2e}, int8 max|diff| {int8_error:.3f}, "
              f"{sum(counts.values())} ops, float weight bytes {float_weight_bytes(model_bytes)}, "
              f"{len(model_bytes)} B: {dict(counts.most_common())}", flush=True)
        paths[name] = path

    interpreters = {}
    for name, path in paths.items():
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], windows[:1])
        for _ in range(20):
            interpreter.invoke()
        interpreters[name] = interpreter
    medians = {name: [] for name in interpreters}
    for _ in range(args.rounds):
        for name, interpreter in interpreters.items():
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                interpreter.invoke()
                times.append(time.perf_counter() - started)
            medians[name].append(1000 * float(np.median(times)))
    base = np.median(medians.get("per_direction", next(iter(medians.values()))))
    for name, values in medians.items():
        print(f"{name:<20} median {np.median(values):7.3f} ms  min-round {min(values):7.3f}  "
              f"ratio to per_direction {np.median(values) / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
