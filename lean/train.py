"""Training of a family member on any dataset layout: crash-safe, resumable, best checkpoint by
the task's validation score (PR-AUC for multilabel, accuracy for single_label)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
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
    CRASH_POINT_VARIABLE,
    DATA_SUMMARY_FILE,
    HISTORY_FILE,
    LABELS_FILE,
    SKIPPED_FILES,
    STATE_FILE,
    TENSORBOARD_DIR,
    copy_parts,
    crash_point,
    is_temporary,
    labels_text,
    save_keras_atomic,
)

# Settings that may differ between a run and its resumption without changing what is trained.
RESUMABLE_DIFFERENCES = ("lean_version",)


def load_checkpoint(path: Path):
    """A resume checkpoint with its compiled loss, metrics and optimizer state (Adam moments)."""
    import lean.models  # noqa: F401  (registers the family's custom layers)
    # The refinements' Keras objects: loss, metric wrapper, schedule, SpecAugment.
    import lean.training.losses  # noqa: F401
    import lean.training.schedules  # noqa: F401
    import lean.training.specaugment  # noqa: F401

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
            if stale or is_temporary(path):
                path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(run_dir)))
    if removed:
        _log(f"removed {len(removed)} file(s) an interrupted run left in {run_dir}: "
             f"{', '.join(removed)}")


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


def _compile(model, config: RunConfig, steps_per_epoch: Optional[int] = None) -> None:
    """The task's loss and metrics (lean.tasks) with the run's refinements (lean.training):
    optimizer and learning-rate schedule (which needs `steps_per_epoch`), label smoothing,
    between-class KL, distillation."""
    from lean.training.losses import build_loss, build_metrics
    from lean.training.schedules import build_optimizer

    model_config, train_config = config.model, config.train
    model.compile(
        optimizer=build_optimizer(train_config, steps_per_epoch),
        loss=build_loss(train_config, model_config.task, model_config.num_classes),
        metrics=build_metrics(train_config, model_config.task, model_config.num_classes),
    )


def check_refinements(config: RunConfig, dataset) -> None:
    """The refinement options against the dataset, the model and the teacher, before any audio
    is read: a one-line LeanError naming the option otherwise."""
    from lean.training.options import check_teacher, check_train_config

    train_config, model_config = config.train, config.model
    check_train_config(train_config, model_config.task, dataset.num_classes)
    if train_config.teacher is not None:
        check_teacher(train_config.teacher, dataset.labels, model_config.task, model_config.input)
    if train_config.specaugment is not None:
        from lean.models.registry import build_model
        from lean.training.specaugment import spectrogram_frontends

        if not spectrogram_frontends(build_model(model_config, load_pretrained=False)):
            raise LeanError(f"--specaugment: model {model_config.name!r} has no spectrogram "
                            "frontend to mask (SpecAugment masks frequency bins and time frames)")


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
    check_refinements(config, dataset)
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
    if is_chief:
        _remove_leftovers(run_dir, state)
    if state and state.get("completed") and not multi_worker:
        _log(f"{run_dir} is complete: {state['epoch']} epochs, best {monitor} "
             f"{state['best_score']:.4f} at epoch {state['best_epoch']}")
        return state

    note = _random_trunk_note(config)
    if note and is_chief:
        _log(note)
    if is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(config, run_dir / CONFIG_FILE)
        atomic_write_text(run_dir / LABELS_FILE, labels)
        copy_parts(run_dir, config.model)
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


def _random_trunk_note(config: RunConfig) -> Optional[str]:
    """The settings that learn without the official YAMNet weights, when these are not them."""
    params = config.model.params
    if not hasattr(params, "yamnet_weights") or params.yamnet_weights:
        return None
    # Measured on a 40-class real-audio set, 6 epochs, trunk trained from random init: eval mAP
    # 0.159 at lr 1e-4 / batch 64 (the paper's) against 0.240 at lr 1e-3 / batch 32.
    advice = ("without the official weights train with --finetune-yamnet --lr 1e-3 "
              "--batch-size 32 (as scripts/quickstart.sh does)")
    if not config.model.trainable_backbone:
        return (f"note: no --yamnet-weights, so the frozen YAMNet trunk stays random and only the "
                f"head trains, which learns almost nothing; {advice}")
    if config.train.learning_rate < 1e-3:
        return (f"note: no --yamnet-weights, so the YAMNet trunk trains from random init, which "
                f"learns slowly at --lr {config.train.learning_rate:g}; {advice}")
    return None


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
    from lean.data.pipeline import build_window_dataset, steps_per_epoch, training_example_ids
    from lean.models.registry import build_model
    from lean.tasks import task
    from lean.training.mixing import build_mixer, mix_batches
    from lean.training.schedules import ScheduleLog, build_learning_rate
    from lean.training.specaugment import with_spec_augment, without_spec_augment

    train_config = config.train
    monitor = task(config.model.task).monitor
    strategy = placement.strategy
    _log(f"training {config.model.name} ({config.model.task}) on {placement.description}")
    keras.utils.set_random_seed(train_config.seed)

    first_epoch = state["epoch"] if state else 0
    global_batch = train_config.batch_size
    chief_values = None
    if placement.cluster and state and placement.is_chief:
        # Read outside the strategy's scope; the other workers get these values from the chief.
        chief_values = distribute.checkpoint_values(
            load_checkpoint(run_dir / CHECKPOINT_DIR / state["checkpoint"]))
    # One machine resumes from its checkpoint; a cluster builds afresh and takes the chief's.
    from_checkpoint = bool(state) and not placement.cluster
    with strategy.scope(), distribute.lost_peers_explained(placement, lambda: first_epoch):
        if from_checkpoint:
            model = load_checkpoint(run_dir / CHECKPOINT_DIR / state["checkpoint"])
        else:
            model = build_model(config.model)
            # The contract keeps the frontend and the output float32 under mixed precision.
            if model.outputs[0].dtype != "float32":
                raise LeanError(f"model {config.model.name} outputs {model.outputs[0].dtype}, "
                                "not float32: its head breaks the family contract")
        # A training build with an open time axis (waveform_input(variable_length=True)) trains
        # on each clip's first window, each batch cut to its shortest clip; validation, like
        # evaluation, always uses full windows.
        clip_starts = model.inputs[0].shape[1] is None
        if clip_starts and placement.num_replicas > 1:
            raise LeanError(f"model {config.model.name} trains on whole clips of varying length, "
                            "which one replica does; train it with --strategy one-device")
        num_examples = len(training_example_ids(indexes["train"], clip_starts))
        steps = steps_per_epoch(num_examples, global_batch, options["max_windows_per_epoch"])
        if not from_checkpoint:
            if train_config.specaugment is not None:
                # Trained through a copy that masks after the frontend; shares every weight.
                model = with_spec_augment(model, train_config.specaugment, train_config.seed)
            _compile(model, config, steps)
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
    if clip_starts:
        _log("one example per clip: its first window (a shorter clip whole), each batch cut to "
             "its shortest clip")

    window_samples = config.model.window_samples
    teacher = None
    if train_config.teacher is not None:
        from lean.training.distillation import teacher_soft_targets

        teacher = teacher_soft_targets(config, dataset, cache, indexes["train"], run_dir,
                                       progress, writes=placement.is_chief)
    mixer = build_mixer(train_config, config.model.task, config.model.num_classes)

    def train_pipeline(replicas=None):
        batches = build_window_dataset(
            indexes["train"], dataset, cache, window_samples, global_batch,
            shuffle_seed=train_config.seed, epochs=(first_epoch, train_config.epochs),
            max_windows_per_epoch=options["max_windows_per_epoch"], clip_starts=clip_starts,
            window_targets=teacher, replicas=replicas,
        )
        if mixer is None:
            return batches
        return mix_batches(batches, mixer, train_config.seed, first_epoch, steps).prefetch(2)

    def val_pipeline(replicas=None):
        return build_window_dataset(indexes["val"], dataset, cache, window_samples,
                                    global_batch, replicas=replicas)

    per_epoch = min(num_examples, options["max_windows_per_epoch"] or num_examples)
    if placement.num_replicas > 1:
        # Each replica reads only its part of every global batch of --batch-size windows.
        distribute.check_batches(placement, global_batch, per_epoch, indexes["val"].num_windows)
        train_data = distribute.replica_datasets(placement, train_pipeline)
        val_data = distribute.replica_datasets(placement, val_pipeline)
    else:
        train_data, val_data = train_pipeline(), val_pipeline()
    # ScheduleLog first: the callbacks after it read the learning rates it adds to the logs.
    callbacks = [ScheduleLog(build_learning_rate(train_config, steps)),
                 EpochCheckpoint(run_dir, state, train_config.epochs, monitor,
                                 best_model=without_spec_augment(model),
                                 writes=placement.is_chief),
                 *(_tensorboard_callbacks(run_dir) if placement.is_chief else []),
                 TqdmProgress(steps, train_config.epochs, state, monitor, enabled=progress)]
    if os.environ.get(CRASH_POINT_VARIABLE):
        callbacks.append(CrashPoints())
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
    moment leaves the previous consistent state (and an unreferenced file at worst, which the
    next start removes). With `writes=False` (a multi-worker run's other workers) it keeps the
    state in memory only.
    """

    def __init__(self, run_dir: Path, state: dict, epochs: int, monitor: str, best_model=None,
                 writes: bool = True):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.epochs = epochs
        self.monitor = monitor
        # What best.keras holds: the trained model, or the same layers without training-only
        # ones (SpecAugment), which the resume checkpoint keeps.
        self.best_model = best_model
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
            save_keras_atomic(self.best_model or self.model, self.run_dir / BEST_MODEL)
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
        # A kill here keeps `previous` on disk: the next start removes it (`_remove_leftovers`).
        crash_point(f"state-written:{done}")
        if previous and previous != checkpoint:
            (self.run_dir / CHECKPOINT_DIR / previous).unlink(missing_ok=True)


class CrashPoints(keras.callbacks.Callback):
    """Offers each training batch end to `lean.run.crash_point` (tests only)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        crash_point(f"batch:{self.epoch}:{batch + 1}")


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
        parts = [f"{key} {float(value):{'.3g' if key.startswith('lr_') else '.4f'}}"
                 for key, value in sorted(logs.items())]
        _log(f"epoch {epoch + 1}/{self.epochs}: {', '.join(parts)}; best {self.monitor} "
             f"{self.state['best_score']:.4f} at epoch {self.state['best_epoch']}")
