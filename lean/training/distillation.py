"""Knowledge distillation's teacher side: the teacher's logits of every training window,
computed once and cached in the student's run directory (not recomputed every epoch, nor
after a resume).

The cache is valid for one teacher file and one list of training windows; either changing
makes it stale, and it is computed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lean.errors import LeanError
from lean.io import atomic_path, atomic_write_text
from lean.run import TEACHER_LOGITS_FILE, TEACHER_LOGITS_INFO_FILE
from lean.tasks import SINGLE_LABEL, task as task_named

# Clipping when a teacher has no `logits` layer (e.g. an SVM run) and its logits come from its
# probabilities: as in lean.training.losses.
_SOFTMAX_FLOOR = 1e-30
_SIGMOID_EPSILON = 1e-7


def logits_model(model):
    """`model` up to its `logits` layer when its output is that layer's activation (every
    family member's head), else None."""
    import keras

    try:
        layer = model.get_layer("logits")
    except ValueError:
        return None
    output_layer = model.layers[-1]
    if not isinstance(output_layer, keras.layers.Activation) or output_layer.input is not \
            layer.output:
        return None
    return keras.Model(model.input, layer.output, name=f"{model.name}_logits")


def logits_from_probabilities(probabilities: np.ndarray, task: str) -> np.ndarray:
    """Logits that reproduce `probabilities` (softmax: log p, equal up to a shift per row)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if task_named(task).name == SINGLE_LABEL:
        return np.log(np.maximum(p, _SOFTMAX_FLOOR)).astype(np.float32)
    p = np.clip(p, _SIGMOID_EPSILON, 1.0 - _SIGMOID_EPSILON)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def teacher_logits(model, task: str, batches: Iterable[np.ndarray], total: int,
                   progress: bool = True) -> np.ndarray:
    """The teacher's logits [N, K] of the windows in `batches` (float32 [b, samples] each)."""
    from tqdm import tqdm

    head = logits_model(model)
    rows = []
    with tqdm(total=total, desc="teacher outputs", unit="window", disable=not progress,
              leave=False) as bar:
        for windows in batches:
            if head is not None:
                rows.append(np.asarray(head(windows, training=False), dtype=np.float32))
            else:
                rows.append(logits_from_probabilities(model(windows, training=False), task))
            bar.update(len(windows))
    return np.concatenate(rows) if rows else np.zeros((0, model.outputs[0].shape[-1]),
                                                      np.float32)


def _teacher_identity(teacher_dir: Path) -> dict:
    from lean.run import BEST_MODEL

    best = Path(teacher_dir) / BEST_MODEL
    stat = best.stat()
    return {"teacher": str(Path(teacher_dir).absolute()), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}


def windows_key(parts: Iterable[str]) -> str:
    """A short hash naming the training windows (e.g. each window's clip and position)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def cached_teacher_logits(run_dir: str | Path, teacher_dir: str | Path, windows: str,
                          num_windows: int, compute: Callable[[], np.ndarray],
                          writes: bool = True) -> np.ndarray:
    """The teacher's logits of the run's training windows, from RUN_DIR's cache when it was
    made by this teacher file for these windows, else computed once by `compute()` and saved.

    Args:
        run_dir: the student's run directory.
        teacher_dir: the teacher's run directory (its best.keras names the cache).
        windows: `windows_key(...)` of the training windows, in window-index order.
        num_windows: their count; `compute()` must return [num_windows, K].
        writes: save what `compute()` returns (False: a multi-worker run's other workers, which
            write nothing to the run directory).
    """
    run_dir = Path(run_dir)
    info = {**_teacher_identity(Path(teacher_dir)), "windows": windows,
            "num_windows": int(num_windows)}
    cache, info_path = run_dir / TEACHER_LOGITS_FILE, run_dir / TEACHER_LOGITS_INFO_FILE
    if cache.is_file() and info_path.is_file():
        try:
            saved = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            saved = None
        if saved == info:
            logits = np.load(cache)
            if logits.shape[0] == num_windows:
                return logits
    logits = np.asarray(compute(), dtype=np.float32)
    if logits.ndim != 2 or logits.shape[0] != num_windows:
        raise LeanError(f"teacher {teacher_dir}: {logits.shape} outputs for {num_windows} "
                        "training windows")
    if not writes:
        return logits
    # The info that vouches for the data goes first and comes back last: after a kill in
    # between there is no info, and the logits are computed again.
    info_path.unlink(missing_ok=True)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, logits)
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
    return logits


def teacher_soft_targets(config, dataset, cache, index, run_dir: str | Path,
                         progress: bool = True, writes: bool = True) -> np.ndarray:
    """The teacher's tempered probabilities [num_windows, K] of a run's training windows (in
    window-index order, un-augmented), from its cached logits.

    Args:
        config: the student's RunConfig (train.teacher, train.kd_temperature, model.task).
        dataset, cache, index: the training split's dataset, audio cache and window index.
        run_dir: the student's run directory, which holds the cache (`writes`: saved there).
    """
    from lean.data.pipeline import iter_window_batches
    from lean.run import load_run
    from lean.training.losses import tempered_probabilities

    train, model_config = config.train, config.model
    window_samples = model_config.window_samples
    key = windows_key([f"{model_config.input}"] + [
        f"{index.clips[clip].path}:{position}"
        for clip, position in zip(index.clip_of_window, index.window_in_clip)])

    def compute() -> np.ndarray:
        teacher = load_run(train.teacher)
        batches = iter_window_batches(index, cache, window_samples)
        if teacher.config.svm is not None and teacher.config.svm.kernel != "linear":
            # An RBF SVM head scores on the host only: logits from its probabilities.
            from lean.inference import load_predictor

            predictor = load_predictor(train.teacher)
            scores = np.concatenate([predictor.predict(windows) for windows in batches])
            return logits_from_probabilities(scores, model_config.task)
        return teacher_logits(teacher.model, model_config.task, batches, index.num_windows,
                              progress)

    logits = cached_teacher_logits(run_dir, train.teacher, key, index.num_windows, compute,
                                   writes)
    return np.asarray(tempered_probabilities(logits, train.kd_temperature, model_config.task),
                      dtype=np.float32)


__all__ = [
    "cached_teacher_logits",
    "logits_from_probabilities",
    "logits_model",
    "teacher_logits",
    "teacher_soft_targets",
    "windows_key",
]
