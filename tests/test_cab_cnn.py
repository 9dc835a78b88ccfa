"""CAB-CNN: Table 2's shapes and parameter count, the ACB against NumPy, save/load, export parity,
the paper's metrics recomputed from its own confusion matrices, and train -> eval -> int8 export
-> MediaPipe -> lean-bench host on clips of mixed lengths."""

import json

import keras
import numpy as np
import pytest

from lean.config import InputSpec, ModelConfig
from lean.errors import LeanError
from lean.metrics import single_label_metrics
from lean.models import registry
from lean.models.cab_cnn import CONV_STAGES, DECIMATED_RATE, CabCnnParams, GroupedDense

RATE = 16000  # the default input rate; the body runs at DECIMATED_RATE (4 kHz)


def _config(seconds=1.0, num_classes=3, **changes) -> ModelConfig:
    params = CabCnnParams(**{"seconds": seconds, **changes.pop("params", {})})
    return ModelConfig(name="cab_cnn", num_classes=num_classes, params=params, **changes)


def _randomize(model, seed=1):
    """Non-zero weights and biases everywhere (BatchNorm variance kept positive), so a weight
    applied to the wrong classifier or step would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            values = [0.3 * rng.standard_normal(w.shape) for w in layer.weights]
            if isinstance(layer, keras.layers.BatchNormalization):
                values[3] = 0.5 + np.abs(values[3])  # moving variance
            layer.set_weights(values)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _relu(x):
    return np.maximum(x, 0.0)


def _table2_params(num_classes: int, classifiers: int) -> tuple[int, int]:
    """(total, trainable) parameters counted by hand from Table 2 and Sec. 4."""
    conv = 0
    channels = 1
    for filters, kernel in ((16, 4), (32, 4), (32, 10), (128, 10)):
        conv += kernel * channels * filters + filters
        channels = filters
    batch_norm = 4 * 128  # gamma, beta trainable; moving mean and variance not
    classifier = (128 * 8 + 8) + (8 * 4 + 4) + (4 * num_classes + num_classes)
    attention = (128 * 160 + 160) + (160 * 80 + 80) + (80 * classifiers + classifiers)
    total = conv + batch_norm + classifiers * classifier + attention
    return total, total - 2 * 128


def test_paper_parameter_count():
    model = registry.build_model(ModelConfig(name="cab_cnn", num_classes=3))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == (134_112, 133_856)
    assert _table2_params(3, 40) == (134_112, 133_856)


@pytest.mark.parametrize("num_classes, classifiers", [(10, 40), (2, 7)])
def test_parameter_count_follows_classes_and_classifiers(num_classes, classifiers):
    model = registry.build_model(_config(num_classes=num_classes,
                                         params={"classifiers": classifiers}))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == _table2_params(num_classes, classifiers)


@pytest.mark.parametrize("seconds", [0.5, 5.0, 30.0])
def test_shapes_through_the_network(seconds):
    """Static shapes of the export-ready build: each stage divides by its stride; 40 steps/s."""
    model = registry.build_model(_config(seconds, export_ready=True))
    assert tuple(model.inputs[0].shape) == (1, int(seconds * RATE))
    length = int(seconds * DECIMATED_RATE)
    assert tuple(model.get_layer("max_decimation").output.shape) == (1, length)
    for index, stage in enumerate(CONV_STAGES, start=1):
        assert tuple(model.get_layer(f"conv{index}").output.shape) == (1, length, stage.filters)
        length = -(-length // stage.stride)  # "same" pooling: ceil
        assert tuple(model.get_layer(f"pool{index}").output.shape) == (1, length, stage.filters)
    steps = int(40 * seconds)
    assert length == steps
    assert tuple(model.get_layer("batch_norm").output.shape) == (1, steps, 128)
    assert tuple(model.get_layer("classifier_probabilities").output.shape) == (1, steps, 40, 3)
    assert tuple(model.get_layer("attention_weights").output.shape) == (1, steps, 40)
    assert tuple(model.get_layer("classifier_attention").output.shape) == (1, steps, 3)
    assert tuple(model.outputs[0].shape) == (1, 3)


def test_training_build_takes_any_length():
    """batch_length=shortest trains on batches cut to their shortest clip: open time axis."""
    model = registry.build_model(_config(1.0))
    assert tuple(model.inputs[0].shape) == (None, None)
    rng = np.random.default_rng(0)
    for samples in (RATE, 2 * RATE + 37):
        probabilities = model(rng.standard_normal((2, samples)).astype(np.float32)).numpy()
        assert probabilities.shape == (2, 3)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    fixed = registry.build_model(_config(1.0, params={"batch_length": "window"}))
    assert tuple(fixed.inputs[0].shape) == (None, RATE)


@pytest.mark.parametrize("task_name, activation", [("single_label", _softmax),
                                                   ("multilabel", _sigmoid)])
def test_classifier_attention_block_matches_numpy(task_name, activation):
    """c_t = sum_i alpha_ti c_ti with 40 explicit per-classifier MLPs, and the output is the
    mean of c_t over time; each c_t is a distribution (single_label) or in (0, 1) per class."""
    config = _config(0.25, num_classes=4, task=task_name)  # 10 steps
    model = registry.build_model(config)
    _randomize(model)
    waveform = np.random.default_rng(2).standard_normal((2, RATE // 4)).astype(np.float32)
    probe = keras.Model(model.input, [model.get_layer("batch_norm").output,
                                       model.get_layer("classifier_attention").output,
                                       model.outputs[0]])
    a, step_probabilities, probabilities = (t.numpy() for t in probe(waveform))
    assert a.shape == (2, 10, 128)
    w1, b1 = model.get_layer("classifier_dense1").get_weights()
    w2, b2 = model.get_layer("classifier_dense2").get_weights()
    w3, b3 = model.get_layer("classifier_probabilities").get_weights()
    attention = [model.get_layer(name).get_weights()
                 for name in ("attention_dense1", "attention_dense2", "attention_weights")]
    expected = np.zeros((2, 10, 4))
    for b in range(2):
        for t in range(10):
            a_t = a[b, t].astype(np.float64)
            h = _relu(_relu(a_t @ attention[0][0] + attention[0][1]) @ attention[1][0]
                      + attention[1][1])
            alpha = _softmax(h @ attention[2][0] + attention[2][1])
            for i in range(40):
                hidden = _relu(a_t @ w1[:, 8 * i:8 * i + 8] + b1[8 * i:8 * i + 8])
                c_ti = activation(_relu(hidden @ w2[i] + b2[i]) @ w3[i] + b3[i])
                expected[b, t] += alpha[i] * c_ti
    np.testing.assert_allclose(step_probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities, expected.mean(axis=1), atol=1e-5)
    assert (step_probabilities > 0).all() and (step_probabilities < 1).all()
    if task_name == "single_label":
        np.testing.assert_allclose(step_probabilities.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    assert model.outputs[0].dtype == "float32" and model.layers[-1].name == "probabilities"


def test_grouped_dense_is_separate_dense_layers():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)  # [B, T, G=5, D=6]
    layer = GroupedDense(4, activation="relu")
    layer(x)
    kernel = layer.get_weights()[0]
    # Each group starts as a Dense(6 -> 4) would: Glorot uniform, limit sqrt(6 / (6 + 4)).
    limit = np.sqrt(6 / (6 + 4))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.7 * limit
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights])
    kernel, bias = layer.get_weights()
    for g in range(5):
        dense = keras.layers.Dense(4, activation="relu")
        dense(x[:, :, g])
        dense.set_weights([kernel[g], bias[g]])
        np.testing.assert_allclose(layer(x).numpy()[:, :, g], dense(x[:, :, g]).numpy(),
                                   atol=1e-5)
    assert layer.count_params() == 5 * (6 * 4 + 4)


def test_keras_file_round_trip(tmp_path):
    model = registry.build_model(_config(0.5, num_classes=5))
    _randomize(model)
    waveform = np.random.default_rng(5).standard_normal((2, RATE // 2)).astype(np.float32)
    model.save(tmp_path / "cab.keras")
    loaded = registry.load_model(tmp_path / "cab.keras")
    np.testing.assert_array_equal(loaded(waveform).numpy(), model(waveform).numpy())


@pytest.mark.parametrize("task_name", ["single_label", "multilabel"])
def test_export_ready_copy_gives_the_same_scores(task_name):
    config = _config(0.5, num_classes=4, task=task_name)
    model = registry.build_model(config)
    _randomize(model)
    waveform = np.random.default_rng(6).standard_normal((2, RATE // 2)).astype(np.float32)
    expected = model(waveform).numpy()
    exported = registry.export_ready_copy(model, config)
    assert tuple(exported.inputs[0].shape) == (1, RATE // 2)
    assert exported.inputs[0].name == "waveform"
    for row in range(2):
        np.testing.assert_allclose(exported(waveform[row:row + 1]).numpy()[0], expected[row],
                                   atol=1e-5)


@pytest.mark.parametrize("rate, batch_length", [(16000, "shortest"), (22050, "window"),
                                                (4000, "shortest")])
def test_front_ops_z_normalise_then_max_decimate(rate, batch_length):
    """Sec. 4: normalise by the mean and standard deviation, then the maximum of each of 4,000
    sub-intervals per second (np.array_split's partition when the rate is not a multiple)."""
    config = _config(2.0, params={"batch_length": batch_length}, input=InputSpec(rate, 1, 2.0))
    model = registry.build_model(config)
    waveform = np.random.default_rng(8).uniform(-0.3, 0.7, (2, 2 * rate)).astype(np.float32)
    layer = "max_decimation" if rate != DECIMATED_RATE else "z_normalization"
    decimated = keras.Model(model.input, model.get_layer(layer).output)(waveform).numpy()
    for row in range(2):
        x = waveform[row].astype(np.float64)
        x = (x - x.mean()) / x.std()
        expected = np.concatenate([[part.max() for part in np.array_split(second, DECIMATED_RATE)]
                                   for second in np.split(x, 2)])
        np.testing.assert_allclose(decimated[row], expected, atol=1e-5)


def test_weights_do_not_depend_on_seconds():
    """A model trained at one length exports at another (the streaming note's 1 s variant):
    every weight is copied by name; each step of the copy sees what the original's does."""
    model = registry.build_model(_config(2.0))
    _randomize(model)
    one_second = registry.export_ready_copy(model, _config(1.0))
    assert tuple(one_second.inputs[0].shape) == (1, RATE)
    waveform = np.random.default_rng(9).standard_normal((1, RATE)).astype(np.float32)
    np.testing.assert_allclose(one_second(waveform).numpy(), model(waveform).numpy(), atol=1e-5)


def test_seconds_sets_the_window():
    assert ModelConfig(name="cab_cnn").input == InputSpec(RATE, 1, 30.0)
    params = registry.parse_param_overrides("cab_cnn", ["seconds=5"])
    config = ModelConfig(name="cab_cnn", params=params)
    assert config.input.window_seconds == 5 and config.window_samples == 5 * RATE
    # config.json stores params as a dict; the window follows it.
    assert ModelConfig(name="cab_cnn", params={"seconds": 10}).window_samples == 10 * RATE


@pytest.mark.parametrize("changes, message", [
    ({"input": InputSpec(RATE, 1, 10.0)}, r"input window is 10.0 s but seconds=1.0"),
    ({"params": {"seconds": -1.0}}, "seconds must be positive"),
    ({"params": {"classifiers": 0}}, "classifiers must be at least 1"),
    ({"input": InputSpec(RATE, 2, 1.0)}, "takes mono audio"),
    ({"input": InputSpec(2000, 1, 1.0)}, "needs at least that"),
    ({"input": InputSpec(22050, 1, 1.0)}, "use --param batch_length=window"),
])
def test_bad_config_is_a_one_line_error(changes, message):
    with pytest.raises(LeanError, match=message):
        registry.build_model(_config(1.0, **changes))


def test_unknown_param_names_the_valid_keys():
    with pytest.raises(LeanError, match="valid keys: seconds, classifiers, batch_length"):
        registry.parse_param_overrides("cab_cnn", ["window=5"])
    with pytest.raises(LeanError, match="expected one of shortest, window"):
        registry.parse_param_overrides("cab_cnn", ["batch_length=longest"])


# Tables 5 and 6: rows actual AU, US, UK; columns predicted AU, US, UK.
PAPER_CONFUSION = {
    "VGG11_A": [[213, 7, 10], [9, 176, 9], [24, 12, 64]],
    "AttentionCNN": [[208, 11, 11], [7, 179, 8], [22, 13, 65]],
    "CAB-CNN-5s": [[219, 9, 2], [9, 185, 0], [10, 12, 78]],
    "CAB-CNN-10s": [[222, 8, 0], [1, 192, 1], [7, 7, 86]],
    "CAB-CNN-30s": [[226, 4, 0], [2, 191, 1], [8, 6, 86]],
    "CAB-CNN-60s": [[224, 5, 1], [3, 191, 0], [10, 9, 81]],
}
# Tables 3 and 4: accuracy, unweighted recall, F1.
PAPER_SCORES = {
    "VGG11_A": (0.8645, 0.8244, 0.8331),
    "AttentionCNN": (0.8626, 0.8257, 0.8330),
    "CAB-CNN-5s": (0.9198, 0.8953, 0.9092),
    "CAB-CNN-10s": (0.9542, 0.9383, 0.9475),
    "CAB-CNN-30s": (0.9599, 0.9424, 0.9523),
    "CAB-CNN-60s": (0.9466, 0.9228, 0.9356),
}


@pytest.mark.parametrize("name", list(PAPER_CONFUSION))
def test_single_label_metrics_reproduce_the_papers_tables(name):
    matrix = np.array(PAPER_CONFUSION[name])
    rows, columns = np.indices(matrix.shape)
    y_true = np.repeat(rows.ravel(), matrix.ravel())
    y_pred = np.repeat(columns.ravel(), matrix.ravel())
    assert len(y_true) == 524  # the matrices' test set (Table 1 says 598)
    scores = np.eye(3)[y_pred]
    metrics = single_label_metrics(y_true, scores, ["AU", "US", "UK"])
    measured = (metrics["accuracy"], metrics["macro_recall"], metrics["macro_f1"])
    assert tuple(round(value, 4) for value in measured) == PAPER_SCORES[name]


def test_float32_tflite_has_builtin_ops_only(tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    config = _config(1.0, export_ready=True)
    model = registry.build_model(config)
    _randomize(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    interpreter = Interpreter(model_content=converter.convert(), num_threads=1)
    interpreter.allocate_tensors()
    op_names = {op["op_name"] for op in interpreter._get_ops_details()}
    # The 40 classifiers are two batched matmuls, not 40 x 2 FULLY_CONNECTED ops.
    assert {"BATCH_MATMUL", "FULLY_CONNECTED", "SOFTMAX", "MAX_POOL_2D"} <= op_names
    assert not any(op.startswith("Flex") for op in op_names)
    counts = [op["op_name"] for op in interpreter._get_ops_details()]
    assert counts.count("BATCH_MATMUL") == 2 and counts.count("FULLY_CONNECTED") == 4
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, RATE] and list(out["shape"]) == [1, 3]
    waveform = np.random.default_rng(7).standard_normal((1, RATE)).astype(np.float32)
    interpreter.set_tensor(inp["index"], waveform)
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), model(waveform).numpy(),
                               atol=1e-5)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> dict:
    """`lean train` of a 2 s CAB-CNN on clips of 1.5 to 5 s (44.1 kHz stereo, decoded to 16 kHz
    mono): each clip's first 2 s, each batch cut to its shortest clip (the paper's rule)."""
    from test_family_contract import write_stereo_esc50

    from lean.cli import main

    root = tmp_path_factory.mktemp("cab_cnn")
    data = write_stereo_esc50(root / "data")
    run_dir = root / "run"
    argv = ["train", "--data", str(data), "--out", str(run_dir), "--model", "cab_cnn",
            "--param", "seconds=2", "--fold", "2", "--epochs", "15", "--batch-size", "8",
            "--lr", "1e-3", "--seed", "1", "--no-progress", "--cache-dir", str(root / "cache")]
    assert main(argv) == 0
    return {"root": root, "data": data, "run": run_dir}


@pytest.mark.slow
def test_train_eval_int8_export_mediapipe_and_bench(trained_run):
    """A short real training beats chance on held-out clips; the int8 file keeps the front ops
    and both softmax layers float, runs builtin ops only, and MediaPipe scores it as LiteRT."""
    from mediapipe_support import assert_mediapipe_matches_litert

    from lean.cli import main
    from lean.data import load_dataset
    from lean.data.audio import load_audio
    from lean.inference import load_predictor
    from lean_bench.host import run_host_benchmarks
    from lean_export.export import export_run
    from lean_export.metadata import read_metadata

    root, data, run_dir = trained_run["root"], trained_run["data"], trained_run["run"]
    predictor = load_predictor(run_dir)
    # Trained on any length, evaluated on fixed 2 s windows at 16 kHz.
    assert tuple(predictor.model.inputs[0].shape) == (None, None)
    assert (predictor.window_samples, predictor.sample_rate) == (2 * RATE, RATE)
    assert main(["eval", str(run_dir), "--data", str(data), "--json", str(root / "eval.json"),
                 "--no-progress", "--cache-dir", str(root / "cache")]) == 0
    report = json.loads((root / "eval.json").read_text())
    assert report["task"] == "single_label" and report["num_clips"] == 12
    # Three classes: chance is 1/3.
    assert report["accuracy"] >= 0.75, report["confusion_matrix"]

    output = root / "cab_int8.tflite"
    export = export_run(run_dir, output, "int8", calibration_count=40, max_drop=0.25,
                        latency_runs=50, progress=False)
    assert export["passed"]
    float_layers = export["float_layers"]
    assert float_layers[:2] == ["z_normalization", "max_decimation"]
    assert any("/attention_weights" in layer for layer in float_layers)
    ops = export["ops"]
    assert not any(row["op"].startswith("FLEX") or row["op"] in ("WHILE", "CUSTOM")
                   for row in ops)
    assert [row["outputs"] for row in ops if row["op"] == "CONV_2D"] == ["int8"]
    assert any(row["op"] == "SOFTMAX" and row["outputs"] == "float32" for row in ops)
    assert any(row["op"] == "BATCH_MATMUL" and row["outputs"] == "int8" for row in ops)
    metadata = read_metadata(output)
    assert (metadata["input"]["sample_rate"], metadata["input"]["channels"]) == (RATE, 1)
    assert metadata["config"]["model"]["params"]["seconds"] == 2

    clip = load_dataset(data, fold=2).clips("eval")[0]
    audio = load_audio(clip.path, RATE)
    probabilities = assert_mediapipe_matches_litert(output, audio, RATE, 2 * RATE,
                                                    metadata["labels"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.01)

    bench = run_host_benchmarks([str(output)], threads=[1], runs=20, warmup=2,
                                data_dir=str(data))
    row = bench["rows"][0]
    assert row["task"] == "single_label" and row["median_ms"] > 0
    assert row["accuracy"] == pytest.approx(export["quality"]["eval"]["exported"], abs=1e-12)
