"""Serving graph, quantization config and TFLite conversion in a subprocess (the converter can segfault)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lean.errors import LeanError

INPUT_NAME = "waveform"
MODES = ("int8", "dynamic_range", "float16", "float32")
# dense_per_tensor: per channel for convolutions, one scale per FULLY_CONNECTED weight (the
# converter's own switch). Each per-channel scale costs 12 bytes (a float32 scale and an int64
# zero point, for the weights and again for the int32 bias): LEAN's dense layers hold 6,400
# channels, 77 KB of its 5.55 MB int8 file (measured).
WEIGHT_GRANULARITIES = ("per_channel", "per_tensor", "dense_per_tensor")
CALIBRATED_FILE = "calibrated.tflite"
FLOAT_NODES_FILE = "float_nodes.json"


# Scratch folders carry the exporting process's id, so that the next export can tell the ones
# a killed export left (tens of MB each: saved model, calibrated model) from a running one's.
SCRATCH_PREFIX = "lean_export_"
_SCRATCH_NAME = re.compile(rf"^{SCRATCH_PREFIX}(?:\w+?_)?pid(\d+)_")


def scratch_directory(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for one export step (`kind`: "convert", "work"), named with our pid."""
    return tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{kind}_pid{os.getpid()}_")


def remove_abandoned_scratch(root: str | Path | None = None) -> list[Path]:
    """Removes the scratch folders of exports whose process no longer exists; returns them."""
    import shutil

    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        match = _SCRATCH_NAME.match(path.name)
        if not match or not path.is_dir():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (PermissionError, OverflowError):
            continue  # another user's live process (or no such pid at all on this system)
    return removed


@dataclass(frozen=True)
class QuantizationConfig:
    """How the converter quantizes; build it with a `create_*` constructor."""

    mode: str
    # int8 and dynamic_range: the frontend layers (those that declare keeps_float_in_export,
    # lean.frontends.float_layer_names) stay float.
    float_frontends: bool = False
    # int8 and dynamic_range: further layers (by name) that stay float.
    float_scopes: tuple[str, ...] = ()
    # int8: layers that compute a SOFTMAX stay float. An int8 softmax output has a fixed
    # 1/256 step, coarse for attention weights over 40 frames (about 1/40 each): measured on a
    # LEAN demo run, int8 attention gave max abs output error 0.160, float attention 0.0069.
    float_softmax_layers: bool = False
    # int8: the output head (last weighted op and the activations after it) stays float. An int8
    # sigmoid output moves in steps of 1/256; clips whose scores differ by less tie, and ranking
    # metrics (AP) drop: measured on a LEAN demo run, val mAP 0.2504 float -> 0.2155 int8 head.
    float_output_head: bool = False
    # int8: "mse" narrows each activation's calibrated min/max to the range with the least int8
    # error (lean_export.calibration, measured there); "percentile" and "entropy" are the other
    # common choices; "minmax" keeps the converter's ranges.
    activation_ranges: str = "mse"
    # int8: weight scales per output channel (default) or one per tensor.
    weight_granularity: str = "per_channel"
    # int8: subtract from each bias the mean output shift that its layer's int8 weights cause
    # on the calibration windows (lean_export.calibration.correct_biases).
    bias_correction: bool = False
    # int8: layer groups (lean_export.sensitivity) to keep float, each matched as a substring
    # of the group names, e.g. "wave_bilstm_1_1 [elementwise]" (a recurrent cell's state).
    float_groups: tuple[str, ...] = ()

    def __post_init__(self):
        from lean_export.calibration import METHODS

        if self.mode not in MODES:
            raise LeanError(f"unknown quantization mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.activation_ranges not in METHODS:
            raise LeanError(f"unknown activation range method {self.activation_ranges!r}; "
                            f"choose one of {', '.join(METHODS)}")
        if self.weight_granularity not in WEIGHT_GRANULARITIES:
            raise LeanError(f"unknown weight granularity {self.weight_granularity!r}; choose one "
                            f"of {', '.join(WEIGHT_GRANULARITIES)}")

    @classmethod
    def create_full_integer(cls, float_frontends: bool = True, float_scopes: tuple[str, ...] = (),
                            float_softmax_layers: bool = True,
                            float_output_head: bool = True,
                            activation_ranges: str = "mse",
                            weight_granularity: str = "per_channel",
                            bias_correction: bool = False,
                            float_groups: tuple[str, ...] = ()) -> "QuantizationConfig":
        """int8 weights and activations, calibrated; float32 input/output.

        By default the frontend layers stay float (quantizing YAMNet's log-mel frontend gave a
        max abs error of 9.7 log-mel units), and so do layers with a softmax (attention) and the
        output head (classifier Dense + activation); activation ranges are MSE-narrowed.
        `float_scopes` names further layers to keep float, `float_groups` further layer
        groups (lean_export.sensitivity).
        """
        return cls("int8", float_frontends, tuple(float_scopes), float_softmax_layers,
                   float_output_head, activation_ranges, weight_granularity, bias_correction,
                   tuple(float_groups))

    @classmethod
    def create_dynamic_range(cls, float_frontends: bool = True,
                             float_scopes: tuple[str, ...] = ()) -> "QuantizationConfig":
        """int8 weights, float activations (no calibration).

        By default the frontends keep float weights (int8 DFT and mel matrices cost YAMNet's
        log-mel 6.0 units); `float_scopes` names further layers to keep float.
        """
        return cls("dynamic_range", float_frontends, tuple(float_scopes))

    @classmethod
    def create_float16(cls) -> "QuantizationConfig":
        """float16 weights, float32 compute."""
        return cls("float16")

    @classmethod
    def create_float32(cls) -> "QuantizationConfig":
        """No quantization."""
        return cls("float32")

    @classmethod
    def from_mode(cls, mode: str) -> "QuantizationConfig":
        constructors = {
            "int8": cls.create_full_integer,
            "dynamic_range": cls.create_dynamic_range,
            "float16": cls.create_float16,
            "float32": cls.create_float32,
        }
        if mode not in constructors:
            raise LeanError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)}")
        return constructors[mode]()

    @property
    def needs_calibration(self) -> bool:
        return self.mode == "int8"


def build_serving_model(model, input_spec):
    """Wraps a waveform classifier as the serving graph: waveform [1, W * channels] float32 in,
    [1, C] out.

    A multi-channel model's samples arrive interleaved (frame by frame, as MediaPipe and
    Android's AudioRecord deliver them) and are reshaped to [1, W, channels] in the graph.

    Args:
      model: a Keras model taking float32 [B, *input_spec.shape] and returning probabilities
        [B, C] (the export-ready copy, so every shape is static).
      input_spec: the model's `lean.config.InputSpec`.

    Returns:
      A Keras model with one input named "waveform" of static shape [1, W * channels] and one
      float32 output [1, C].
    """
    import keras

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise LeanError(
            f"model {model.name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "export needs one waveform input and one probability output"
        )
    values = input_spec.window_samples * input_spec.channels
    waveform = keras.Input(shape=(values,), batch_size=1, dtype="float32", name=INPUT_NAME)
    samples = waveform
    if input_spec.channels > 1:
        samples = keras.layers.Reshape(input_spec.shape, name="deinterleave")(waveform)
    probabilities = model(samples)
    if len(probabilities.shape) != 2 or probabilities.shape[0] != 1:
        raise LeanError(f"model {model.name} returns shape {tuple(probabilities.shape)}, expected (1, classes)")
    if probabilities.dtype != "float32":
        probabilities = keras.ops.cast(probabilities, "float32")
    return keras.Model(waveform, probabilities, name=f"{model.name}_serving")


def float_node_names(tensor_names: list[str], scopes: tuple[str, ...]) -> list[str]:
    """The tensor names (op outputs) that lie under one of the layer-name scopes.

    TFLite names a tensor after its TF ops, "outer/layer_1/op", several fused ops joined by ";";
    a path part matches a scope when it is the scope's name, or that name with the "_N" suffix
    TensorFlow adds to repeated name scopes.
    """
    if not scopes:
        return []
    pattern = re.compile("^(?:" + "|".join(re.escape(scope) for scope in scopes) + r")(?:_\d+)?$")
    chosen = []
    for name in tensor_names:
        parts = [part for fused in name.split(";") for part in fused.split("/")]
        if any(pattern.match(part) for part in parts):
            chosen.append(name)
    return chosen


def softmax_layer_paths(model_bytes: bytes, layer_names=None) -> list[str]:
    """Name paths ("serving/model/layer/") of the Keras layers that hold a SOFTMAX op.

    With `layer_names` (every layer name of the model, nested models' included) the path ends
    at the innermost layer around the op, so a softmax inside a nested model (a tagger inside
    a scene model) keeps only its own layer float, not the whole nested model. A softmax
    directly under the model (no layer of its own) is left out: keeping its whole path float
    would keep the whole model float.
    """
    from lean_export.verify import op_list

    paths = []
    for op in op_list(model_bytes):
        if op["op"] != "SOFTMAX":
            continue
        parts = op["output_name"].split(";")[0].split("/")
        depth = 3
        if layer_names is not None:
            # TensorFlow names a layer's scope after it, with "_N" for repeated scopes.
            inner = [index for index, part in enumerate(parts[:-1])
                     if part in layer_names or re.sub(r"_\d+$", "", part) in layer_names]
            depth = max(inner, default=1) + 1
        if len(parts) > depth >= 3:
            path = "/".join(parts[:depth]) + "/"
            if path not in paths:
                paths.append(path)
    return paths


def all_layer_names(model) -> set[str]:
    """The names of `model`'s layers and of every nested model's layers."""
    names = set()
    for layer in getattr(model, "layers", ()):
        names.add(layer.name)
        names |= all_layer_names(layer)
    return names


WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL")


def output_head_names(model_bytes: bytes) -> list[str]:
    """Output tensor names of the ops from the model output back to the last weighted op.

    For a classifier that is [sigmoid, logits Dense]; empty when no weighted op feeds the output
    through single-input ops.
    """
    from ai_edge_litert import schema_py_generated as schema

    from lean_export.verify import op_list

    producer = {op["output_indices"][0]: op for op in op_list(model_bytes) if op["output_indices"]}
    tensor, names = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0).Outputs(0), []
    while tensor in producer:
        op = producer[tensor]
        names.append(op["output_name"])
        if op["op"] in WEIGHTED_OPS:
            return names
        tensor = op["input_indices"][0]
    return []


def _tensor_names(model_bytes: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    return [graph.Tensors(i).Name().decode("utf-8") for i in range(graph.TensorsLength())]


def _restore_float_weights(hybrid: bytes, float_model: bytes, scopes: tuple[str, ...]) -> tuple[bytes, list]:
    """Puts the float32 weights back into the int8-weight tensors under `scopes`.

    The converter has no per-layer switch for dynamic-range quantization; both conversions of
    the same graph name their tensors alike, so the float copy supplies the original values.
    A hybrid op whose weights are float again is an ordinary float op.
    """
    from ai_edge_litert import schema_py_generated as schema

    from lean_export.metadata import pack_model

    model = schema.ModelT.InitFromPackedBuf(bytearray(hybrid), 0)
    reference = schema.ModelT.InitFromPackedBuf(bytearray(float_model), 0)
    float_tensors = {t.name: t for t in reference.subgraphs[0].tensors}
    names = [t.name.decode("utf-8") for t in model.subgraphs[0].tensors]
    restored = []
    for tensor, name in zip(model.subgraphs[0].tensors, names):
        if tensor.type != schema.TensorType.INT8 or not float_node_names([name], scopes):
            continue
        original = float_tensors.get(tensor.name)
        if original is None or original.type != schema.TensorType.FLOAT32:
            raise LeanError(f"cannot restore float weights of {name}: no float32 tensor of that name")
        # Give the tensor its own buffer: int8 buffers may be shared between tensors.
        buffer = schema.BufferT()
        buffer.data = reference.buffers[original.buffer].data
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
        tensor.type = schema.TensorType.FLOAT32
        tensor.quantization = None
        restored.append(name)
    if not restored:
        # Dynamic-range quantization leaves small constants float: nothing to restore.
        return hybrid, restored
    return pack_model(model), restored


# Ops that only select or move values: the same op is valid on float32 and on int8 tensors.
VALUE_MOVING_OPS = ("STRIDED_SLICE", "SLICE", "RESHAPE", "GATHER", "TRANSPOSE", "PAD", "SQUEEZE",
                    "EXPAND_DIMS")


def unquantize_float_inputs(model_bytes: bytes, float_nodes: list[str]) -> tuple[bytes, list[str]]:
    """Turns QUANTIZE -> denylisted value-moving op (int8) -> DEQUANTIZE back into a float op.

    The MLIR quantizer quantizes a denylisted slice or reshape next to the model input anyway
    (measured with TF 2.21: the frontend's crop of the waveform came out int8), so the float
    frontend computed log-mel from an 8-bit waveform. Here such an op reads the float tensor
    again and the DEQUANTIZE after it goes; a QUANTIZE left without consumers goes too.

    Returns:
      (model bytes, output names of the ops made float again).
    """
    from ai_edge_litert import schema_py_generated as schema

    from lean_export.metadata import pack_model
    from lean_export.verify import op_list

    # Unpacking a 2,000-op model takes seconds: first look for the pattern at all.
    ops = op_list(model_bytes)
    producers = {index: op for op in ops for index in op["output_indices"]}
    if not any(op["op"] == "DEQUANTIZE" and producers.get(op["input_indices"][0], {}).get("op")
               in VALUE_MOVING_OPS for op in ops):
        return model_bytes, []
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    graph = model.subgraphs[0]
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}

    def op_type(op) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")

    float_nodes, restored = set(float_nodes), []
    changed = True
    while changed:
        changed = False
        producer = {int(out): op for op in graph.operators for out in op.outputs}
        consumers: dict[int, list] = {}
        for op in graph.operators:
            for tensor in op.inputs:
                consumers.setdefault(int(tensor), []).append(op)
        for dequantize in graph.operators:
            if op_type(dequantize) != "DEQUANTIZE":
                continue
            moved = int(dequantize.inputs[0])
            mover = producer.get(moved)
            if mover is None or op_type(mover) not in VALUE_MOVING_OPS:
                continue
            name = graph.tensors[moved].name.decode("utf-8")
            quantize = producer.get(int(mover.inputs[0]))
            if name not in float_nodes or quantize is None or op_type(quantize) != "QUANTIZE":
                continue
            if len(consumers[moved]) != 1:
                continue
            float_source = int(quantize.inputs[0])
            if graph.tensors[float_source].type != schema.TensorType.FLOAT32:
                continue
            mover.inputs[0] = float_source
            graph.tensors[moved].type = schema.TensorType.FLOAT32
            graph.tensors[moved].quantization = None
            dequantized = int(dequantize.outputs[0])
            for op in consumers.get(dequantized, []):
                op.inputs = [moved if int(t) == dequantized else int(t) for t in op.inputs]
            graph.outputs = [moved if int(t) == dequantized else int(t) for t in graph.outputs]
            graph.operators.remove(dequantize)
            if len(consumers[int(quantize.outputs[0])]) == 1:
                graph.operators.remove(quantize)
            restored.append(name)
            changed = True
            break
    if not restored:
        return model_bytes, []
    return pack_model(model), restored


def _convert_in_this_process(model, quantization: QuantizationConfig, windows, progress,
                             probe_windows=None, workdir: Path | None = None) -> tuple[bytes, dict]:
    """Runs the TFLite converter here (call it from the child process only).

    int8 with `probe_windows`: also measures each layer group's sensitivity on them. With
    `workdir`: leaves the calibrated model and the nodes kept float there, for
    `quantize_variants`.
    """
    import tensorflow as tf

    from lean.frontends import float_layer_names

    _stage(f"converting to TFLite ({quantization.mode})")
    scopes = tuple(quantization.float_scopes)
    if quantization.float_frontends:
        scopes = tuple(float_layer_names(model)) + scopes
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # float_nodes: int8 op outputs denylisted; float_weights: dynamic-range weights kept float.
    details: dict = {"float_nodes": [], "float_weights": [], "float_layers": [], "float_head": [],
                     "float_scopes": list(scopes)}
    if quantization.mode == "float32":
        return converter.convert(), details
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization.mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert(), details
    if quantization.mode == "dynamic_range":
        hybrid = converter.convert()
        if not scopes:
            return hybrid, details
        converter.optimizations = []
        _stage("converting a float32 copy to restore the float scopes' weights")
        restored, details["float_weights"] = _restore_float_weights(hybrid, converter.convert(),
                                                                  scopes)
        return restored, details

    def representative_dataset():
        # A dict keyed by input name: a list was matched to the inputs in alphabetical order,
        # not model order (measured with TF 2.21).
        for window in progress(windows):
            yield {INPUT_NAME: window[np.newaxis, :].astype(np.float32)}

    converter.representative_dataset = representative_dataset
    # int8 where an int8 kernel exists, float builtins for the denylisted frontend.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    # What tf.lite.experimental.QuantizationDebugger does with QuantizationDebugOptions(
    # denylisted_nodes=...), without building its instrumented debug model: calibrate only,
    # then quantize everything except the denylisted nodes.
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    _stage("calibrating int8 (running the float model on the calibration windows)")
    calibrated = converter.convert()
    details["activation_ranges"] = {"method": quantization.activation_ranges}
    if quantization.activation_ranges != "minmax":
        from lean_export.calibration import narrow_activation_ranges

        _stage(f"setting activation ranges ({quantization.activation_ranges}, histograms of the "
               "calibration windows)")
        calibrated, details["activation_ranges"] = narrow_activation_ranges(
            calibrated, windows, progress, quantization.activation_ranges)
    names = _tensor_names(calibrated)
    denylisted = float_node_names(names, scopes)
    if scopes and not denylisted:
        raise LeanError(
            f"no ops found under {', '.join(scopes)}; the frontend would be quantized (its ops "
            "must carry its layer name)"
        )
    if quantization.float_softmax_layers:
        layers = softmax_layer_paths(calibrated, all_layer_names(model))
        details["float_layers"] = layers
        denylisted += [name for name in names if name not in denylisted
                       and any(part.startswith(layer) for part in name.split(";") for layer in layers)]
    if quantization.float_output_head:
        details["float_head"] = output_head_names(calibrated)
        denylisted += [name for name in details["float_head"] if name not in denylisted]

    from lean_export.sensitivity import layer_groups

    groups = layer_groups(calibrated, set(denylisted))
    details["groups"] = {group.name: group.nodes for group in groups}
    details["group_costs"] = _group_costs(groups)
    forced = [group.name for group in groups
              if any(pattern in group.name for pattern in quantization.float_groups)]
    missing = [pattern for pattern in quantization.float_groups
               if not any(pattern in name for name in details["groups"])]
    if missing:
        raise LeanError(f"--keep-float {missing[0]!r} matches no layer group; the groups are: "
                        + ", ".join(details["groups"]))
    details["float_groups"] = forced
    base_denylisted = list(denylisted)
    denylisted += [node for name in forced for node in details["groups"][name]]
    if workdir is not None:
        (workdir / CALIBRATED_FILE).write_bytes(calibrated)
        (workdir / FLOAT_NODES_FILE).write_text(json.dumps(denylisted))
    if probe_windows is not None and len(probe_windows):
        details["sensitivity"] = _measure_sensitivity(calibrated, groups, base_denylisted,
                                                      quantization, windows, probe_windows,
                                                      progress)
    details["float_nodes"] = denylisted
    # What must be float by design (frontends, softmax layers, the head), as opposed to layer
    # groups kept float for accuracy: an op of those may stay int8 (a max pooling between int8
    # neighbours) without harm, and the val score of the written file is what judges them.
    details["required_float_nodes"] = base_denylisted
    _stage(f"quantizing to int8 with {len(denylisted)} float nodes kept")
    quantized, restored, corrected = _quantize(calibrated, denylisted, quantization, windows)
    details["float_inputs_restored"] = restored
    if corrected is not None:
        details["bias_correction"] = corrected
    return quantized, details


def _group_costs(groups) -> dict:
    """Each group's share of multiply-adds and weight bytes among the quantizable groups."""
    total_macs = sum(group.macs for group in groups)
    total_bytes = sum(group.weight_bytes for group in groups)
    return {group.name: group.summary(total_macs, total_bytes) for group in groups}


@functools.lru_cache(maxsize=2)
def _output_names_by_type(calibrated: bytes) -> dict[str, tuple[str, ...]]:
    """Op output names of a calibrated model by op type, read once per model: the sensitivity
    analysis and the fallback quantize the same model many times (reading att_crnn's 5,494 ops
    takes 0.8 s)."""
    from lean_export.verify import op_list

    names_by_type: dict[str, list[str]] = {}
    for op in op_list(calibrated):
        if op["output_indices"]:
            names_by_type.setdefault(op["op"], []).append(op["output_name"])
    return {op_type: tuple(names) for op_type, names in names_by_type.items()}


def _denylist_by_type(calibrated: bytes, denylisted: list[str]) -> tuple[list[str], list[str]]:
    """The same denylist as (op types, op output names): an op type all of whose ops are
    denylisted is named once instead of op by op.

    The quantizer's time grows faster than linearly with the number of denylisted names
    (att_crnn's 5,494-op graph, measured: 1,000 names 2.4 s, 2,000 6.8 s, 4,000 24.9 s, every
    op type 0.9 s), and quantizing one layer group alone denylists every other op; by type the
    output is byte-identical (measured on six of its groups) and a conv block's turn takes 3 s
    instead of 40 s.
    """
    denylisted_set = set(denylisted)
    names_by_type = _output_names_by_type(calibrated)
    whole_types = sorted(op_type for op_type, names in names_by_type.items()
                         if all(name in denylisted_set for name in names))
    covered = {name for op_type in whole_types for name in names_by_type[op_type]}
    return whole_types, [name for name in denylisted if name not in covered]


def _quantize(calibrated: bytes, denylisted: list[str], quantization: QuantizationConfig,
              windows) -> tuple[bytes, list[str], dict | None]:
    """int8 of a calibrated model with `denylisted` op outputs kept float (child process only).

    Returns (model bytes, names of frontend inputs made float again, bias correction summary
    or None).
    """
    from tensorflow.lite.python import convert as tflite_convert

    denylisted_ops, denylisted_nodes = _denylist_by_type(calibrated, denylisted)
    quantized = tflite_convert.mlir_quantize(
        calibrated,
        disable_per_channel=quantization.weight_granularity == "per_tensor",
        disable_per_channel_for_dense_layers=quantization.weight_granularity == "dense_per_tensor",
        fully_quantize=False,  # float32 input and output: MediaPipe rejects int8 I/O
        denylisted_ops=denylisted_ops,
        denylisted_nodes=denylisted_nodes,
    )
    quantized, restored = unquantize_float_inputs(quantized, denylisted)
    corrected = None
    if quantization.bias_correction:
        from lean_export.calibration import correct_biases

        quantized, corrected = correct_biases(quantized, calibrated, windows)
    return quantized, restored, corrected


# Windows the sensitivity analysis runs each single-group model on.
SENSITIVITY_WINDOWS = 32


def _measure_sensitivity(calibrated: bytes, groups, base_denylisted: list[str],
                         quantization: QuantizationConfig, windows, probe_windows,
                         progress) -> list[dict]:
    """Each group's error alone: only that group int8, the rest float, on the probe windows."""
    from lean_export.sensitivity import rank, tflite_scores

    from lean_export.verify import op_list

    probe = np.asarray(probe_windows[:SENSITIVITY_WINDOWS], np.float32)
    reference = tflite_scores(calibrated, probe)
    # Every op output outside the group stays float, the data-moving ops that belong to no
    # group too: left quantizable, a reshape of the waveform made every group's error 0.007.
    every_node = [op["output_name"] for op in op_list(calibrated) if op["output_indices"]]
    costs = _group_costs(groups)
    rows = []
    for group in progress(groups, "int8 sensitivity per layer group"):
        own = set(group.nodes)
        alone, _, _ = _quantize(calibrated, [n for n in every_node if n not in own],
                                quantization, windows)
        difference = np.abs(tflite_scores(alone, probe).astype(np.float64) - reference)
        rows.append({**costs[group.name], "error_alone": float(difference.mean()),
                     "max_error_alone": float(difference.max())})
    _stage(f"measured the int8 sensitivity of {len(rows)} layer groups")
    return rank(rows)


def quantize_variants(workdir: str | Path, kept_groups: list[list[str]],
                      groups: dict[str, list[str]], quantization: QuantizationConfig,
                      calibration_windows: np.ndarray | None = None,
                      timeout_s: float | None = None) -> list[bytes]:
    """int8 models of the calibrated model a `convert_model(workdir=...)` call left, each with
    one list of layer groups kept float (besides what that conversion kept float).

    Runs in a child process, as the conversion does. Returns the model bytes in order.
    """
    workdir = Path(workdir)
    base = json.loads((workdir / FLOAT_NODES_FILE).read_text())
    variants = [base + [node for name in names for node in groups[name] if node not in base]
                for names in kept_groups]
    (workdir / "variants.json").write_text(json.dumps(variants))
    (workdir / "quantization.json").write_text(json.dumps(dataclasses.asdict(quantization)))
    if calibration_windows is not None:
        np.save(workdir / "windows.npy", np.asarray(calibration_windows, np.float32))
    _run_child(workdir, ["--task", "quantize"], timeout_s, progress=False)
    return [(workdir / f"variant_{index}.tflite").read_bytes() for index in range(len(variants))]


def convert_model(
    model,
    quantization: QuantizationConfig,
    calibration_windows: np.ndarray | None = None,
    timeout_s: float | None = None,
    progress: bool = True,
    probe_windows: np.ndarray | None = None,
    workdir: str | Path | None = None,
) -> tuple[bytes, dict]:
    """Converts a serving model to TFLite in a child process, so a converter crash is an error.

    Args:
      model: the serving Keras model (`build_serving_model`).
      quantization: a `QuantizationConfig`.
      calibration_windows: float32 [N, window_samples], required for int8.
      timeout_s: give up after this many seconds (None: no limit).
      progress: show the child's calibration progress bar on stderr.
      probe_windows: int8 only: held-out windows [N, values]; each layer group's int8
        sensitivity is measured on (up to SENSITIVITY_WINDOWS of) them.
      workdir: int8 only: a folder kept by the caller, where the calibrated model stays for
        `quantize_variants`.

    Returns:
      (TFLite flatbuffer bytes, details) with details["float_nodes"] (int8: the denylisted op
      outputs), details["float_weights"] (dynamic_range: the weights kept float), and for int8
      details["groups"] (layer group -> op output names), details["group_costs"] and, with
      probe windows, details["sensitivity"] (ranked rows).
    """
    if quantization.needs_calibration:
        if calibration_windows is None or len(calibration_windows) == 0:
            raise LeanError("int8 export needs calibration windows (none were given)")
        calibration_windows = np.asarray(calibration_windows, dtype=np.float32)
        expected = model.inputs[0].shape[-1]
        if calibration_windows.ndim != 2 or calibration_windows.shape[1] != expected:
            raise LeanError(
                f"calibration windows have shape {calibration_windows.shape}, expected (N, {expected})"
            )
    with scratch_directory("convert") as scratch:
        scratch = Path(scratch)
        model.save(scratch / "model.keras")
        if calibration_windows is not None:
            np.save(scratch / "windows.npy", calibration_windows)
        if probe_windows is not None and quantization.needs_calibration:
            np.save(scratch / "probe.npy", np.asarray(probe_windows, np.float32))
        (scratch / "quantization.json").write_text(json.dumps(dataclasses.asdict(quantization)))
        extra = ["--workdir", str(workdir)] if workdir is not None else []
        _run_child(scratch, extra, timeout_s, progress)
        details = json.loads((scratch / "details.json").read_text())
        return (scratch / "model.tflite").read_bytes(), details


def _run_child(scratch: Path, extra: list[str], timeout_s: float | None, progress: bool) -> None:
    """Runs this module as a child process on `scratch`; a crash or error becomes a LeanError."""
    log_path = scratch / "converter.log"
    progress_fd = os.dup(sys.stderr.fileno())
    command = [
        sys.executable, "-m", "lean_export.convert",
        "--scratch", str(scratch), "--progress-fd", str(progress_fd),
    ] + extra + ([] if progress else ["--no-progress"])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    try:
        with open(log_path, "wb") as log:
            completed = subprocess.run(
                command, stdout=log, stderr=log, pass_fds=(progress_fd,), env=env, timeout=timeout_s
            )
    except subprocess.TimeoutExpired:
        raise LeanError(f"the TFLite converter did not finish within {timeout_s:.0f} s") from None
    finally:
        os.close(progress_fd)
    if completed.returncode != 0:
        raise LeanError(_describe_failure(completed.returncode, log_path.read_text(errors="replace")))


STAGE_PREFIX = "lean-export stage: "


def _stage(text: str) -> None:
    """Child: records what it is doing, so a crash can be reported as 'crashed while ...'."""
    print(f"{STAGE_PREFIX}{text}", file=sys.stderr, flush=True)


def _describe_failure(returncode: int, log: str) -> str:
    """One line: how the child ended, in which stage, and the Python error if there was one."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    user_error = [line for line in lines if line.startswith("LeanError: ")]
    if user_error:
        return user_error[-1][len("LeanError: "):]
    stages = [line[len(STAGE_PREFIX):] for line in lines if line.startswith(STAGE_PREFIX)]
    stage = stages[-1] if stages else "starting"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"the TFLite converter crashed ({name}) while {stage}"
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    reason = errors[-1][:300] if errors else "no error message"
    return f"the TFLite converter failed (exit {returncode}) while {stage}: {reason}"


def _child_main(argv: list[str] | None = None) -> int:
    """Child process: convert (load the saved model, write model.tflite and details.json) or
    quantize (the variants of a calibrated model left in the scratch folder)."""
    parser = argparse.ArgumentParser(description="internal: TFLite conversion child process")
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--progress-fd", type=int, required=True)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--task", choices=("convert", "quantize"), default="convert")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    from tqdm import tqdm

    progress_stream = os.fdopen(args.progress_fd, "w")
    quantization = QuantizationConfig(**{
        key: tuple(value) if isinstance(value, list) else value
        for key, value in json.loads((args.scratch / "quantization.json").read_text()).items()
    })

    def load(name):
        path = args.scratch / name
        return np.load(path) if path.exists() else None

    def progress(items, description="calibrating"):
        return tqdm(items, desc=description, unit="window" if description == "calibrating"
                    else "item", file=progress_stream, leave=False, disable=args.no_progress)

    try:
        if args.task == "quantize":
            calibrated = (args.scratch / CALIBRATED_FILE).read_bytes()
            variants = json.loads((args.scratch / "variants.json").read_text())
            for index, denylisted in enumerate(variants):
                _stage(f"quantizing fallback candidate {index + 1} of {len(variants)}")
                quantized, _, _ = _quantize(calibrated, denylisted, quantization,
                                            load("windows.npy"))
                (args.scratch / f"variant_{index}.tflite").write_bytes(quantized)
            return 0
        from lean.models.registry import load_model

        _stage("loading the Keras model")
        model = load_model(args.scratch / "model.keras")
        model_bytes, details = _convert_in_this_process(model, quantization, load("windows.npy"),
                                                        progress, load("probe.npy"),
                                                        args.workdir)
    except LeanError as error:
        print(f"LeanError: {error}", file=sys.stderr)
        return 2
    (args.scratch / "model.tflite").write_bytes(model_bytes)
    (args.scratch / "details.json").write_text(json.dumps(details))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
