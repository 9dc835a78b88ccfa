"""Training of a family member on any dataset layout: crash-safe, resumable, best checkpoint by
the task's validation score (PR-AUC for multilabel, accuracy for single_label)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import keras
import numpy as np

from lean import distribute
from lean.config import RunConfig, load_json, save_json, to_dict
from lean.distribute import DistributionConfig, Placement
from lean.errors import LeanError
from lean.io import atomic_write_text
from lean.run import (
    BEST_MODEL,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DATA_SUMMARY_FILE,
    HISTORY_FILE,
    LABELS_FILE,
    SKIPPED_FILES,
    STATE_FILE,
    TENSORBOARD_DIR,
    is_temporary,
    labels_text,
    save_keras_atomic,
)

# Settings that may differ between a run and its resumption without changing what is trained.
RESUMABLE_DIFFERENCES = ("lean_version",)
# Names a point at which the process kills itself (see `_crash_point`); set by tests only.
CRASH_POINT_VARIABLE = "LEAN_TEST_FAIL_AT"


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


def _remove_leftover_temporaries(run_dir: Path) -> None:
    """A kill -9 inside an atomic write leaves its hidden temporary file; it is never read."""
    for folder in (run_dir, run_dir / CHECKPOINT_DIR):
        if folder.is_dir():
            for leftover in filter(is_temporary, list(folder.iterdir())):
                leftover.unlink(missing_ok=True)


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


def _crash_point(point: str) -> None:
    """Kills this process as `kill -9` would when $LEAN_TEST_FAIL_AT names `point`, so a test
    can interrupt a run at an exact moment instead of after a guessed delay. Points:
    `batch:E:B` (before batch B of epoch E, both counted from 1)."""
    if os.environ.get(CRASH_POINT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _set_up_devices(train_config, distribution: DistributionConfig) -> Placement:
    """Chooses the distribution strategy (`lean.distribute`) and the precision policy."""
    import tensorflow as tf

    from lean.distribute import place

    placement = place(distribution, multi_gpu=train_config.multi_gpu)
    if tf.config.list_physical_devices("GPU") and train_config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
        placement.description += ", mixed_float16"
    else:
        keras.mixed_precision.set_global_policy("float32")
        placement.description += ", float32"
    return placement


def _compile(model, config: RunConfig) -> None:
    """The task's loss and metrics (lean.tasks) with the run's optimizer."""
    from lean import tasks

    model_config = config.model
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.train.learning_rate),
        loss=tasks.loss(model_config.task),
        metrics=tasks.metrics(model_config.task, model_config.num_classes),
    )


def resolve_dataset(config: RunConfig):
    """Loads the run's dataset (its layout and folds from `config.data`) and checks that the
    model's task can be trained on it."""
    from lean.data import load_dataset

    data = config.data
    if not data.dir:
        raise LeanError("no dataset folder given (--data DIR)")
    dataset = load_dataset(data.dir, layout=data.layout, fold=data.fold, val_fold=data.val_fold)
    if config.model.task == "single_label":
        for split in ("train", "val"):
            several = [clip for clip in dataset.clips(split) if len(clip.label_indices) != 1]
            if several:
                raise LeanError(
                    f"{dataset.root}: clip {several[0].fname} has {len(several[0].label_indices)} "
                    f"labels ({len(several)} {split} clips have more than one); a single_label "
                    "model needs exactly one: train with --task multilabel"
                )
    return dataset


def train(config: RunConfig, run_dir: str | Path, cache_dir: Optional[str | Path] = None,
          max_windows_per_epoch: Optional[int] = None, progress: bool = True,
          distribution: DistributionConfig = DistributionConfig()) -> dict:
    """Trains (or resumes, or reports complete) one run.

    Args:
        config: the run's settings; `config.data.dir` names the dataset (any layout with train
            and val splits); `model.num_classes` is set from the dataset's labels.
        run_dir: where the run lives; rerunning with the same settings resumes it. Under
            multi-worker training only the chief writes it.
        cache_dir: decoded-audio cache (default: `lean.data.pipeline.default_cache_dir()`).
        max_windows_per_epoch: train on this many shuffled windows per epoch (None: all).
        progress: tqdm bars on stderr.
        distribution: the strategy (`lean.distribute`); the default keeps one machine.

    Returns:
        The final training state (epochs done, best score and epoch, history).
    """
    from lean import __version__
    from lean.data.audio import AudioCache
    from lean.data.pipeline import default_cache_dir
    from lean.tasks import task

    run_dir = Path(run_dir)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, dir=str(Path(config.data.dir).absolute()))
        if config.data.dir else config.data)
    dataset = resolve_dataset(config)
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, num_classes=dataset.num_classes),
        data=dataclasses.replace(config.data, layout=dataset.layout, fold=dataset.test_fold,
                                 val_fold=dataset.val_fold),
        lean_version=__version__,
    )
    monitor = task(config.model.task).monitor
    options = {"max_windows_per_epoch": max_windows_per_epoch}
    labels = labels_text(dataset.labels)
    multi_worker = distribution.strategy == "multi-worker"
    if not multi_worker and os.environ.get(distribute.TF_CONFIG):
        _log(f"note: {distribute.TF_CONFIG} is set, but --strategy {distribution.strategy} "
             "trains on this machine alone; --strategy multi-worker trains on its cluster")
    # A malformed TF_CONFIG is reported before any work; only the chief owns the run directory.
    is_chief = distribute.cluster_from_environment().is_chief if multi_worker else True
    state = _check_existing_run(run_dir, config, labels, options) if is_chief else None
    if state and state.get("completed") and not multi_worker:
        _log(f"{run_dir} is complete: {state['epoch']} epochs, best {monitor} "
             f"{state['best_score']:.4f} at epoch {state['best_epoch']}")
        return state

    if is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        _remove_leftover_temporaries(run_dir)
        save_json(config, run_dir / CONFIG_FILE)
        atomic_write_text(run_dir / LABELS_FILE, labels)
    placement = _set_up_devices(config.train, distribution)
    if placement.cluster:
        state = _agree_on_settings(placement, config, labels, options, state)
        if state and state["completed"]:
            _log(f"{run_dir} is complete: {state['epoch']} epochs, best {monitor} "
                 f"{state['best_score']:.4f} at epoch {state['best_epoch']}")
            return state

    model_input = config.model.input
    cache = AudioCache(cache_dir or default_cache_dir(), model_input.sample_rate,
                       channels=model_input.channels)
    indexes = _index_splits(dataset, cache, config, run_dir, progress, writes=is_chief)
    if placement.cluster:
        # Window ids must name the same windows everywhere: the same clips, cut alike.
        facts = {f"{split} windows": [[clip.fname, int(count)] for clip, count in zip(
                     index.clips, np.bincount(index.clip_of_window, minlength=len(index.clips)))]
                 for split, index in indexes.items()}
        with distribute.lost_peers_explained(placement, lambda: state["epoch"] if state else 0):
            distribute.agree_with_chief(placement, facts, state)
    return _fit(config, dataset, cache, indexes, run_dir, state, options, progress, placement)


def _agree_on_settings(placement: Placement, config: RunConfig, labels: str, options: dict,
                       state: Optional[dict]) -> Optional[dict]:
    """Multi-worker: checks every worker has the chief's settings, and gives every worker the
    chief's training state (the chief keeps its own, with history; None for a new run)."""
    # The dataset folder may live elsewhere on each machine; everything else must match.
    settings = to_dict(dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                            dir=None)))
    facts = {"settings": settings, "labels": labels, "options": options}
    with distribute.lost_peers_explained(placement, lambda: 0):
        chief = distribute.agree_with_chief(placement, facts, state)
    if placement.is_chief:
        return state
    if chief["epoch"] == 0 and not chief["completed"]:
        return None
    return {**chief, "checkpoint": None, "history": [], "options": options}


def _check_existing_run(run_dir: Path, config: RunConfig, labels: str,
                        options: dict) -> Optional[dict]:
    if run_dir.exists() and not run_dir.is_dir():
        raise LeanError(f"{run_dir}: is a file, not a run directory; choose another --out")
    if not (run_dir / CONFIG_FILE).is_file():
        # A kill inside the very first atomic write leaves only its hidden temporary file.
        if run_dir.is_dir() and any(not is_temporary(path) for path in run_dir.iterdir()):
            raise LeanError(f"{run_dir}: exists and is not a run directory; choose another --out")
        return None
    try:
        saved = load_json(RunConfig, run_dir / CONFIG_FILE)
    except (ValueError, TypeError, LeanError, json.JSONDecodeError) as error:
        raise LeanError(f"{run_dir / CONFIG_FILE}: unreadable run config ({error})") from None
    differences = _config_differences(saved, config)
    if differences:
        raise LeanError(
            f"{run_dir} holds a run with other settings ({'; '.join(differences)}); "
            "rerun with the same settings to resume it, or choose another --out"
        )
    labels_path = run_dir / LABELS_FILE
    if labels_path.is_file() and labels_path.read_text(encoding="utf-8") != labels:
        raise LeanError(f"{labels_path}: the dataset's labels changed since this run started")
    state = read_state(run_dir)
    if state and state.get("options", options) != options:
        raise LeanError(
            f"{run_dir} was trained with {state['options']}, not {options}; use the same flags"
        )
    return state


def _index_splits(dataset, cache, config: RunConfig, run_dir: Path, progress: bool,
                  writes: bool = True) -> dict:
    """Decodes train and val once, writes data_summary.json and skipped_files.txt (`writes`:
    the run directory's owner)."""
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
        **dataset.describe_split(),
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
    if writes:
        atomic_write_text(run_dir / DATA_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        atomic_write_text(run_dir / SKIPPED_FILES,
                          "".join(f"{reason}\n" for _, reason in skipped))
    if skipped:
        _log(f"skipped {len(skipped)} bad audio files, listed in {run_dir / SKIPPED_FILES}")
    for split, index in indexes.items():
        _log(f"{split}: {len(index.clips)} clips, {index.num_windows} windows")
    return indexes


def _fit(config: RunConfig, dataset, cache, indexes: dict, run_dir: Path, state: Optional[dict],
         options: dict, progress: bool, placement: Placement) -> dict:
    from lean.data.pipeline import build_window_dataset, steps_per_epoch
    from lean.models.registry import build_model
    from lean.tasks import task

    train_config = config.train
    monitor = task(config.model.task).monitor
    strategy = placement.strategy
    _log(f"training {config.model.name} ({config.model.task}) on {placement.description}")
    keras.utils.set_random_seed(train_config.seed)

    first_epoch = state["epoch"] if state else 0
    chief_values = None
    if placement.cluster and state and placement.is_chief:
        # Read outside the strategy's scope; the other workers get these values from the chief.
        chief_values = distribute.checkpoint_values(
            load_checkpoint(run_dir / CHECKPOINT_DIR / state["checkpoint"]))
    with strategy.scope(), distribute.lost_peers_explained(placement, lambda: first_epoch):
        if state and not placement.cluster:
            model = load_checkpoint(run_dir / CHECKPOINT_DIR / state["checkpoint"])
        else:
            model = build_model(config.model)
            # The contract keeps the frontend and the output float32 under mixed precision.
            if model.outputs[0].dtype != "float32":
                raise LeanError(f"model {config.model.name} outputs {model.outputs[0].dtype}, "
                                "not float32: its head breaks the family contract")
            _compile(model, config)
            if state:
                distribute.restore_from_chief(placement, model, chief_values)
        if state:
            where = run_dir if placement.is_chief else "the chief's run"
            _log(f"resuming {where} after epoch {first_epoch} of {train_config.epochs}")
        else:
            state = {"epoch": 0, "checkpoint": None, "best_score": None, "best_epoch": None,
                     "history": [], "completed": False, "options": options}
    if placement.is_chief:
        write_history_csv(run_dir / HISTORY_FILE, state["history"])

    global_batch = train_config.batch_size
    window_samples = config.model.window_samples

    def train_pipeline(replicas=None):
        return build_window_dataset(
            indexes["train"], dataset, cache, window_samples, global_batch,
            shuffle_seed=train_config.seed, epochs=(first_epoch, train_config.epochs),
            max_windows_per_epoch=options["max_windows_per_epoch"], replicas=replicas,
        )

    def val_pipeline(replicas=None):
        return build_window_dataset(indexes["val"], dataset, cache, window_samples,
                                    global_batch, replicas=replicas)

    per_epoch = min(indexes["train"].num_windows,
                    options["max_windows_per_epoch"] or indexes["train"].num_windows)
    if placement.num_replicas > 1:
        # Each replica reads only its part of every global batch of --batch-size windows.
        distribute.check_batches(placement, global_batch, per_epoch, indexes["val"].num_windows)
        train_data = distribute.replica_datasets(placement, train_pipeline)
        val_data = distribute.replica_datasets(placement, val_pipeline)
    else:
        train_data, val_data = train_pipeline(), val_pipeline()
    steps = steps_per_epoch(indexes["train"].num_windows, global_batch,
                            options["max_windows_per_epoch"])
    callbacks = [EpochCheckpoint(run_dir, state, train_config.epochs, monitor,
                                 writes=placement.is_chief),
                 *(_tensorboard_callbacks(run_dir) if placement.is_chief else []),
                 TqdmProgress(steps, train_config.epochs, state, monitor, enabled=progress)]
    if os.environ.get(CRASH_POINT_VARIABLE):
        callbacks.append(_BatchCrashPoints())
    with distribute.lost_peers_explained(placement, lambda: state["epoch"]), \
            warnings.catch_warnings():
        # A distributed validation set has no known length, so Keras warns at its end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(train_data, epochs=train_config.epochs, initial_epoch=first_epoch,
                  steps_per_epoch=steps, validation_data=val_data, callbacks=callbacks,
                  shuffle=False, verbose=0)
    _log(f"done: best {monitor} {state['best_score']:.4f} at epoch {state['best_epoch']}"
         + (f"; model {run_dir / BEST_MODEL}" if placement.is_chief else ""))
    return state


def _tensorboard_callbacks(run_dir: Path) -> list:
    """TensorBoard event files in RUN_DIR/tensorboard, when the tensorboard package is there."""
    try:
        import tensorboard  # noqa: F401  (tf.summary needs it to write anything)
    except ImportError:
        _log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR),
                                        update_freq="epoch", write_graph=False)]


class EpochCheckpoint(keras.callbacks.Callback):
    """At each epoch end, atomically saves best.keras, the resume checkpoint (model + optimizer),
    history.csv, then the state JSON that points at them.

    The state file is written last and names the checkpoint it belongs to, so a kill at any
    moment leaves the previous consistent state (and an unreferenced file at worst). With
    `writes=False` (a multi-worker run's other workers) it keeps the state in memory only.
    """

    def __init__(self, run_dir: Path, state: dict, epochs: int, monitor: str,
                 writes: bool = True):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.epochs = epochs
        self.monitor = monitor
        self.writes = writes
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.monitor not in logs:
            raise LeanError(f"no {self.monitor} after epoch {epoch + 1}: is the val split empty?")
        done = epoch + 1
        score = float(logs[self.monitor])
        state = self.state
        improved = state["best_score"] is None or score > state["best_score"]
        if improved and self.writes:
            save_keras_atomic(self.model, self.run_dir / BEST_MODEL)
        if improved:
            state["best_score"], state["best_epoch"] = score, done
        checkpoint = f"epoch-{done:04d}.keras"
        row = {"epoch": done, **{key: float(value) for key, value in sorted(logs.items())},
               "seconds": round(time.monotonic() - self.started, 2)}
        state["history"].append(row)
        previous = state["checkpoint"]
        state.update(epoch=done, checkpoint=checkpoint, completed=done >= self.epochs)
        if not self.writes:
            return
        save_keras_atomic(self.model, self.run_dir / CHECKPOINT_DIR / checkpoint)
        write_history_csv(self.run_dir / HISTORY_FILE, state["history"])
        atomic_write_text(self.run_dir / CHECKPOINT_DIR / STATE_FILE,
                          json.dumps(state, indent=2) + "\n")
        if previous and previous != checkpoint:
            (self.run_dir / CHECKPOINT_DIR / previous).unlink(missing_ok=True)



class _BatchCrashPoints(keras.callbacks.Callback):
    """The `batch:E:B` crash points (`_crash_point`), only added when a test sets them."""

    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        _crash_point(f"batch:{self.epoch}:{batch + 1}")


class TqdmProgress(keras.callbacks.Callback):
    """One tqdm bar per epoch on stderr, then a one-line epoch summary."""

    def __init__(self, steps: int, epochs: int, state: dict, monitor: str, enabled: bool = True):
        super().__init__()
        self.steps, self.epochs, self.state, self.enabled = steps, epochs, state, enabled
        self.monitor = monitor
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
        _log(f"epoch {epoch + 1}/{self.epochs}: {', '.join(parts)}; best {self.monitor} "
             f"{self.state['best_score']:.4f} at epoch {self.state['best_epoch']}")
