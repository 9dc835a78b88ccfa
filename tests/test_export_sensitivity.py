"""Per-layer int8 sensitivity and the float fallback: a deliberately int8-hostile layer must rank
first and be the one kept float; the fallback stops at the budget and never writes a file that
fails the gate; the fallback model runs in MediaPipe with LiteRT's scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lean.config import InputSpec
from lean.errors import LeanError
from lean_export.sensitivity import (
    LayerGroup,
    fallback_order,
    merge_small_groups,
    rank,
    search_fallback,
)

# The hostile layer: an identity Dense whose weights also hold one huge value (from an input
# that is always 0, so the float model does not see it). Per-channel int8 then gives every
# output channel a step of HUGE / 127 and the identity weights of 1 round to 0.
HUGE = 1000.0
UNITS = 16


def make_hostile(model, feature_layer: str, hostile_layer: str) -> None:
    """Makes `hostile_layer` (Dense, UNITS x UNITS) int8-hostile without changing the float
    model: unit 0 of `feature_layer` (a relu Dense) is switched off, and every output of the
    hostile layer reads it with weight HUGE."""
    kernel, bias = model.get_layer(feature_layer).get_weights()
    kernel[:, 0], bias[0] = 0.0, -1.0
    model.get_layer(feature_layer).set_weights([kernel, bias])
    weights = np.eye(UNITS, dtype=np.float32)
    weights[0, :] = HUGE
    model.get_layer(hostile_layer).set_weights([weights, np.zeros(UNITS, np.float32)])


def hostile_classifier(samples: int):
    """waveform [1, samples] -> frames -> relu Dense -> hostile Dense -> tanh Dense -> mean ->
    sigmoid head, with random (seeded) weights."""
    import keras

    keras.utils.set_random_seed(0)
    waveform = keras.Input((samples,), batch_size=1, name="waveform")
    frames = keras.layers.Reshape((samples // UNITS, UNITS), name="frames")(waveform)
    x = keras.layers.Dense(UNITS, activation="relu", name="feature")(frames)
    x = keras.layers.Dense(UNITS, name="hostile")(x)
    x = keras.layers.Dense(UNITS, activation="tanh", name="mixer")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    model = keras.Model(waveform, keras.layers.Dense(3, activation="sigmoid", name="head")(x))
    make_hostile(model, "feature", "hostile")
    return model


# --- fast: ranking and the fallback search, no TensorFlow ----------------------------------

def _row(name, error, macs=0.1, size=0.1):
    return {"group": name, "error_alone": error, "macs_share": macs, "weight_bytes_share": size}


def test_rank_orders_by_error_and_fallback_by_error_per_cost():
    rows = rank([_row("cheap", 0.01, 0.0, 0.0), _row("big", 0.05, 0.8, 0.8),
                 _row("harmless", 0.0), _row("mid", 0.02, 0.05, 0.05)])
    assert [row["group"] for row in rows] == ["big", "mid", "cheap", "harmless"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    # error per (MACs share + bytes share + 0.01): cheap 1.0, mid 0.18, big 0.031; harmless
    # adds no error, so keeping it float buys nothing.
    assert [row["group"] for row in fallback_order(rows)] == ["cheap", "mid", "big"]


def test_many_small_groups_merge_into_blocks_of_one_scope():
    def group(name, macs):
        return LayerGroup(name, [f"{name}/op"], {"CONV_2D": 1}, macs, 4)

    trunk = [group(f"m/trunk/layer{n}_{kind}", 10 * n) for n in (1, 2, 3)
             for kind in ("depthwise", "pointwise")]
    cell = [group("m/lstm [matmul]", 1), group("m/lstm [elementwise]", 1)]
    merged = merge_small_groups(trunk + cell, limit=5)
    # Conv blocks (layerN_depthwise + layerN_pointwise) first; the halves of a split recurrent
    # scope stay apart; every op is kept, in order.
    assert [g.name for g in merged] == [
        "m/trunk/layer1_depthwise .. layer1_pointwise", "m/trunk/layer2_depthwise .. "
        "layer2_pointwise", "m/trunk/layer3_depthwise .. layer3_pointwise",
        "m/lstm [matmul]", "m/lstm [elementwise]"]
    assert [node for g in merged for node in g.nodes] == [
        node for g in trunk + cell for node in g.nodes]
    assert merged[1].macs == 40 and merged[1].op_types == {"CONV_2D": 2}
    assert merged[1].members == ["m/trunk/layer2_depthwise", "m/trunk/layer2_pointwise"]
    # Past the blocks, neighbours with the fewest multiply-adds merge.
    fewer = merge_small_groups(trunk, limit=2)
    assert [g.name for g in fewer] == ["m/trunk/layer1_depthwise .. layer2_pointwise",
                                       "m/trunk/layer3_depthwise .. layer3_pointwise"]


def test_fallback_stops_at_the_first_step_within_the_budget():
    drops = {1: 0.04, 2: 0.02, 3: 0.004, 4: 0.001}
    calls = []

    def measure(kept):
        calls.append(list(kept))
        return {"drop": drops[len(kept)]}

    steps, chosen = search_fallback(["a", "b", "c", "d"], max_steps=8, max_drop=0.005,
                                    measure=measure)
    assert chosen == 2 and steps[chosen].kept_float == ["a", "b", "c"]
    assert [step.passed for step in steps] == [False, False, True]
    # Nothing is measured after the passing step.
    assert calls == [["a"], ["a", "b"], ["a", "b", "c"]]


def test_fallback_gives_up_after_max_steps_without_a_passing_step():
    steps, chosen = search_fallback(["a", "b", "c"], max_steps=2, max_drop=0.005,
                                    measure=lambda kept: {"drop": 0.1})
    assert chosen is None and len(steps) == 2 and not any(step.passed for step in steps)
    steps, chosen = search_fallback([], max_steps=4, max_drop=0.005,
                                    measure=lambda kept: {"drop": 0.0})
    assert (steps, chosen) == ([], None)


# --- with TensorFlow: a real conversion of the hostile model --------------------------------

@pytest.fixture(scope="module")
def hostile_conversion(tmp_path_factory):
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model

    samples = 640
    model = build_serving_model(hostile_classifier(samples), InputSpec(sample_rate=samples))
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, samples)).astype(np.float32)
    probe = rng.standard_normal((16, samples)).astype(np.float32)
    workdir = tmp_path_factory.mktemp("hostile_work")
    quantization = QuantizationConfig.create_full_integer(float_frontends=False)
    model_bytes, details = convert_model(model, quantization, calibration, probe_windows=probe,
                                         workdir=workdir, progress=False)
    reference = model.predict(probe, batch_size=1, verbose=0)
    return model, quantization, model_bytes, details, workdir, calibration, probe, reference


def test_the_hostile_layer_ranks_first_and_keeping_it_float_fixes_int8(hostile_conversion):
    from lean_export.convert import quantize_variants
    from lean_export.sensitivity import tflite_scores

    model, quantization, model_bytes, details, workdir, calibration, probe, reference = (
        hostile_conversion)
    ranked = details["sensitivity"]
    names = [row["group"] for row in ranked]
    assert names[0].endswith("/hostile_1"), names
    assert {name.rsplit("/", 1)[-1] for name in names} == {
        "feature_1", "hostile_1", "mixer_1", "pool_1"}
    assert ranked[0]["error_alone"] > 10 * ranked[1]["error_alone"]
    # Its float32 kernel (the converter stores no all-zero bias).
    assert ranked[0]["weight_bytes_float32"] == 4 * UNITS * UNITS
    assert sum(row["macs_share"] for row in ranked) == pytest.approx(1.0)
    # The whole int8 model is broken by that one layer ...
    whole_error = np.abs(tflite_scores(model_bytes, probe) - reference).mean()
    assert whole_error > 0.5 * ranked[0]["error_alone"]
    # ... and the fallback's first choice repairs it.
    order = [row["group"] for row in fallback_order(ranked)]
    assert order[0] == names[0]
    (kept,) = quantize_variants(workdir, [[order[0]]], details["groups"], quantization,
                                calibration)
    kept_error = np.abs(tflite_scores(kept, probe) - reference).mean()
    assert kept_error < 0.1 * whole_error
    from lean_export.verify import op_list

    dtypes = {op["output_name"].split("/")[-2]: op["outputs"][0] for op in op_list(kept)
              if op["op"] == "FULLY_CONNECTED"}
    assert dtypes["hostile_1"] == "float32" and dtypes["mixer_1"] == "int8"


def test_denylisting_whole_op_types_quantizes_exactly_as_denylisting_each_op(
        hostile_conversion):
    from tensorflow.lite.python import convert as tflite_convert

    from lean_export.convert import CALIBRATED_FILE, _denylist_by_type
    from lean_export.verify import op_list

    _, _, _, details, workdir, _, _, _ = hostile_conversion
    calibrated = (workdir / CALIBRATED_FILE).read_bytes()
    type_of = {op["output_name"]: op["op"] for op in op_list(calibrated) if op["output_indices"]}
    for group, nodes in details["groups"].items():
        denylisted = [name for name in type_of if name not in set(nodes)]
        op_types, names = _denylist_by_type(calibrated, denylisted)
        # The group's own op types stay named op by op (another layer's FULLY_CONNECTED); the
        # types it lacks go whole.
        assert op_types and not set(op_types) & {type_of[name] for name in nodes}, group
        assert len(names) < len(denylisted)
        by_name = tflite_convert.mlir_quantize(calibrated, denylisted_nodes=denylisted)
        by_type = tflite_convert.mlir_quantize(calibrated, denylisted_ops=op_types,
                                               denylisted_nodes=names)
        assert by_type == by_name, group


def test_keep_float_names_a_group_and_an_unknown_one_is_an_error(hostile_conversion):
    import dataclasses

    from lean_export.convert import convert_model

    model, quantization, _, _, _, calibration, _, _ = hostile_conversion
    kept = dataclasses.replace(quantization, float_groups=("hostile_1",))
    _, details = convert_model(model, kept, calibration, progress=False)
    assert [name.rsplit("/", 1)[-1] for name in details["float_groups"]] == ["hostile_1"]
    # A kept group is float for accuracy, not by design: the design's float nodes stay apart.
    group_nodes = set(details["groups"][details["float_groups"][0]])
    assert group_nodes <= set(details["float_nodes"])
    assert not group_nodes & set(details["required_float_nodes"])
    unknown = dataclasses.replace(quantization, float_groups=("no_such_layer",))
    with pytest.raises(LeanError, match="--keep-float 'no_such_layer' matches no layer group"):
        convert_model(model, unknown, calibration, progress=False)


# --- slow: export_run on a trained run with a hostile layer ---------------------------------

HOSTILE_MODEL = "export_test_hostile"


def _register_hostile_model() -> None:
    import keras

    from lean.frontends import YamnetLogMel
    from lean.models.common import waveform_input
    from lean.models.registry import model_names, register

    if HOSTILE_MODEL in model_names():
        return

    @register(HOSTILE_MODEL, description="test-only: log-mel, conv, relu Dense, a Dense made "
              "int8-hostile after training, logistic head")
    def build_hostile(config, load_pretrained=True):
        waveform = waveform_input(config)
        log_mel = YamnetLogMel(sample_rate=config.input.sample_rate)(waveform)
        x = keras.layers.Reshape((96, 64, 1), name="patch")(log_mel)
        x = keras.layers.Conv2D(8, 5, strides=4, activation="relu", name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(UNITS, activation="relu", name="feature")(x)
        x = keras.layers.Dense(UNITS, kernel_initializer="identity", trainable=False,
                               name="hostile")(x)
        scores = keras.layers.Dense(config.num_classes, activation="sigmoid", name="head")(x)
        return keras.Model(waveform, scores, name=HOSTILE_MODEL)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    import keras

    import test_export_support as support
    from lean.config import DataConfig, ModelConfig, RunConfig
    from lean.data import load_dataset
    from lean.data.audio import load_audio
    from lean.data.windows import training_windows
    from lean.models.registry import build_model

    _register_hostile_model()
    data = support.demo_data(tmp_path_factory)
    dataset = load_dataset(data)
    config = RunConfig(model=ModelConfig(name=HOSTILE_MODEL, num_classes=len(dataset.labels)),
                       data=DataConfig(dir=str(data), layout="fsd50k"))
    keras.utils.set_random_seed(0)
    model = build_model(config.model)
    clips = dataset.clips("train")
    windows, targets = [], []
    for clip, target in zip(clips, dataset.label_matrix(clips)):
        for window in training_windows(load_audio(clip.path), 16000):
            windows.append(window)
            targets.append(target)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    model.fit(np.stack(windows), np.stack(targets), batch_size=16, epochs=20, verbose=0)
    make_hostile(model, "feature", "hostile")
    return support.write_run(tmp_path_factory.mktemp("hostile_run") / "hostile", model, config)


@pytest.mark.slow
def test_fallback_keeps_the_hostile_layer_float_and_the_file_passes(hostile_run, tmp_path,
                                                                    tmp_path_factory):
    import test_export_support as support
    from lean.data import load_dataset
    from lean.data.audio import load_audio
    from lean_export.export import export_run
    from mediapipe_support import assert_mediapipe_matches_litert

    output = tmp_path / "hostile_int8.tflite"
    none = tmp_path / "hostile_none.tflite"
    with pytest.raises(LeanError, match="val mAP dropped by"):
        export_run(hostile_run, none, "int8", calibration_count=32, max_drop=0.02,
                   fallback="none", progress=False)
    assert not none.exists()
    failed = json.loads(none.with_suffix(".report.json").read_text())
    assert failed["sensitivity"][0]["group"].endswith("hostile_1")
    assert failed["fallback"]["steps"] == []

    report = export_run(hostile_run, output, "int8", calibration_count=32, max_drop=0.02,
                        progress=False)
    assert report["passed"] and output.is_file()
    fallback = report["fallback"]
    assert fallback["initial"]["drop"] > 0.02
    chosen = fallback["steps"][fallback["chosen"]]
    assert [name.rsplit("/", 1)[-1] for name in chosen["kept_float"]][-1] == "hostile_1"
    assert all(step["drop"] > 0.02 for step in fallback["steps"][:fallback["chosen"]])
    assert chosen["drop"] <= 0.02 == report["max_drop"]
    assert report["quality"]["val"]["drop"] == pytest.approx(chosen["drop"], abs=1e-12)
    assert chosen["file_size_bytes"] > 0 and chosen["latency_median_ms"] > 0
    markdown = output.with_suffix(".report.md").read_text()
    assert "## int8 sensitivity per layer group" in markdown
    assert "## Float fallback" in markdown and "hostile_1" in markdown
    # The fallback file drops into MediaPipe unchanged: its scores equal LiteRT's.
    dataset = load_dataset(support.demo_data(tmp_path_factory))
    clip = dataset.clips("eval")[0]
    assert_mediapipe_matches_litert(output, load_audio(clip.path), 16000, 16000, dataset.labels)
