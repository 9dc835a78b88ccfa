"""The two tasks a model is built for, and what follows from each: output activation, loss,
the validation score that picks the best checkpoint, and the evaluation metrics."""

from __future__ import annotations

from dataclasses import dataclass

from lean.errors import LeanError

MULTILABEL = "multilabel"
SINGLE_LABEL = "single_label"


@dataclass(frozen=True)
class Task:
    """What a task fixes for every model trained on it."""

    name: str
    # The output layer's activation: per-class probabilities, or one distribution.
    activation: str
    # The validation score (a Keras metric name) that picks RUN_DIR/best.keras; higher is better.
    monitor: str
    description: str


TASKS = {
    MULTILABEL: Task(MULTILABEL, "sigmoid", "val_pr_auc",
                     "several labels per clip: sigmoid outputs, binary cross-entropy, best "
                     "checkpoint by validation PR-AUC (macro over classes, interpolated)"),
    SINGLE_LABEL: Task(SINGLE_LABEL, "softmax", "val_accuracy",
                       "one label per clip: softmax outputs, categorical cross-entropy on "
                       "one-hot or soft targets, best checkpoint by validation accuracy"),
}


def task(name: str) -> Task:
    """The `Task` called `name`; a LeanError naming the tasks otherwise."""
    if name not in TASKS:
        raise LeanError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]


def loss(name: str):
    """The task's Keras loss on probability outputs (targets one-hot, soft or multi-hot)."""
    import keras

    if task(name).name == MULTILABEL:
        return keras.losses.BinaryCrossentropy()
    return keras.losses.CategoricalCrossentropy()


def metrics(name: str, num_classes: int) -> list:
    """The Keras metrics compiled with the model; the task's monitor is one of them."""
    import keras

    if task(name).name == MULTILABEL:
        # Macro PR-AUC (multi_label=True), interpolated: the paper names tf.keras AUC(curve="PR")
        # without its setting; the macro mean matches the mAP it reports.
        return [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes,
                                  name="pr_auc")]
    return [keras.metrics.CategoricalAccuracy(name="accuracy")]


__all__ = ["MULTILABEL", "SINGLE_LABEL", "TASKS", "Task", "loss", "metrics", "task"]
