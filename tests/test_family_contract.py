"""The family contract end to end for any member: a single-label model at 22.05 kHz on 2 s
windows trained on stereo 44.1 kHz clips (downmixed at decoding), and a model without any
frontend, each through train -> eval -> int8 export -> MediaPipe AudioClassifier -> lean-bench
host, with the task's metrics, the recorded folds and the metadata checked on the way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mediapipe_support import assert_mediapipe_matches_litert

CLASSES = ("hum", "whistle", "clicks")
FOLDS = 5
CLIPS_PER_CLASS_AND_FOLD = 4
FILE_RATE = 44100


def _clip(rng, target: int, seconds: float) -> np.ndarray:
    """Stereo audio [samples, 2]: a low hum, a high whistle or a click train in faint noise,
    louder on one channel than the other (downmixing must average them)."""
    samples = int(seconds * FILE_RATE)
    t = np.arange(samples) / FILE_RATE
    if target == 0:
        sound = 0.3 * np.sin(2 * np.pi * rng.uniform(180, 260) * t)
    elif target == 1:
        sound = 0.3 * np.sin(2 * np.pi * rng.uniform(3000, 4000) * t)
    else:
        sound = np.zeros(samples)
        sound[::int(FILE_RATE * rng.uniform(0.05, 0.09))] = 0.9
    mono = sound + 0.02 * rng.standard_normal(samples)
    return np.stack([0.8 * mono, 0.4 * mono], axis=1).astype(np.float32)


def write_stereo_esc50(root: Path, seed: int = 0) -> Path:
    """ESC-50 layout, 3 classes x 5 folds x 4 clips of 1.5-5 s, 44.1 kHz stereo 16-bit."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    number = 0
    for fold in range(1, FOLDS + 1):
        for target, category in enumerate(CLASSES):
            for _ in range(CLIPS_PER_CLASS_AND_FOLD):
                number += 1
                name = f"{fold}-{number:03d}-A-{target}.wav"
                soundfile.write(root / "audio" / name, _clip(rng, target, rng.uniform(1.5, 5.0)),
                                FILE_RATE, subtype="PCM_16")
                rows.append(f"{name},{fold},{target},{category},False,{number},A")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def _register_test_models() -> None:
    """Two members that exist only for this test: one on a log-mel frontend at 22.05 kHz / 2 s,
    one on the raw waveform with no frontend at all."""
    import keras

    from lean.config import InputSpec
    from lean.frontends import Spectrogram, SpectrogramConfig
    from lean.models.common import classifier_head, waveform_input
    from lean.models.registry import model_names, register

    if "contract_log_mel" in model_names():
        return

    @register("contract_log_mel", description="test-only: 32-band log-mel, one conv, softmax",
              input=InputSpec(22050, 1, 2.0), task="single_label")
    def build_log_mel(config, load_pretrained=True):
        waveform = waveform_input(config)
        frontend = SpectrogramConfig.log_mel(bands=32, low_hz=50.0, high_hz=11025.0)
        # bands has shape [B, 80, 32].
        bands = Spectrogram(frontend, config.input.sample_rate, name="log_mel")(waveform)
        x = keras.layers.Reshape((80, 32, 1), name="image")(bands)
        # log(mel + 1e-6) of these clips lies in about [-9, 4]: centre and scale it.
        x = keras.layers.Rescaling(1 / 3, offset=2.0, name="bands_scale")(x)
        x = keras.layers.Conv2D(8, 5, strides=2, activation="relu", name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.Model(waveform, classifier_head(x, config), name=config.name)

    @register("contract_raw", description="test-only: raw 10 ms frames, no frontend",
              input=InputSpec(16000, 1, 1.0), task="single_label")
    def build_raw(config, load_pretrained=True):
        waveform = waveform_input(config)
        # frames has shape [B, 100, 160]: 10 ms frames, each mapped by 16 learned filters.
        frames = keras.layers.Reshape((100, 160), name="frames")(waveform)
        frames = keras.layers.Rescaling(5.0, name="frames_scale")(frames)
        features = keras.layers.Dense(16, activation="relu", name="frame_features")(frames)
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(features)
        return keras.Model(waveform, classifier_head(pooled, config), name=config.name)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_stereo_esc50(tmp_path_factory.mktemp("contract") / "esc50_stereo")


@pytest.fixture(scope="module", params=["contract_log_mel", "contract_raw"])
def trained(request, data, tmp_path_factory) -> dict:
    """`lean train` (the CLI entry, in this process so the test-only models are registered) on
    folds: eval fold 2, val fold 3."""
    from lean.cli import main

    _register_test_models()
    root = tmp_path_factory.mktemp(request.param)
    run_dir = root / "run"
    argv = ["train", "--data", str(data), "--out", str(run_dir), "--model", request.param,
            "--fold", "2", "--epochs", "15", "--batch-size", "8", "--lr", "1e-2", "--seed", "1",
            "--no-progress", "--cache-dir", str(root / "cache")]
    assert main(argv) == 0
    return {"name": request.param, "run": run_dir, "root": root}


@pytest.mark.slow
def test_train_eval_export_mediapipe_and_bench(trained, data):
    from lean.cli import main
    from lean.config import RunConfig, load_json
    from lean.data import load_dataset
    from lean.data.audio import load_audio
    from lean.inference import load_predictor
    from lean_bench.host import run_host_benchmarks
    from lean_export.export import export_run
    from lean_export.metadata import read_metadata

    run_dir, root = trained["run"], trained["root"]
    config = load_json(RunConfig, run_dir / "config.json")
    # The task followed the layout; the folds the run held out are recorded.
    assert config.model.task == "single_label" and config.model.num_classes == len(CLASSES)
    assert (config.data.layout, config.data.fold, config.data.val_fold) == ("esc50", 2, 3)
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    scores = [row["val_accuracy"] for row in state["history"]]
    assert state["best_score"] == max(scores)

    # lean eval scores the held-out fold 2 by default, with the single-label report.
    report_path = root / "eval.json"
    assert main(["eval", str(run_dir), "--data", str(data), "--json", str(report_path),
                 "--plots", str(root / "plots"), "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    assert report["task"] == "single_label" and (report["test_fold"], report["val_fold"]) == (2, 3)
    assert report["num_clips"] == len(CLASSES) * CLIPS_PER_CLASS_AND_FOLD
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == report["num_clips"]
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert [row["label"] for row in report["per_class"]] == list(CLASSES)
    assert set(report["per_class"][0]) == {"label", "recall", "precision", "f1", "support"}
    assert set(report["segments"]) == {"accuracy", "macro_recall", "macro_precision", "macro_f1"}
    assert (root / "plots" / "confusion_matrix.png").stat().st_size > 5000
    # Three easy classes: well above chance (1/3) after a short training.
    assert report["accuracy"] >= 0.6, report["confusion_matrix"]

    # int8 export: the gate is on accuracy; metadata says the model's rate and mono.
    output = root / "model_int8.tflite"
    export = export_run(run_dir, output, "int8", calibration_count=24, max_drop=0.34,
                        latency_runs=50, progress=False)
    assert export["passed"] and export["quality"]["val"]["metric"] == "accuracy"
    spec = config.model.input
    metadata = read_metadata(output)
    assert (metadata["input"]["sample_rate"], metadata["input"]["channels"]) == (
        spec.sample_rate, 1)
    assert metadata["labels"] == list(CLASSES) and metadata["config"]["model"]["task"] == (
        "single_label")
    ops = {row["op"] for row in export["ops"]}
    assert not any(op.startswith("FLEX") or op in ("WHILE", "CUSTOM") for op in ops)
    if trained["name"] == "contract_log_mel":
        assert export["float_layers"][0] == "log_mel"
    else:
        assert not any(layer.startswith("log_mel") for layer in export["float_layers"])
        assert any(row["op"] == "FULLY_CONNECTED" and row["outputs"] == "int8"
                   for row in export["ops"])
    exported = load_predictor(output)
    assert (exported.task, exported.sample_rate, exported.window_samples) == (
        "single_label", spec.sample_rate, spec.window_samples)

    # MediaPipe AudioClassifier on an eval clip, decoded (and downmixed) at the model's rate.
    clip = load_dataset(data, fold=2).clips("eval")[0]
    audio = load_audio(clip.path, spec.sample_rate)
    probabilities = assert_mediapipe_matches_litert(output, audio, spec.sample_rate,
                                                    spec.window_samples, list(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)

    # lean-bench host measures it and scores it on the same held-out fold as lean eval.
    bench = run_host_benchmarks([str(output)], threads=[1], runs=20, warmup=2, data_dir=str(data))
    row = bench["rows"][0]
    assert row["task"] == "single_label" and row["median_ms"] > 0
    assert row["accuracy"] == pytest.approx(export["quality"]["eval"]["exported"], abs=1e-12)
