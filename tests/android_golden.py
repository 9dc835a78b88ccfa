"""Writes the golden files that android_demo/core's JVM tests must reproduce, using the Python SDK.

Everything here comes from the SDK the app must agree with: windows from
`lean.data.windows.eval_windows`, clip scores from `lean.data.windows.aggregate_clip_scores`, the
model from `lean_export` (`convert_model`, `classifier_info`, `add_metadata`) and its metadata from
`lean_export.metadata.read_metadata` and `lean.inference.load_predictor`. The JVM side reads the
files listed in golden.properties (java.util.Properties syntax); arrays are raw little-endian
float32 (`.f32`) or float64 (`.f64`) files, row-major.

Regenerate by hand with: python tests/android_golden.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 16000
# Labels with FSD50K spelling, a comma and non-ASCII text: the labels file must round-trip as UTF-8.
LABELS = ("Bark", "Speech", "Electric_guitar", "Chewing_and_mastication", "Café, crowd")
# (clip samples, window samples, hop fraction): tails, exact fits, short clips repeated, and
# hops that Python rounds half to even (100 * 0.25 = 25, 9 * 0.5 = 4.5 -> 4).
WINDOW_CASES = (
    (36800, WINDOW_SAMPLES, 0.5),
    (32000, WINDOW_SAMPLES, 0.5),
    (16000, WINDOW_SAMPLES, 0.5),
    (5000, WINDOW_SAMPLES, 0.5),
    (1001, 100, 0.25),
    (95, 9, 0.5),
    (7, 9, 0.5),
)
TOP_K = 3
# Exactly representable in float32; MediaPipe (and the app) drop categories scoring below it.
SCORE_THRESHOLD = 0.25
# Scores of the synthetic eval job: class c of a window is its sample (c * 7) % W, so each row of
# scores.f32 names the window it came from (the JVM test uses the same rule).
EVAL_SCORE_STRIDE = 7
# The failing job's classifier throws IllegalStateException(EVAL_FAILURE) on this window; the
# message has the characters java.util.Properties escapes, for the host's parser to undo.
EVAL_FAIL_AT = 2
EVAL_FAILURE = "delegate lost: code=7 #1"


def deterministic_waveform(num_samples: int, seed: int) -> np.ndarray:
    """A tone plus seeded noise, float32 in [-1, 1]."""
    t = np.arange(num_samples) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(num_samples)
    return np.clip(0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * noise, -1, 1).astype(np.float32)


def build_tiny_model(num_classes: int):
    """A small waveform classifier with the SDK's contract: float32 [B, W] in, sigmoid [B, C] out.

    Args:
        num_classes: number of output classes.

    Returns:
        A Keras model with fixed random weights (seeded).
    """
    import keras

    keras.utils.set_random_seed(0)
    waveform = keras.Input(shape=(WINDOW_SAMPLES,), name="waveform")
    frames = keras.layers.Reshape((40, WINDOW_SAMPLES // 40))(waveform)  # [B, 40, 400]
    energy = keras.layers.Dense(8, activation="tanh")(frames)  # [B, 40, 8]
    pooled = keras.layers.GlobalAveragePooling1D()(energy)  # [B, 8]
    probabilities = keras.layers.Dense(num_classes, activation="sigmoid")(pooled)  # [B, C]
    return keras.Model(waveform, probabilities, name="tiny_android_golden")


def export_tiny_model(path: Path) -> None:
    """Exports the tiny model as float32 TFLite with the metadata `lean-export` writes for a run.

    Conversion is lean_export's `convert_model`; the metadata is `classifier_info` of a run folder
    holding the default RunConfig (so config.json and the code version ride in the appended zip,
    as in a real export) and `add_metadata`.
    """
    from lean.config import InputSpec, RunConfig, save_json
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model
    from lean_export.export import classifier_info
    from lean_export.metadata import add_metadata

    quantization = QuantizationConfig.create_float32()
    serving = build_serving_model(build_tiny_model(len(LABELS)),
                                  InputSpec(sample_rate=WINDOW_SAMPLES, window_seconds=1.0))
    model_bytes, _ = convert_model(serving, quantization)
    run_dir = path.parent / "tiny_run"
    config = RunConfig()
    save_json(config, run_dir / "config.json")
    info = classifier_info(run_dir, config, LABELS, quantization, author="lean tests",
                           license_name="Apache-2.0", score_threshold=SCORE_THRESHOLD,
                           version="golden-1")
    path.write_bytes(add_metadata(model_bytes, info))


def _write_f32(path: Path, array: np.ndarray) -> None:
    np.ascontiguousarray(array, dtype="<f4").tofile(path)


def _write_f64(path: Path, array: np.ndarray) -> None:
    np.ascontiguousarray(array, dtype="<f8").tofile(path)


def _write_properties(path: Path, values: dict) -> None:
    # Values are ASCII numbers, names and comma-separated lists: no Properties escaping needed.
    lines = [f"{key}={value}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _join(values) -> str:
    return ",".join(str(int(v)) for v in values)


def write_window_goldens(directory: Path, golden: dict) -> None:
    from lean.data.windows import eval_window_starts, eval_windows

    golden["windows.cases"] = len(WINDOW_CASES)
    for case, (num_samples, window_samples, hop_fraction) in enumerate(WINDOW_CASES):
        audio = deterministic_waveform(num_samples, seed=case)
        windows = eval_windows(audio, window_samples, hop_fraction)
        prefix = f"windows.{case}"
        _write_f32(directory / f"windows_{case}_audio.f32", audio)
        _write_f32(directory / f"windows_{case}_expected.f32", windows)
        golden[f"{prefix}.audio"] = f"windows_{case}_audio.f32"
        golden[f"{prefix}.expected"] = f"windows_{case}_expected.f32"
        golden[f"{prefix}.window_samples"] = window_samples
        golden[f"{prefix}.hop_fraction"] = repr(hop_fraction)
        golden[f"{prefix}.num_windows"] = len(windows)
        golden[f"{prefix}.starts"] = _join(
            eval_window_starts(max(num_samples, window_samples), window_samples, hop_fraction)
        )


def write_aggregation_goldens(directory: Path, golden: dict) -> None:
    from lean.data.windows import AGGREGATIONS, aggregate_clip_scores

    rng = np.random.default_rng(7)
    num_windows, num_classes, num_clips = 23, 6, 5
    scores = rng.uniform(0.0, 1.0, size=(num_windows, num_classes)).astype(np.float32)
    scores[0, 0], scores[3, 1], scores[5, 2] = 0.0, 1.0, 1.0  # saturated values hit the clipping
    clip_of_window = np.concatenate([np.arange(num_clips), rng.integers(0, num_clips, num_windows - num_clips)])
    rng.shuffle(clip_of_window)
    _write_f32(directory / "aggregation_scores.f32", scores)
    golden["aggregation.scores"] = "aggregation_scores.f32"
    golden["aggregation.num_classes"] = num_classes
    golden["aggregation.num_clips"] = num_clips
    golden["aggregation.clip_of_window"] = _join(clip_of_window)
    golden["aggregation.methods"] = ",".join(AGGREGATIONS)
    for method in AGGREGATIONS:
        pooled = aggregate_clip_scores(scores, clip_of_window, method, num_clips=num_clips)
        _write_f64(directory / f"aggregation_{method}.f64", pooled)
        golden[f"aggregation.{method}"] = f"aggregation_{method}.f64"


def write_model_goldens(directory: Path, golden: dict, model_path: Path | None) -> None:
    from lean.data.windows import aggregate_clip_scores, eval_windows
    from lean.inference import load_predictor
    from lean_export.metadata import read_metadata

    model = directory / "model.tflite"
    if model_path is None:
        export_tiny_model(model)
    else:
        model.write_bytes(Path(model_path).read_bytes())
    metadata = read_metadata(model)
    predictor = load_predictor(model)
    (directory / "model_labels.txt").write_text("\n".join(metadata["labels"]) + "\n", encoding="utf-8")
    golden["model.file"] = "model.tflite"
    golden["model.labels"] = "model_labels.txt"
    golden["model.num_labels"] = len(metadata["labels"])
    golden["model.labels_file"] = metadata["output"]["labels_file"]
    golden["model.sample_rate"] = metadata["input"]["sample_rate"]
    golden["model.channels"] = metadata["input"]["channels"]
    golden["model.input_samples"] = predictor.window_samples
    golden["model.num_classes"] = predictor.num_classes
    golden["model.name"] = metadata["name"]
    golden["model.version"] = metadata["version"]
    golden["model.min_parser_version"] = metadata["min_parser_version"]
    threshold = metadata["output"]["score_threshold"]
    golden["model.score_threshold"] = "NaN" if threshold is None else repr(float(threshold))

    # Top-k of the real model's clip scores (as `lean tag`: window scores averaged, stable sort),
    # then rows with ties, which must keep the lower class index first.
    clip = deterministic_waveform(36800, seed=11)
    window_scores = predictor.predict(eval_windows(clip, predictor.window_samples, 0.5))
    clip_scores = aggregate_clip_scores(window_scores, np.zeros(len(window_scores), int), "mean")
    # Ties, all below the threshold, and one exactly on it (kept) next to one just below.
    ties = np.array([[0.5, 0.25, 0.5, 0.75, 0.25], [0.1, 0.1, 0.1, 0.1, 0.1], [0.3, 0.2, 0.25, 0.1, 0.24]])
    rows = np.concatenate([clip_scores, ties]).astype(np.float32)
    _write_f32(directory / "topk_scores.f32", rows)
    golden["topk.scores"] = "topk_scores.f32"
    golden["topk.k"] = TOP_K
    golden["topk.rows"] = len(rows)
    for row, scores in enumerate(rows):
        top = np.argsort(-scores, kind="stable")[:TOP_K]
        golden[f"topk.{row}"] = _join(top)
        kept = top if threshold is None else [i for i in top if scores[i] >= threshold]
        golden[f"topk.{row}.above_threshold"] = _join(kept)


def _write_job_folder(job: Path, windows: np.ndarray, model: Path) -> None:
    """A job folder as benchmarks/DEVICE_EVAL.md defines it, written with the harness's own formatter."""
    from lean_bench.device_eval import FORMAT_VERSION, format_properties

    job.mkdir()
    _write_f32(job / "windows.f32", windows)
    (job / "model.tflite").write_bytes(model.read_bytes())
    (job / "job.properties").write_text(format_properties({
        "format_version": FORMAT_VERSION,
        "num_windows": len(windows),
        "window_samples": windows.shape[1],
        "sample_rate": SAMPLE_RATE,
        "threads": 1,
        "delegate": "cpu",
    }), encoding="utf-8")


def write_eval_jobs(directory: Path, golden: dict) -> np.ndarray:
    """Two jobs: one the JVM completes, one whose classifier fails part-way with EVAL_FAILURE.

    Returns:
        The scores float32 [N, C] the JVM must write for the complete job.
    """
    from lean.data.windows import eval_windows

    windows = np.concatenate([
        eval_windows(deterministic_waveform(n, seed=20 + i), WINDOW_SAMPLES, 0.5)
        for i, n in enumerate((40000, 9000, 24000))
    ])
    _write_job_folder(directory / "eval_job", windows, directory / "model.tflite")
    _write_job_folder(directory / "eval_job_failing", windows[:5], directory / "model.tflite")
    golden["eval.job"] = "eval_job"
    golden["eval.failing_job"] = "eval_job_failing"
    golden["eval.fail_at"] = EVAL_FAIL_AT
    golden["eval.score_stride"] = EVAL_SCORE_STRIDE
    classes = (np.arange(len(LABELS)) * EVAL_SCORE_STRIDE) % WINDOW_SAMPLES
    return windows[:, classes]


def write_goldens(directory: str | Path, model_path: str | Path | None = None) -> dict:
    """Writes every golden file into `directory` (created, must be empty).

    Args:
        directory: output folder.
        model_path: an exported .tflite to use instead of exporting the tiny model.

    Returns:
        {"golden": the golden.properties values, "eval_expected_scores": float32 [N, C]}.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    golden: dict = {}
    write_window_goldens(directory, golden)
    write_aggregation_goldens(directory, golden)
    write_model_goldens(directory, golden, model_path)
    expected_scores = write_eval_jobs(directory, golden)
    _write_properties(directory / "golden.properties", golden)
    return {"golden": golden, "eval_expected_scores": expected_scores}


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tests/android_golden.py OUT_DIR [MODEL.tflite]")
    write_goldens(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
