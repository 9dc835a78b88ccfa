"""Predictors: Keras and LiteRT behind one interface give the same scores; labels found in .tflite."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lean.errors import LeanError

WINDOW = 16000
LABELS = ["Bark", "Meow", "Speech"]


def build_tiny_model(num_classes: int = len(LABELS), batch_size=None, seed: int = 0):
    """A small model of the family's contract: `waveform` [B, 16000] -> sigmoid [B, C]."""
    import keras

    keras.utils.set_random_seed(seed)
    waveform = keras.Input((WINDOW,), batch_size=batch_size, name="waveform")
    frames = keras.layers.Reshape((40, 400))(waveform)  # 25 ms frames, like the wave encoder
    hidden = keras.layers.Dense(8, activation="tanh")(frames)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    outputs = keras.layers.Dense(num_classes, activation="sigmoid")(pooled)
    return keras.Model(waveform, outputs)


def convert_to_tflite(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def append_labels_zip(flatbuffer: bytes, labels, name: str = "labels.txt") -> bytes:
    """What exported metadata does: associated files as a zip appended to the model."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, "".join(f"{label}\n" for label in labels))
    return flatbuffer + buffer.getvalue()


def with_metadata(flatbuffer: bytes, labels, sample_rate: int = 16000, channels: int = 1,
                  task: str = "multilabel") -> bytes:
    """The file lean-export writes: TFLite Model Metadata (AudioProperties, labels) and a packed
    config.json that names the task."""
    from lean_export.metadata import AssociatedFile, AudioClassifierInfo, add_metadata

    config = json.dumps({"model": {"task": task}}).encode()
    info = AudioClassifierInfo(name="tiny", description="a test model", version="0", author="t",
                               license="none", sample_rate=sample_rate, channels=channels,
                               labels=tuple(labels),
                               associated_files=(AssociatedFile("config.json", config),))
    return add_metadata(flatbuffer, info)


def save_run_dir(model, run_dir: Path, labels) -> Path:
    """The files `lean train` leaves that loading needs: config.json, labels.txt, best.keras."""
    import dataclasses

    from lean.config import RunConfig, save_json

    run_dir.mkdir(parents=True, exist_ok=True)
    config = RunConfig()
    save_json(dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                    num_classes=len(labels))),
              run_dir / "config.json")
    (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    model.save(run_dir / "best.keras")
    return run_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    model = build_tiny_model()
    static = build_tiny_model(batch_size=1)
    static.set_weights(model.get_weights())
    dynamic_path = root / "dynamic.tflite"
    dynamic_path.write_bytes(append_labels_zip(convert_to_tflite(model), LABELS))
    static_path = root / "static.tflite"
    static_path.write_bytes(append_labels_zip(convert_to_tflite(static), LABELS))
    run_dir = save_run_dir(model, root / "run", LABELS)
    windows = np.random.default_rng(1).uniform(-0.5, 0.5, (7, WINDOW)).astype(np.float32)
    expected = np.asarray(model(windows))
    return {"model": model, "run": run_dir, "dynamic": dynamic_path, "static": static_path,
            "windows": windows, "expected": expected, "root": root}


def test_keras_predictor_matches_the_model_in_any_batching(models):
    from lean.inference import load_predictor

    for batch_size in (3, 256):
        predictor = load_predictor(models["run"], batch_size=batch_size)
        assert (predictor.kind, predictor.labels) == ("keras", tuple(LABELS))
        assert (predictor.window_samples, predictor.sample_rate) == (WINDOW, 16000)
        scores = predictor.predict(models["windows"])
        assert scores.dtype == np.float32 and scores.shape == (7, 3)
        np.testing.assert_allclose(scores, models["expected"], atol=1e-6)


def test_keras_file_with_labels_beside_it(models):
    from lean.inference import load_predictor

    predictor = load_predictor(models["run"] / "best.keras")
    np.testing.assert_allclose(predictor.predict(models["windows"]), models["expected"], atol=1e-6)


@pytest.mark.parametrize("name, dynamic", [("dynamic", True), ("static", False)])
def test_litert_predictor_matches_keras(models, name, dynamic):
    from lean.inference import load_predictor

    # A file without TFLite Model Metadata: its rate must be given (exported files carry it).
    with pytest.raises(LeanError, match="no TFLite Model Metadata gives its sample rate"):
        load_predictor(models[name])
    predictor = load_predictor(models[name], batch_size=4, sample_rate=16000)
    assert predictor.kind == "tflite" and predictor.dynamic_batch is dynamic
    assert (predictor.sample_rate, predictor.channels, predictor.task) == (16000, 1, None)
    assert predictor.labels == tuple(LABELS)  # read from the zip appended to the flatbuffer
    assert predictor.window_samples == WINDOW
    np.testing.assert_allclose(predictor.predict(models["windows"]), models["expected"], atol=1e-5)
    assert predictor.predict(np.zeros((0, WINDOW), np.float32)).shape == (0, 3)


def test_labels_file_beside_a_tflite_wins_and_missing_labels_are_an_error(models, tmp_path):
    from lean.inference import load_predictor

    bare = convert_to_tflite(models["model"])
    path = tmp_path / "bare.tflite"
    path.write_bytes(bare)
    with pytest.raises(LeanError, match="bare.tflite: no labels"):
        load_predictor(path, sample_rate=16000)
    (tmp_path / "bare.labels.txt").write_text("a\nb\nc\n")
    assert load_predictor(path, sample_rate=16000).labels == ("a", "b", "c")
    (tmp_path / "bare.labels.txt").write_text("a\nb\n")
    with pytest.raises(LeanError, match="3 outputs but 2 labels"):
        load_predictor(path, sample_rate=16000)


def test_wrong_inputs_are_one_line_errors(models, tmp_path):
    from lean.inference import load_predictor

    predictor = load_predictor(models["dynamic"], sample_rate=16000)
    with pytest.raises(LeanError, match=r"expected windows \[N, 16000\], got \[2, 8000\]"):
        predictor.predict(np.zeros((2, 8000), np.float32))
    with pytest.raises(LeanError, match="no such run directory or model file"):
        load_predictor(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(LeanError, match="junk.tflite: not a loadable TFLite model"):
        load_predictor(tmp_path / "junk.tflite")
    with pytest.raises(LeanError, match="not a finished run directory"):
        load_predictor(tmp_path)


def test_litert_predictor_reads_rate_channels_and_task_from_the_metadata(models, tmp_path):
    from lean.inference import load_predictor

    path = tmp_path / "described.tflite"
    path.write_bytes(with_metadata(convert_to_tflite(models["model"]), LABELS, sample_rate=22050,
                                   task="single_label"))
    predictor = load_predictor(path)
    assert (predictor.sample_rate, predictor.channels, predictor.task) == (22050, 1, "single_label")
    assert predictor.window_samples == WINDOW and predictor.labels == tuple(LABELS)
    np.testing.assert_allclose(predictor.predict(models["windows"]), models["expected"], atol=1e-5)
