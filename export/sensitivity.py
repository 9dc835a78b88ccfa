"""Per-layer int8 sensitivity and the float fallback: which layer groups cost accuracy in int8.

A layer group is found in the converted graph, not by a model's layer names: the ops under one
innermost Keras layer scope (TFLite names every op output after its TF name scope), so every
family member gets the same analysis. A group that mixes weighted ops (FULLY_CONNECTED, CONV_2D,
DEPTHWISE_CONV_2D, BATCH_MATMUL) with many elementwise ops, as an unrolled recurrent cell does,
is split in two: "[matmul]" (the weighted ops) and "[elementwise]" (gates, cell state, slices),
so the fallback can keep a recurrent cell's state arithmetic float and its matmuls int8.

The error a group alone introduces is measured by quantizing only that group (everything else
float) and running held-out windows: the mean absolute difference of the output to the float
model's. Its cost if kept float is its share of the model's multiply-adds (what the latency of
the convolutions and matmuls follows) and of its weight bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lean_export.convert import VALUE_MOVING_OPS, WEIGHTED_OPS

# Ops that only move or select values: a group made of these alone adds no int8 error of its
# own (its tensors are quantized by their producers and consumers).
DATA_MOVING_OPS = VALUE_MOVING_OPS + ("SHAPE", "PACK", "UNPACK", "SPLIT", "SPLIT_V")
# A group with more elementwise ops than this next to its weighted ops is split in two.
SPLIT_ELEMENTWISE_OPS = 8
MATMUL_PART, ELEMENTWISE_PART = "[matmul]", "[elementwise]"
# Each group costs one quantization of the whole graph (LEAN: 1.2-2.7 s each, 26 s for its 16
# groups on this project's 2-core host; att_crnn's 5,494 ops: 2-18 s each): beyond this many
# groups, neighbouring groups of one parent scope with the fewest multiply-adds are merged
# (YAMNet's 27 convolutions become blocks of two or three layers).
MAX_GROUPS = 16


@dataclass
class LayerGroup:
    """Ops of one layer scope (or one half of it) that int8 could quantize."""

    name: str
    nodes: list[str] = field(default_factory=list)  # op output tensor names
    op_types: dict[str, int] = field(default_factory=dict)
    macs: int = 0  # multiply-adds per inference (elementwise ops: one per output value)
    weight_bytes: int = 0  # bytes of its constant inputs in float32
    members: list[str] = field(default_factory=list)  # the layer scopes merged into it

    def summary(self, total_macs: int, total_weight_bytes: int) -> dict:
        return {
            "group": self.name,
            "members": list(self.members or [self.name]),
            "ops": sum(self.op_types.values()),
            "op_types": dict(sorted(self.op_types.items(), key=lambda item: -item[1])),
            "macs": self.macs,
            "macs_share": self.macs / total_macs if total_macs else 0.0,
            "weight_bytes_float32": self.weight_bytes,
            "weight_bytes_share": self.weight_bytes / total_weight_bytes if total_weight_bytes
            else 0.0,
        }


def _scope(output_name: str) -> str:
    """The innermost layer scope of an op: its (first fused) name without the op's own part."""
    first = output_name.split(";")[0]
    return first.rsplit("/", 1)[0] if "/" in first else first


def _macs(op: dict, shapes: list[list[int]], op_type: str) -> int:
    """Multiply-adds of one op from its tensor shapes (elementwise: one per output value)."""
    output = shapes[op["output_indices"][0]] if op["output_indices"] else []
    outputs = int(np.prod(output)) if output else 0
    inputs = [shapes[i] if i >= 0 else [] for i in op["input_indices"]]
    if op_type == "FULLY_CONNECTED" and len(inputs) > 1 and inputs[1]:
        return outputs * int(inputs[1][-1])
    if op_type == "CONV_2D" and len(inputs) > 1 and len(inputs[1]) == 4:
        return outputs * int(np.prod(inputs[1][1:]))
    if op_type == "DEPTHWISE_CONV_2D" and len(inputs) > 1 and len(inputs[1]) == 4:
        return outputs * int(inputs[1][1] * inputs[1][2])
    if op_type == "BATCH_MATMUL" and inputs and inputs[0]:
        return outputs * int(inputs[0][-1])
    return outputs


def _parent(name: str) -> str | None:
    """The scope a group sits in; None for the halves of a split scope (never merged)."""
    if name.endswith((MATMUL_PART, ELEMENTWISE_PART)):
        return None
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _shared_tokens(first: LayerGroup, second: LayerGroup) -> int:
    """How many leading "_"-separated parts the innermost scope names of two groups share
    (a merged group counts by its last and first member)."""
    a = (first.members or [first.name])[-1].rsplit("/", 1)[-1].split("_")
    b = (second.members or [second.name])[0].rsplit("/", 1)[-1].split("_")
    shared = 0
    for x, y in zip(a, b):
        if x != y:
            break
        shared += 1
    return shared


def merge_small_groups(groups: list[LayerGroup], limit: int = MAX_GROUPS) -> list[LayerGroup]:
    """Merges neighbouring groups of one parent scope, the pair with the fewest multiply-adds
    first, until at most `limit` groups remain (or no such pair is left)."""
    groups = list(groups)
    while len(groups) > limit:
        pairs = [index for index in range(len(groups) - 1)
                 if _parent(groups[index].name) is not None
                 and _parent(groups[index].name) == _parent(groups[index + 1].name)]
        if not pairs:
            break
        # Scopes that share leading name parts first ("layer9_depthwise.." and
        # "layer9_pointwise..": one conv block), then the fewest multiply-adds.
        index = min(pairs, key=lambda i: (-_shared_tokens(groups[i], groups[i + 1]),
                                          groups[i].macs + groups[i + 1].macs))
        first, second = groups[index], groups[index + 1]
        members = (first.members or [first.name]) + (second.members or [second.name])
        parent = _parent(first.name)
        short = [member[len(parent) + 1:] if parent else member for member in members]
        merged = LayerGroup(f"{parent}/{short[0]} .. {short[-1]}" if parent
                            else f"{short[0]} .. {short[-1]}",
                            first.nodes + second.nodes, dict(first.op_types), first.macs + second.macs,
                            first.weight_bytes + second.weight_bytes, members)
        for op_type, count in second.op_types.items():
            merged.op_types[op_type] = merged.op_types.get(op_type, 0) + count
        groups[index:index + 2] = [merged]
    return groups


def layer_groups(model_bytes: bytes, kept_float: set[str]) -> list[LayerGroup]:
    """The quantizable layer groups of a calibrated (float) model, in execution order.

    Args:
      model_bytes: the converter's calibrate-only model (float ops with recorded ranges).
      kept_float: op output names that stay float whatever happens (frontends, softmax layers,
        output head).
    Returns:
      The groups, at most MAX_GROUPS where neighbours can be merged; ops already kept float
      and groups of data-moving ops only are left out.
    """
    from ai_edge_litert import schema_py_generated as schema

    from lean_export.verify import op_list

    graph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    model = schema.Model.GetRootAs(model_bytes, 0)
    shapes = [graph.Tensors(i).ShapeAsNumpy().tolist() if graph.Tensors(i).ShapeLength() else []
              for i in range(graph.TensorsLength())]
    constant = [model.Buffers(graph.Tensors(i).Buffer()).DataLength() > 0
                for i in range(graph.TensorsLength())]
    by_scope: dict[str, list[dict]] = {}
    for op in op_list(model_bytes):
        if op["output_name"] in kept_float or not op["output_indices"]:
            continue
        by_scope.setdefault(_scope(op["output_name"]), []).append(op)
    groups = []
    for scope, ops in by_scope.items():
        if all(op["op"] in DATA_MOVING_OPS for op in ops):
            continue
        weighted = [op for op in ops if op["op"] in WEIGHTED_OPS]
        others = [op for op in ops if op["op"] not in WEIGHTED_OPS]
        parts = [(scope, ops)]
        if weighted and len(others) > SPLIT_ELEMENTWISE_OPS:
            parts = [(f"{scope} {MATMUL_PART}", weighted), (f"{scope} {ELEMENTWISE_PART}", others)]
        for name, members in parts:
            group = LayerGroup(name)
            seen_weights = set()
            for op in members:
                group.nodes.append(op["output_name"])
                group.op_types[op["op"]] = group.op_types.get(op["op"], 0) + 1
                group.macs += _macs(op, shapes, op["op"])
                for index in op["input_indices"]:
                    if index >= 0 and constant[index] and index not in seen_weights:
                        seen_weights.add(index)
                        group.weight_bytes += 4 * int(np.prod(shapes[index] or [1]))
            groups.append(group)
    return merge_small_groups(groups)


def common_prefix(names: list[str]) -> str:
    """The scope path all group names share ("serving/model/"), to print shorter names."""
    if not names:
        return ""
    parts = [name.split("/") for name in names]
    prefix = []
    for column in zip(*[p[:-1] for p in parts]):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return "/".join(prefix) + "/" if prefix else ""


def rank(summaries: list[dict]) -> list[dict]:
    """Sensitivity rows ranked by the error each group alone adds, largest first."""
    ranked = sorted(summaries, key=lambda row: -row["error_alone"])
    for position, row in enumerate(ranked, 1):
        row["rank"] = position
    return ranked


def fallback_order(ranked: list[dict], cost_floor: float = 0.01) -> list[dict]:
    """Groups in the order the fallback keeps them float: most error removed per unit of cost
    first, the cost being the group's share of multiply-adds plus its share of weight bytes
    (`cost_floor` keeps a group of no measurable cost from dividing by zero). Groups whose
    quantization adds no measurable error are never worth keeping float."""
    useful = [row for row in ranked if row["error_alone"] > 0]
    return sorted(useful, key=lambda row: -row["error_alone"] / (
        row["macs_share"] + row["weight_bytes_share"] + cost_floor))


@dataclass
class FallbackStep:
    """One candidate of the fallback: the groups kept float and what it measured."""

    kept_float: list[str]
    measured: dict  # at least "drop"; also size, latency, output difference
    passed: bool


def search_fallback(order: list[str], max_steps: int, max_drop: float, measure) -> tuple[
        list[FallbackStep], int | None]:
    """Keeps the next group of `order` float, one more per step, until the drop is within
    `max_drop` or `max_steps` steps were tried.

    Args:
      order: group names, best value for money first (`fallback_order`).
      max_steps: most groups kept float.
      max_drop: the gate on the measured drop.
      measure: kept_float list -> dict with "drop" (and whatever the report should show);
        called once per step, never again after a step passes.
    Returns:
      (the steps tried, index of the passing step or None).
    """
    steps = []
    for count in range(1, min(max_steps, len(order)) + 1):
        kept = list(order[:count])
        measured = measure(kept)
        passed = measured["drop"] <= max_drop
        steps.append(FallbackStep(kept, measured, passed))
        if passed:
            return steps, len(steps) - 1
    return steps, None


def tflite_scores(model_bytes: bytes, windows: np.ndarray) -> np.ndarray:
    """Outputs [N, C] of a .tflite (in memory) on windows [N, values], one window per call."""
    from lean.native_log import filtered_native_stderr
    from ai_edge_litert.interpreter import Interpreter

    with filtered_native_stderr():
        interpreter = Interpreter(model_content=bytes(model_bytes), num_threads=1)
        interpreter.allocate_tensors()
    (waveform,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for window in windows:
        interpreter.set_tensor(waveform["index"], np.asarray(window, np.float32).reshape(
            waveform["shape"]))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(output["index"]).reshape(-1).copy())
    return np.stack(rows)


__all__ = ["LayerGroup", "FallbackStep", "common_prefix", "fallback_order", "layer_groups",
           "rank", "search_fallback", "tflite_scores"]
