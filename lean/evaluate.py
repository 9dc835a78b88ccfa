"""Clip-level evaluation: overlapping windows of the model's input, pooled per clip, scored by the
model's task (mAP/mAUC/d' for tagging as in LEAN's paper; accuracy, macro F1 and the confusion
matrix for single-label classification)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from lean.config import EvalConfig
from lean.errors import LeanError
from lean.host import host_description
from lean.inference import DEFAULT_BATCH


@dataclass
class WindowScores:
    """Every window's scores and where it came from."""

    scores: np.ndarray  # float32 [num_windows, C]
    clip_of_window: np.ndarray  # int64 [num_windows], index among the clips that decoded
    window_starts: np.ndarray  # int64 [num_windows], start sample within its clip
    keys: list  # the clips (or files) that decoded, in order
    failures: list  # (key, error) of those that did not

    @property
    def num_windows(self) -> int:
        return int(len(self.scores))


def score_windows(predictor, decoded: Iterable, hop_fraction: float, total: Optional[int] = None,
                  desc: str = "evaluating", progress: bool = True) -> WindowScores:
    """Cuts each decoded clip into overlapping windows and predicts them in large batches.

    Args:
        predictor: a `lean.inference.Predictor`.
        decoded: `(key, audio float32 [samples] or LeanError)` pairs, e.g. from
            `lean.data.pipeline.decode_ahead`.
        hop_fraction: window hop as a fraction of the window (0.5 in the paper).
        total: number of pairs, for the progress bar.

    Returns:
        `WindowScores`; clips that failed to decode are in `.failures`, not scored.
    """
    from tqdm import tqdm

    from lean.data.windows import eval_window_starts, eval_windows

    window_samples = predictor.window_samples
    # Predict whole batches of the predictor's size as soon as they fill, carrying the rest over,
    # so the model sees the same batch shapes as a bare predict() over all windows.
    batch_size = getattr(predictor, "batch_size", DEFAULT_BATCH)  # stand-ins may not have one
    keys, failures = [], []
    pending, pending_count, results = [], 0, []
    clip_ids, starts = [], []

    def flush(final: bool = False):
        nonlocal pending, pending_count
        ready = pending_count if final else pending_count - pending_count % batch_size
        if ready == 0:
            return
        windows = np.concatenate(pending) if len(pending) > 1 else pending[0]
        results.append(predictor.predict(windows[:ready]))
        pending = [windows[ready:]] if ready < len(windows) else []
        pending_count -= ready

    bar = tqdm(total=total, desc=desc, unit="clip", disable=not progress, leave=False)
    for key, audio in decoded:
        bar.update(1)
        if isinstance(audio, LeanError):
            failures.append((key, audio))
            continue
        windows = eval_windows(audio, window_samples, hop_fraction)
        clip_starts = eval_window_starts(max(len(audio), window_samples), window_samples,
                                         hop_fraction)
        clip_ids.append(np.full(len(windows), len(keys), dtype=np.int64))
        starts.append(clip_starts)
        keys.append(key)
        pending.append(windows)
        pending_count += len(windows)
        if pending_count >= batch_size:
            flush()
    flush(final=True)
    bar.close()
    num_classes = predictor.num_classes
    return WindowScores(
        scores=np.concatenate(results) if results else np.zeros((0, num_classes), np.float32),
        clip_of_window=np.concatenate(clip_ids) if clip_ids else np.zeros(0, np.int64),
        window_starts=np.concatenate(starts) if starts else np.zeros(0, np.int64),
        keys=keys,
        failures=failures,
    )


def evaluate(predictor, dataset, split: str, eval_config: EvalConfig = EvalConfig(),
             cache=None, on_bad_audio: str = "skip", plots_dir: Optional[str | Path] = None,
             progress: bool = True, keep_scores: bool = False) -> dict:
    """Evaluates a predictor on one split, the way `lean eval` reports it.

    Every clip is cut into windows of the model's input (overlapping by the config's hop), the
    window scores are pooled per clip (`eval_config.aggregation`) and scored by the model's
    task: mAP, mAUC and d' for multilabel; accuracy, macro recall / precision / F1 and the
    confusion matrix for single_label, per clip and per window ("segments").

    Args:
        predictor: from `lean.inference.load_predictor` (Keras or LiteRT).
        dataset: a `lean.data.dataset.Dataset` with the predictor's labels.
        split: "eval", "val" or "train".
        eval_config: window hop and score aggregation.
        cache: a `lean.data.audio.AudioCache` (default: the user cache folder).
        on_bad_audio: "skip" (counted and listed in the result) or "fail".
        plots_dir: when set, the task's plots are written there as PNG (multilabel: PR curves
            and per-class AP; single_label: the confusion matrix).
        progress: tqdm bar on stderr.
        keep_scores: also return the clip scores and targets (numpy arrays, not JSON), to compare
            two models clip by clip.

    Returns:
        dict with `task`, the task's metrics, num_clips, num_windows, model, per_class, host,
        timing and the skipped files (with keep_scores: clip_keys, clip_scores [N, C],
        clip_targets [N, C], window_scores, clip_of_window).
    """
    from lean.data.audio import AudioCache
    from lean.data.pipeline import decode_ahead, default_cache_dir
    from lean.data.windows import aggregate_clip_scores

    if on_bad_audio not in ("skip", "fail"):
        raise LeanError(f"on_bad_audio must be skip or fail, not '{on_bad_audio}'")
    task = predictor.task
    if task is None:
        raise LeanError(f"{predictor.path}: its files do not say whether it is multilabel or "
                        "single_label; pass --task")
    _check_vocabulary(predictor, dataset)
    cache = cache or AudioCache(default_cache_dir(), predictor.sample_rate,
                                channels=predictor.channels)
    clips = dataset.clips(split)
    if not clips:
        raise LeanError(f"{dataset.root}: the {split} split has no clips")

    started = time.perf_counter()
    decoded = decode_ahead(clips, lambda clip: cache.load(clip.path))
    result = score_windows(predictor, decoded, eval_config.window_hop_fraction, total=len(clips),
                           desc=f"evaluating {split}", progress=progress)
    if result.failures and on_bad_audio == "fail":
        raise result.failures[0][1]
    if not result.keys:
        raise LeanError(f"{dataset.root}: every {split} clip failed to decode")
    clip_scores = aggregate_clip_scores(result.scores, result.clip_of_window,
                                        eval_config.aggregation, num_clips=len(result.keys))
    seconds = time.perf_counter() - started
    y_true = dataset.label_matrix(result.keys)
    metrics = task_metrics(task, y_true, clip_scores, dataset.labels)
    if task == "single_label":
        segments = task_metrics(task, y_true[result.clip_of_window], result.scores, dataset.labels)
        metrics["segments"] = {key: segments[key] for key in
                               ("accuracy", "macro_recall", "macro_precision", "macro_f1")}
    report = {
        "task": task,
        "model": str(predictor.path),
        "model_kind": predictor.kind,
        "data": str(dataset.root),
        "split": split,
        **dataset.describe_split(),
        "aggregation": eval_config.aggregation,
        "window_hop_fraction": eval_config.window_hop_fraction,
        "window_samples": predictor.window_samples,
        "sample_rate": predictor.sample_rate,
        "channels": predictor.channels,
        "num_clips": len(result.keys),
        "num_windows": result.num_windows,
        "num_skipped": len(result.failures),
        "skipped_files": [str(error) for _, error in result.failures],  # each names its file
        **metrics,
        "seconds": round(seconds, 3),
        "windows_per_second": round(result.num_windows / seconds, 1) if seconds > 0 else None,
        "host": host_description(predictor),
    }
    if keep_scores:
        report.update(clip_keys=list(result.keys), clip_scores=clip_scores, clip_targets=y_true,
                      window_scores=result.scores, clip_of_window=result.clip_of_window)
    if plots_dir is not None:
        from lean.plots import write_evaluation_plots

        report["plots"] = [str(path) for path in
                           write_evaluation_plots(task, y_true, clip_scores, metrics,
                                                  plots_dir, title=Path(predictor.path).name)]
    return report


def dataset_for(predictor, data_dir: str | Path, layout: Optional[str] = None,
                fold: Optional[int] = None, val_fold: Optional[int] = None):
    """The dataset at `data_dir` split as the predictor's run was (its layout and held-out folds,
    from its run config or the .tflite's packed one), unless layout or fold say otherwise."""
    from lean.data import load_dataset

    trained_on = getattr(predictor, "data_config", None)
    if trained_on is not None and fold is None and layout in (None, trained_on.layout):
        layout, fold = trained_on.layout, trained_on.fold
        val_fold = val_fold or trained_on.val_fold
    return load_dataset(data_dir, layout=layout, fold=fold, val_fold=val_fold)


def task_metrics(task: str, y_true: np.ndarray, scores: np.ndarray, labels) -> dict:
    """`multilabel_metrics` or `single_label_metrics` (renamed to the report's keys)."""
    from lean.metrics import multilabel_metrics, single_label_metrics

    if task == "multilabel":
        return multilabel_metrics(y_true, scores, labels)
    metrics = single_label_metrics(y_true, scores, labels)
    metrics["num_clips_scored"] = metrics.pop("num_examples")
    return metrics


def _check_vocabulary(predictor, dataset) -> None:
    model_labels, data_labels = tuple(predictor.labels), tuple(dataset.labels)
    if model_labels == data_labels:
        return
    if len(model_labels) != len(data_labels):
        raise LeanError(
            f"{predictor.path}: model has {len(model_labels)} classes, dataset {dataset.root} has "
            f"{len(data_labels)}"
        )
    row = next(i for i, (a, b) in enumerate(zip(model_labels, data_labels)) if a != b)
    raise LeanError(
        f"{predictor.path}: class {row} is '{model_labels[row]}' in the model but "
        f"'{data_labels[row]}' in {dataset.root}'s vocabulary"
    )


# Relative AP improvements counted in the paper's Table II style comparison.
IMPROVEMENT_THRESHOLDS = (0.05, 0.10, 0.20)


def compare_evaluations(baseline: dict, candidate: dict, top: int = 10) -> dict:
    """Per-class AP of `candidate` (B) against `baseline` (A), as in the paper's Table II.

    Relative improvement of a class = (AP_B - AP_A) / AP_A. Only classes scored (AP not None) in
    both evaluations are compared. A class with AP_A = 0 and AP_B > 0 improved by an unbounded
    amount: its `relative` is None and it counts toward every threshold.

    Args:
        baseline: a `lean eval` JSON (A).
        candidate: a `lean eval` JSON (B).
        top: how many largest gains and losses to list.

    Returns:
        dict with `classes_compared`, `improved` (count with AP_B > AP_A), `improved_by_at_least`
        ({"5%": n, "10%": n, "20%": n}), `worsened`, `mAP_a`, `mAP_b`, `largest_gains`,
        `largest_losses` (label, ap_a, ap_b, difference, relative) and the unmatched labels.
    """
    ap_a, ap_b = _scored_aps(baseline, "A"), _scored_aps(candidate, "B")
    shared = [label for label in ap_a if label in ap_b]
    if not shared:
        raise LeanError("the two evaluations have no scored class in common")
    rows = []
    for label in shared:
        a, b = ap_a[label], ap_b[label]
        relative = (b - a) / a if a > 0 else None
        rows.append({"label": label, "ap_a": a, "ap_b": b, "difference": b - a,
                     "relative": relative})
    by_difference = sorted(rows, key=lambda row: row["difference"])
    return {
        "a": {"model": baseline.get("model"), "split": baseline.get("split"),
              "mAP": baseline.get("mAP")},
        "b": {"model": candidate.get("model"), "split": candidate.get("split"),
              "mAP": candidate.get("mAP")},
        "classes_compared": len(rows),
        "improved": sum(row["difference"] > 0 for row in rows),
        "improved_by_at_least": {
            f"{round(threshold * 100)}%": sum(_improved_by(row, threshold) for row in rows)
            for threshold in IMPROVEMENT_THRESHOLDS
        },
        "worsened": sum(row["difference"] < 0 for row in rows),
        "mAP_a_shared": float(np.mean([row["ap_a"] for row in rows])),
        "mAP_b_shared": float(np.mean([row["ap_b"] for row in rows])),
        "largest_gains": [row for row in by_difference[::-1][:top] if row["difference"] > 0],
        "largest_losses": [row for row in by_difference[:top] if row["difference"] < 0],
        "only_in_a": sorted(set(ap_a) - set(ap_b)),
        "only_in_b": sorted(set(ap_b) - set(ap_a)),
    }


def _improved_by(row: dict, threshold: float) -> bool:
    if row["relative"] is None:
        return row["difference"] > 0
    return row["relative"] >= threshold


def _scored_aps(report: dict, name: str) -> dict:
    per_class = report.get("per_class") if isinstance(report, dict) else None
    if not isinstance(per_class, list):
        raise LeanError(f"evaluation {name} has no per_class list: not a `lean eval` JSON")
    aps = {}
    for row, entry in enumerate(per_class):
        if not isinstance(entry, dict) or "label" not in entry or "ap" not in entry:
            raise LeanError(f"evaluation {name}: per_class entry {row} lacks label or ap")
        if entry["ap"] is not None:
            aps[entry["label"]] = float(entry["ap"])
    return aps
