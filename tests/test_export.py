"""lean-export: quantization modes, errors, and the int8 export's report checked independently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import test_export_support as support
from lean.config import InputSpec
from lean.errors import LeanError
from lean_export.convert import MODES, QuantizationConfig, float_node_names


@pytest.fixture(autouse=True)
def own_temp_folder(tmp_path_factory, monkeypatch):
    """Each test's scratch folders in its own temp folder: an export removes the ones killed
    exports left in the temp folder, and says so, which the one-line error checks would see."""
    import tempfile

    folder = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    return support.int8_export(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return support.tiny_run(tmp_path_factory)


# --- fast: configuration, names, CLI errors (no TensorFlow) -----------------------------------

def test_quantization_named_constructors():
    assert (QuantizationConfig.create_dynamic_range(float_frontends=False)
            == QuantizationConfig("dynamic_range"))
    assert QuantizationConfig.create_float16().mode == "float16"
    assert QuantizationConfig.create_float32().needs_calibration is False
    int8 = QuantizationConfig.create_full_integer(float_scopes=("frontend_a", "frontend_b"))
    assert int8.needs_calibration and int8.float_scopes == ("frontend_a", "frontend_b")
    assert [QuantizationConfig.from_mode(mode).mode for mode in MODES] == list(MODES)
    with pytest.raises(LeanError, match="unknown quantization mode 'int4'"):
        QuantizationConfig.from_mode("int4")


def test_default_quantization_keeps_the_model_frontends_float():
    assert QuantizationConfig.create_full_integer().float_frontends
    assert QuantizationConfig.create_dynamic_range().float_frontends


def test_the_frontend_layers_of_a_model_are_found_by_what_they_declare():
    from lean.config import ModelConfig
    from lean.frontends import float_layer_names
    from lean.models.registry import build_model

    lean = build_model(ModelConfig(name="lean", num_classes=3), load_pretrained=False)
    assert float_layer_names(lean) == ["yamnet_log_mel"]
    import keras

    waveform = keras.Input((40,), name="waveform")
    bare = keras.Model(waveform, keras.layers.Dense(2, activation="softmax")(waveform))
    assert float_layer_names(bare) == []


def test_float_node_names_match_layer_scopes_in_fused_names():
    names = [
        "serving/lean_1/yamnet_log_mel_1/MatMul1",
        "serving/lean_1/wave_frames_1/Reshape;serving/lean_1/yamnet_log_mel/Reshape",
        "serving/lean_1/yamnet_trunk_1/layer1_conv_1/Relu6",
        "serving/lean_1/not_yamnet_log_mel/Add",
        "serving/lean_1/yamnet_log_mel_projection/Add",
        "serving_default_waveform:0",
    ]
    assert float_node_names(names, ("yamnet_log_mel",)) == names[:2]
    assert float_node_names(names, ()) == []


def test_softmax_layer_paths_end_at_the_innermost_layer(monkeypatch):
    import lean_export.verify
    from lean_export.convert import softmax_layer_paths

    names = [
        # LEAN's attention: the softmax directly in its layer.
        "serving_1/lean_1/context_1/Softmax",
        # A tagger nested in a scene model: only the tagger's attention layer, not the tagger.
        "serving_1/scene_cnn_1/tagger_1/context_1/Softmax;serving_1/scene_cnn_1/tagger_1/x",
        # A softmax directly under the model is left out.
        "serving_1/scene_cnn_1/Softmax",
    ]
    monkeypatch.setattr(lean_export.verify, "op_list", lambda model_bytes: [
        {"op": "SOFTMAX", "output_name": name} for name in names])
    layers = {"lean", "context", "scene_cnn", "tagger"}
    assert softmax_layer_paths(b"", layers) == [
        "serving_1/lean_1/context_1/", "serving_1/scene_cnn_1/tagger_1/context_1/"]
    # Without layer names: serving graph / model / first layer, as before.
    assert softmax_layer_paths(b"")[1] == "serving_1/scene_cnn_1/tagger_1/"


def _fake_run(run_dir, **config_values):
    """A run directory whose files exist; the checks under test run before the model loads."""
    from lean.config import ModelConfig, RunConfig, save_json

    config = RunConfig(model=ModelConfig(), **config_values)
    run_dir.mkdir(parents=True)
    save_json(config, run_dir / "config.json")
    (run_dir / "labels.txt").write_text("a\nb\n")
    (run_dir / "best.keras").write_bytes(b"not read by these checks")
    return run_dir


def _cli_error(argv, capsys) -> str:
    from lean_export.cli import main

    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "m.tflite")
    assert "no such run directory" in _cli_error([str(tmp_path / "absent"), "-o", out], capsys)

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    assert "not a finished run directory (no labels.txt, best.keras)" in _cli_error(
        [str(partial), "-o", out], capsys)

    no_data = _fake_run(tmp_path / "nodata")
    assert "no data for calibration" in _cli_error([str(no_data), "-o", out, "--int8"], capsys)
    assert "calibration data folder not found" in _cli_error(
        [str(no_data), "-o", out, "--data", str(tmp_path / "missing")], capsys)
    assert "must end in .tflite" in _cli_error([str(no_data), "-o", str(tmp_path / "m.bin")], capsys)
    assert not (tmp_path / "m.tflite").exists()


def test_the_staged_copy_a_killed_export_left_is_removed_by_the_next_export(tmp_path, capsys):
    from lean_export.export import export_run

    output = tmp_path / "out" / "m.tflite"
    output.parent.mkdir()
    leftover = output.parent / ".m.verifying.tflite"  # what kill -9 during verification leaves
    leftover.write_bytes(b"TFL3 half verified")
    # Removed first, even by an export that then fails (here: no run directory).
    with pytest.raises(LeanError, match="absent: no such run directory"):
        export_run(tmp_path / "absent", output, "float32")
    assert capsys.readouterr().err.splitlines() == [
        f"lean-export: removed {leftover}, left by an interrupted export"]
    assert list(output.parent.iterdir()) == []


def test_scratch_folders_of_killed_exports_are_removed_by_the_next_export(own_temp_folder,
                                                                         tmp_path, capsys):
    from lean_export.convert import scratch_directory
    from lean_export.export import export_run

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid names a process that no longer exists
    killed = own_temp_folder / f"lean_export_work_pid{finished.pid}_x1"
    (killed / "inner").mkdir(parents=True)
    (killed / "inner" / "calibrated.tflite").write_bytes(b"TFL3")
    unrelated = own_temp_folder / "lean_export_notes"  # no pid in its name: not ours to judge
    unrelated.mkdir()
    with scratch_directory("work") as running:  # this process's: alive
        with pytest.raises(LeanError, match="absent: no such run directory"):
            export_run(tmp_path / "absent", tmp_path / "m.tflite", "float32")
        assert capsys.readouterr().err.splitlines() == [
            f"lean-export: removed 1 scratch folder(s) that killed exports left in "
            f"{own_temp_folder}"]
        assert sorted(path.name for path in own_temp_folder.iterdir()) == sorted(
            [Path(running).name, unrelated.name])


def test_cli_help_does_not_import_tensorflow():
    code = ("import sys, contextlib, io\n"
            "from lean_export.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "assert '--dynamic-range' in out.getvalue() and '--max-drop' in out.getvalue()\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported by --help'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- slow: real conversions ------------------------------------------------------------------

@pytest.mark.slow
def test_int8_export_passes_and_keeps_io_float(int8_export):
    from ai_edge_litert.interpreter import Interpreter

    from lean_export.verify import op_list

    path, report = int8_export
    assert report["passed"] and report["failures"] == []
    assert path.stat().st_size == report["file_size_bytes"]
    interpreter = Interpreter(model_path=str(path))
    (waveform,), (scores,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert waveform["dtype"] == np.float32 and list(waveform["shape"]) == [1, 16000]
    assert scores["dtype"] == np.float32 and list(scores["shape"]) == [1, 13]
    # The frontend and the output head (logits Dense + sigmoid) compute in float, the body in
    # int8, and nothing else is float.
    rows = {(row["op"], row["outputs"]) for row in report["ops"]}
    assert {("LOG", "float32"), ("SQRT", "float32"), ("CONV_2D", "int8"), ("LOGISTIC", "float32")} <= rows
    # [sigmoid (named after the graph output), logits Dense].
    assert len(report["float_head"]) == 2 and "/tiny_head" in report["float_head"][1]
    # The file's tensor names are stripped (only input and output keep theirs), so the ops are
    # told apart by kind: the frontend's DFT and mel matmuls and the head float, tiny_hidden int8.
    file_ops = op_list(path.read_bytes())
    assert sorted(op["outputs"][0] for op in file_ops if op["op"] == "FULLY_CONNECTED") == [
        "float32", "float32", "float32", "int8"]
    named = {op["output_name"] for op in file_ops} - {""}
    assert named == {scores["name"]} and report["tensor_names_stripped"] is True
    assert report["size_breakdown"]["tensor_names"] < 100
    assert report["float_ops_after_frontend"] == []
    ranges = report["activation_ranges"]
    assert ranges["method"] == "mse" and 0 < ranges["narrowed"] <= ranges["tensors"]
    assert "| int8 activation ranges | mse: " in path.with_suffix(".report.md").read_text()
    # The frontend reads the float waveform: the converter had quantized its crop of the
    # waveform (QUANTIZE -> int8 STRIDED_SLICE -> DEQUANTIZE) until export undid it.
    assert report["int8_ops_in_float_layers"] == []
    ops = op_list(path.read_bytes())
    readers = [op for op in ops if waveform["index"] in op["input_indices"]]
    assert readers and all(op["outputs"] == ["float32"] for op in readers)
    assert sum(row["count"] for row in report["ops"]) == report["op_count"]
    parts = report["size_breakdown"]
    assert parts["total"] == report["file_size_bytes"]
    assert sum(v for k, v in parts.items() if k not in ("int8_floor", "total")) == parts["total"]
    # One float32 scale and one int64 zero point per quantized channel or tensor.
    assert parts["quantization_zero_points"] == 2 * parts["quantization_scales"] > 0
    # The frontend matrices stay float; the zip of associated files counts as metadata.
    float_weights = parts.get("weights_float32", 0) + parts.get("weights_float16", 0)
    assert parts["weights_int8"] > 0 and float_weights > 0 and parts["metadata"] > 1000
    assert parts["int8_floor"] < parts["total"]
    latency = report["latency"]
    assert latency["threads"] == 1 and latency["runs"] == 50 and 0 < latency["median_ms"] < 1000
    assert latency["peak_rss_delta_mb"] > 0


@pytest.mark.slow
def test_int8_report_numbers_match_an_independent_evaluation(int8_export, tiny_run, tmp_path_factory):
    from lean.data.audio import AudioCache
    from lean.data import load_dataset
    from lean.evaluate import evaluate
    from lean.inference import load_predictor
    from lean_export.export import DEFAULT_HELD_OUT_WINDOWS, held_out_windows

    path, report = int8_export
    dataset = load_dataset(support.demo_data(tmp_path_factory))
    cache = AudioCache(tmp_path_factory.mktemp("cache"))
    windows = held_out_windows(dataset, 16000, DEFAULT_HELD_OUT_WINDOWS, cache, 0.5)
    keras_scores = load_predictor(tiny_run).predict(windows)
    tflite_scores = load_predictor(path).predict(windows)
    difference = np.abs(keras_scores.astype(np.float64) - tflite_scores)
    assert report["output_difference"]["windows"] == len(windows) == DEFAULT_HELD_OUT_WINDOWS
    assert report["output_difference"]["max_abs_diff"] == pytest.approx(difference.max(), abs=1e-7)
    assert report["output_difference"]["mean_abs_diff"] == pytest.approx(difference.mean(), abs=1e-7)
    # int8 output steps are 1/256; a larger gap would mean a broken quantization.
    assert 0 < difference.max() < 0.05
    assert report["export_ready_parity"]["max_abs_diff"] < 1e-5
    for split in ("val", "eval"):
        exported = evaluate(load_predictor(path), dataset, split, progress=False)
        original = evaluate(load_predictor(tiny_run), dataset, split, progress=False)
        quality = report["quality"][split]
        assert quality["metric"] == "mAP"
        assert quality["exported"] == pytest.approx(exported["mAP"], abs=1e-12)
        assert quality["float"] == pytest.approx(original["mAP"], abs=1e-12)
        spread = quality["drop_bootstrap"]
        assert spread["low"] <= quality["drop"] <= spread["high"] and spread["sd"] > 0
    # The briefly trained model carries signal (constant scores give AP = prevalence), so the
    # float-vs-int8 mAP comparison means something.
    truth = dataset.label_matrix(dataset.clips("val"))
    chance = truth.mean(axis=0)[truth.any(axis=0)].mean()
    assert report["quality"]["val"]["float"] > 1.5 * chance


@pytest.mark.slow
def test_report_files_are_written_beside_the_model(int8_export):
    path, report = int8_export
    on_disk = json.loads(path.with_suffix(".report.json").read_text())
    assert on_disk["file_size_bytes"] == report["file_size_bytes"]
    markdown = path.with_suffix(".report.md").read_text()
    assert "**PASSED**" in markdown
    assert f"{report['file_size_bytes']:,} bytes" in markdown
    assert f"{report['latency']['median_ms']} ms" in markdown
    assert "| val | 13 |" in markdown
    assert not list(path.parent.glob(".*verifying*")), "staged copy left behind"


@pytest.mark.slow
def test_failed_map_gate_keeps_report_and_previous_model(tiny_run, tmp_path):
    from lean_export.export import export_run

    output = tmp_path / "tiny_f32.tflite"
    output.write_bytes(b"previous model")
    (tmp_path / ".tiny_f32.verifying.tflite").write_bytes(b"left by a killed export")
    # A negative allowed drop cannot be met: the gate must fail after measuring.
    with pytest.raises(LeanError, match=r"val mAP dropped by .* more than --max-drop -1"):
        export_run(tiny_run, output, "float32", max_drop=-1.0, progress=False)
    assert output.read_bytes() == b"previous model"
    report = json.loads(output.with_suffix(".report.json").read_text())
    assert report["passed"] is False and report["quantization"] == "float32"
    # float32 export of the same graph: Keras and TFLite agree to float rounding.
    assert report["output_difference"]["max_abs_diff"] < 1e-5
    assert "**FAILED**" in output.with_suffix(".report.md").read_text()
    # Neither the leftover nor this export's own staged copy remains.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny_f32.report.json", "tiny_f32.report.md", "tiny_f32.tflite"]


@pytest.mark.slow
def test_weight_only_modes(tiny_run):
    from ai_edge_litert.interpreter import Interpreter

    from lean.models.registry import export_ready_copy
    from lean.run import load_run
    from lean_export.convert import build_serving_model, convert_model
    from lean_export.verify import op_list

    def weight_types(model_bytes, layer):
        """dtype of the weights of each FULLY_CONNECTED op of one layer."""
        return [op["inputs"][1] for op in op_list(model_bytes)
                if op["op"] == "FULLY_CONNECTED" and f"/{layer}" in op["output_name"]]

    def scores(model_bytes, windows):
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()
        (waveform,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
        rows = []
        for window in windows:
            interpreter.set_tensor(waveform["index"], window[np.newaxis])
            interpreter.invoke()
            rows.append(interpreter.get_tensor(output["index"])[0].copy())
        return np.stack(rows)

    run = load_run(tiny_run)
    serving = build_serving_model(export_ready_copy(run.model, run.config.model),
                                  run.config.model.input)
    windows = 0.1 * np.random.default_rng(1).standard_normal((4, 16000)).astype(np.float32)
    reference = serving.predict(windows, batch_size=1, verbose=0)

    half, _ = convert_model(serving, QuantizationConfig.create_float16())
    assert weight_types(half, "tiny_hidden") == ["float32"]
    assert any(op["op"] == "DEQUANTIZE" and op["inputs"] == ["float16"] for op in op_list(half))
    assert np.abs(scores(half, windows) - reference).max() < 1e-2

    # Dynamic range: int8 weights, float activations; the frontend's weights stay float.
    dynamic, details = convert_model(serving, QuantizationConfig.create_dynamic_range())
    assert weight_types(dynamic, "tiny_hidden") == ["int8"]
    assert set(weight_types(dynamic, "yamnet_log_mel")) == {"float32"}
    assert details["float_weights"] and all("yamnet_log_mel" in name
                                            for name in details["float_weights"])
    plain, _ = convert_model(serving, QuantizationConfig.create_dynamic_range(float_frontends=False))
    assert "int8" in weight_types(plain, "yamnet_log_mel")
    # Keeping the frontend float is what keeps the scores close to the float model.
    kept_error = np.abs(scores(dynamic, windows) - reference).max()
    plain_error = np.abs(scores(plain, windows) - reference).max()
    assert kept_error < plain_error and kept_error < 0.05


@pytest.mark.slow
def test_converter_crash_becomes_a_clear_error():
    import keras

    from lean_export.convert import convert_model

    # Measured with TF 2.21: int8 calibration of a Keras 3 LSTM (a WHILE loop) segfaults in the
    # converter.
    waveform = keras.Input((16000,), batch_size=1, name="waveform")
    frames = keras.layers.Reshape((40, 400))(waveform)
    scores = keras.layers.Dense(3, activation="sigmoid")(keras.layers.LSTM(4)(frames))
    model = keras.Model(waveform, scores)
    windows = np.random.default_rng(0).standard_normal((4, 16000)).astype(np.float32)
    with pytest.raises(LeanError, match=r"converter crashed \(SIGSEGV\) while calibrating"):
        convert_model(model, QuantizationConfig.create_full_integer(float_frontends=False), windows)


@pytest.mark.slow
def test_softmax_layers_stay_float_in_int8():
    import keras

    from lean_export.convert import build_serving_model, convert_model
    from lean_export.verify import op_list

    # An attention-like block: a nested model named "context" holding the softmax.
    frames = keras.Input((40, 16), batch_size=1)
    weights = keras.layers.Softmax(axis=1)(keras.layers.Dense(1)(frames))
    context = keras.Model(frames, keras.ops.sum(weights * frames, axis=1), name="context")
    waveform = keras.Input((640,), batch_size=1, name="waveform")
    hidden = keras.layers.Dense(16, activation="tanh")(keras.layers.Reshape((40, 16))(waveform))
    classifier = keras.Model(waveform, keras.layers.Dense(3, activation="sigmoid")(context(hidden)))
    model = build_serving_model(classifier, InputSpec(sample_rate=640))
    windows = np.random.default_rng(0).standard_normal((8, 640)).astype(np.float32)

    def softmax_dtypes(quantization):
        model_bytes, details = convert_model(model, quantization, windows)
        ops = op_list(model_bytes)
        assert any(op["op"] == "FULLY_CONNECTED" and op["outputs"] == ["int8"] for op in ops)
        return [op["outputs"][0] for op in ops if op["op"] == "SOFTMAX"], details

    kept, details = softmax_dtypes(QuantizationConfig.create_full_integer(float_frontends=False))
    # The path is serving graph / model / layer, with Keras's "_1" call suffixes.
    assert kept == ["float32"] and [path.split("/")[2] for path in details["float_layers"]] == ["context_1"]
