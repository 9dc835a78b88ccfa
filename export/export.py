"""`export_run`: run directory -> verified, MediaPipe-ready .tflite plus MODEL.report.json/.md."""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lean.errors import LeanError
from lean.run import CONFIG_FILE, LABELS_FILE, load_run, read_run_config
from lean_export.convert import (
    QuantizationConfig,
    build_serving_model,
    convert_model,
    quantize_variants,
    remove_abandoned_scratch,
    scratch_directory,
)
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
CALIBRATION_SAMPLINGS = ("random", "stratified")
FALLBACK_MODES = ("auto", "none")
# Most layer groups the fallback keeps float before it gives up.
DEFAULT_FALLBACK_STEPS = 8
FRONTEND_FORMULATIONS = {"dft": "dft_matmul", "rfft": "rfft", "fft": "fft_matmul"}
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


def calibration_windows(dataset, window_samples: int, count: int, cache,
                        sampling: str = "random") -> np.ndarray:
    """`count` training windows spread over the train split's clips (shuffled, fixed seed).

    sampling "stratified" orders the clips class by class in turn (a clip of class 0, one of
    class 1, ...), so every class is in the calibration windows even when `count` is small
    and the classes are unbalanced; "random" takes the shuffled clips as they come.
    """
    from lean.data.windows import training_windows

    if sampling not in CALIBRATION_SAMPLINGS:
        raise LeanError(f"unknown calibration sampling {sampling!r}; choose one of "
                        f"{', '.join(CALIBRATION_SAMPLINGS)}")
    clips = list(dataset.clips("train"))
    if not clips:
        raise LeanError(f"{dataset.root}: the train split has no clips to calibrate int8 on")
    np.random.default_rng(CALIBRATION_SEED).shuffle(clips)
    if sampling == "stratified":
        clips = stratified_order(clips, len(dataset.labels))
    return _windows_from_clips(clips, cache, lambda audio: training_windows(audio, window_samples),
                               count, "calibration")


def stratified_order(clips: list, num_classes: int) -> list:
    """The clips reordered round-robin over classes: the next unused clip of class 0, of
    class 1, and so on (a multi-label clip counts for its first label); each class's clips
    keep their order."""
    by_class: list[list] = [[] for _ in range(num_classes)]
    for clip in clips:
        by_class[clip.label_indices[0] if len(clip.label_indices) else 0].append(clip)
    ordered = []
    for position in range(max((len(c) for c in by_class), default=0)):
        ordered += [c[position] for c in by_class if position < len(c)]
    return ordered


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
                      progress: bool, float_reports: dict, splits: tuple[str, ...] | None = None
                      ) -> dict:
    """The task's primary score (mAP or accuracy) of the float Keras model and of the exported
    file on val (and eval), via lean.evaluate, with the spread of the drop over resampled clips
    (a small split cannot resolve a small drop). `float_reports` caches the float model's
    evaluations by split (the fallback scores several files against the same float model)."""
    from lean.evaluate import evaluate
    from lean.inference import load_predictor
    from lean.metrics import paired_bootstrap_difference

    task = float_predictor.task
    metric = "mAP" if task == "multilabel" else "accuracy"
    exported = load_predictor(exported_path)
    if splits is None:
        splits = ("val",) + (("eval",) if dataset.has_eval and dataset.clips("eval") else ())
    results = {}
    for split in splits:
        if split not in float_reports:
            float_reports[split] = evaluate(float_predictor, dataset, split, eval_config,
                                            progress=progress, keep_scores=True)
        float_report = float_reports[split]
        exported_report = evaluate(exported, dataset, split, eval_config, progress=progress,
                                   keep_scores=True)
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


def strip_tensor_names(model_bytes: bytes) -> bytes:
    """The model with every tensor name emptied except the graph's inputs and outputs (the
    signature and MediaPipe find those by index; nothing reads the others at run time)."""
    from ai_edge_litert import schema_py_generated as schema

    from lean_export.metadata import pack_model

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    for graph in model.subgraphs:
        keep = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
        for index, tensor in enumerate(graph.tensors):
            if index not in keep:
                tensor.name = b""
    return pack_model(model)


@dataclass
class _Candidate:
    """One int8 (or other) file under consideration: its bytes before metadata and what the
    conversion says about it."""

    model_bytes: bytes
    details: dict
    kept_float: list[str] = field(default_factory=list)


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
    fallback: str = "auto",
    max_fallback_steps: int = DEFAULT_FALLBACK_STEPS,
    calibration_sampling: str = "random",
    frontend_formulation: str | None = None,
    strip_names: bool = True,
    sensitivity: bool = True,
    float_reports: dict | None = None,
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
      held_out_count: val windows for the Keras-vs-TFLite output comparison (and the int8
        sensitivity analysis).
      latency_runs: timed LiteRT invocations (1 thread) for the report (>= 50).
      author, license_name, score_threshold: written into the metadata.
      progress: stage lines and tqdm bars on stderr.
      fallback: int8 only: "auto" keeps the most sensitive layer groups float, one more per
        step, when the val drop exceeds `max_drop`, until it does not; "none" fails instead.
      max_fallback_steps: most layer groups the fallback keeps float.
      calibration_sampling: "random" or "stratified" (every class in turn).
      frontend_formulation: None (the run's), "dft" (windowed-DFT matmul), "rfft" (RFFT2D) or "fft"
        (the FFT as two small matmuls).
      strip_names: empty the names of the tensors no runtime reads (a smaller file).
      sensitivity: int8 only: measure each layer group's error alone (the report's table and
        the fallback's order; without it the fallback cannot run).
      float_reports: a dict that caches the float model's evaluations by split; pass the same
        one to several exports of one run (a benchmark) to evaluate the float model once.

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
    abandoned = remove_abandoned_scratch()
    if abandoned:
        _log(f"removed {len(abandoned)} scratch folder(s) that killed exports left in "
             f"{abandoned[0].parent}", progress)
    if calibration_count < 1:
        raise LeanError(f"--calibration-windows must be at least 1, got {calibration_count}")
    if latency_runs < 50:
        raise LeanError(f"latency needs at least 50 runs for a stable median, got {latency_runs}")
    if fallback not in FALLBACK_MODES:
        raise LeanError(f"--fallback must be one of {', '.join(FALLBACK_MODES)}, got {fallback!r}")
    if fallback == "auto" and not sensitivity:
        raise LeanError("--fallback auto needs the sensitivity analysis; add --fallback none")
    if max_fallback_steps < 1:
        raise LeanError(f"--fallback-steps must be at least 1, got {max_fallback_steps}")
    if frontend_formulation is not None and frontend_formulation not in FRONTEND_FORMULATIONS:
        raise LeanError(f"--frontend-formulation must be one of "
                        f"{', '.join(FRONTEND_FORMULATIONS)}, got {frontend_formulation!r}")
    if calibration_sampling not in CALIBRATION_SAMPLINGS:
        raise LeanError(f"--calibration-sampling must be one of "
                        f"{', '.join(CALIBRATION_SAMPLINGS)}, got {calibration_sampling!r}")
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
    from lean.frontends import with_formulation
    from lean.inference import KerasPredictor
    from lean.models.registry import export_ready_copy

    model_input = config.model.input
    window_samples = model_input.window_samples
    cache = AudioCache(default_cache_dir(), model_input.sample_rate, channels=model_input.channels)

    _log(f"loading {run_dir}", progress)
    run = load_run(run_dir)
    if tuple(dataset.labels) != tuple(run.labels):
        raise LeanError(f"{dataset.root}: its labels differ from {run_dir / LABELS_FILE}")
    export_config = run.config.model
    if frontend_formulation is not None:
        export_config = dataclasses.replace(export_config, params=with_formulation(
            export_config.params, FRONTEND_FORMULATIONS[frontend_formulation]))
    if config.svm is not None:
        from lean.training.svm import export_ready_svm_copy

        export_ready = export_ready_svm_copy(run.model, export_config)
    else:
        export_ready = export_ready_copy(run.model, export_config)
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
        _log(f"reading {calibration_count} calibration windows from the train split "
             f"({calibration_sampling})", progress)
        calibration = calibration_windows(dataset, window_samples, calibration_count, cache,
                                          calibration_sampling)
        # [N, samples * channels]: a multi-channel model's serving input is interleaved.
        calibration = calibration.reshape(len(calibration), -1)
    info = classifier_info(run_dir, config, run.labels, quantization, author, license_name,
                           score_threshold, code_version())
    staged = _staging_path(output)
    staged.parent.mkdir(parents=True, exist_ok=True)
    float_reports = {} if float_reports is None else float_reports
    flat_held_out = held_out.reshape(len(held_out), -1)

    def stage(candidate: _Candidate, path: Path) -> bytes:
        """Writes the candidate with metadata (names stripped) to `path`; returns the bytes."""
        named = candidate.model_bytes
        final = add_metadata(strip_tensor_names(named) if strip_names else named, info)
        path.write_bytes(final)
        return final

    with scratch_directory("work") as workdir:
        _log(f"converting ({quantization.mode}) in a child process", progress)
        started = time.perf_counter()
        int8 = quantization.mode == "int8"
        model_bytes, details = convert_model(
            serving, quantization, calibration, progress=progress,
            probe_windows=flat_held_out if int8 and sensitivity else None,
            workdir=workdir if int8 else None)
        conversion_seconds = time.perf_counter() - started
        chosen = _Candidate(model_bytes, details, list(details.get("float_groups", [])))
        fallback_report = None
        try:
            if int8 and max_drop is not None:
                chosen, fallback_report = _fallback(
                    chosen, fallback, max_fallback_steps, max_drop, workdir, quantization,
                    calibration, stage, staged, float_predictor, dataset, config.eval,
                    float_scores, held_out, float_reports, progress)
            # Verify a staged copy; only a model that passes replaces `output` (atomic rename).
            stage(chosen, staged)
            _log("verifying", progress)
            report = _verify(staged, output, run_dir, config, quantization, chosen, parity,
                             float_scores, held_out, float_predictor, dataset, max_drop,
                             latency_runs, conversion_seconds, progress, float_reports)
            report.update(frontend_formulation=frontend_formulation or "run's",
                          calibration_sampling=calibration_sampling,
                          tensor_names_stripped=strip_names)
            if fallback_report is not None:
                report["fallback"] = fallback_report
                if fallback_report["chosen"] is None and fallback == "auto":
                    report["failures"].append(
                        f"the float fallback kept {len(fallback_report['steps'])} layer groups "
                        "float without reaching it")
                report["passed"] = not report["failures"]
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


def _fallback(initial: "_Candidate", mode: str, max_steps: int, max_drop: float, workdir,
              quantization, calibration, stage, staged: Path, float_predictor, dataset,
              eval_config, float_scores, held_out, float_reports, progress
              ) -> tuple["_Candidate", dict]:
    """Scores the int8 file on val; when its drop exceeds `max_drop` and `mode` is auto, keeps
    the layer groups of `fallback_order` float, one more per step, until a file passes.

    Returns (the candidate to verify: the first passing one, or the one with the least drop
    when none passes; the report's "fallback" section).
    """
    from lean.inference import load_predictor
    from lean_export.sensitivity import fallback_order, search_fallback

    def measure(candidate: _Candidate) -> dict:
        final = stage(candidate, staged)
        quality = _evaluate_quality(float_predictor, staged, dataset, eval_config, progress,
                                    float_reports, splits=("val",))["val"]
        difference = output_difference(float_scores, load_predictor(staged).predict(held_out))
        latency = measure_latency(staged, threads=1, runs=50)
        return {"drop": quality["drop"], "exported": quality["exported"],
                "drop_bootstrap": quality["drop_bootstrap"], "file_size_bytes": len(final),
                "latency_median_ms": latency["median_ms"],
                "mean_abs_diff": difference["mean_abs_diff"],
                "max_abs_diff": difference["max_abs_diff"]}

    _log("scoring the int8 file on val", progress)
    first = measure(initial)
    section = {"mode": mode, "max_steps": max_steps, "max_drop": max_drop, "initial": first,
               "order": [], "steps": [], "chosen": None}
    if first["drop"] <= max_drop or mode == "none":
        section["chosen"] = None if first["drop"] > max_drop else -1
        return initial, section
    ranked = initial.details.get("sensitivity", [])
    already = set(initial.kept_float)
    order = [row["group"] for row in fallback_order(ranked) if row["group"] not in already]
    section["order"] = order[:max_steps]
    groups = initial.details["groups"]
    prefixes = [order[:count] for count in range(1, min(max_steps, len(order)) + 1)]
    _log(f"val drop {first['drop']:.4f} > {max_drop:g}: quantizing {len(prefixes)} fallback "
         "candidates (most sensitive layer groups kept float)", progress)
    variants = dict(zip(map(tuple, prefixes), quantize_variants(
        workdir, [list(initial.kept_float) + p for p in prefixes], groups, quantization,
        calibration))) if prefixes else {}

    def candidate(kept: list[str]) -> _Candidate:
        nodes = [node for name in kept for node in groups[name]]
        details = dict(initial.details, float_nodes=initial.details["float_nodes"] + nodes,
                       float_groups=list(initial.kept_float) + kept)
        return _Candidate(variants[tuple(kept)], details, list(initial.kept_float) + kept)

    def measure_step(kept: list[str]) -> dict:
        _log(f"fallback step {len(kept)}: keeping {kept[-1]} float", progress)
        return measure(candidate(kept))

    steps, chosen = search_fallback(order, max_steps, max_drop, measure_step)
    section["steps"] = [{"kept_float": step.kept_float, "passed": step.passed, **step.measured}
                        for step in steps]
    section["chosen"] = chosen
    if chosen is not None:
        return candidate(steps[chosen].kept_float), section
    if not steps:
        return initial, section
    best = min(range(len(steps)), key=lambda index: steps[index].measured["drop"])
    if steps[best].measured["drop"] < first["drop"]:
        return candidate(steps[best].kept_float), section
    return initial, section


def _verify(staged: Path, output: Path, run_dir: Path, config, quantization, candidate,
            parity, float_scores, held_out, float_predictor, dataset, max_drop, latency_runs,
            conversion_seconds, progress, float_reports) -> dict:
    from lean.host import host_description
    from lean.inference import load_predictor

    details = candidate.details
    model_bytes = staged.read_bytes()
    # Op checks read the names the conversion gave (the written file may have them stripped).
    ops = op_list(candidate.model_bytes)
    # Float by design (frontends, softmax layers, head); the rest of float_nodes are layer groups
    # the fallback or --keep-float chose.
    required_float = set(details.get("required_float_nodes", details["float_nodes"]))
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
        "float_groups": list(candidate.kept_float),
        "activation_ranges": details.get("activation_ranges"),
        "weight_granularity": quantization.weight_granularity,
        "bias_correction": details.get("bias_correction"),
        "file_size_bytes": len(model_bytes),
        "file_size_mb": len(model_bytes) / 1e6,
        "size_breakdown": size_breakdown(model_bytes),
        "multiply_accumulates": multiply_accumulates(model_bytes),
        "op_count": len(ops),
        "ops": op_table(ops),
        "float_ops_after_frontend": float_ops_outside(ops, details["float_nodes"])
        if quantization.mode == "int8" else [],
        "int8_ops_in_float_layers": int8_ops_inside(ops, required_float),
        "int8_ops_in_float_groups": int8_ops_inside(ops, [
            node for node in details["float_nodes"] if node not in required_float]),
        "export_ready_parity": parity,
        "output_difference": output_difference(float_scores, exported_scores),
        # The frontends' and attention layers' own outputs, float vs exported: an int8 underflow
        # inside the model shows (and is flagged) here even where the scores hide it.
        "layer_probes": layer_differences(
            float_predictor.model, candidate.model_bytes, held_out[:PROBE_WINDOWS],
            probe_layer_names(float_predictor.model, candidate.model_bytes)),
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
    if details.get("sensitivity"):
        report["sensitivity"] = details["sensitivity"]
    if report["int8_ops_in_float_layers"]:
        report["failures"].append(
            f"{len(report['int8_ops_in_float_layers'])} ops of the float layers were quantized to int8 "
            f"(first: {report['int8_ops_in_float_layers'][0]})"
        )
    if max_drop is not None:
        report["quality"] = _evaluate_quality(float_predictor, staged, dataset, config.eval,
                                              progress, float_reports)
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
