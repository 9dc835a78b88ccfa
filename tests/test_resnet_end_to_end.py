"""resnet18 with coordinate attention and max pooling, end to end on the single-label demo: a
short real training beats chance, `lean eval` scores it, `lean-export --int8` converts it with
builtin ops only and MediaPipe's AudioClassifier scores it exactly as LiteRT, `lean-bench host`
runs it. One run and one export serve every test (1 s windows keep CPU time low)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mediapipe_support import assert_mediapipe_matches_litert

CLIPS_PER_CLASS = 8  # 10 classes, 80 clips in 5 folds: 40 train, 20 val, 20 eval
WINDOW_SECONDS = 1.0
CHANCE = 0.1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from lean.data.demo_single_label import build_single_label_demo

    root = tmp_path_factory.mktemp("resnet_demo") / "data"
    build_single_label_demo(root, clips_per_class=CLIPS_PER_CLASS, progress=False)
    return root


@pytest.fixture(scope="module")
def run_dir(demo, tmp_path_factory):
    from lean.config import DataConfig, InputSpec, ModelConfig, RunConfig, TrainConfig
    from lean.models.resnet import ResNetParams
    from lean.train import train

    out = tmp_path_factory.mktemp("resnet_run") / "run"
    config = RunConfig(
        model=ModelConfig(name="resnet18", input=InputSpec(16000, 1, WINDOW_SECONDS),
                          params=ResNetParams(attention="ca", pooling="max")),
        train=TrainConfig(epochs=3, batch_size=16, learning_rate=1e-3, seed=0),
        data=DataConfig(dir=str(demo)))
    train(config, out, cache_dir=tmp_path_factory.mktemp("resnet_cache"), progress=False)
    return out


@pytest.fixture(scope="module")
def int8_export(run_dir, tmp_path_factory):
    from lean_export.cli import main

    path = tmp_path_factory.mktemp("resnet_export") / "resnet18_ca_max.tflite"
    # A lenient gate: 20 val clips resolve 5 accuracy points; the drop is asserted below.
    assert main([str(run_dir), "-o", str(path), "--int8", "--calibration-windows", "32",
                 "--max-drop", "0.2", "--quiet"]) == 0
    report = json.loads(path.with_suffix(".report.json").read_text())
    return path, report


@pytest.mark.slow
def test_short_training_beats_chance(run_dir, demo, tmp_path, capsys):
    from lean.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--data", str(demo), "--json", str(out),
                 "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "single_label" and result["num_clips"] == 20
    # 7 or more of 20 right by chance (p = 0.1 each) has probability 0.002.
    assert result["accuracy"] >= 7 / 20 > 3 * CHANCE
    assert np.asarray(result["confusion_matrix"]).sum() == 20


@pytest.mark.slow
def test_int8_export_uses_builtin_int8_ops_and_keeps_the_frontend_float(int8_export):
    from lean_export.verify import op_list

    path, report = int8_export
    ops = op_list(path.read_bytes())
    assert not [op["op"] for op in ops if op["op"].startswith(("CUSTOM", "Flex"))]
    assert report["float_layers"] == ["spectrogram"]
    assert report["float_ops_after_frontend"] == []
    assert {op["op"] for op in ops if "int8" in op["outputs"]} >= {
        "CONV_2D", "HARD_SWISH", "LOGISTIC", "MUL", "MEAN", "REDUCE_MAX", "ADD"}
    quality = report["quality"]["val"]
    assert quality["metric"] == "accuracy" and quality["drop"] <= 1 / 20
    metadata = report["metadata"]
    assert metadata["input"]["sample_rate"] == 16000 and metadata["input"]["channels"] == 1
    assert metadata["num_labels"] == 10


def _keras_multiply_accumulates(model) -> int:
    """MACs of the Keras graph counted layer by layer: convs, dense layers, coordinate
    attention's three 1x1 convs, and the fbank's DFT and filterbank matmuls."""
    import keras

    from lean.frontends import spectrogram_constants
    from lean.models.conv_attention import CoordinateAttention

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, _ = layer.kernel.shape
            total += int(np.prod(layer.output.shape[1:])) * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.output.shape[1:])) * layer.kernel.shape[0]
        elif isinstance(layer, CoordinateAttention):
            _, t, f, c = layer.input.shape
            total += 2 * (t + f) * c * layer.reduce_kernel.shape[1]
        elif layer.name == "spectrogram":
            constants = spectrogram_constants(layer.frontend_config, layer.sample_rate)
            frames = layer.output.shape[1]
            total += frames * (constants.analysis.size + constants.filterbank.size)
    return total


@pytest.mark.slow
def test_report_counts_the_multiply_accumulates_of_the_keras_graph(int8_export, run_dir):
    from lean.run import load_run

    _, report = int8_export
    macs = report["multiply_accumulates"]
    assert macs["total"] == _keras_multiply_accumulates(load_run(run_dir).model)
    assert set(macs) == {"CONV_2D", "FULLY_CONNECTED", "total"}


@pytest.mark.slow
def test_mediapipe_scores_equal_litert(int8_export, demo):
    from lean.data.audio import load_audio
    from lean_export.metadata import read_metadata

    path, _ = int8_export
    clips = sorted((demo / "audio").glob("*.wav"))[:2]
    # 2.5 s at 16 kHz: two full windows and a half one that MediaPipe zero-pads.
    audio = np.concatenate([load_audio(clip, 16000) for clip in clips])[:40000]
    expected = assert_mediapipe_matches_litert(path, audio, 16000, 16000,
                                               read_metadata(path)["labels"])
    assert np.ptp(expected, axis=0).max() > 0.01


@pytest.mark.slow
def test_lean_bench_host_runs_the_export(int8_export, tmp_path):
    from lean_bench import cli

    path, _ = int8_export
    out = tmp_path / "host.json"
    assert cli.main(["host", str(path), "--runs", "5", "--warmup", "1", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model_name"] == path.name and 0 < row["min_ms"] <= row["median_ms"]
