"""`export_run`: run directory -> verified, MediaPipe-ready .tflite plus MODEL.report.json/.md."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lean.errors import LeanError
from lean.run import CONFIG_FILE, LABELS_FILE, load_run, read_run_config
from lean_export.convert import QuantizationConfig, build_serving_model, convert_model
from lean_export.metadata import AssociatedFile, AudioClassifierInfo, add_metadata, read_metadata
from lean_export.verify import (
    PROBE_WINDOWS,
    float_ops_outside,
    int8_ops_inside,
    layer_differences,
    measure_latency,
    multiply_accumulates,
    op_list,
    op_table,
    output_difference,
    probe_layer_names,
    size_breakdown,
    write_report,
)

DEFAULT_CALIBRATION_WINDOWS = 200
DEFAULT_HELD_OUT_WINDOWS = 64
# Largest allowed drop of the task's primary score (val mAP or accuracy), float -> exported.
DEFAULT_MAX_DROP = 0.01
# Keras model vs its export-ready rebuild: the same float math reordered (unrolled LSTM, static
# batch), so probabilities agree to float32 rounding; more means the rebuild is wrong.
EXPORT_READY_TOLERANCE = 1e-4
CODE_VERSION_FILE = "code_version.txt"
CALIBRATION_SEED = 0


def _log(message: str, progress: bool) -> None:
    if progress:
        print(f"lean-export: {message}", file=sys.stderr, flush=True)


def _resolve_dataset(config, run_dir: Path, data_dir):
    """The run's dataset, with the folds it was trained on (`--data` may point elsewhere)."""
    from lean.data import load_dataset

    data = config.data
    root = data_dir or data.dir
    if not root:
        raise LeanError(
            f"{run_dir}: no data for calibration and verification (config.json names no dataset); "
            "pass --data DIR"
        )
    if not Path(root).is_dir():
        raise LeanError(f"{root}: calibration data folder not found; pass --data DIR")
    return load_dataset(root, layout=data.layout, fold=data.fold, val_fold=data.val_fold)


def _windows_from_clips(clips, cache, cut, wanted: int, what: str) -> np.ndarray:
    """Up to `wanted` windows, at most one per clip per pass over the clips, skipping bad audio."""
    from lean.data.audio import BadAudioError

    rng = np.random.default_rng(CALIBRATION_SEED)
    windows_of_clip: dict[int, np.ndarray] = {}
    chosen: list[np.ndarray] = []
    for round_number in range(wanted):
        added = False
        for index, clip in enumerate(clips):
            if len(chosen) >= wanted:
                return np.stack(chosen)
            if index not in windows_of_clip:
                try:
                    windows_of_clip[index] = cut(np.asarray(cache.load(clip.path)))
                except BadAudioError:
                    windows_of_clip[index] = np.zeros((0, 0), np.float32)
            windows = windows_of_clip[index]
            if round_number < len(windows):
                # The first pass takes a random window of each clip, later passes the others.
                order = rng.permutation(len(windows)) if round_number == 0 else np.arange(len(windows))
                chosen.append(windows[order[round_number]])
                added = True
        if not added:
            break
    if not chosen:
        raise LeanError(f"no {what} windows: every clip failed to decode")
    return np.stack(chosen).astype(np.float32)


def calibration_windows(dataset, window_samples: int, count: int, cache) -> np.ndarray:
    """`count` training windows spread over the train split's clips (shuffled, fixed seed)."""
    from lean.data.windows import training_windows

    clips = list(dataset.clips("train"))
    if not clips:
        raise LeanError(f"{dataset.root}: the train split has no clips to calibrate int8 on")
    np.random.default_rng(CALIBRATION_SEED).shuffle(clips)
    return _windows_from_clips(clips, cache, lambda audio: training_windows(audio, window_samples),
                               count, "calibration")


def held_out_windows(dataset, window_samples: int, count: int, cache, hop_fraction: float) -> np.ndarray:
    """`count` evaluation windows of the val split (never seen by training or calibration)."""
    from lean.data.windows import eval_windows

    clips = list(dataset.clips("val"))
    if not clips:
        raise LeanError(f"{dataset.root}: the val split has no clips to verify the export on")
    return _windows_from_clips(clips, cache, lambda audio: eval_windows(audio, window_samples, hop_fraction),
                               count, "held-out")


def code_version() -> str:
    """lean's version plus the git commit of its source tree when it is a checkout."""
    import lean

    version = f"lean {lean.__version__}"
    source = Path(lean.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            version += f" (commit {commit.stdout.strip()[:12]}{'+dirty' if dirty.stdout.strip() else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("tensorflow", "keras", "ai-edge-litert", "mediapipe"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def classifier_info(run_dir: Path, config, labels, quantization: QuantizationConfig, author: str,
                    license_name: str, score_threshold: float, version: str) -> AudioClassifierInfo:
    """The metadata of an exported run: identity, audio format, labels, config and code version."""
    from lean.models.registry import describe
    from lean.tasks import task

    model = config.model
    exported_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    version_text = "\n".join([
        version,
        f"run: {run_dir.resolve()}",
        f"model: {config.model.name}",
        f"quantization: {quantization.mode}",
        f"exported: {exported_at}",
        *[f"{package}: {value}" for package, value in _versions().items()],
    ]) + "\n"
    spec = model.input
    audio = f"{spec.window_seconds:g} s of {spec.sample_rate} Hz " + (
        "mono audio" if spec.channels == 1 else f"{spec.channels}-channel audio (interleaved)")
    what = "Audio tagging" if model.task == "multilabel" else "Audio classification"
    activation = task(model.task).activation
    return AudioClassifierInfo(
        name=f"lean-{model.name}",
        description=(f"{describe(model.name)}. {what} of {audio} into {len(labels)} labels; "
                     f"{quantization.mode} export."),
        version=version,
        author=author,
        license=license_name,
        sample_rate=spec.sample_rate,
        channels=spec.channels,
        labels=tuple(labels),
        score_threshold=score_threshold,
        input_description=("Waveform, float32 in [-1, 1]" + (
            "." if spec.channels == 1 else ", channels interleaved frame by frame.")),
        output_description=f"Probability of each label ({activation}), float32.",
        associated_files=(
            AssociatedFile(CONFIG_FILE, (run_dir / CONFIG_FILE).read_bytes(),
                           "The training run's config.json (lean.config.RunConfig)."),
            AssociatedFile(CODE_VERSION_FILE, version_text.encode("utf-8"),
                           "Code version and tool versions that produced this file."),
        ),
    )


def _evaluate_quality(float_predictor, exported_path: Path, dataset, eval_config,
                      progress: bool) -> dict:
    """The task's primary score (mAP or accuracy) of the float Keras model and of the exported
    file on val (and eval), via lean.evaluate, with the spread of the drop over resampled clips
    (a small split cannot resolve a small drop)."""
    from lean.evaluate import evaluate
    from lean.inference import load_predictor
    from lean.metrics import paired_bootstrap_difference

    task = float_predictor.task
    metric = "mAP" if task == "multilabel" else "accuracy"
    exported = load_predictor(exported_path)
    splits = ["val"] + (["eval"] if dataset.has_eval and dataset.clips("eval") else [])
    results = {}
    for split in splits:
        float_report, exported_report = (
            evaluate(predictor, dataset, split, eval_config, progress=progress, keep_scores=True)
            for predictor in (float_predictor, exported)
        )
        if float_report["clip_keys"] != exported_report["clip_keys"]:
            raise LeanError(f"{dataset.root}: the float and exported evaluations of {split} "
                            "scored different clips")
        spread = paired_bootstrap_difference(
            float_report["clip_targets"], float_report["clip_scores"],
            exported_report["clip_scores"], task=task)
        results[split] = {
            "metric": metric,
            "num_clips": exported_report["num_clips"],
            "float": float_report[metric],
            "exported": exported_report[metric],
            "drop": float_report[metric] - exported_report[metric],
            "drop_bootstrap": {key: spread[key] for key in ("sd", "low", "high", "rounds")},
        }
        if task == "multilabel":
            results[split].update(float_mAUC=float_report["mAUC"],
                                  exported_mAUC=exported_report["mAUC"])
        else:
            results[split].update(float_macro_f1=float_report["macro_f1"],
                                  exported_macro_f1=exported_report["macro_f1"])
    return results


def export_run(
    run_dir: str | Path,
    output: str | Path,
    quantization: QuantizationConfig | str = "int8",
    data_dir: str | Path | None = None,
    calibration_count: int = DEFAULT_CALIBRATION_WINDOWS,
    max_drop: float | None = DEFAULT_MAX_DROP,
    held_out_count: int = DEFAULT_HELD_OUT_WINDOWS,
    latency_runs: int = 50,
    author: str = "lean contributors",
    license_name: str = "Apache-2.0",
    score_threshold: float = 0.0,
    progress: bool = True,
) -> dict:
    """Exports a trained run to one verified .tflite with MediaPipe-ready metadata.

    Args:
      run_dir: a `lean train` run directory (config.json, labels.txt, best.keras).
      output: destination .tflite; MODEL.report.json and MODEL.report.md are written beside it.
      quantization: a `QuantizationConfig` or a mode name (int8, dynamic_range, float16, float32).
      data_dir: the dataset (default: the run's, with its layout and folds): train windows
        calibrate int8, val (and eval) windows verify the export.
      calibration_count: calibration windows for int8.
      max_drop: largest allowed drop of the task's primary score on val, float -> exported (mAP
        for multilabel, accuracy for single_label; None: do not evaluate).
      held_out_count: val windows for the Keras-vs-TFLite output comparison.
      latency_runs: timed LiteRT invocations (1 thread) for the report (>= 50).
      author, license_name, score_threshold: written into the metadata.
      progress: stage lines and tqdm bars on stderr.

    Returns:
      The report dict (also written as MODEL.report.json). Raises LeanError, after writing the
      report and without leaving a model at `output`, when the drop exceeds `max_drop`.
    """
    run_dir, output = Path(run_dir), Path(output)
    if output.suffix != ".tflite":
        raise LeanError(f"{output}: the output file name must end in .tflite")
    staged = _staging_path(output)
    if staged.is_file():
        # A kill -9 while verifying skips the clean-up below; nothing ever reads that copy.
        staged.unlink()
        _log(f"removed {staged}, left by an interrupted export", progress)
    if calibration_count < 1:
        raise LeanError(f"--calibration-windows must be at least 1, got {calibration_count}")
    if latency_runs < 50:
        raise LeanError(f"latency needs at least 50 runs for a stable median, got {latency_runs}")
    config = read_run_config(run_dir)
    if config.svm is not None and config.svm.kernel != "linear":
        raise LeanError(f"{run_dir}: its {config.svm.kernel} SVM runs on the host only (lean eval, "
                        f"lean tag); lean-export {config.svm.source_run} exports the network's own "
                        "head, or a `lean svm --kernel linear` run folds the SVM into it")
    dataset = _resolve_dataset(config, run_dir, data_dir)
    # TensorFlow loads only now, after the cheap checks.
    if isinstance(quantization, str):
        quantization = QuantizationConfig.from_mode(quantization)
    from lean.data.audio import AudioCache
    from lean.data.pipeline import default_cache_dir
    from lean.inference import KerasPredictor
    from lean.models.registry import export_ready_copy

    model_input = config.model.input
    window_samples = model_input.window_samples
    cache = AudioCache(default_cache_dir(), model_input.sample_rate, channels=model_input.channels)

    _log(f"loading {run_dir}", progress)
    run = load_run(run_dir)
    if tuple(dataset.labels) != tuple(run.labels):
        raise LeanError(f"{dataset.root}: its labels differ from {run_dir / LABELS_FILE}")
    if config.svm is not None:
        from lean.training.svm import export_ready_svm_copy

        export_ready = export_ready_svm_copy(run.model, run.config.model)
    else:
        export_ready = export_ready_copy(run.model, run.config.model)
    serving = build_serving_model(export_ready, model_input)

    held_out = held_out_windows(dataset, window_samples, held_out_count, cache,
                                config.eval.window_hop_fraction)
    float_predictor = KerasPredictor(run.model, run_dir, run.labels, model_input,
                                     config.model.task)
    float_scores = float_predictor.predict(held_out)
    # One traced graph for all windows (eager calls of an unrolled LSTM are slow); batch 1 is static.
    ready_scores = serving.predict(held_out.reshape(len(held_out), -1), batch_size=1, verbose=0)
    parity = output_difference(float_scores, ready_scores)
    if parity["max_abs_diff"] > EXPORT_READY_TOLERANCE:
        raise LeanError(
            f"{run_dir}: the export-ready rebuild of {config.model.name} disagrees with the trained model "
            f"(max abs diff {parity['max_abs_diff']:.2e} > {EXPORT_READY_TOLERANCE:g})"
        )

    calibration = None
    if quantization.needs_calibration:
        _log(f"reading {calibration_count} calibration windows from the train split", progress)
        calibration = calibration_windows(dataset, window_samples, calibration_count, cache)
        # [N, samples * channels]: a multi-channel model's serving input is interleaved.
        calibration = calibration.reshape(len(calibration), -1)
    _log(f"converting ({quantization.mode}) in a child process", progress)
    started = time.perf_counter()
    model_bytes, details = convert_model(serving, quantization, calibration, progress=progress)
    conversion_seconds = time.perf_counter() - started
    info = classifier_info(run_dir, config, run.labels, quantization, author, license_name,
                           score_threshold, code_version())
    model_bytes = add_metadata(model_bytes, info)

    # Verify a staged copy; only a model that passes replaces `output` (atomic rename).
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        staged.write_bytes(model_bytes)
        _log("verifying", progress)
        report = _verify(staged, output, run_dir, config, quantization, details, parity,
                         float_scores, held_out, float_predictor, dataset, max_drop,
                         latency_runs, conversion_seconds, progress)
        write_report(report, output)
        if not report["passed"]:
            raise LeanError(
                f"{output}: {'; '.join(report['failures'])}; model not written, see "
                f"{output.with_suffix('.report.md')}"
            )
        with open(staged, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, output)
    finally:
        staged.unlink(missing_ok=True)
    _log(f"wrote {output} ({report['file_size_bytes']:,} bytes) and its report", progress)
    return report


def _staging_path(output: Path) -> Path:
    """The hidden copy verified beside `output` before it replaces it."""
    return output.with_name(f".{output.stem}.verifying.tflite")


def _verify(staged: Path, output: Path, run_dir: Path, config, quantization, details, parity,
            float_scores, held_out, float_predictor, dataset, max_drop, latency_runs,
            conversion_seconds, progress) -> dict:
    from lean.host import host_description
    from lean.inference import load_predictor

    model_bytes = staged.read_bytes()
    ops = op_list(model_bytes)
    metadata = read_metadata(staged)
    exported_scores = load_predictor(staged).predict(held_out)
    report = {
        "model": str(output),
        "run_dir": str(run_dir),
        "model_name": config.model.name,
        "quantization": quantization.mode,
        "task": config.model.task,
        # Layers kept float: the frontends and named scopes, then int8's softmax layers.
        "float_layers": details.get("float_scopes", []) + details.get("float_layers", []),
        "float_head": details.get("float_head", []),
        "activation_ranges": details.get("activation_ranges"),
        "file_size_bytes": len(model_bytes),
        "file_size_mb": len(model_bytes) / 1e6,
        "size_breakdown": size_breakdown(model_bytes),
        "multiply_accumulates": multiply_accumulates(model_bytes),
        "op_count": len(ops),
        "ops": op_table(ops),
        "float_ops_after_frontend": float_ops_outside(ops, details["float_nodes"])
        if quantization.mode == "int8" else [],
        "int8_ops_in_float_layers": int8_ops_inside(ops, details["float_nodes"]),
        "export_ready_parity": parity,
        "output_difference": output_difference(float_scores, exported_scores),
        # The frontends' and attention layers' own outputs, float vs exported: an int8 underflow
        # inside the model shows (and is flagged) here even where the scores hide it.
        "layer_probes": layer_differences(
            float_predictor.model, staged, held_out[:PROBE_WINDOWS],
            probe_layer_names(float_predictor.model, model_bytes)),
        "metadata": {
            **{key: metadata[key] for key in ("name", "version", "author", "license", "min_parser_version",
                                             "input", "output")},
            "num_labels": len(metadata["labels"]),
            "associated_files": sorted(metadata["associated_files"]),
        },
        "conversion_seconds": round(conversion_seconds, 1),
        "max_drop": max_drop,
        "latency": measure_latency(staged, threads=1, runs=latency_runs),
        "host": host_description(),
        "versions": _versions(),
        "code_version": metadata["version"],
        "failures": [],
    }
    report["warnings"] = [
        f"layer {row['layer']}: exported output differs from float by {row['relative']:.0%} of "
        f"its largest value and {row['zeroed_fraction']:.0%} of its non-zero values became 0 "
        "(an int8 underflow or saturation; keep the layer float)"
        for row in report["layer_probes"] if row.get("flagged")]
    if report["int8_ops_in_float_layers"]:
        report["failures"].append(
            f"{len(report['int8_ops_in_float_layers'])} ops of the float layers were quantized to int8 "
            f"(first: {report['int8_ops_in_float_layers'][0]})"
        )
    if max_drop is not None:
        report["quality"] = _evaluate_quality(float_predictor, staged, dataset, config.eval,
                                              progress)
        for split, values in report["quality"].items():
            # Only val gates the export; eval is reported, not tuned on.
            if split == "val" and values["drop"] > max_drop:
                report["failures"].append(
                    f"val {values['metric']} dropped by {values['drop']:.4f} "
                    f"({values['float']:.4f} -> {values['exported']:.4f}), more than "
                    f"--max-drop {max_drop:g}"
                )
    report["passed"] = not report["failures"]
    return report
