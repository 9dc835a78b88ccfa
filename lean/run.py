"""The run directory: its file names, loading a finished run, and crash-safe model saves.

One owner of the format, used by training (writes it), inference, evaluation and export
(read it). A run directory holds everything needed to rebuild, evaluate and export its model:

    config.json          RunConfig (model, train, eval settings; the family's params)
    labels.txt           one label per line, in output order
    best.keras           the best checkpoint by the task's validation score
    checkpoints/         resume state: epoch-NNNN.keras + state.json (written last)
    history.csv          one row per epoch; tensorboard/ the same as event files
    data_summary.json    clips and windows per split; skipped_files.txt the unreadable files
    teacher_logits.npy   with --teacher: the teacher's logits per training window (+ .json)
    parts/NAME/          copies (config.json, labels.txt, best.keras) of the trained runs the
                         model is built from, e.g. scene_cnn's tagger, as they were when the
                         run started; the model itself holds their weights

A run written by `lean svm` (config.json's `svm` set) also holds svm.joblib, the scikit-learn
SVM, and svm.json, its report; its best.keras is the network with the linear SVM folded into
its head, or (RBF, host only) the source network itself, whose penultimate features the SVM
reads.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from lean.config import RunConfig, load_json
from lean.errors import LeanError
from lean.io import atomic_path, atomic_write_bytes, atomic_write_text

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
BEST_MODEL = "best.keras"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"
TENSORBOARD_DIR = "tensorboard"
DATA_SUMMARY_FILE = "data_summary.json"
SKIPPED_FILES = "skipped_files.txt"
TEACHER_LOGITS_FILE = "teacher_logits.npy"
TEACHER_LOGITS_INFO_FILE = "teacher_logits.json"
SVM_FILE = "svm.joblib"
SVM_REPORT_FILE = "svm.json"
PARTS_DIR = "parts"
# What a finished run must have; the rest is written along the way.
RUN_FILES = (CONFIG_FILE, LABELS_FILE, BEST_MODEL)


@dataclass(frozen=True)
class Run:
    """A trained run directory: its config, labels and best model."""

    path: Path
    config: RunConfig
    labels: tuple[str, ...]
    model: object  # keras.Model


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The RunConfig of a run directory, checked for the files a finished run has."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LeanError(f"{run_dir}: no such run directory")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise LeanError(f"{run_dir}: not a finished run directory (no {', '.join(missing)})")
    try:
        return load_json(RunConfig, run_dir / CONFIG_FILE)
    except (ValueError, TypeError) as error:
        raise LeanError(f"{run_dir / CONFIG_FILE}: not a valid run config ({error})") from None


def load_run(run_dir: str | Path) -> Run:
    """Loads a run directory's best model with nothing but the directory itself.

    Args:
        run_dir: a directory written by `lean train` (config.json, labels.txt, best.keras).

    Returns:
        `Run(path, config, labels, model)`.
    """
    from lean.models.registry import load_model

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    labels = tuple(read_labels_file(run_dir / LABELS_FILE))
    return Run(path=run_dir, config=config, labels=labels, model=load_model(run_dir / BEST_MODEL))


def read_labels_file(path: str | Path) -> list[str]:
    """One label per line; blank lines are not labels."""
    return label_lines(Path(path).read_text(encoding="utf-8"))


def label_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def labels_text(labels) -> str:
    """The labels.txt contents for `labels`."""
    return "".join(f"{label}\n" for label in labels)


def write_labels_file(path: str | Path, labels) -> None:
    atomic_write_text(path, labels_text(labels))


# Names a point at which the process kills itself (see `crash_point`); set by tests only.
CRASH_POINT_VARIABLE = "LEAN_TEST_FAIL_AT"


def crash_point(point: str) -> None:
    """Kills this process as `kill -9` would when $LEAN_TEST_FAIL_AT names `point`, so a test
    can interrupt a run at an exact moment instead of after a guessed delay. Points:
    `batch:E:B` (after batch B of epoch E, both counted from 1), `staged:FILE.keras` (inside the
    atomic save of FILE, before its rename), `state-written:N` (after epoch N's state.json,
    before the previous checkpoint is deleted)."""
    if os.environ.get(CRASH_POINT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def save_keras_atomic(model, path: Path) -> None:
    """Writes a .keras file so that `path` holds the old or the new model, never a partial one."""
    with atomic_path(path) as tmp:
        # Keras insists on a ".keras" name; save beside the temp file, then move it in place.
        staging = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staging)
            crash_point(f"staged:{path.name}")
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)


def copy_parts(run_dir: str | Path, model_config) -> list[Path]:
    """Copies the runs `model_config`'s model is built from (its registry entry's `parts`) into
    RUN_DIR/parts/NAME, each file atomically; a part already there is kept (a resumed run
    keeps the copy it started from).

    Returns:
        The part directories, in the entry's order.
    """
    from lean.models.registry import entry

    parts = entry(model_config.name).parts
    copied = []
    for name, source in (parts(model_config) if parts else {}).items():
        target = Path(run_dir) / PARTS_DIR / name
        if not all((target / file).is_file() for file in RUN_FILES):
            read_run_config(source)  # a finished run, or a one-line error naming it
            target.mkdir(parents=True, exist_ok=True)
            for file in RUN_FILES:
                atomic_write_bytes(target / file, (Path(source) / file).read_bytes())
        copied.append(target)
    return copied


def is_temporary(path: Path) -> bool:
    """The hidden files of `lean.io.atomic_path` (and of `save_keras_atomic`'s staging)."""
    return path.name.startswith(".") and path.name.endswith((".tmp", ".tmp.keras"))


__all__ = [
    "BEST_MODEL",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CRASH_POINT_VARIABLE",
    "DATA_SUMMARY_FILE",
    "HISTORY_FILE",
    "LABELS_FILE",
    "PARTS_DIR",
    "RUN_FILES",
    "Run",
    "SKIPPED_FILES",
    "STATE_FILE",
    "SVM_FILE",
    "SVM_REPORT_FILE",
    "TENSORBOARD_DIR",
    "TEACHER_LOGITS_FILE",
    "TEACHER_LOGITS_INFO_FILE",
    "copy_parts",
    "crash_point",
    "is_temporary",
    "label_lines",
    "labels_text",
    "load_run",
    "read_labels_file",
    "read_run_config",
    "save_keras_atomic",
    "write_labels_file",
]
