"""Training of a family member on FSD50K-layout data: crash-safe, resumable, best by val PR-AUC."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import keras

from lean.config import RunConfig, load_json, save_json, to_dict
from lean.errors import LeanError
from lean.io import atomic_path, atomic_write_text

BEST_MODEL = "best.keras"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
MONITOR = "val_pr_auc"
# Settings that may differ between a run and its resumption without changing what is trained.
RESUMABLE_DIFFERENCES = ("lean_version",)
# Names a point at which the process kills itself (see `_crash_point`); set by tests only.
CRASH_POINT_VARIABLE = "LEAN_TEST_FAIL_AT"


@dataclass(frozen=True)
class Run:
    """A trained run directory: its config, labels and best model."""

    path: Path
    config: RunConfig
    labels: tuple[str, ...]
    model: object  # keras.Model


def load_run(run_dir: str | Path) -> Run:
    """Loads a run directory's best model with nothing but the directory itself.

    Args:
        run_dir: a directory written by `lean train` (config.json, labels.txt, best.keras).

    Returns:
        `Run(path, config, labels, model)`.
    """
    run_dir = Path(run_dir)
    for name in ("config.json", "labels.txt", BEST_MODEL):
        if not (run_dir / name).is_file():
            raise LeanError(f"{run_dir}: not a finished run directory (no {name})")
    from lean.inference import read_labels_file
    from lean.models.registry import load_model

    config = load_json(RunConfig, run_dir / "config.json")
    labels = tuple(read_labels_file(run_dir / "labels.txt"))
    return Run(path=run_dir, config=config, labels=labels, model=load_model(run_dir / BEST_MODEL))


def save_keras_atomic(model, path: Path) -> None:
    """Writes a .keras file so that `path` holds the old or the new model, never a partial one."""
    with atomic_path(path) as tmp:
        # Keras insists on a ".keras" name; save beside the temp file, then move it in place.
        staging = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staging)
            _crash_point(f"staged:{path.name}")
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)


def load_checkpoint(path: Path):
    """A resume checkpoint with its compiled loss, metrics and optimizer state (Adam moments)."""
    import lean.models  # noqa: F401  (registers the family's custom layers)

    try:
        return keras.saving.load_model(path, compile=True)
    except Exception as error:  # Keras raises many types for a damaged file
        raise LeanError(f"{path}: cannot load the resume checkpoint ({error})") from None


def read_state(run_dir: Path) -> Optional[dict]:
    path = run_dir / CHECKPOINT_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        # Written atomically, so this is not our crash: someone edited it.
        raise LeanError(f"{path}: not valid JSON; remove {run_dir} to start over") from None


def write_history_csv(path: Path, history: list[dict]) -> None:
    if not history:
        return
    columns = list(history[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def _is_temporary(path: Path) -> bool:
    """The hidden files of `lean.io.atomic_path` (and of `save_keras_atomic`'s staging)."""
    return path.name.startswith(".") and path.name.endswith((".tmp", ".tmp.keras"))


def _is_checkpoint(path: Path) -> bool:
    """A resume checkpoint written by `EpochCheckpoint` (epoch-NNNN.keras)."""
    return path.name.startswith("epoch-") and path.suffix == ".keras"


def _remove_leftovers(run_dir: Path, state: Optional[dict]) -> None:
    """Removes what a kill -9 leaves and nothing ever reads, and says so in one line: the hidden
    temporaries of atomic writes, and resume checkpoints that state.json does not name (a kill
    between writing state.json and deleting the previous checkpoint keeps both; each is a whole
    model with its optimizer state, 18 MB for LEAN)."""
    named = state.get("checkpoint") if state else None
    removed = []
    for folder, holds_checkpoints in ((run_dir, False), (run_dir / CHECKPOINT_DIR, True)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            stale = holds_checkpoints and _is_checkpoint(path) and path.name != named
            if stale or _is_temporary(path):
                path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(run_dir)))
    if removed:
        _log(f"removed {len(removed)} file(s) an interrupted run left in {run_dir}: "
             f"{', '.join(removed)}")


def _crash_point(point: str) -> None:
    """Kills this process as `kill -9` would when $LEAN_TEST_FAIL_AT names `point`, so a test
    can interrupt a run at an exact moment instead of after a guessed delay. Points:
    `staged:FILE.keras` (inside the atomic save of FILE, before its rename) and `state-written:N`
    (after epoch N's state.json, before the previous checkpoint is deleted)."""
    if os.environ.get(CRASH_POINT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _config_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    def flatten(values, prefix=""):
        for key, value in values.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    old, new = dict(flatten(to_dict(saved))), dict(flatten(to_dict(wanted)))
    return [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RESUMABLE_DIFFERENCES and old.get(key) != new.get(key)
    ]


def _log(message: str) -> None:
    print(f"lean train: {message}", file=sys.stderr, flush=True)


def _set_up_devices(train_config):
    """Chooses the distribution strategy and precision policy; returns (strategy, description)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if train_config.multi_gpu and len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        where = f"{len(gpus)} GPUs with MirroredStrategy"
    else:
        strategy = tf.distribute.get_strategy()
        where = "GPU 0" if gpus else "CPU (no GPU found)"
        if len(gpus) > 1:
            where += f" of {len(gpus)} (--no-multi-gpu)"
    if gpus and train_config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
        where += ", mixed_float16"
    else:
        keras.mixed_precision.set_global_policy("float32")
        where += ", float32"
    return strategy, where


def _compile(model, train_config, num_classes: int) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=train_config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes,
                                   name="pr_auc")],
    )


def train(config: RunConfig, data_dir: str | Path, run_dir: str | Path,
          cache_dir: Optional[str | Path] = None, max_windows_per_epoch: Optional[int] = None,
          progress: bool = True) -> dict:
    """Trains (or resumes, or reports complete) one run.

    Args:
        config: the run's settings; `model.num_classes` is set from the dataset's vocabulary.
        data_dir: an FSD50K-layout dataset with train and val splits.
        run_dir: where the run lives; rerunning with the same settings resumes it.
        cache_dir: decoded-audio cache (default: `lean.data.pipeline.default_cache_dir()`).
        max_windows_per_epoch: train on this many shuffled windows per epoch (None: all).
        progress: tqdm bars on stderr.

    Returns:
        The final training state (epochs done, best score and epoch, history).
    """
    from lean import __version__
    from lean.data.audio import AudioCache
    from lean.data.fsd50k import load_dataset
    from lean.data.pipeline import default_cache_dir

    run_dir = Path(run_dir)
    data_dir = Path(data_dir).absolute()
    dataset = load_dataset(data_dir)
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, num_classes=dataset.num_classes),
        data_dir=str(data_dir),
        lean_version=__version__,
    )
    options = {"max_windows_per_epoch": max_windows_per_epoch}
    labels_text = "".join(f"{label}\n" for label in dataset.labels)
    state = _check_existing_run(run_dir, config, labels_text, options)
    _remove_leftovers(run_dir, state)
    if state and state.get("completed"):
        _log(f"{run_dir} is complete: {state['epoch']} epochs, best {MONITOR} "
             f"{state['best_score']:.4f} at epoch {state['best_epoch']}")
        return state

    note = _random_trunk_note(config)
    if note:
        _log(note)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_json(config, run_dir / "config.json")
    atomic_write_text(run_dir / "labels.txt", labels_text)

    cache = AudioCache(cache_dir or default_cache_dir(), config.model.frontend.sample_rate)
    indexes = _index_splits(dataset, cache, config, run_dir, progress)
    return _fit(config, dataset, cache, indexes, run_dir, state, options, progress)


def _random_trunk_note(config: RunConfig) -> Optional[str]:
    """The settings that learn without the official YAMNet weights, when these are not them."""
    if config.model.yamnet_weights:
        return None
    # Measured on a 40-class real-audio set, 6 epochs, trunk trained from random init: eval mAP
    # 0.159 at lr 1e-4 / batch 64 (the paper's) against 0.240 at lr 1e-3 / batch 32.
    advice = ("without the official weights train with --finetune-yamnet --lr 1e-3 "
              "--batch-size 32 (as scripts/quickstart.sh does)")
    if not config.model.finetune_yamnet:
        return (f"note: no --yamnet-weights, so the frozen YAMNet trunk stays random and only the "
                f"head trains, which learns almost nothing; {advice}")
    if config.train.learning_rate < 1e-3:
        return (f"note: no --yamnet-weights, so the YAMNet trunk trains from random init, which "
                f"learns slowly at --lr {config.train.learning_rate:g}; {advice}")
    return None


def _check_existing_run(run_dir: Path, config: RunConfig, labels_text: str,
                        options: dict) -> Optional[dict]:
    if run_dir.exists() and not run_dir.is_dir():
        raise LeanError(f"{run_dir}: is a file, not a run directory; choose another --out")
    if not (run_dir / "config.json").is_file():
        # A kill inside the very first atomic write leaves only its hidden temporary file.
        if run_dir.is_dir() and any(not _is_temporary(path) for path in run_dir.iterdir()):
            raise LeanError(f"{run_dir}: exists and is not a run directory; choose another --out")
        return None
    try:
        saved = load_json(RunConfig, run_dir / "config.json")
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise LeanError(f"{run_dir / 'config.json'}: unreadable run config ({error})") from None
    differences = _config_differences(saved, config)
    if differences:
        raise LeanError(
            f"{run_dir} holds a run with other settings ({'; '.join(differences)}); "
            "rerun with the same settings to resume it, or choose another --out"
        )
    labels_path = run_dir / "labels.txt"
    if labels_path.is_file() and labels_path.read_text(encoding="utf-8") != labels_text:
        raise LeanError(f"{labels_path}: the dataset's vocabulary changed since this run started")
    state = read_state(run_dir)
    if state and state.get("options", options) != options:
        raise LeanError(
            f"{run_dir} was trained with {state['options']}, not {options}; use the same flags"
        )
    return state


def _index_splits(dataset, cache, config: RunConfig, run_dir: Path, progress: bool) -> dict:
    """Decodes train and val once, writes data_summary.json and skipped_files.txt."""
    from lean.data.pipeline import build_window_index

    indexes = {}
    for split in ("train", "val"):
        clips = dataset.clips(split)
        if not clips:
            raise LeanError(f"{dataset.root}: the {split} split has no clips")
        indexes[split] = build_window_index(
            clips, cache, config.model.window_samples, config.train.on_bad_audio,
            desc=f"reading {split} audio", progress=progress,
        )
        if indexes[split].num_windows == 0:
            raise LeanError(f"{dataset.root}: every {split} clip was skipped as bad audio")
    skipped = [entry for split in indexes.values() for entry in split.skipped]
    summary = {
        "data_dir": str(dataset.root),
        "classes": dataset.num_classes,
        "skipped": len(skipped),
        "splits": {
            split: {
                "clips": len(dataset.clips(split)),
                "clips_used": len(index.clips),
                "windows": index.num_windows,
                "skipped": len(index.skipped),
            }
            for split, index in indexes.items()
        },
    }
    atomic_write_text(run_dir / "data_summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(
        run_dir / "skipped_files.txt", "".join(f"{reason}\n" for _, reason in skipped)
    )
    if skipped:
        _log(f"skipped {len(skipped)} bad audio files, listed in {run_dir / 'skipped_files.txt'}")
    for split, index in indexes.items():
        _log(f"{split}: {len(index.clips)} clips, {index.num_windows} windows")
    return indexes


def _fit(config: RunConfig, dataset, cache, indexes: dict, run_dir: Path, state: Optional[dict],
         options: dict, progress: bool) -> dict:
    from lean.data.pipeline import build_window_dataset, steps_per_epoch
    from lean.models.registry import build_model

    train_config = config.train
    strategy, where = _set_up_devices(train_config)
    _log(f"training {config.model.name} on {where}")
    keras.utils.set_random_seed(train_config.seed)

    first_epoch = state["epoch"] if state else 0
    with strategy.scope():
        if state:
            model = load_checkpoint(run_dir / CHECKPOINT_DIR / state["checkpoint"])
            _log(f"resuming {run_dir} after epoch {first_epoch} of {train_config.epochs}")
        else:
            model = build_model(config.model)
            # The contract keeps the frontend and the output float32 under mixed precision.
            if model.outputs[0].dtype != "float32":
                raise LeanError(f"model {config.model.name} outputs {model.outputs[0].dtype}, "
                                "not float32: its head breaks the family contract")
            _compile(model, train_config, dataset.num_classes)
            state = {"epoch": 0, "checkpoint": None, "best_score": None, "best_epoch": None,
                     "history": [], "completed": False, "options": options}
    write_history_csv(run_dir / "history.csv", state["history"])

    global_batch = train_config.batch_size
    window_samples = config.model.window_samples
    train_data = build_window_dataset(
        indexes["train"], dataset, cache, window_samples, global_batch,
        shuffle_seed=train_config.seed, epochs=(first_epoch, train_config.epochs),
        max_windows_per_epoch=options["max_windows_per_epoch"],
    )
    val_data = build_window_dataset(indexes["val"], dataset, cache, window_samples, global_batch)
    steps = steps_per_epoch(indexes["train"].num_windows, global_batch,
                            options["max_windows_per_epoch"])
    callbacks = [EpochCheckpoint(run_dir, state, train_config.epochs),
                 *_tensorboard_callbacks(run_dir),
                 TqdmProgress(steps, train_config.epochs, state, enabled=progress)]
    model.fit(train_data, epochs=train_config.epochs, initial_epoch=first_epoch,
              steps_per_epoch=steps, validation_data=val_data, callbacks=callbacks, shuffle=False,
              verbose=0)
    _log(f"done: best {MONITOR} {state['best_score']:.4f} at epoch {state['best_epoch']}; "
         f"model {run_dir / BEST_MODEL}")
    return state


def _tensorboard_callbacks(run_dir: Path) -> list:
    """TensorBoard event files in RUN_DIR/tensorboard, when the tensorboard package is there."""
    try:
        import tensorboard  # noqa: F401  (tf.summary needs it to write anything)
    except ImportError:
        _log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"),
                                        update_freq="epoch", write_graph=False)]


class EpochCheckpoint(keras.callbacks.Callback):
    """At each epoch end, atomically saves best.keras, the resume checkpoint (model + optimizer),
    history.csv, then the state JSON that points at them.

    The state file is written last and names the checkpoint it belongs to, so a kill at any
    moment leaves the previous consistent state (and an unreferenced file at worst, which the
    next start removes).
    """

    def __init__(self, run_dir: Path, state: dict, epochs: int):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.epochs = epochs
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if MONITOR not in logs:
            raise LeanError(f"no {MONITOR} after epoch {epoch + 1}: is the val split empty?")
        done = epoch + 1
        score = float(logs[MONITOR])
        state = self.state
        if state["best_score"] is None or score > state["best_score"]:
            save_keras_atomic(self.model, self.run_dir / BEST_MODEL)
            state["best_score"], state["best_epoch"] = score, done
        checkpoint = f"epoch-{done:04d}.keras"
        save_keras_atomic(self.model, self.run_dir / CHECKPOINT_DIR / checkpoint)
        row = {"epoch": done, **{key: float(value) for key, value in sorted(logs.items())},
               "seconds": round(time.monotonic() - self.started, 2)}
        state["history"].append(row)
        write_history_csv(self.run_dir / "history.csv", state["history"])
        previous = state["checkpoint"]
        state.update(epoch=done, checkpoint=checkpoint, completed=done >= self.epochs)
        atomic_write_text(self.run_dir / CHECKPOINT_DIR / STATE_FILE,
                          json.dumps(state, indent=2) + "\n")
        # A kill here keeps `previous` on disk: the next start removes it (`_remove_leftovers`).
        _crash_point(f"state-written:{done}")
        if previous and previous != checkpoint:
            (self.run_dir / CHECKPOINT_DIR / previous).unlink(missing_ok=True)



class TqdmProgress(keras.callbacks.Callback):
    """One tqdm bar per epoch on stderr, then a one-line epoch summary."""

    def __init__(self, steps: int, epochs: int, state: dict, enabled: bool = True):
        super().__init__()
        self.steps, self.epochs, self.state, self.enabled = steps, epochs, state, enabled
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}",
                        unit="batch", disable=not self.enabled, leave=False)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs and batch % 10 == 0:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
        logs = logs or {}
        parts = [f"{key} {float(value):.4f}" for key, value in sorted(logs.items())]
        _log(f"epoch {epoch + 1}/{self.epochs}: {', '.join(parts)}; best {MONITOR} "
             f"{self.state['best_score']:.4f} at epoch {self.state['best_epoch']}")
