"""Verification of an exported .tflite: ops and dtypes, output parity, latency, memory, report files."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from lean.errors import LeanError
from lean.io import atomic_write_text

LATENCY_RUNS = 50
LATENCY_WARMUP = 5
LATENCY_SEED = 0


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def op_list(model_bytes: bytes) -> list[dict]:
    """Every op of the main subgraph in execution order: type, dtypes, output name, tensor indices."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = _enum_names(schema.BuiltinOperator)
    type_names = {value: name.lower() for value, name in _enum_names(schema.TensorType).items()}
    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)

    def dtype(index: int) -> str:
        return type_names[graph.Tensors(index).Type()] if index >= 0 else "none"

    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # builtin codes above 127 live in the wider BuiltinCode field.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, str(builtin))
        if builtin == schema.BuiltinOperator.CUSTOM:
            name = f"CUSTOM:{code.CustomCode().decode()}"
        inputs = [dtype(op.Inputs(j)) for j in range(op.InputsLength())]
        outputs = [dtype(op.Outputs(j)) for j in range(op.OutputsLength())]
        output_name = graph.Tensors(op.Outputs(0)).Name().decode("utf-8") if op.OutputsLength() else ""
        ops.append({"op": name, "inputs": inputs, "outputs": outputs, "output_name": output_name,
                    "input_indices": [op.Inputs(j) for j in range(op.InputsLength())],
                    "output_indices": [op.Outputs(j) for j in range(op.OutputsLength())]})
    return ops


def op_table(ops: list[dict]) -> list[dict]:
    """Ops grouped by (type, input dtypes, output dtypes), with counts, most frequent first."""
    counts = Counter((op["op"], ",".join(op["inputs"]), ",".join(op["outputs"])) for op in ops)
    return [
        {"op": op, "inputs": inputs, "outputs": outputs, "count": count}
        for (op, inputs, outputs), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def float_ops_outside(ops: list[dict], float_node_names: list[str]) -> list[str]:
    """Ops computing in float that are not denylisted (the int8 body should have none).

    QUANTIZE/DEQUANTIZE at the float/int8 borders and shape-only ops are not computation.
    """
    kept_float = set(float_node_names)
    borders = {"QUANTIZE", "DEQUANTIZE", "SHAPE"}
    return [
        op["op"]
        for op in ops
        if op["op"] not in borders
        and op["output_name"] not in kept_float
        and any(dtype in ("float32", "float16") for dtype in op["outputs"])
    ]


def int8_ops_inside(ops: list[dict], float_node_names: list[str]) -> list[str]:
    """Denylisted ops that compute in int8 anyway (the float frontend must have none).

    Returns their output names; a non-empty list means, e.g., log-mel from an 8-bit waveform.
    """
    kept_float = set(float_node_names)
    return [op["output_name"] for op in ops
            if op["output_name"] in kept_float and any(dtype == "int8" for dtype in op["outputs"])]


def size_breakdown(model_bytes: bytes) -> dict:
    """Where the bytes of a .tflite go, and the floor that int8 weights put under its size.

    Keys (bytes): weights_<dtype> (constant tensor data), quantization_scales and
    quantization_zero_points (per-channel int8 stores a float32 scale and an int64 zero point
    per output channel of every weight and bias tensor; the runtime rejects a file without the
    zero points), tensor_names, metadata (metadata buffers and the zip of associated files
    appended to the flatbuffer), structure (tensor, op and buffer tables, shapes, alignment:
    the rest). int8_floor is weights_int8 + weights_int32 (biases, a few shape constants) + the
    quantization parameters: what any file with this model's int8 weights and per-channel
    quantization must hold.
    """
    import io
    import zipfile

    from ai_edge_litert import schema_py_generated as schema

    type_names = {value: name.lower() for value, name in _enum_names(schema.TensorType).items()}
    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    metadata_buffers = {model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    sizes: Counter = Counter()
    seen_buffers = set()
    for index in range(graph.TensorsLength()):
        tensor = graph.Tensors(index)
        sizes["tensor_names"] += len(tensor.Name() or b"")
        quantization = tensor.Quantization()
        if quantization is not None:
            sizes["quantization_scales"] += 4 * quantization.ScaleLength()
            sizes["quantization_zero_points"] += 8 * quantization.ZeroPointLength()
        buffer = tensor.Buffer()
        if buffer in seen_buffers or buffer in metadata_buffers:
            continue
        seen_buffers.add(buffer)
        sizes[f"weights_{type_names[tensor.Type()]}"] += model.Buffers(buffer).DataLength()
    for buffer in metadata_buffers:
        sizes["metadata"] += model.Buffers(buffer).DataLength()
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            appended_from = min(info.header_offset for info in archive.infolist())
        sizes["metadata"] += len(model_bytes) - appended_from
    except (zipfile.BadZipFile, ValueError):
        pass  # no associated files appended
    sizes = {key: value for key, value in sizes.items() if value}
    sizes["structure"] = len(model_bytes) - sum(sizes.values())
    sizes["int8_floor"] = (sizes.get("weights_int8", 0) + sizes.get("weights_int32", 0)
                           + sizes.get("quantization_scales", 0) + sizes.get("quantization_zero_points", 0))
    sizes["total"] = len(model_bytes)
    return sizes


# Ops that multiply-accumulate, and the accumulation length of each output element.
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def multiply_accumulates(model_bytes: bytes) -> dict:
    """Multiply-accumulates of one inference of a .tflite, counted from its ops' tensor shapes.

    Per output element: CONV_2D kh kw Cin, DEPTHWISE_CONV_2D kh kw, FULLY_CONNECTED the input
    width, BATCH_MATMUL the contracted length. Element-wise ops (MUL, ADD, pooling, activations)
    are not counted. Returns {op type: MACs, ..., "total": MACs}.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)

    def shape(index: int) -> list[int]:
        return [int(d) for d in graph.Tensors(index).ShapeAsNumpy()]

    macs: Counter = Counter()
    for op in op_list(model_bytes):
        if op["op"] not in MAC_OPS:
            continue
        outputs = int(np.prod(shape(op["output_indices"][0])))
        weights = shape(op["input_indices"][1])
        if op["op"] == "CONV_2D":  # filter [Cout, kh, kw, Cin]
            depth = weights[1] * weights[2] * weights[3]
        elif op["op"] == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, Cout]
            depth = weights[1] * weights[2]
        elif op["op"] == "FULLY_CONNECTED":  # weights [units, inputs]
            depth = weights[-1]
        else:
            lhs = shape(op["input_indices"][0])
            depth = lhs[-2] if _batch_matmul_adj_x(graph, op, schema) else lhs[-1]
        macs[op["op"]] += outputs * depth
    return {**dict(macs), "total": sum(macs.values())}


def _batch_matmul_adj_x(graph, op: dict, schema) -> bool:
    """Whether a BATCH_MATMUL op transposes its left operand."""
    for index in range(graph.OperatorsLength()):
        candidate = graph.Operators(index)
        if candidate.OutputsLength() and candidate.Outputs(0) == op["output_indices"][0]:
            table = candidate.BuiltinOptions()
            if table is None:
                return False
            options = schema.BatchMatMulOptions()
            options.Init(table.Bytes, table.Pos)
            return bool(options.AdjX())
    return False


def output_difference(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Max and mean absolute difference between two score arrays of the same shape."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise LeanError(f"score shapes differ: {reference.shape} vs {candidate.shape}")
    difference = np.abs(reference - candidate)
    return {
        "windows": int(reference.shape[0]),
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
    }


# A probed layer is flagged when its exported output is this far from the float one: the largest
# difference over the largest float value, or the share of its non-zero float values that the
# exported model makes exactly 0 (an int8 underflow: Att-CRNN's pooled feature, whose terms of
# about 5e-5 all round to 0 under TANH's fixed 1/128 output step, gives 1.0 for both).
PROBE_FLAG_RELATIVE = 0.5
PROBE_FLAG_ZEROED = 0.5
PROBE_WINDOWS = 16


def in_layer_scope(tensor_name: str, layer: str) -> bool:
    """Whether a TFLite tensor name lies under the Keras layer `layer`: one of its path parts
    (of any of its ';'-fused op names) is `layer` or `layer_N`."""
    scope = re.compile(re.escape(layer) + r"(_\d+)?")
    return any(scope.fullmatch(part) for fused in tensor_name.split(";") for part in fused.split("/"))


def probe_layer_names(model, model_bytes: bytes) -> list[str]:
    """The layers whose outputs the report compares between the float model and the export: the
    frontends (kept float) and every layer that holds a SOFTMAX op (attention, kept float unless
    --int8-all), in model order; the layer that makes the model's output is left out (the
    output difference covers it)."""
    from lean.frontends import float_layer_names

    softmax_names = [op["output_name"] for op in op_list(model_bytes) if op["op"] == "SOFTMAX"]
    frontends = float_layer_names(model)
    output_ids = {id(tensor) for tensor in model.outputs}
    names = []
    for layer in model.layers:
        if id(layer.output) in output_ids:
            continue
        if layer.name in frontends or any(in_layer_scope(name, layer.name)
                                          for name in softmax_names):
            names.append(layer.name)
    return names


def layer_output_tensor(ops: list[dict], layer: str, shape: tuple[int, ...]) -> int | None:
    """Index of the tensor that carries `layer`'s output in a TFLite graph: made by an op under
    the layer's name, read by an op outside it (or a graph output), of `shape`; a QUANTIZE's
    int8 copy is passed over for the value it copies. None when the converter fused it away."""
    consumers: dict[int, list[dict]] = {}
    for op in ops:
        for index in op["input_indices"]:
            consumers.setdefault(index, []).append(op)

    def leaves(index: int) -> bool:
        readers = consumers.get(index, [])
        if not readers:
            return True  # a graph output
        return any(leaves(reader["output_indices"][0]) if reader["op"] == "QUANTIZE"
                   else not in_layer_scope(reader["output_name"], layer) for reader in readers)

    found = None
    for op in ops:
        if op["op"] == "QUANTIZE" or not in_layer_scope(op["output_name"], layer):
            continue
        index = op["output_indices"][0]
        if leaves(index) and op.get("output_shape") in (None, list(shape)):
            found = index
    return found


def layer_differences(model, exported: str | Path | bytes, windows: np.ndarray,
                      layer_names: list[str]) -> list[dict]:
    """Float (Keras) vs exported (LiteRT) outputs of named layers, on the same windows.

    Args:
      model: the float Keras model the export was made from (layer names as in the export).
      exported: the exported .tflite (path or bytes) with its tensor names (not stripped).
      windows: float32 [N, window_samples] or [N, window_samples, channels].
      layer_names: the layers to compare (`probe_layer_names`).
    Returns:
      One row per layer: `layer`, `tensor` (its TFLite name, None when fused away), `dtype` of
      the exported tensor, `max_abs_diff`, `float_max_abs`, `relative` (their ratio),
      `zeroed_fraction` (non-zero float values that are exactly 0 exported) and `flagged`.
      Intermediate tensors are read with LiteRT's reference kernels (XNNPACK keeps its own),
      so values can differ from the delegated run by an int8 rounding step.
    """
    import keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not layer_names:
        return []
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in layer_names])
    expected = probe.predict(windows, verbose=0, batch_size=len(windows))
    expected = expected if isinstance(expected, list) else [expected]
    model_bytes = exported if isinstance(exported, bytes) else Path(exported).read_bytes()
    ops = op_list(model_bytes)
    shapes = _tensor_shapes(model_bytes)
    for op in ops:
        op["output_shape"] = shapes[op["output_indices"][0]] if op["output_indices"] else None
    interpreter = Interpreter(
        model_content=model_bytes, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    details = {item["index"]: item for item in interpreter.get_tensor_details()}
    tensors = [layer_output_tensor(ops, name, (1, *values.shape[1:]))
               for name, values in zip(layer_names, expected)]
    exported = [[] for _ in layer_names]
    input_index = interpreter.get_input_details()[0]["index"]
    for window in windows:
        interpreter.set_tensor(input_index, window.reshape(1, -1).astype(np.float32))
        interpreter.invoke()
        for values, index in zip(exported, tensors):
            if index is not None:
                values.append(_dequantized(interpreter.get_tensor(index), details[index]))
    rows = []
    for name, index, reference, values in zip(layer_names, tensors, expected, exported):
        row = {"layer": name, "tensor": None if index is None else details[index]["name"]}
        if index is not None:
            reference = np.asarray(reference, np.float64)
            values = np.concatenate(values).reshape(reference.shape)
            float_max = float(np.abs(reference).max())
            difference = float(np.abs(values - reference).max())
            nonzero = reference != 0
            zeroed = float((values[nonzero] == 0).mean()) if nonzero.any() else 0.0
            relative = difference / float_max if float_max > 0 else 0.0
            row.update(dtype=np.dtype(details[index]["dtype"]).name, max_abs_diff=difference,
                       float_max_abs=float_max, relative=relative, zeroed_fraction=zeroed,
                       flagged=relative > PROBE_FLAG_RELATIVE or zeroed > PROBE_FLAG_ZEROED)
        rows.append(row)
    return rows


def _tensor_shapes(model_bytes: bytes) -> list[list[int]]:
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    return [graph.Tensors(i).ShapeAsNumpy().tolist() if graph.Tensors(i).ShapeLength() else []
            for i in range(graph.TensorsLength())]


def _dequantized(values: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values as float64: int8/int16/int32 through its scale and zero point."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        scales = detail["quantization_parameters"]["scales"]
        zero_points = detail["quantization_parameters"]["zero_points"]
        if len(scales) == 1:
            return (values.astype(np.float64) - zero_points[0]) * scales[0]
    return values.astype(np.float64)


def measure_latency(model_path: str | Path, threads: int = 1, runs: int = LATENCY_RUNS) -> dict:
    """Host latency and peak memory of one model, measured in a fresh process.

    A fresh process keeps the memory numbers about this model alone (no TensorFlow, no other
    interpreter) and the timing free of the parent's threads.

    Args:
      model_path: the .tflite file.
      threads: LiteRT interpreter threads (XNNPACK).
      runs: timed invocations after the warm-up (>= 50 for the report).

    Returns:
      dict with threads, runs, median_ms, mean_ms, p10_ms, p90_ms, min_ms, rss_before_mb,
      peak_rss_mb, peak_rss_delta_mb (peak resident memory minus that before loading the model).
    """
    command = [sys.executable, "-m", "lean_export.verify", str(model_path), "--threads", str(threads),
               "--runs", str(runs)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise LeanError(f"{model_path}: latency measurement failed (exit {completed.returncode}): {last}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _memory_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise LeanError(f"/proc/self/status has no {field}")


def _latency_child(model_path: str, threads: int, runs: int) -> dict:
    """Runs in the child: load, warm up, time `runs` invocations on a fixed random window."""
    import time

    from lean.inference import open_interpreter

    rss_before = _memory_mb("VmRSS")
    interpreter = open_interpreter(model_path, threads)
    waveform = interpreter.get_input_details()[0]
    window = 0.1 * np.random.default_rng(LATENCY_SEED).standard_normal(waveform["shape"])
    interpreter.set_tensor(waveform["index"], window.astype(waveform["dtype"]))
    for _ in range(LATENCY_WARMUP):
        interpreter.invoke()
    times_ms = []
    for _ in range(runs):
        started = time.perf_counter()
        interpreter.invoke()
        times_ms.append((time.perf_counter() - started) * 1000.0)
    times_ms = np.asarray(times_ms)
    peak = _memory_mb("VmHWM")
    return {
        "threads": threads,
        "runs": runs,
        "median_ms": round(float(np.median(times_ms)), 3),
        "mean_ms": round(float(times_ms.mean()), 3),
        "p10_ms": round(float(np.percentile(times_ms, 10)), 3),
        "p90_ms": round(float(np.percentile(times_ms, 90)), 3),
        "min_ms": round(float(times_ms.min()), 3),
        "rss_before_mb": round(rss_before, 2),
        "peak_rss_mb": round(peak, 2),
        "peak_rss_delta_mb": round(peak - rss_before, 2),
    }


def write_report(report: dict, model_path: str | Path) -> tuple[Path, Path]:
    """Writes MODEL.report.json and MODEL.report.md beside the model (atomically)."""
    model_path = Path(model_path)
    json_path = model_path.with_suffix(".report.json")
    md_path = model_path.with_suffix(".report.md")
    atomic_write_text(json_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2e}"
    return str(value)


def _ranges_text(ranges: dict | None) -> str:
    if not ranges:
        return "-"
    if ranges["method"] != "mse":
        return f"{ranges['method']} (the converter's calibrated min/max)"
    return (f"mse: {ranges['narrowed']:,} of {ranges['tensors']:,} tensors narrowed (median "
            f"{ranges['median_narrowing']}x, at most {ranges['max_narrowing']}x)")


def _macs_text(macs: dict | None) -> str:
    if not macs:
        return "-"
    parts = ", ".join(f"{op} {count / 1e6:,.1f}M" for op, count in macs.items() if op != "total")
    return f"{macs['total'] / 1e6:,.1f}M ({parts})"


def _short(name: str, prefix: str) -> str:
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _sensitivity_lines(report: dict) -> list[str]:
    rows = report.get("sensitivity")
    if not rows:
        return []
    from lean_export.sensitivity import common_prefix

    prefix = common_prefix([row["group"] for row in rows])
    lines = ["## int8 sensitivity per layer group", "",
             "Each group quantized alone (everything else float) on held-out windows: mean and "
             "max absolute output difference to float; its share of the quantizable "
             "multiply-adds (what the latency of convolutions and matmuls follows) and of the "
             f"weight bytes. Group names under `{prefix}`." if prefix else
             "Each group quantized alone (everything else float) on held-out windows.", "",
             "| rank | layer group | ops | error alone (mean) | max | MACs share | bytes share |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['rank']} | `{_short(row['group'], prefix)}` | {row['ops']} | "
                     f"{_number(row['error_alone'])} | {_number(row['max_error_alone'])} | "
                     f"{row['macs_share']:.1%} | {row['weight_bytes_share']:.1%} |")
    return lines + [""]


def _fallback_lines(report: dict) -> list[str]:
    section = report.get("fallback")
    if not section:
        return []
    from lean_export.sensitivity import common_prefix

    initial = section["initial"]
    lines = ["## Float fallback", "",
             f"Mode {section['mode']}, at most {section['max_steps']} layer groups, allowed val "
             f"drop {_number(section['max_drop'])}. Each step keeps one more group float, in "
             "order of error removed per share of MACs and bytes.", "",
             "| step | layer groups kept float | val drop (95% over clips) | size | host "
             "latency | mean abs diff |", "|---|---|---|---|---|---|"]

    def row(label, kept, values, prefix):
        spread = values["drop_bootstrap"]
        return (f"| {label} | {', '.join(f'`{_short(name, prefix)}`' for name in kept) or '-'} "
                f"| {_number(values['drop'])} ({_number(spread['low'])} to "
                f"{_number(spread['high'])}) | {values['file_size_bytes']:,} B | "
                f"{values['latency_median_ms']} ms | {_number(values['mean_abs_diff'])} |")

    names = [name for step in section["steps"] for name in step["kept_float"]]
    prefix = common_prefix(names) if names else ""
    lines.append(row("int8", [], initial, prefix))
    for number, step in enumerate(section["steps"], 1):
        lines.append(row(f"{number}{' (chosen)' if section['chosen'] == number - 1 else ''}",
                         step["kept_float"], step, prefix))
    if section["chosen"] == -1:
        lines += ["", "The int8 file was within the allowed drop: nothing kept float."]
    elif section["chosen"] is None and section["mode"] == "auto":
        lines += ["", "No step reached the allowed drop: no model written."]
    return lines + [""]


def render_markdown(report: dict) -> str:
    """The readable twin of the JSON report."""
    lines = [f"# Export report: {Path(report['model']).name}", ""]
    status = "PASSED" if report.get("passed") else "FAILED"
    lines += [f"**{status}**" + (": " + "; ".join(report["failures"]) if report.get("failures") else ""), ""]
    lines += [f"**Warning**: {warning}" for warning in report.get("warnings", [])]
    lines += [""] if report.get("warnings") else []
    lines += [
        "| | |",
        "|---|---|",
        f"| run | `{report.get('run_dir')}` |",
        f"| model family member | {report.get('model_name')} |",
        f"| quantization | {report.get('quantization')} |",
        f"| file size | {report['file_size_bytes']:,} bytes ({report['file_size_mb']:.3f} MB) |",
        f"| ops | {report.get('op_count')} |",
        f"| multiply-accumulates per window | {_macs_text(report.get('multiply_accumulates'))} |",
        f"| layers kept float | {', '.join(report.get('float_layers', [])) or 'none'} |",
        f"| output head kept float | {len(report.get('float_head', []))} ops |",
        f"| other float ops | {len(report.get('float_ops_after_frontend', []))} |",
        f"| int8 ops inside the float layers | {len(report.get('int8_ops_in_float_layers', []))} |",
        f"| int8 activation ranges | {_ranges_text(report.get('activation_ranges'))} |",
        f"| layer groups kept float (fallback, --keep-float) | "
        f"{', '.join(report.get('float_groups', [])) or 'none'} |",
        f"| their ops the converter kept int8 (data moving, e.g. pooling) | "
        f"{len(report.get('int8_ops_in_float_groups', []))} |",
        f"| frontend formulation | {report.get('frontend_formulation', '-')} |",
        f"| tensor names stripped | {report.get('tensor_names_stripped', '-')} |",
        f"| conversion | {_number(report.get('conversion_seconds'), 1)} s |",
        "",
    ]
    parity = report.get("export_ready_parity")
    difference = report.get("output_difference")
    if parity or difference:
        lines += ["## Output parity (probabilities, held-out windows)", "",
                  "| comparison | windows | max abs diff | mean abs diff |", "|---|---|---|---|"]
        if parity:
            lines.append(f"| Keras vs export-ready Keras | {parity['windows']} | "
                         f"{_number(parity['max_abs_diff'])} | {_number(parity['mean_abs_diff'])} |")
        if difference:
            lines.append(f"| Keras float vs TFLite | {difference['windows']} | "
                         f"{_number(difference['max_abs_diff'])} | {_number(difference['mean_abs_diff'])} |")
        lines.append("")
    if report.get("layer_probes"):
        lines += ["## Layers float vs exported (frontends and attention, held-out windows)", "",
                  f"Flagged when the largest difference exceeds {PROBE_FLAG_RELATIVE:.0%} of the "
                  f"largest float value or more than {PROBE_FLAG_ZEROED:.0%} of the non-zero "
                  "float values are exactly 0 in the export.", "",
                  "| layer | exported tensor | dtype | max abs diff | float max abs | relative | "
                  "zeroed | flag |", "|---|---|---|---|---|---|---|---|"]
        for row in report["layer_probes"]:
            if row["tensor"] is None:
                lines.append(f"| {row['layer']} | not in the graph (fused away) | | | | | | |")
                continue
            lines.append(f"| {row['layer']} | `{row['tensor']}` | {row['dtype']} | "
                         f"{_number(row['max_abs_diff'])} | {_number(row['float_max_abs'])} | "
                         f"{row['relative']:.1%} | {row['zeroed_fraction']:.0%} | "
                         f"{'**UNDERFLOW?**' if row['flagged'] else 'ok'} |")
        lines.append("")
    if report.get("quality"):
        metric = next(iter(report["quality"].values()))["metric"]
        lines += [f"## {metric} (same code as `lean eval`)", "",
                  f"Allowed drop: {_number(report.get('max_drop'))}", "",
                  "| split | clips | float (Keras) | exported (TFLite) | drop | drop over "
                  "resampled clips: sd, 95% |",
                  "|---|---|---|---|---|---|"]
        for split, values in report["quality"].items():
            spread = values.get("drop_bootstrap")
            spread_text = (f"{_number(spread['sd'])}, {_number(spread['low'])} to {_number(spread['high'])}"
                           if spread else "-")
            lines.append(f"| {split} | {values['num_clips']} | {_number(values['float'])} | "
                         f"{_number(values['exported'])} | {_number(values['drop'])} | {spread_text} |")
        lines += ["", "A drop smaller than its spread is within what the choice of clips alone moves.", ""]
    latency = report.get("latency")
    if latency:
        lines += ["## Host latency and memory (LiteRT + XNNPACK)", "",
                  f"{latency['threads']} thread(s), {latency['runs']} runs after "
                  f"{LATENCY_WARMUP} warm-up runs, CPU: {report.get('host', {}).get('cpu')}", "",
                  "| median | mean | p10 | p90 | peak RSS | peak RSS delta (model) |",
                  "|---|---|---|---|---|---|",
                  f"| {latency['median_ms']} ms | {latency['mean_ms']} ms | {latency['p10_ms']} ms | "
                  f"{latency['p90_ms']} ms | {latency['peak_rss_mb']} MiB | {latency['peak_rss_delta_mb']} MiB |",
                  ""]
    if report.get("metadata"):
        meta = report["metadata"]
        lines += ["## Metadata", "",
                  f"{meta['name']} {meta['version']} by {meta['author']} ({meta['license']}); input "
                  f"{meta['input']['sample_rate']} Hz, {meta['input']['channels']} channel(s); "
                  f"{meta['num_labels']} labels; score threshold {meta['output']['score_threshold']}; "
                  f"associated files: {', '.join(meta['associated_files'])}; min parser version "
                  f"{meta['min_parser_version']}.", ""]
    lines += _sensitivity_lines(report)
    lines += _fallback_lines(report)
    if report.get("size_breakdown"):
        parts = report["size_breakdown"]
        lines += ["## Where the bytes go", "", "| part | bytes |", "|---|---|"]
        lines += [f"| {key} | {value:,} |" for key, value in parts.items() if key not in ("int8_floor", "total")]
        lines += ["", f"int8 weights, int32 biases and their per-channel quantization parameters alone: "
                  f"{parts['int8_floor']:,} bytes of {parts['total']:,}.", ""]
    lines += ["## Ops", "", "| op | input dtypes | output dtypes | count |", "|---|---|---|---|"]
    lines += [f"| {row['op']} | {row['inputs']} | {row['outputs']} | {row['count']} |" for row in report["ops"]]
    lines.append("")
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> int:
    """Child process of `measure_latency`: prints one JSON line."""
    parser = argparse.ArgumentParser(description="internal: time one .tflite model with LiteRT")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=LATENCY_RUNS)
    args = parser.parse_args(argv)
    print(json.dumps(_latency_child(args.model, args.threads, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
